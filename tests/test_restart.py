"""Runs outlive the server (issue 11, restart): a `cnn-live serve` killed with SIGKILL
mid-run and started again on the same runs directory lists its earlier runs with their
metrics, the one it was training as "interrupted", and continues that one from its
checkpoint to the very result of an uninterrupted run. Checkpoints and run records that
cannot be written never end a run: the run says so, and so does the stream.

Also the engine underneath: a trainer restored from a checkpoint (weights, optimizer
state, epoch) takes exactly the steps an uninterrupted one takes."""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent))

import app.worker
from app.run_store import FILE_NAME, RunStore, StoreError
from cnn.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from cnn.model import Model
from cnn.presets import PRESETS
from cnn.train import Trainer, make_dataset
from serve_process import Serve  # noqa: E402
from server_helpers import (SSE, StreamReader, events_only, fast_pings,  # noqa: E402,F401
                            is_done, make_app, start_run, stream_events, wait_for,
                            wait_for_run_end)

# A few seconds of training on 2 cores; the same config and seed for every run here, so
# that the first (uninterrupted) run is the reference of the interrupted one.
RUN = {"preset": "default", "epochs": 4, "train_size": 3000, "test_size": 1000, "seed": 0}
SHORT = {"preset": "default", "epochs": 2, "train_size": 2000, "test_size": 500}
KILL_ATTEMPTS = 3  # a busy machine may let a run end before the kill lands


# -- the engine: continuing from a checkpoint ------------------------------------------------

@pytest.mark.parametrize("overrides", [
    {"optimizer": "adam", "lr_decay": 0.7},
    {"optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9, "lr_decay": 0.8,
     "augment_shift": 2.0, "augment_rotation": 10.0},
], ids=["adam", "sgd-momentum-augmented"])
def test_a_trainer_continued_from_a_checkpoint_takes_the_same_steps_as_one_never_stopped(
        mnist, tmp_path, overrides):
    preset = PRESETS["default"]
    config = preset.config.replace(epochs=3, train_size=600, test_size=200, **overrides)
    data = make_dataset(mnist, config)
    whole = Trainer(Model(preset.spec, seed=config.seed), config, data)
    whole.run()

    path = tmp_path / "run.npz"
    first = Model(preset.spec, seed=config.seed)

    def keep_checkpoint(event):
        if event["type"] == "checkpoint":
            save_checkpoint(path, first, event["optimizer"], {"epoch": event["epoch"]},
                            event.get("average"))

    Trainer(first, config.replace(epochs=1), data, keep_checkpoint).run()
    checkpoint = load_checkpoint(path)
    assert checkpoint.epoch == 1 and "learning_rate" in checkpoint.optimizer_state
    # A checkpoint is still an ordinary model file (its optimizer state left aside) that
    # answers with the weights the run answered with: the average, when it keeps one.
    answering = checkpoint.average[0] if checkpoint.average else first.state()
    assert all(np.array_equal(value, answering[name])
               for name, value in Model.load(path).state().items())

    events = []
    continued = Trainer(checkpoint.model, config, data, events.append)
    continued.restore(checkpoint.epoch, checkpoint.optimizer_state,
                      average=checkpoint.average)
    continued.run()
    assert [record["epoch"] for record in continued.history] == [2, 3]
    assert continued.history[-1]["learning_rate"] == whole.history[-1]["learning_rate"]
    for ours, theirs in zip(continued.history, whole.history[1:]):
        assert ours["train_loss"] == theirs["train_loss"]
        assert ours["test_correct"] == theirs["test_correct"]
    for ours, theirs in zip(checkpoint.model.parameters(), whole.model.parameters()):
        assert np.array_equal(ours, theirs), "the continued run's weights differ"
    batches = [event for event in events if event["type"] == "batch"]
    assert batches[0]["epoch"] == 2 and batches[0]["step"] == 1


def test_an_optimizer_state_that_does_not_fit_is_refused(mnist):
    preset = PRESETS["default"]
    config = preset.config.replace(epochs=1, train_size=100, test_size=10)
    trainer = Trainer(Model(preset.spec), config, make_dataset(mnist, config))
    with pytest.raises(ValueError, match="learning_rate"):
        trainer.restore(1, {})
    state = {"learning_rate": np.array(0.001), "momentum": np.array(0.9),
             "steps": np.array(5.0), "mean.0": np.zeros(3), "square.0": np.zeros(3)}
    with pytest.raises(ValueError, match="mean"):
        trainer.restore(1, state)


# -- a real server, killed and started again ---------------------------------------------------

def runs_by_id(server: Serve) -> dict[str, dict]:
    status, runs = server.request("GET", "/api/runs")
    assert status == 200
    return {run["run_id"]: run for run in runs}


