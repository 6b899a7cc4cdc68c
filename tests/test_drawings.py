"""People's own drawings: saved with their label, listed, relabelled, deleted, exported
and imported (npz and IDX), measured on; bad input gets a 4xx with a message; the token
guards the changes; the store survives a restart and a SIGKILL mid-save."""

from __future__ import annotations

import base64
import io
import os
import signal
import sqlite3
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent))
from app.drawings import HELD_OUT_EVERY, DrawingStore  # noqa: E402
from cnn.drawings_file import IDX_IMAGES, IDX_LABELS  # noqa: E402
from cnn.data import idx_bytes  # noqa: E402
from serve_process import Serve  # noqa: E402
from server_helpers import (epoch_payloads, events_only, fast_pings, make_app,  # noqa: E402,F401
                            start_run, stream_events, wait_for)

JSON = {"Content-Type": "application/json"}
OCTETS = {"Content-Type": "application/octet-stream"}


def drawing_of(digit: np.ndarray, scale: int = 5, canvas: int = 160) -> list[list[int]]:
    """An MNIST digit (28x28 uint8) upscaled onto a larger canvas, as a page draws it."""
    big = np.kron(digit.astype(np.int64), np.ones((scale, scale), np.int64))
    image = np.zeros((canvas, canvas), np.int64)
    image[10:10 + big.shape[0], 5:5 + big.shape[1]] = big
    return image.tolist()


@pytest.fixture
def folder(tmp_path) -> Path:
    return tmp_path / "drawings"


@pytest.fixture
def client(mnist_dir, folder):
    with TestClient(make_app(mnist_dir, drawings_dir=str(folder))) as client:
        yield client


def save(client, digit: np.ndarray, label: int, **extra):
    return client.post("/api/drawings", json={"image": drawing_of(digit), "label": label,
                                              **extra})


def save_digits(client, mnist, count: int) -> list[dict]:
    saved = []
    for i in range(count):
        answer = save(client, mnist.test_images[i], int(mnist.test_labels[i]))
        assert answer.status_code == 201, answer.text
        saved.append(answer.json())
    return saved


def test_a_saved_drawing_keeps_what_the_network_saw_its_label_and_the_answer(client, mnist):
    digit, label = mnist.test_images[0], int(mnist.test_labels[0])  # a 7
    answer = save(client, digit, label)
    assert answer.status_code == 201
    saved = answer.json()
    assert saved["label"] == label and saved["id"] >= 1
    assert saved["answer"] == label  # the bundled model reads MNIST's first test digit
    assert 0.5 < saved["probability"] <= 1.0
    assert "bundled" in saved["answered_by"]
    image = np.array(saved["image"])
    assert image.shape == (28, 28) and image.min() >= 0 and image.max() == 255
    # What the network saw is the drawing prepared as /api/predict prepares it.
    seen = client.post("/api/predict", json={"image": drawing_of(digit)}).json()["input"]
    assert np.abs(image / 255.0 - np.array(seen)).max() <= 0.5 / 255 + 1e-4
    assert saved["held_out"] == (saved["id"] % HELD_OUT_EVERY == 0)
    assert client.get(f"/api/drawings/{saved['id']}").json() == saved


def test_drawings_are_saved_from_base64_pixels_as_the_page_sends_them(client, mnist):
    rows = np.array(drawing_of(mnist.test_images[1]), np.uint8)
    body = {"pixels": base64.b64encode(rows.tobytes()).decode(), "width": rows.shape[1],
            "label": int(mnist.test_labels[1])}
    saved = client.post("/api/drawings", json=body)
    assert saved.status_code == 201
    assert saved.json()["label"] == int(mnist.test_labels[1])


def test_list_counts_filters_and_pages(client, mnist):
    saved = save_digits(client, mnist, 12)
    listing = client.get("/api/drawings").json()
    assert listing["total"] == 12 and len(listing["drawings"]) == 12
    assert [d["id"] for d in listing["drawings"]] == [d["id"] for d in saved]
    labels = [int(x) for x in mnist.test_labels[:12]]
    assert listing["counts"] == {str(d): labels.count(d) for d in range(10)}
    assert listing["held_out_every"] == HELD_OUT_EVERY and listing["max_count"] == 10_000
    assert listing["min_drawings"] == 10  # measured on, and Teach now, from 10 on
    sevens = client.get("/api/drawings", params={"label": 7}).json()["drawings"]
    assert len(sevens) == labels.count(7) and all(d["label"] == 7 for d in sevens)
    first = client.get("/api/drawings", params={"limit": 5}).json()["drawings"]
    rest = client.get("/api/drawings", params={"after": first[-1]["id"]}).json()["drawings"]
    assert [d["id"] for d in first + rest] == [d["id"] for d in saved]


