"""Tests for the server's side of issue 6: the evaluation, histograms and
hyperparameters events; the confusion cells with their test images; metrics as
JSON; changing the learning rate and momentum live; stepping one epoch from a
paused or finished run; the augmentation preview; and the layer vectors of an
explained prediction. Every bad value gets a clear 4xx."""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cnn.model import TrainingDiverged
from server_helpers import (LONG_RUN, SHORT_RUN, events_only, fail_after, fast_pings,  # noqa: F401
                            is_done, make_app, start_run, stream_events, wait_for,
                            wait_for_run_end)

STEPPED_RUN = {"preset": "default", "epochs": 3, "train_size": 3000, "test_size": 500}


@pytest.fixture
def client(mnist_dir):
    with TestClient(make_app(mnist_dir)) as client:
        yield client


class Published(list):
    """Every event the hub publishes, as (name, payload): what a browser that watched
    from the start received (a late one is replayed only the newest status, filters,
    evaluation and histograms of each run)."""

    def __init__(self, hub):
        super().__init__()
        real_publish = hub.publish_text  # every event goes through it, as JSON text

        def publish_text(name, data, run_id=None):
            self.append((name, json.loads(data)))
            return real_publish(name, data, run_id)

        hub.publish_text = publish_text

    def of(self, name: str) -> list[dict]:
        return [payload for kind, payload in self if kind == name]


@pytest.fixture(scope="module")
def finished(mnist_dir):
    """A server that finished SHORT_RUN: (client, run_id, the events it published)."""
    with TestClient(make_app(mnist_dir)) as client:
        published = Published(client.app.state.hub)
        run_id = start_run(client, **SHORT_RUN)["run_id"]
        wait_for_run_end(client)
        yield client, run_id, published


def pixels(image: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(image["pixels"]), np.uint8).reshape(28, 28)


def status(client) -> dict:
    return client.get("/api/status").json()


def post(client, action: str, **body):
    return client.post(f"/api/runs/current/{action}", json=body)


# -- evaluation --------------------------------------------------------------------------------

def test_each_epoch_streams_a_confusion_matrix_that_matches_its_accuracy(finished, mnist):
    _, run_id, published = finished
    epochs = {epoch["epoch"]: epoch for epoch in published.of("epoch")}
    evaluations = published.of("evaluation")
    assert [e["epoch"] for e in evaluations] == [1, 2]
    for evaluation in evaluations:
        confusion = np.array(evaluation["confusion"])
        assert evaluation["run_id"] == run_id and confusion.shape == (10, 10)
        assert confusion.sum() == evaluation["test_total"] == SHORT_RUN["test_size"]
        assert np.trace(confusion) == epochs[evaluation["epoch"]]["test_correct"]
        np.testing.assert_array_equal(
            confusion.sum(axis=1), np.bincount(mnist.test_labels[:SHORT_RUN["test_size"]],
                                               minlength=10))
        assert evaluation["misclassified_total"] == confusion.sum() - np.trace(confusion)


def test_the_gallery_holds_the_most_confident_mistakes_with_their_real_pixels(finished, mnist):
    _, _, published = finished
    evaluation = published.of("evaluation")[-1]
    gallery = evaluation["misclassified"]
    assert 0 < len(gallery) <= 36
    assert len(gallery) == min(36, evaluation["misclassified_total"])
    confidences = [image["probability"] for image in gallery]
    assert confidences == sorted(confidences, reverse=True)
    for image in gallery:
        assert image["predicted"] != image["label"] == mnist.test_labels[image["index"]]
        assert 0 < image["probability"] <= 1
        np.testing.assert_array_equal(pixels(image), mnist.test_images[image["index"]])


def test_histograms_stream_at_the_start_and_after_each_epoch(finished):
    _, run_id, published = finished
    histograms = published.of("histograms")
    assert [h["epoch"] for h in histograms] == [0, 1, 2]
    names = ["0.conv", "3.conv", "7.dense", "9.dense"]
    for event in histograms:
        assert event["run_id"] == run_id
        assert [layer["name"] for layer in event["layers"]] == names
        for layer in event["layers"]:
            weights = layer["weights"]
            assert len(weights["edges"]) == len(weights["counts"]) + 1 == 31
            assert sum(weights["counts"]) == sum(weights["start_counts"]) == np.prod(layer["shape"])
    assert all(layer["gradients"] is None for layer in histograms[0]["layers"])
    assert all(layer["gradients"] is not None for layer in histograms[2]["layers"])