def metrics(server: Serve, run_id: str) -> tuple[str, dict]:
    status, csv_text = server.send("GET", f"/api/runs/{run_id}/metrics.csv")
    assert status == 200
    answer, json_metrics = server.request("GET", f"/api/runs/{run_id}/metrics.json")
    assert answer == 200
    return csv_text.decode(), json_metrics


def kill_mid_run(server: Serve) -> str:
    """Starts RUN and SIGKILLs the server once its first checkpoint is written (the
    run is then in its second epoch or a little later); the run's id."""
    status, started = server.request("POST", "/api/runs", RUN)
    assert status == 201, started
    run_id = started["run_id"]
    server.wait_until(lambda: (runs_by_id(server)[run_id]["checkpoint_epoch"] or 0) >= 1,
                      "the first checkpoint", timeout=60)
    server.process.kill()
    server.process.wait(10)
    return run_id


def test_a_server_killed_mid_run_lists_its_runs_again_and_continues_the_interrupted_one(
        mnist_dir, tmp_path):
    runs_dir = tmp_path / "runs"

    def serve(name: str) -> Serve:
        (tmp_path / name).mkdir()
        return Serve(tmp_path / name, mnist_dir, CNN_LIVE_RUNS_DIR=str(runs_dir))

    with serve("first") as first:
        status, started = first.request("POST", "/api/runs", RUN)
        assert status == 201, started
        reference = started["run_id"]
        first.wait_for_state("finished")
        before = {reference: runs_by_id(first)[reference]}
        reference_metrics = metrics(first, reference)
        run_id = kill_mid_run(first)

    # The run may, on a very busy machine, have ended before the kill landed: then
    # kill the next one (each attempt on a server started again on the same folder).
    for attempt in range(1, KILL_ATTEMPTS + 1):
        server = serve(f"again-{attempt}").__enter__()
        try:
            listed = runs_by_id(server)
            if listed[run_id]["state"] == "interrupted" or attempt == KILL_ATTEMPTS:
                break
            run_id = kill_mid_run(server)
        except BaseException:
            server.__exit__()
            raise
    with server:  # ready already; killed on the way out
        # Every earlier run is listed again, oldest first, with its metrics.
        assert list(listed)[0] == reference
        assert listed[reference] == before[reference]
        assert metrics(server, reference) == reference_metrics
        interrupted = listed[run_id]
        assert interrupted["state"] == "interrupted" == interrupted["outcome"]
        done, held = len(interrupted["epochs"]), interrupted["checkpoint_epoch"]
        assert 1 <= held <= done < RUN["epochs"]
        assert interrupted["message"] == (f"the server stopped during epoch {done + 1}; "
                                          f"continue it from its checkpoint of epoch {held}")
        assert read_metadata(interrupted["checkpoint"])["epoch"] == held
        csv_text, json_metrics = metrics(server, run_id)
        assert len(csv_text.strip().splitlines()) == 1 + done
        assert json_metrics["state"] == "interrupted" and len(json_metrics["epochs"]) == done
        assert json_metrics["batches"] and json_metrics["batches"][-1]["epoch"] <= done
        # Same seed, same config: up to the kill it trained exactly as the reference did.
        assert [e["test_correct"] for e in interrupted["epochs"]] == \
            [e["test_correct"] for e in before[reference]["epochs"][:done]]

        # Only an interrupted run continues; an unknown one is a 404.
        assert server.request("POST", f"/api/runs/{reference}/continue", {})[0] == 409
        assert server.request("POST", "/api/runs/nosuchrun/continue", {})[0] == 404

        reader = StreamReader(f"http://127.0.0.1:{server.port}", timeout=120).start_subscribed()
        status, answer = server.request("POST", f"/api/runs/{run_id}/continue", {})
        assert status == 200 and answer["run_id"] == run_id
        assert answer["state"] == "running", answer
        again = server.request("POST", f"/api/runs/{run_id}/continue", {})
        assert again[0] == 409 and "is running: only an interrupted run" in again[1]["detail"]
        records = reader.result(timeout=120)
        server.wait_for_state("finished")

        # The stream: a "run" event, the run's earlier epochs (replayed for the charts),
        # then batches from the epoch after the checkpoint on.
        run_event = events_only(records, "run")[-1].json()
        assert run_event["run_id"] == run_id and run_event["continued_from"] == held
        batches = [r.json() for r in events_only(records, "batch")]
        assert batches and (batches[0]["epoch"], batches[0]["step"]) == (held + 1, 1)
        live_epochs = [r.json()["epoch"] for r in events_only(records, "epoch")
                       if not r.json().get("replayed")]
        assert live_epochs == list(range(held + 1, RUN["epochs"] + 1))
        assert events_only(records, "done")[-1].json()["state"] == "finished"

        finished = runs_by_id(server)[run_id]
        assert finished["state"] == "finished" and finished["outcome"] == "finished"
        assert [e["epoch"] for e in finished["epochs"]] == list(range(1, RUN["epochs"] + 1))
        assert finished["checkpoint_epoch"] == RUN["epochs"]
        # Identical to the uninterrupted run, not merely close: the checkpoint restores
        # weights and optimizer state, each epoch's batches follow from the seed and the
        # epoch's number, and training uses one BLAS thread (deterministic sums).
        reference_epochs = before[reference]["epochs"]
        for ours, theirs in zip(finished["epochs"], reference_epochs):
            for key in ("train_loss", "train_accuracy", "test_loss", "test_correct",
                        "learning_rate"):
                assert ours[key] == theirs[key], (ours["epoch"], key)
        assert finished["final_test_accuracy"] == before[reference]["final_test_accuracy"]
        print(f"killed in epoch {done + 1} (attempt {attempt}), continued from epoch {held}: "
              f"test accuracy {finished['final_test_accuracy']:.4f}, uninterrupted "
              f"{before[reference]['final_test_accuracy']:.4f}")
        csv_text, json_metrics = metrics(server, run_id)
        assert len(csv_text.strip().splitlines()) == 1 + RUN["epochs"]

    # And a third server lists the continued run as finished, with all its epochs.
    with serve("third") as third:
        listed = runs_by_id(third)
        assert listed[run_id]["state"] == "finished"
        assert len(listed[run_id]["epochs"]) == RUN["epochs"]
        assert metrics(third, reference) == reference_metrics