def test_relabel_and_delete(client, mnist):
    saved = save(client, mnist.test_images[0], 7).json()
    changed = client.patch(f"/api/drawings/{saved['id']}", json={"label": 1})
    assert changed.status_code == 200 and changed.json()["label"] == 1
    assert client.get(f"/api/drawings/{saved['id']}").json()["label"] == 1
    deleted = client.request("DELETE", f"/api/drawings/{saved['id']}", headers=JSON)
    assert deleted.status_code == 200 and deleted.json() == {"deleted": saved["id"]}
    for method, body in (("GET", None), ("PATCH", {"label": 2}), ("DELETE", None)):
        gone = client.request(method, f"/api/drawings/{saved['id']}", json=body, headers=JSON)
        assert gone.status_code == 404 and f"no drawing {saved['id']}" in gone.json()["detail"]
    assert client.get("/api/drawings").json()["total"] == 0


@pytest.mark.parametrize("label", [10, -1, "3", True, 2.0, None])
def test_a_label_that_is_not_a_digit_is_refused(client, mnist, label):
    answer = save(client, mnist.test_images[0], label)
    assert answer.status_code == 422 and "label" in answer.text
    relabel = client.patch("/api/drawings/1", json={"label": label})
    assert relabel.status_code == 422
    assert client.get("/api/drawings").json()["total"] == 0


def test_a_drawing_the_server_cannot_read_is_refused_with_its_reason(client):
    blank = client.post("/api/drawings", json={"image": [[0] * 20] * 20, "label": 3})
    assert blank.status_code == 422 and "empty" in blank.json()["detail"].lower()
    tiny = client.post("/api/drawings", json={"image": [[255] * 3] * 3, "label": 3})
    assert tiny.status_code == 422
    neither = client.post("/api/drawings", json={"label": 3})
    assert neither.status_code == 422 and "either" in neither.json()["detail"]
    assert client.get("/api/drawings").json()["total"] == 0


def test_past_the_maximum_count_a_save_gets_413_and_keeps_the_others(mnist_dir, mnist,
                                                                     folder):
    with TestClient(make_app(mnist_dir, drawings_dir=str(folder), max_drawings=3)) as client:
        save_digits(client, mnist, 3)
        refused = save(client, mnist.test_images[3], int(mnist.test_labels[3]))
        assert refused.status_code == 413
        assert "CNN_LIVE_MAX_DRAWINGS" in refused.json()["detail"]
        assert client.get("/api/drawings").json()["total"] == 3


@pytest.mark.parametrize("format", ["npz", "idx"])
def test_export_and_import_round_trip(client, mnist, mnist_dir, tmp_path, format):
    saved = save_digits(client, mnist, 7)
    exported = client.get("/api/drawings/export", params={"format": format})
    assert exported.status_code == 200
    assert "attachment" in exported.headers["content-disposition"]
    with TestClient(make_app(mnist_dir, drawings_dir=str(tmp_path / "other"))) as other:
        imported = other.post("/api/drawings/import", content=exported.content,
                              headers=OCTETS)
        assert imported.status_code == 201, imported.text
        assert imported.json()["imported"] == 7 and len(imported.json()["ids"]) == 7
        copies = other.get("/api/drawings").json()["drawings"]
    assert [d["label"] for d in copies] == [d["label"] for d in saved]
    assert [d["image"] for d in copies] == [d["image"] for d in saved]
    assert all(d["answer"] is not None for d in copies)  # answered on arrival


def test_the_idx_export_is_what_mnist_readers_read(client, mnist):
    save_digits(client, mnist, 3)
    archive = zipfile.ZipFile(io.BytesIO(
        client.get("/api/drawings/export", params={"format": "idx"}).content))
    images, labels = archive.read(IDX_IMAGES), archive.read(IDX_LABELS)
    assert images[:4] == b"\x00\x00\x08\x03" and labels[:4] == b"\x00\x00\x08\x01"
    assert np.frombuffer(images[4:16], ">u4").tolist() == [3, 28, 28]
    assert list(labels[8:]) == [int(x) for x in mnist.test_labels[:3]]