def test_a_late_browser_is_replayed_only_the_newest_evaluation_and_histograms(finished):
    client, _, published = finished
    records = stream_events(client, is_done)
    for name in ("evaluation", "histograms"):
        replayed = [event.json() for event in events_only(records, name)]
        assert replayed == [published.of(name)[-1]]
    assert len(events_only(records, "epoch")) == 2  # every epoch, though


# -- confusion cells ----------------------------------------------------------------------------

def test_a_confusion_cell_returns_its_images_most_confident_first(finished, mnist):
    client, run_id, published = finished
    confusion = np.array(published.of("evaluation")[-1]["confusion"])
    off_diagonal = confusion - np.diag(np.diag(confusion))
    label, predicted = np.unravel_index(off_diagonal.argmax(), confusion.shape)
    for row, column in ((label, predicted), (3, 3)):
        response = client.get(f"/api/runs/{run_id}/confusion",
                              params={"label": int(row), "predicted": int(column)})
        assert response.status_code == 200
        cell = response.json()
        assert cell["epoch"] == 2 and cell["count"] == confusion[row, column]
        assert len(cell["images"]) == min(cell["count"], 48)
        for image in cell["images"]:
            assert (image["label"], image["predicted"]) == (row, column)
            np.testing.assert_array_equal(pixels(image), mnist.test_images[image["index"]])
        confidences = [image["probability"] for image in cell["images"]]
        assert confidences == sorted(confidences, reverse=True)
    limited = client.get(f"/api/runs/{run_id}/confusion",
                         params={"label": 3, "predicted": 3, "limit": 2}).json()
    assert len(limited["images"]) == 2 and limited["count"] == confusion[3, 3]


@pytest.mark.parametrize("params", [{"label": 10, "predicted": 1}, {"label": -1, "predicted": 1},
                                    {"label": "three", "predicted": 1}, {"predicted": 1},
                                    {"label": 1, "predicted": 1, "limit": 0},
                                    {"label": 1, "predicted": 1, "limit": 201}])
def test_a_bad_confusion_cell_is_a_422(finished, params):
    client, run_id, _ = finished
    response = client.get(f"/api/runs/{run_id}/confusion", params=params)
    assert response.status_code == 422


def test_confusion_of_an_unknown_or_unevaluated_run_is_a_404(client, fast_pings):
    response = client.get("/api/runs/nope/confusion", params={"label": 1, "predicted": 2})
    assert response.status_code == 404 and "no run 'nope'" in response.json()["detail"]
    run_id = start_run(client, **LONG_RUN)["run_id"]  # one-image steps: no epoch for a while
    response = client.get(f"/api/runs/{run_id}/confusion", params={"label": 1, "predicted": 2})
    assert response.status_code == 404 and "after the first epoch" in response.json()["detail"]
    assert post(client, "stop").status_code == 200


# -- metrics as JSON -----------------------------------------------------------------------------

def test_metrics_json_has_the_epochs_the_loss_points_and_the_config(finished):
    client, run_id, published = finished
    response = client.get(f"/api/runs/{run_id}/metrics.json")
    assert response.status_code == 200
    metrics = response.json()
    listed = {run["run_id"]: run for run in client.get("/api/runs").json()}[run_id]
    assert metrics["epochs"] == listed["epochs"] and metrics["config"] == listed["config"]
    assert metrics["spec"]["layers"][0]["type"] == "conv"
    assert metrics["outcome"] == "finished" and metrics["hyperparameter_changes"] == []
    batches = metrics["batches"]
    streamed = published.of("batch")
    assert [b["global_step"] for b in batches] == [b["global_step"] for b in streamed]
    assert [b["loss"] for b in batches] == [b["loss"] for b in streamed]
    assert client.get("/api/runs/nope/metrics.json").status_code == 404


# -- live learning rate and momentum -----------------------------------------------------------

def test_a_live_learning_rate_change_is_applied_at_the_next_batch_and_streamed(client, fast_pings):
    run_id = start_run(client, **LONG_RUN)["run_id"]
    wait_for(lambda: status(client)["step"] > 0, what="the first batches")
    assert status(client)["learning_rate"] == 2.0  # the seed preset's
    response = post(client, "hyperparameters", learning_rate=0.5, momentum=0.3)
    assert response.status_code == 200 and response.json()["state"] == "running"
    wait_for(lambda: status(client)["learning_rate"] == 0.5, what="the change to apply")
    assert status(client)["momentum"] == 0.3
    time.sleep(0.4)  # a few throttled batch events (~10 a second) after the change
    assert post(client, "stop").status_code == 200
    wait_for_run_end(client)
    records = stream_events(client, is_done)
    (change,) = [e.json() for e in events_only(records, "hyperparameters")]
    assert change["run_id"] == run_id and change["learning_rate"] == 0.5
    assert change["momentum"] == 0.3
    assert change["previous"] == {"learning_rate": 2.0, "momentum": 0.0}
    batches = [e.json() for e in events_only(records, "batch")]
    before = [b for b in batches if b["global_step"] <= change["global_step"]]
    after = [b for b in batches if b["global_step"] > change["global_step"]]
    assert before and all(b["learning_rate"] == 2.0 for b in before)
    assert after and all(b["learning_rate"] == 0.5 and b["momentum"] == 0.3 for b in after)
    metrics = client.get(f"/api/runs/{run_id}/metrics.json").json()
    assert metrics["hyperparameter_changes"] == [change]