# -- continuing: what is refused ---------------------------------------------------------------

def mark_as_active(runs_dir: Path, run_id: str) -> None:
    """The record as a server killed mid-run leaves it: the run still "running"."""
    with sqlite3.connect(runs_dir / FILE_NAME) as connection:
        connection.execute("UPDATE runs SET state = 'running', outcome = NULL "
                           "WHERE run_id = ?", (run_id,))
    connection.close()


def interrupted_run(mnist_dir: Path, runs_dir: Path) -> str:
    """A short run trained to its end, then recorded as a killed server leaves it."""
    with TestClient(make_app(mnist_dir, runs_dir=str(runs_dir))) as client:
        run_id = start_run(client, **SHORT)["run_id"]
        wait_for_run_end(client)
    mark_as_active(runs_dir, run_id)
    return run_id


def test_an_interrupted_run_without_its_checkpoint_cannot_be_continued(mnist_dir, tmp_path):
    runs_dir = tmp_path / "runs"
    run_id = interrupted_run(mnist_dir, runs_dir)
    (runs_dir / f"run-{run_id}.npz").unlink()
    with TestClient(make_app(mnist_dir, runs_dir=str(runs_dir))) as client:
        (run,) = client.get("/api/runs").json()
        assert run["state"] == "interrupted"
        assert run["checkpoint"] is None and run["checkpoint_epoch"] is None
        assert "no checkpoint to continue from" in run["message"]
        answer = client.post(f"/api/runs/{run_id}/continue", json={})
        assert answer.status_code == 409 and "no checkpoint" in answer.json()["detail"]
        assert client.get("/api/status").json()["state"] == "idle"


def test_continuing_while_every_worker_is_busy_queues_it_until_one_is_free(mnist_dir, tmp_path):
    runs_dir = tmp_path / "runs"
    run_id = interrupted_run(mnist_dir, runs_dir)
    app = make_app(mnist_dir, runs_dir=str(runs_dir), max_concurrent_runs=1)
    with TestClient(app) as client:
        other = start_run(client, preset="seed", epochs=20, train_size=1000)["run_id"]
        answer = client.post(f"/api/runs/{run_id}/continue", json={})
        assert answer.status_code == 200
        assert (answer.json()["state"], answer.json()["queue_position"]) == ("queued", 1)
        again = client.post(f"/api/runs/{run_id}/continue", json={})
        assert again.status_code == 409 and "queued" in again.json()["detail"]
        client.post(f"/api/runs/{other}/stop", json={})
        # Once the other's worker is free it continues: its checkpoint holds every epoch.
        wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["state"] == "finished", 60,
                 what="the continued run to start and finish")
        run = client.get(f"/api/runs/{run_id}").json()
        assert [e["epoch"] for e in run["epochs"]] == [1, 2] and run["outcome"] == "finished"


def test_a_corrupt_checkpoint_is_refused_with_a_409_saying_so(mnist_dir, tmp_path):
    runs_dir = tmp_path / "runs"
    run_id = interrupted_run(mnist_dir, runs_dir)
    path = runs_dir / f"run-{run_id}.npz"
    with TestClient(make_app(mnist_dir, runs_dir=str(runs_dir))) as client:
        path.write_bytes(path.read_bytes()[:1000])  # cut after it was checked at startup
        answer = client.post(f"/api/runs/{run_id}/continue", json={})
        assert answer.status_code == 409
        assert "cannot be used" in answer.json()["detail"] and str(path) in answer.json()["detail"]