def npz_bytes(**arrays) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def idx_zip(images: np.ndarray, labels: np.ndarray) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(IDX_IMAGES, idx_bytes(images))
        archive.writestr(IDX_LABELS, idx_bytes(labels))
    return out.getvalue()


GOOD_IMAGES = np.zeros((2, 28, 28), np.uint8)


@pytest.mark.parametrize("content, reason", [
    (b"not a zip at all", "a .npz file or a zip"),
    (npz_bytes(pictures=GOOD_IMAGES, labels=np.array([1, 2])), "not images.npy"),
    (npz_bytes(images=np.zeros((2, 28, 27), np.uint8), labels=np.array([1, 2])), "28 x 28"),
    (npz_bytes(images=GOOD_IMAGES.astype(np.float32), labels=np.array([1, 2])), "28 x 28"),
    (npz_bytes(images=GOOD_IMAGES, labels=np.array([1, 12])), "0..9"),
    (npz_bytes(images=GOOD_IMAGES, labels=np.array([1, 2, 3])), "one an image"),
    (npz_bytes(images=GOOD_IMAGES, labels=np.array([1.0, 2.0])), "whole numbers"),
    (npz_bytes(images=GOOD_IMAGES[:0], labels=np.array([], np.uint8)), "no drawings"),
    (npz_bytes(images=np.array([object()] * 2), labels=np.array([1, 2])), "cannot be read"),
    (idx_zip(GOOD_IMAGES, np.array([3, 11], np.uint8)), "0..9"),
    (idx_zip(GOOD_IMAGES, np.array([3, 4], np.uint8))[:-30], "a .npz file or a zip"),
])
def test_an_import_that_is_not_an_export_gets_422_and_adds_nothing(client, content, reason):
    answer = client.post("/api/drawings/import", content=content, headers=OCTETS)
    assert answer.status_code == 422, answer.text
    assert reason in answer.json()["detail"]
    assert client.get("/api/drawings").json()["total"] == 0


def test_oversized_imports_get_413_and_add_nothing(mnist_dir, folder):
    settings = {"drawings_dir": str(folder), "max_drawings": 5, "max_body_bytes": 64 * 1024}
    with TestClient(make_app(mnist_dir, **settings)) as client:
        too_many = npz_bytes(images=np.zeros((6, 28, 28), np.uint8), labels=np.zeros(6, int))
        answer = client.post("/api/drawings/import", content=too_many, headers=OCTETS)
        assert answer.status_code == 413 and "CNN_LIVE_MAX_DRAWINGS" in answer.json()["detail"]
        # A small zip that would unpack past what the store could ever hold.
        bomb = io.BytesIO()
        with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("images.npy", b"\0" * 10_000_000)
        answer = client.post("/api/drawings/import", content=bomb.getvalue(), headers=OCTETS)
        assert answer.status_code == 413 and "would unpack" in answer.json()["detail"]
        large = os.urandom(100 * 1024)  # past CNN_LIVE_MAX_BODY_BYTES
        assert client.post("/api/drawings/import", content=large,
                           headers=OCTETS).status_code == 413
        assert client.get("/api/drawings").json()["total"] == 0


def test_an_import_is_sent_as_a_file_not_as_json(client):
    answer = client.post("/api/drawings/import", json={"images": []})
    assert answer.status_code == 415 and "application/octet-stream" in answer.json()["detail"]


def test_the_token_guards_saving_relabelling_deleting_and_importing(mnist_dir, mnist, folder):
    token = {"Authorization": "Bearer sesame"}
    with TestClient(make_app(mnist_dir, drawings_dir=str(folder), token="sesame")) as client:
        body = {"image": drawing_of(mnist.test_images[0]), "label": 7}
        assert client.post("/api/drawings", json=body).status_code == 401
        saved = client.post("/api/drawings", json=body, headers=token)
        assert saved.status_code == 201
        url = f"/api/drawings/{saved.json()['id']}"
        assert client.patch(url, json={"label": 1}).status_code == 401
        assert client.request("DELETE", url, headers=JSON).status_code == 401
        exported = client.get("/api/drawings/export")  # reading needs no token by default
        assert exported.status_code == 200
        assert client.post("/api/drawings/import", content=exported.content,
                           headers=OCTETS).status_code == 401
        assert client.get("/api/drawings").json()["total"] == 1
        assert client.patch(url, json={"label": 1}, headers=token).status_code == 200
        assert client.request("DELETE", url, headers={**JSON, **token}).status_code == 200


