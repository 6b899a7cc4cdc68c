"""Tests for the HTTP API (app/): health, presets, docs, status, starting runs and
rejecting bad settings, pause/resume/stop, run listings and CSV, and runs that fail
(missing data, an exception in the training thread, divergence) without taking the
server down. In process, with Starlette's TestClient as a context manager so that
the lifespan runs."""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from cnn.model import TrainingDiverged
from cnn.presets import PRESETS
from server_helpers import (LONG_RUN, SHORT_RUN, events_only, fail_after, fast_pings,  # noqa: F401
                            is_done, make_app, start_run, stream_events, wait_for,
                            wait_for_run_end)

EPOCH_FIELDS = ["epoch", "epochs", "train_loss", "train_accuracy", "test_loss",
                "test_accuracy", "test_correct", "test_total", "seconds",
                "images_per_second", "learning_rate", "momentum"]
# Measured on the person's held-out drawings: null without ten labelled drawings.
DRAWINGS_FIELDS = ["drawings_correct", "drawings_total", "drawings_accuracy"]


@pytest.fixture
def client(mnist_dir):
    """A fresh server on the real MNIST; its lifespan stops any run left active."""
    with TestClient(make_app(mnist_dir)) as client:
        yield client


@pytest.fixture
def client_without_mnist(tmp_path):
    """A server whose data directory is empty, with downloading disabled."""
    empty = tmp_path / "no-mnist-here"
    empty.mkdir()
    with TestClient(make_app(empty)) as client:
        client.data_dir = empty
        yield client


@pytest.fixture(scope="module")
def finished_run(mnist_dir):
    """A server that has finished one short run: (client, run_id)."""
    with TestClient(make_app(mnist_dir)) as client:
        run_id = start_run(client, **SHORT_RUN)["run_id"]
        wait_for_run_end(client)
        yield client, run_id


def step_of(client) -> int:
    return client.get("/api/status").json()["step"]


def global_step(client) -> tuple[int, int]:
    status = client.get("/api/status").json()
    return status["epoch"], status["step"]


def readable_detail(response) -> str:
    """A 422's detail as one line of text; fails unless each part says what is wrong."""
    detail = response.json()["detail"]
    if isinstance(detail, str):
        assert detail.strip()
        return detail
    assert isinstance(detail, list) and detail
    for item in detail:
        assert item["msg"].strip() and item["loc"], item
    return "; ".join(".".join(map(str, item["loc"])) + ": " + item["msg"] for item in detail)


# -- health, presets, docs ------------------------------------------------------------------

def test_healthz_says_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_presets_lists_seed_seed_fc_and_default_with_their_spec_and_config(client):
    response = client.get("/api/presets")
    assert response.status_code == 200
    presets = {preset["name"]: preset for preset in response.json()}
    assert set(presets) == {"seed", "seed-fc", "default"}
    for name, preset in presets.items():
        assert preset["description"]
        assert preset["spec"] == json.loads(json.dumps(PRESETS[name].spec))
        assert preset["config"] == PRESETS[name].config.to_dict()
    assert presets["default"]["config"]["optimizer"] == "adam"
    assert [layer["type"] for layer in presets["seed"]["spec"]["layers"]][0] == "conv"
    assert all(layer["type"] != "conv" for layer in presets["seed-fc"]["spec"]["layers"])