@pytest.mark.parametrize("body, field", [
    ({"learning_rate": -0.01}, "learning_rate"), ({"learning_rate": 0}, "learning_rate"),
    ({"learning_rate": 101}, "learning_rate"), ({"learning_rate": "0.1"}, "learning_rate"),
    ({"momentum": 1}, "momentum"), ({"momentum": -0.1}, "momentum"),
    ({"momentum": True}, "momentum"), ({}, "give a learning_rate"),
    ({"learning_rate": 0.1, "beta2": 0.9}, "beta2"),
])
def test_bad_live_values_are_a_422_naming_the_field(client, fast_pings, body, field):
    start_run(client, **LONG_RUN)
    response = client.post("/api/runs/current/hyperparameters", json=body)
    assert response.status_code == 422
    assert field in response.text
    assert status(client)["learning_rate"] == 2.0
    assert post(client, "stop").status_code == 200


def test_a_live_change_without_an_active_run_is_a_409(finished):
    client, _, _ = finished
    response = post(client, "hyperparameters", learning_rate=0.1)
    assert response.status_code == 409
    assert response.json()["detail"] == "cannot change the learning rate: the run is finished"


# -- step ------------------------------------------------------------------------------------------

def test_step_is_a_409_without_a_run_and_while_running(client, fast_pings):
    response = post(client, "step")
    assert response.status_code == 409 and "the run is idle" in response.json()["detail"]
    start_run(client, **LONG_RUN)
    response = post(client, "step")
    assert response.status_code == 409
    assert response.json()["detail"] == "cannot step: the run is running; pause it first"
    assert post(client, "stop").status_code == 200


def test_a_step_while_the_run_still_loads_its_data_is_carried_out_once_it_trains(
        client, monkeypatch):
    import app.worker
    loading = threading.Event()
    load_data = app.worker.mnist

    def slow_load(*args):
        loading.wait(10)
        return load_data(*args)

    monkeypatch.setattr(app.worker, "mnist", slow_load)
    run_id = start_run(client, **STEPPED_RUN)["run_id"]
    assert post(client, "pause").json()["state"] == "paused"
    response = post(client, "step")  # the worker keeps it until its trainer exists
    assert response.status_code == 200 and response.json()["state"] == "running"
    loading.set()
    # One epoch, then paused again: the step was carried out, not lost.
    wait_for(lambda: client.get("/api/status").json()["state"] == "paused", 60,
             what="the stepped run to pause at its epoch end")
    run = client.get(f"/api/runs/{run_id}").json()
    assert [record["epoch"] for record in run["epochs"]] == [1]
    assert post(client, "stop").status_code == 200


def test_a_step_from_a_pause_finishes_the_epoch_and_pauses_again(client, fast_pings):
    start_run(client, **STEPPED_RUN)
    wait_for(lambda: status(client)["step"] > 0, what="the first batches")
    assert post(client, "pause").status_code == 200
    response = post(client, "step")
    assert response.status_code == 200 and response.json()["state"] == "running"
    settled = wait_for(lambda: (s := status(client))["state"] == "paused" and s, timeout=30,
                       what="the run to pause after the step")
    runs = client.get("/api/runs").json()
    assert [epoch["epoch"] for epoch in runs[-1]["epochs"]] == [1]
    assert settled["epoch"] == 1 and settled["step"] == settled["steps"]  # at the boundary
    time.sleep(0.3)
    assert status(client)["step"] == settled["step"]  # it stays paused
    # A step at the boundary trains one whole epoch.
    assert post(client, "step").status_code == 200
    wait_for(lambda: status(client)["state"] == "paused"
             and len(client.get("/api/runs").json()[-1]["epochs"]) == 2, timeout=30,
             what="the second step")
    assert post(client, "resume").status_code == 200
    assert wait_for_run_end(client)["state"] == "finished"
    assert len(client.get("/api/runs").json()[-1]["epochs"]) == 3