def test_accuracy_is_measured_on_the_held_out_fifth_and_on_all(client, mnist):
    saved = save_digits(client, mnist, 20)
    saved[3] = client.patch(f"/api/drawings/{saved[3]['id']}",  # one deliberately mislabelled
                            json={"label": (saved[3]["label"] + 1) % 10}).json()
    accuracy = client.get("/api/drawings/accuracy").json()
    held_out = [d for d in saved if d["id"] % HELD_OUT_EVERY == 0]
    assert accuracy["held_out"]["total"] == len(held_out) == 4
    assert accuracy["all"]["total"] == 20
    assert np.array(accuracy["confusion"]).sum() == len(held_out)
    right = sum(d["answer"] == d["label"] for d in saved)
    assert accuracy["all"]["correct"] == right <= 19  # the mislabelled one is wrong
    assert accuracy["all"]["accuracy"] == pytest.approx(right / 20)
    assert accuracy["model"]["source"] == "bundled"
    unknown = client.get("/api/drawings/accuracy", params={"run": "nope"})
    assert unknown.status_code == 404


def test_accuracy_without_drawings_says_none(client):
    accuracy = client.get("/api/drawings/accuracy").json()
    assert accuracy["held_out"] == {"correct": 0, "total": 0, "accuracy": None}


def test_drawings_survive_a_restart(mnist_dir, mnist, folder):
    with TestClient(make_app(mnist_dir, drawings_dir=str(folder))) as client:
        saved = save_digits(client, mnist, 3)
    with TestClient(make_app(mnist_dir, drawings_dir=str(folder))) as client:
        assert client.get("/api/drawings").json()["drawings"] == saved


def test_a_server_killed_mid_save_keeps_every_saved_drawing_whole(tmp_path, mnist_dir, mnist):
    """SIGKILL while drawings are being saved: every drawing answered 201 is there, the
    one in flight is whole or absent, and the database is intact."""
    answered: list[int] = []
    stop = threading.Event()
    body = {"image": drawing_of(mnist.test_images[0]), "label": 7}
    with Serve(tmp_path, mnist_dir) as server:
        server.wait_until(lambda: server.send("GET", "/api/status")[0] == 200, "the server")

        def keep_saving() -> None:
            while not stop.is_set():
                try:
                    status, content = server.request("POST", "/api/drawings", body)
                except OSError:  # the server is gone
                    return
                if status == 201:
                    answered.append(content["id"])

        saver = threading.Thread(target=keep_saving, daemon=True)
        saver.start()
        server.wait_until(lambda: len(answered) >= 20, "twenty saved drawings")
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        stop.set()
        saver.join(timeout=10)
    store = DrawingStore(tmp_path / "drawings", 10_000)
    ids, images, labels = store.arrays()
    assert set(answered) <= set(ids.tolist())
    assert len(ids) - len(answered) in (0, 1)  # the one in flight: whole or absent
    assert (labels == 7).all() and images.shape == (len(ids), 28, 28)
    assert all((image == images[0]).all() for image in images)  # each one whole
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.close()


def test_the_write_ahead_log_is_copied_into_the_database_in_small_steps(tmp_path):
    """The log is checkpointed every CHECKPOINT_PAGES pages (not SQLite's 1,000, whose
    checkpoint made one save in ~100 wait 9-13 ms): after 300 saves of a 200x200
    drawing (12 MB) the log file has stayed near that size."""
    from app.drawings import CHECKPOINT_PAGES
    store = DrawingStore(tmp_path, 1000)
    drawing = np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8)
    for _ in range(300):
        store.add(np.zeros((28, 28), np.uint8), 3, drawing)
    log_file = tmp_path / "drawings.sqlite3-wal"
    assert log_file.stat().st_size <= (CHECKPOINT_PAGES + 50) * 4096
    assert sum(store.counts().values()) == 300
    store.close()