def test_docs_page_and_openapi_schema_load_and_list_every_endpoint(client):
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    schema = client.get("/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    documented = {(method.upper(), path) for path, item in paths.items() for method in item}
    routes = {(method, route.path) for route in client.app.routes
              if isinstance(route, APIRoute) and route.include_in_schema
              for method in route.methods}
    assert routes <= documented
    assert {("GET", "/healthz"), ("GET", "/api/status"), ("GET", "/api/presets"),
            ("POST", "/api/runs"), ("GET", "/api/runs"),
            ("POST", "/api/runs/{run_id}/pause"), ("POST", "/api/runs/{run_id}/resume"),
            ("POST", "/api/runs/{run_id}/stop"), ("POST", "/api/runs/{run_id}/step"),
            ("POST", "/api/runs/{run_id}/hyperparameters"), ("DELETE", "/api/runs/{run_id}"),
            ("GET", "/api/runs/{run_id}"), ("GET", "/api/runs/{run_id}/metrics.csv"),
            ("POST", "/api/comparisons"), ("GET", "/api/runs/{run_id}/events"),
            ("GET", "/api/model/choices"), ("GET", "/api/events")} <= documented


# -- status and missing data --------------------------------------------------------------

def test_status_is_idle_before_any_run_and_finds_the_data(client, mnist_dir):
    status = client.get("/api/status").json()
    assert status["state"] == "idle"
    assert status["run_id"] is None and status["message"] is None
    assert status["step"] == 0 and status["progress"] == 0.0
    assert status["data"] == {"available": True, "directory": str(mnist_dir), "message": None}


def test_status_without_mnist_names_the_directory_and_how_to_fix_it(client_without_mnist):
    data = client_without_mnist.get("/api/status").json()["data"]
    assert data["available"] is False
    assert data["directory"] == str(client_without_mnist.data_dir)
    assert str(client_without_mnist.data_dir) in data["message"]
    assert "CNN_LIVE_DATA_DIR" in data["message"] and "download" in data["message"]


def test_a_run_without_mnist_fails_with_the_reason_and_the_server_keeps_working(
        client_without_mnist, fast_pings):
    client = client_without_mnist
    started = start_run(client, **SHORT_RUN)
    records = stream_events(client, lambda r: r.event == "error")
    error = records[-1].json()
    assert error["run_id"] == started["run_id"]
    assert str(client.data_dir) in error["message"]
    assert "CNN_LIVE_DATA_DIR" in error["message"] or "--data-dir" in error["message"]
    status = wait_for_run_end(client)
    assert status["state"] == "failed"
    assert status["message"] == error["message"]
    assert status["data"]["available"] is False
    # Still serving, and ready for the next attempt.
    assert client.get("/healthz").status_code == 200
    second = client.post("/api/runs", json=SHORT_RUN)
    assert second.status_code == 201
    assert second.json()["run_id"] != started["run_id"]
    assert wait_for_run_end(client)["state"] == "failed"


# -- starting runs ----------------------------------------------------------------------

def test_starting_a_run_answers_201_with_its_id_and_state_running(client):
    response = client.post("/api/runs", json=SHORT_RUN)
    assert response.status_code == 201
    status = response.json()
    assert status["state"] == "running"
    assert status["run_id"]
    assert status["preset"] == "default"
    assert status["config"]["epochs"] == 2 and status["config"]["train_size"] == 2000
    assert status["epochs"] == 2
    assert wait_for_run_end(client)["state"] == "finished"


def test_runs_past_the_free_workers_queue_in_order_and_past_the_queue_get_a_429(mnist_dir):
    app = make_app(mnist_dir, max_concurrent_runs=1, max_queued_runs=2)
    with TestClient(app) as client:
        first = start_run(client, **LONG_RUN)
        assert first["state"] == "running" and first["queue_position"] is None
        second, third = (start_run(client, **SHORT_RUN) for _ in range(2))
        assert (second["state"], second["queue_position"]) == ("queued", 1)
        assert (third["state"], third["queue_position"]) == ("queued", 2)
        response = client.post("/api/runs", json=SHORT_RUN)
        assert response.status_code == 429
        assert "queue is full" in response.json()["detail"]
        status = client.get("/api/status").json()
        assert status["run_id"] == first["run_id"] and status["queued"] == 2
        assert [run["state"] for run in status["runs"]] == ["running", "queued", "queued"]
        # A queued run is not steered: it is taken out of the queue.
        refused = client.post(f"/api/runs/{second['run_id']}/pause", json={})
        assert refused.status_code == 409 and "queued (position 1)" in refused.json()["detail"]
        assert client.request("DELETE", f"/api/runs/{second['run_id']}", json={}).status_code == 204
        assert client.get(f"/api/runs/{second['run_id']}").status_code == 404
        assert client.get(f"/api/runs/{third['run_id']}").json()["state"] == "queued"
        assert client.get("/api/status").json()["runs"][1]["queue_position"] == 1
        # The first ends: the third starts in its place and trains to its end.
        client.post(f"/api/runs/{first['run_id']}/stop", json={})
        wait_for(lambda: client.get(f"/api/runs/{third['run_id']}").json()["state"]
                 == "finished", 60, what="the queued run to start and finish")
        run = client.get(f"/api/runs/{third['run_id']}").json()
        assert len(run["epochs"]) == SHORT_RUN["epochs"]
        assert client.request("DELETE", f"/api/runs/{third['run_id']}", json={}).status_code == 409


COMPARISON = {"runs": [{"preset": "seed", "epochs": 2}, {"preset": "seed-fc", "epochs": 2}]}


def test_a_comparison_trains_its_runs_side_by_side_each_with_its_own_stream(mnist_dir,
                                                                           fast_pings):
    with TestClient(make_app(mnist_dir, max_concurrent_runs=2)) as client:
        answer = client.post("/api/comparisons", json=COMPARISON)
        assert answer.status_code == 201
        run_ids = answer.json()["run_ids"]
        assert len(set(run_ids)) == 2
        assert [run["state"] for run in answer.json()["runs"]] == ["running", "running"]
        assert [run["preset"] for run in answer.json()["runs"]] == ["seed", "seed-fc"]
        done: set[str] = set()

        def both_done(record) -> bool:
            if record.event == "done":
                done.add(record.json()["run_id"])
            return done == set(run_ids)

        everything = stream_events(client, both_done, timeout=60)
        run_events = [e for e in events_only(everything) if e.event != "status"]
        assert {e.json()["run_id"] for e in run_events} == set(run_ids)
        # Side by side: each run's first batch came before the other run was done.
        for run_id in run_ids:
            first_batch = next(e.id for e in events_only(everything, "batch")
                               if e.json()["run_id"] == run_id)
            assert all(first_batch < e.id for e in events_only(everything, "done"))
        for run_id in run_ids:  # a run's own stream: its events alone, replayed
            own = stream_events(client, is_done, path=f"/api/runs/{run_id}/events")
            assert {e.json()["run_id"] for e in events_only(own)} == {run_id}
            assert [e.json()["epoch"] for e in events_only(own, "epoch")] == [1, 2]
        assert client.get("/api/runs/nosuchrun/events").status_code == 404


def test_a_comparison_with_one_bad_run_starts_none(client):
    bad = {"runs": [{"preset": "seed"}, {"preset": "resnet"}]}
    answer = client.post("/api/comparisons", json=bad)
    assert answer.status_code == 422 and "resnet" in answer.json()["detail"]
    assert client.get("/api/runs").json() == []
    assert client.post("/api/comparisons", json={"runs": [{"preset": "seed"}]}).status_code == 422


def test_a_comparison_that_does_not_fit_the_queue_is_a_429_and_starts_none(mnist_dir):
    app = make_app(mnist_dir, max_concurrent_runs=1, max_queued_runs=1)
    with TestClient(app) as client:
        three = {"runs": [{"preset": "seed", "epochs": 1}] * 3}
        answer = client.post("/api/comparisons", json=three)
        assert answer.status_code == 429 and "queue" in answer.json()["detail"]
        assert client.get("/api/runs").json() == []


BAD_REQUESTS = {
    "an unknown preset": ({"preset": "resnet"}, "resnet"),
    "zero epochs": ({"epochs": 0}, "epochs"),
    "a negative learning rate": ({"learning_rate": -0.1}, "learning_rate"),
    "the rmsprop optimizer": ({"optimizer": "rmsprop"}, "optimizer"),
    "an unknown field": ({"dropout": 0.5}, "dropout"),
    "filters with the wrong count": ({"preset": "default", "filters": [4]}, "filters"),
    "filters for a network without conv layers": ({"preset": "seed-fc", "filters": [4]},
                                                  "filters"),
    "a batch size in words": ({"batch_size": "sixty-four"}, "batch_size"),
    "a batch size as a numeric string": ({"batch_size": "64"}, "batch_size"),
    "epochs as true": ({"epochs": True}, "epochs"),
    "an empty string for epochs": ({"epochs": ""}, "epochs"),
    "an empty string for the learning rate": ({"learning_rate": ""}, "learning_rate"),
    "a number for the preset": ({"preset": 3}, "preset"),
    "a string for filters": ({"filters": "8,16"}, "filters"),
    "a fractional epoch count": ({"epochs": 2.5}, "epochs"),
    "a list instead of an object": ([], "body"),
}


@pytest.mark.parametrize("body, field", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_a_run_request_with_bad_settings_is_a_422_with_a_readable_detail(client, body, field):
    response = client.post("/api/runs", json=body)
    assert response.status_code == 422, f"accepted {body}: {response.json()}"
    assert field in readable_detail(response)
    assert client.get("/api/status").json()["state"] == "idle"


def test_an_unknown_preset_is_rejected_with_the_list_of_choices(client):
    response = client.post("/api/runs", json={"preset": "resnet"})
    assert response.status_code == 422
    detail = readable_detail(response)
    assert all(name in detail for name in ("seed", "seed-fc", "default"))


def test_filters_with_the_wrong_count_say_how_many_the_preset_needs(client):
    response = client.post("/api/runs", json={"preset": "default", "filters": [4, 8, 16]})
    assert response.status_code == 422
    detail = readable_detail(response)
    assert "2" in detail and "3" in detail


# -- pause, resume, stop ----------------------------------------------------------------

@pytest.mark.parametrize("action", ["pause", "resume", "stop"])
def test_controls_are_409_conflicts_when_no_run_is_active(client, action):
    response = client.post(f"/api/runs/current/{action}", json={})
    assert response.status_code == 409
    assert response.json()["detail"] == f"cannot {action}: the run is idle"


def test_a_paused_run_makes_no_progress_until_resumed_and_stops_when_asked(client, fast_pings):
    run_id = start_run(client, **LONG_RUN)["run_id"]
    wait_for(lambda: step_of(client) > 0, what="the first batches")

    paused = client.post("/api/runs/current/pause", json={})
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    assert client.post("/api/runs/current/pause", json={}).status_code == 409

    def settled():  # the batch in flight when the pause came may still complete
        first = global_step(client)
        time.sleep(0.1)
        return first == global_step(client) and first

    position = wait_for(settled, timeout=5, what="the paused run to settle")
    time.sleep(0.5)
    assert global_step(client) == position
    assert client.get("/api/status").json()["state"] == "paused"

    resumed = client.post("/api/runs/current/resume", json={})
    assert resumed.status_code == 200 and resumed.json()["state"] == "running"
    assert client.post("/api/runs/current/resume", json={}).status_code == 409
    wait_for(lambda: global_step(client) != position, what="progress after resuming")

    stopped = client.post("/api/runs/current/stop", json={})
    assert stopped.status_code == 200 and stopped.json()["state"] in ("stopping", "finished")
    status = wait_for_run_end(client)
    assert status["state"] == "finished"
    done = stream_events(client, is_done)[-1].json()
    assert done["run_id"] == run_id and done["state"] == "stopped"
    assert done["epochs_completed"] < LONG_RUN["epochs"]
    assert client.post("/api/runs/current/stop", json={}).status_code == 409
    listed = {run["run_id"]: run for run in client.get("/api/runs").json()}
    assert listed[run_id]["outcome"] == "stopped"

    # The next run starts and completes.
    next_id = start_run(client, **SHORT_RUN)["run_id"]
    assert next_id != run_id
    assert wait_for_run_end(client)["state"] == "finished"
    listed = {run["run_id"]: run for run in client.get("/api/runs").json()}
    assert listed[next_id]["outcome"] == "finished"


def test_a_paused_run_can_be_stopped_without_resuming(client, fast_pings):
    start_run(client, **LONG_RUN)
    wait_for(lambda: step_of(client) > 0, what="the first batches")
    assert client.post("/api/runs/current/pause", json={}).status_code == 200
    assert client.post("/api/runs/current/stop", json={}).status_code == 200
    assert wait_for_run_end(client, timeout=10)["state"] == "finished"
    assert stream_events(client, is_done)[-1].json()["state"] == "stopped"


# -- listing runs and their metrics ------------------------------------------------------------

def test_finished_runs_are_listed_with_their_config_epochs_and_final_accuracy(finished_run):
    client, run_id = finished_run
    response = client.get("/api/runs")
    assert response.status_code == 200
    (run,) = response.json()
    assert run["run_id"] == run_id and run["preset"] == "default"
    assert run["state"] == "finished" and run["message"] is None
    assert run["config"]["epochs"] == 2 and run["config"]["train_size"] == 2000
    assert run["config"]["test_size"] == 500
    assert run["finished_at"] >= run["started_at"]
    assert [epoch["epoch"] for epoch in run["epochs"]] == [1, 2]
    for epoch in run["epochs"]:
        assert set(epoch) == set(EPOCH_FIELDS + DRAWINGS_FIELDS)
        assert all(epoch[name] is None for name in DRAWINGS_FIELDS)  # no drawings here
        assert epoch["test_total"] == 500 and epoch["images_per_second"] > 0
    assert run["final_test_accuracy"] == run["epochs"][-1]["test_accuracy"]
    assert run["final_test_accuracy"] > 0.5  # it learned something in 2 x 2000 images


def test_metrics_csv_has_a_header_and_one_row_per_epoch_matching_the_json(finished_run):
    client, run_id = finished_run
    response = client.get(f"/api/runs/{run_id}/metrics.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert run_id in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == EPOCH_FIELDS + DRAWINGS_FIELDS
    epochs = client.get("/api/runs").json()[0]["epochs"]
    assert len(rows) == 1 + len(epochs)
    for row, epoch in zip(rows[1:], epochs):
        measured = row[:len(EPOCH_FIELDS)]
        assert [float(value) for value in measured] == [epoch[name] for name in EPOCH_FIELDS]
        assert row[len(EPOCH_FIELDS):] == ["", "", ""]


def test_metrics_of_an_unknown_run_is_a_404(finished_run):
    client, _ = finished_run
    response = client.get("/api/runs/nosuchrun/metrics.csv")
    assert response.status_code == 404
    assert "nosuchrun" in response.json()["detail"]


# -- failures inside the training thread -----------------------------------------------------

def test_an_exception_in_the_training_thread_fails_the_run_but_not_the_server(
        client, monkeypatch, fast_pings):
    fail_after(monkeypatch, 3, RuntimeError("simulated engine failure"))
    run_id = start_run(client, **SHORT_RUN)["run_id"]
    error = stream_events(client, lambda r: r.event == "error")[-1].json()
    assert error["run_id"] == run_id
    assert "RuntimeError" in error["message"] and "simulated engine failure" in error["message"]
    status = wait_for_run_end(client)
    assert status["state"] == "failed" and status["message"] == error["message"]
    (run,) = client.get("/api/runs").json()
    assert run["state"] == "failed" and run["message"] == error["message"]

    assert client.get("/healthz").status_code == 200
    monkeypatch.undo()
    start_run(client, **SHORT_RUN)
    assert wait_for_run_end(client)["state"] == "finished"


def test_a_diverging_run_fails_with_a_message_saying_it_diverged(client, monkeypatch, fast_pings):
    # An SGD learning rate of 100 on the ReLU preset does not reliably give a loss
    # that is not finite (the ReLUs die and the loss stays near 25), so the engine's
    # own divergence signal is raised from the fifth step.
    fail_after(monkeypatch, 4, TrainingDiverged("the loss became nan: training diverged; "
                                                "try a smaller learning rate"))
    run_id = start_run(client, **{**SHORT_RUN, "optimizer": "sgd", "learning_rate": 100})["run_id"]
    error = stream_events(client, lambda r: r.event == "error")[-1].json()
    assert error["run_id"] == run_id and "diverged" in error["message"]
    status = wait_for_run_end(client)
    assert status["state"] == "failed" and "diverged" in status["message"]
    assert "smaller learning rate" in status["message"]
    assert client.get("/healthz").status_code == 200


def test_a_run_may_set_the_schedule_of_its_first_epoch(client):
    run = start_run(client, preset="default", epochs=1, train_size=64, test_size=10,
                    lr_boost=1.5, lr_boost_batches=10, augment_start=0.2, augment_warmup=5)
    assert {key: run["config"][key] for key in ("lr_boost", "lr_boost_batches",
                                                 "augment_start", "augment_warmup")} == \
        {"lr_boost": 1.5, "lr_boost_batches": 10, "augment_start": 0.2, "augment_warmup": 5}
    wait_for_run_end(client)
    for bad in ({"lr_boost": 0.5}, {"lr_boost": 2.0, "lr_boost_batches": 0},
                {"augment_start": 1.5}, {"augment_warmup": -1}):
        answer = client.post("/api/runs", json={"preset": "default", **bad})
        assert answer.status_code == 422, bad
        assert any(name in answer.text for name in bad), answer.text