# -- checkpoints and records that cannot be written ----------------------------------------

def storage_errors(records: list[SSE]) -> list[dict]:
    return [record.json() for record in events_only(records, "storage_error")]


def test_a_runs_dir_that_cannot_be_written_does_not_end_the_run_and_says_so(
        mnist_dir, tmp_path, fast_pings):
    # Root writes to read-only folders anyway: a runs "folder" under a regular file
    # fails for everyone (NotADirectoryError), as a full or read-only disk would.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with TestClient(make_app(mnist_dir, runs_dir=str(blocker / "runs"))) as client:
        run_id = start_run(client, **SHORT)["run_id"]
        records = stream_events(client, is_done, timeout=60)
        assert wait_for_run_end(client)["state"] == "finished"
        (run,) = client.get("/api/runs").json()
        assert run["run_id"] == run_id and run["outcome"] == "finished"
        assert len(run["epochs"]) == SHORT["epochs"]
        assert run["checkpoint"] is None and run["checkpoint_epoch"] is None
        assert str(blocker / "runs") in run["checkpoint_error"]
        assert "there is none" in run["checkpoint_error"]
        assert str(blocker / "runs") in run["store_error"]
        # The stream says it at level error, once per problem, and not as an "error"
        # event (the page would take the run for failed).
        errors = storage_errors(records)
        assert {error["kind"] for error in errors} == {"checkpoint", "records"}
        assert len(errors) == 2
        assert all(error["level"] == "error" and error["run_id"] == run_id for error in errors)
        assert not events_only(records, "error")
        assert events_only(records, "done")[-1].json()["state"] == "finished"
        # The metrics are still served from memory while this server lives.
        assert client.get(f"/api/runs/{run_id}/metrics.json").json()["epochs"] == run["epochs"]


def test_a_checkpoint_that_fails_later_leaves_the_run_naming_the_epoch_its_file_holds(
        mnist_dir, tmp_path, monkeypatch, fast_pings):
    real_save, calls = app.worker.save_checkpoint, []

    def full_disk_from_epoch_2(path, model, state, metadata, average=None):
        calls.append(metadata["epoch"])
        if metadata["epoch"] >= 2:
            raise OSError(28, "No space left on device")
        return real_save(path, model, state, metadata, average)

    monkeypatch.setattr(app.worker, "save_checkpoint", full_disk_from_epoch_2)
    runs_dir = tmp_path / "runs"
    with TestClient(make_app(mnist_dir, runs_dir=str(runs_dir))) as client:
        run_id = start_run(client, **{**SHORT, "epochs": 3})["run_id"]
        records = stream_events(client, is_done, timeout=60)
        wait_for_run_end(client)
        (run,) = client.get("/api/runs").json()
        assert calls == [1, 2, 3] and run["state"] == "finished"
        assert run["checkpoint"] == str(runs_dir / f"run-{run_id}.npz")
        assert run["checkpoint_epoch"] == 1 == read_metadata(run["checkpoint"])["epoch"]
        assert "No space left on device" in run["checkpoint_error"]
        assert "the last one written holds epoch 1" in run["checkpoint_error"]
        assert run["store_error"] is None
        (error,) = storage_errors(records)  # said once, not again at epoch 3
        assert error["kind"] == "checkpoint" and error["message"] == run["checkpoint_error"]
    # A restarted server says the same of it: the record is kept, the file is checked.
    with TestClient(make_app(mnist_dir, runs_dir=str(runs_dir))) as client:
        (listed,) = client.get("/api/runs").json()
        assert listed["checkpoint_epoch"] == 1 and listed["checkpoint_error"] == run["checkpoint_error"]


# -- the store itself ------------------------------------------------------------------------

def test_the_store_catches_up_after_a_failed_write(mnist_dir, tmp_path):
    """A write that failed (a full disk for a while) is made good by the next one: the
    epochs and batch points it missed go in with it."""
    with TestClient(make_app(mnist_dir, runs_dir=str(tmp_path / "runs"))) as client:
        run_id = start_run(client, **SHORT)["run_id"]
        wait_for_run_end(client)
        run = client.app.state.manager.runs[run_id]
    store = RunStore(tmp_path / "copy")
    blocked = tmp_path / "copy"
    blocked.write_text("in the way")
    with pytest.raises(StoreError, match="cannot be kept"):
        store.save(run)
    blocked.unlink()
    store.save(run)
    (loaded,) = store.load()
    assert loaded["epochs"] == run.epochs and loaded["state"] == "finished"
    assert store.batches(run_id) == run.batches
    store.close()