def test_a_step_after_a_finished_run_trains_exactly_one_more_epoch(client, fast_pings):
    run_id = start_run(client, **{**STEPPED_RUN, "epochs": 1})["run_id"]
    wait_for_run_end(client)
    response = post(client, "step")
    assert response.status_code == 200
    assert response.json()["state"] == "running" and response.json()["epochs"] == 2
    final = wait_for_run_end(client)
    assert final["state"] == "finished" and final["run_id"] == run_id
    run = client.get("/api/runs").json()[-1]
    assert [epoch["epoch"] for epoch in run["epochs"]] == [1, 2]
    assert run["outcome"] == "finished" and run["config"]["epochs"] == 2
    records = stream_events(client, lambda record: record.event == "done"
                            and record.json()["epochs_completed"] == 2)
    assert [e.json()["epoch"] for e in events_only(records, "epoch")] == [1, 2]
    assert [e.json()["epoch"] for e in events_only(records, "evaluation")] == [2]  # the newest
    assert [e.json()["epochs_completed"] for e in events_only(records, "done")] == [1, 2]
    assert client.get("/api/model/info").json()["epoch"] == 2


def test_a_failed_run_cannot_be_stepped(client, monkeypatch):
    fail_after(monkeypatch, 3, TrainingDiverged("the loss became nan"))
    start_run(client, **STEPPED_RUN)
    assert wait_for_run_end(client)["state"] == "failed"
    response = post(client, "step")
    assert response.status_code == 409 and "the run is failed" in response.json()["detail"]


# -- augmentation preview ------------------------------------------------------------------------

def test_the_augmentation_preview_shows_training_images_and_a_distortion_of_each(client, mnist):
    response = client.get("/api/augment/preview",
                          params={"shift": 3, "scale": 0.2, "rotation": 20, "stroke": 1, "count": 8})
    assert response.status_code == 200
    preview = response.json()
    assert len(preview["originals"]) == len(preview["augmented"]) == 8
    for index, (original, distorted) in enumerate(zip(preview["originals"], preview["augmented"])):
        assert original["label"] == distorted["label"] == mnist.train_labels[index]
        np.testing.assert_array_equal(pixels(original), mnist.train_images[index])
        assert not np.array_equal(pixels(distorted), pixels(original))
    again = client.get("/api/augment/preview", params={"count": 8, "seed": 1}).json()
    other = client.get("/api/augment/preview", params={"count": 8, "seed": 2}).json()
    assert again["augmented"] != other["augmented"]
    plain = client.get("/api/augment/preview",
                       params={"shift": 0, "scale": 0, "rotation": 0, "count": 4}).json()
    assert plain["augmented"] == plain["originals"]  # no distortion asked for


@pytest.mark.parametrize("params", [{"shift": -1}, {"shift": 9}, {"scale": 0.6},
                                    {"rotation": 46}, {"stroke": 2}, {"count": 0},
                                    {"count": 33}, {"shift": "far"}])
def test_bad_augmentation_settings_are_a_422(client, params):
    assert client.get("/api/augment/preview", params=params).status_code == 422


def test_the_preview_without_mnist_is_a_503_that_says_why(tmp_path):
    with TestClient(make_app(tmp_path)) as client:
        response = client.get("/api/augment/preview")
    assert response.status_code == 503 and "MNIST" in response.json()["detail"]


def test_a_run_accepts_the_stroke_augmentation(client):
    response = client.post("/api/runs", json={**SHORT_RUN, "epochs": 1, "augment_stroke": 0.5})
    assert response.status_code == 201 and response.json()["config"]["augment_stroke"] == 0.5
    assert wait_for_run_end(client)["state"] == "finished"
    bad = client.post("/api/runs", json={**SHORT_RUN, "augment_stroke": 1.5})
    assert bad.status_code == 422 and "augment_stroke" in bad.text


# -- the layer view of a prediction -----------------------------------------------------------------

def test_an_explained_prediction_gives_every_layer_after_the_flatten_as_a_vector(client):
    drawing = np.zeros((56, 56))
    drawing[10:46, 26:30] = 255  # a "1"
    answer = client.post("/api/predict", json={"image": drawing.tolist(), "explain": True}).json()
    vectors = answer["vectors"]
    assert [v["name"] for v in vectors] == ["7.dense", "8.relu", "9.dense"]
    assert [len(v["values"]) for v in vectors] == [64, 64, 10]
    assert min(vectors[1]["values"]) >= 0  # after a ReLU
    scores = np.array(vectors[-1]["values"])
    assert scores.argmax() == answer["digit"]
    softmax = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    np.testing.assert_allclose(softmax, answer["probabilities"], atol=1e-3)
    plain = client.post("/api/predict", json={"image": drawing.tolist()}).json()
    assert plain["vectors"] is None and plain["feature_maps"] is None