def test_the_store_adds_all_of_an_import_or_none(tmp_path):
    store = DrawingStore(tmp_path, max_count=10)
    store.add(np.zeros((28, 28), np.uint8), 3)
    with pytest.raises(ValueError, match="0..9"):
        store.add_many(np.zeros((3, 28, 28), np.uint8), np.array([1, 2, 10]))
    with pytest.raises(ValueError, match="at most 10"):
        store.add_many(np.zeros((10, 28, 28), np.uint8), np.zeros(10, int))
    assert store.arrays()[0].tolist() == [1]
    ids = store.add_many(np.zeros((9, 28, 28), np.uint8), np.arange(9))
    assert ids == list(range(2, 11))
    held_out, _, _ = store.arrays("held_out")
    teaching, _, _ = store.arrays("teaching")
    assert held_out.tolist() == [5, 10] and len(teaching) == 8
    store.close()


def finished(client, run_id: str) -> dict:
    return wait_for(lambda: (run := client.get(f"/api/runs/{run_id}").json())["state"]
                    in ("finished", "failed") and run, 60, what="the run's end")


SMALL_RUN = {"preset": "seed", "epochs": 2, "train_size": 300, "test_size": 100}


def test_with_ten_drawings_every_epoch_is_also_measured_on_the_held_out_ones(client, mnist):
    save_digits(client, mnist, 12)  # ids 1..12: 5 and 10 held out
    run = finished(client, start_run(client, **SMALL_RUN)["run_id"])
    assert run["state"] == "finished", run["message"]
    for epoch in run["epochs"]:
        assert epoch["drawings_total"] == 2
        assert 0 <= epoch["drawings_correct"] <= 2
        assert epoch["drawings_accuracy"] == epoch["drawings_correct"] / 2
    csv = client.get(f"/api/runs/{run['run_id']}/metrics.csv").text.splitlines()
    assert csv[0].endswith("drawings_correct,drawings_total,drawings_accuracy")
    assert csv[1].split(",")[-2] == "2"


def test_a_queued_run_is_measured_on_the_drawings_there_are_when_it_starts(mnist_dir, mnist,
                                                                           folder):
    """A queued run holds no drawings while it waits: it reads them as it starts, so
    the drawings saved meanwhile are in its figures."""
    with TestClient(make_app(mnist_dir, drawings_dir=str(folder),
                             max_concurrent_runs=1)) as client:
        save_digits(client, mnist, 12)  # ids 5 and 10 held out
        first = start_run(client, preset="seed", epochs=50, train_size=1000, test_size=100)
        queued = start_run(client, **SMALL_RUN)
        assert queued["state"] == "queued"
        save_digits(client, mnist, 3)  # id 15 held out too
        assert client.post(f"/api/runs/{first['run_id']}/stop", json={}).status_code == 200
        run = finished(client, queued["run_id"])
        assert run["state"] == "finished", run["message"]
        assert [epoch["drawings_total"] for epoch in run["epochs"]] == [3, 3]


def test_each_evaluation_also_gives_the_held_out_drawings_confusion_matrix(client, mnist,
                                                                           fast_pings):
    """The page's "your drawings" tab of the confusion matrix: with 10 drawings or more,
    each epoch's evaluation event carries the held-out drawings' matrix (row: their
    label, column: the answer), whose diagonal is the epoch's drawings_correct."""
    def evaluations_of(run_id: str) -> tuple[list[dict], dict]:
        records = stream_events(client, lambda r: r.event == "done"
                                and r.json()["run_id"] == run_id)
        evaluations = [r.json() for r in events_only(records, "evaluation")
                       if r.json()["run_id"] == run_id]
        return evaluations, {e["epoch"]: e for e in epoch_payloads(records)
                             if e["run_id"] == run_id}

    save_digits(client, mnist, 9)  # too few: no matrix
    evaluations, _ = evaluations_of(start_run(client, **SMALL_RUN)["run_id"])
    assert evaluations and all("drawings_confusion" not in e for e in evaluations)

    save_digits(client, mnist, 3)  # ids 1..12: 5 and 10 held out
    evaluations, epochs = evaluations_of(start_run(client, **SMALL_RUN)["run_id"])
    assert [e["epoch"] for e in evaluations] == [1, 2]
    held_out_labels = sorted(d["label"] for d in client.get("/api/drawings").json()["drawings"]
                             if d["held_out"])
    assert len(held_out_labels) == 2
    for evaluation in evaluations:
        confusion = np.array(evaluation["drawings_confusion"])
        assert confusion.shape == (10, 10) and confusion.sum() == 2
        rows = confusion.sum(axis=1)
        assert sorted(np.repeat(np.arange(10), rows).tolist()) == held_out_labels
        assert np.trace(confusion) == epochs[evaluation["epoch"]]["drawings_correct"]
        assert np.array(evaluation["confusion"]).sum() == SMALL_RUN["test_size"]  # MNIST's


def test_with_fewer_than_ten_drawings_runs_are_not_measured_on_them(client, mnist):
    save_digits(client, mnist, 9)
    run = finished(client, start_run(client, **SMALL_RUN)["run_id"])
    assert all("drawings_total" not in epoch or epoch["drawings_total"] is None
               for epoch in run["epochs"])


def test_a_run_can_learn_from_the_drawings_mixed_into_its_batches(client, mnist):
    save_digits(client, mnist, 12)  # 10 teaching, 2 held out
    body = {"preset": "default", "epochs": 1, "train_size": 320, "test_size": 100,
            "batch_size": 64}
    mixed = finished(client, start_run(client, include_drawings=0.5, **body)["run_id"])
    alone = finished(client, start_run(client, **body)["run_id"])
    assert mixed["state"] == alone["state"] == "finished"
    assert mixed["config"]["include_drawings"] == 0.5
    steps = {run["run_id"]: client.get(f"/api/runs/{run['run_id']}/metrics.json")
             .json()["batches"][-1]["steps"] for run in (mixed, alone)}
    # 320 MNIST images and 320 drawing images (10 drawings, 32 times each), 64 a batch
    assert steps == {mixed["run_id"]: 10, alone["run_id"]: 5}
    assert mixed["epochs"][0]["drawings_total"] == 2


def test_learning_from_drawings_needs_ten_of_them(client, mnist):
    save_digits(client, mnist, 9)
    answer = client.post("/api/runs", json={"preset": "seed", "include_drawings": 0.2})
    assert answer.status_code == 422
    assert "at least 10 labelled drawings" in answer.json()["detail"]
    assert "has 9" in answer.json()["detail"]
    for share in (-0.1, 0.95, "0.2"):
        bad = client.post("/api/runs", json={"preset": "seed", "include_drawings": share})
        assert bad.status_code == 422


def test_teach_now_fine_tunes_the_answering_model_which_then_answers(client, mnist):
    save_digits(client, mnist, 12)
    started = client.post("/api/drawings/teach", json={})
    assert started.status_code == 201, started.text
    teach = started.json()
    assert teach["taught_from"]["source"] == "bundled"
    assert teach["before"]["total"] == 2  # the held-out fifth, before teaching
    assert 0.95 < teach["before_test_accuracy"] <= 1.0  # the bundled model on MNIST
    run = finished(client, teach["run_id"])
    assert run["state"] == "finished", run["message"]
    assert run["config"]["include_drawings"] == 0.5 and run["config"]["train_size"] == 4000
    after = run["epochs"][-1]
    assert after["drawings_total"] == 2
    # Taught from the bundled model, not from scratch: it still reads MNIST.
    assert after["test_accuracy"] > 0.95 and after["test_total"] == 10_000
    info = client.get("/api/model/info").json()
    assert info["run_id"] == teach["run_id"] and info["source"] == "finished"


def test_teach_now_needs_ten_drawings_and_a_known_model(client, mnist):
    save_digits(client, mnist, 3)
    few = client.post("/api/drawings/teach", json={})
    assert few.status_code == 422 and "at least 10" in few.json()["detail"]
    unknown = client.post("/api/drawings/teach", json={"run_id": "nope"})
    assert unknown.status_code == 404
    bad = client.post("/api/drawings/teach", json={"passes": 9})
    assert bad.status_code == 422


@pytest.mark.parametrize("path", ["/api/drawings/99999999999999999999",
                                  "/api/drawings/0", "/api/drawings?after=99999999999999999999"])
def test_ids_no_drawing_can_have_get_422_not_a_server_error(client, path):
    assert client.get(path).status_code == 422
    if "?" not in path:
        assert client.request("DELETE", path, headers=JSON).status_code == 422
        assert client.patch(path, json={"label": 1}).status_code == 422
