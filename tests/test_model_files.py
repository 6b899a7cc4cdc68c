"""The answering model as a file (GET/POST /api/model) and runs' checkpoints, kept
through a server stopped mid-run."""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from cnn.model import Model, ModelFileError

sys.path.insert(0, str(Path(__file__).parent))
from server_helpers import make_app, start_run, wait_for, wait_for_run_end  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OCTETS = {"content-type": "application/octet-stream"}
SMALL_SPEC = {"input": [1, 28, 28], "layers": [{"type": "flatten"}, {"type": "dense", "units": 10}]}


@pytest.fixture
def client(mnist_dir, tmp_path):
    with TestClient(make_app(mnist_dir, runs_dir=str(tmp_path / "runs"))) as client:
        yield client


def test_the_answering_models_weights_download_as_a_loadable_npz(client):
    response = client.get("/api/model")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert "attachment" in response.headers["content-disposition"]
    model = Model.load(response.content)
    assert model.spec["input"] == [1, 28, 28]
    assert model.predict_proba(np.zeros((1, 1, 28, 28), np.float32)).shape == (1, 10)


def test_an_uploaded_model_answers_the_predictions(client):
    model = Model({"input": [1, 28, 28], "layers": [{"type": "flatten"},
                                                     {"type": "dense", "units": 10}]}, seed=3)
    answer = client.post("/api/model", content=model.to_bytes({"preset": "mine"}),
                         headers=OCTETS)
    assert answer.status_code == 200
    assert answer.json()["source"] == "uploaded" and "mine" in answer.json()["description"]
    assert client.get("/api/model/info").json()["source"] == "uploaded"
    drawing = np.zeros((40, 40), int)
    drawing[5:35, 18:22] = 255
    prediction = client.post("/api/predict", json={"image": drawing.tolist()}).json()
    assert prediction["model"]["source"] == "uploaded"
    downloaded = Model.load(client.get("/api/model").content)
    for name, value in model.state().items():
        assert np.array_equal(downloaded.state()[name], value)


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize("content, words", [
    (b"not a model at all", "not a model file"),
    (b"", "not a model file"),
    (_npz(weights=np.zeros(3)), "no spec"),
    (_npz(spec=np.array([object()], dtype=object)), "JSON text"),  # would need pickle
    (Model({"input": [1, 14, 14], "layers": [{"type": "flatten"},
                                             {"type": "dense", "units": 10}]}).to_bytes(),
     "1x28x28"),
    (Model({"input": [1, 28, 28], "layers": [{"type": "flatten"},
                                             {"type": "dense", "units": 3}]}).to_bytes(),
     "10 scores"),
], ids=["garbage", "empty", "no-spec", "pickled", "wrong-input", "wrong-outputs"])
def test_a_file_that_is_not_a_usable_model_is_refused_and_the_old_one_keeps_answering(
        client, content, words):
    before = client.get("/api/model/info").json()
    answer = client.post("/api/model", content=content, headers=OCTETS)
    assert answer.status_code == 422 and words in answer.json()["detail"]
    assert client.get("/api/model/info").json() == before


def test_an_oversized_upload_gets_413(client):
    answer = client.post("/api/model", content=b"0" * (3 * 1024 * 1024), headers=OCTETS)
    assert answer.status_code == 413


def test_uploading_a_model_needs_the_token_when_the_server_has_one(mnist_dir):
    model = Model({"input": [1, 28, 28], "layers": [{"type": "flatten"},
                                                     {"type": "dense", "units": 10}]})
    with TestClient(make_app(mnist_dir, token="s3cret")) as client:
        assert client.post("/api/model", content=model.to_bytes(), headers=OCTETS).status_code == 401
        answer = client.post("/api/model", content=model.to_bytes(),
                             headers={**OCTETS, "Authorization": "Bearer s3cret"})
        assert answer.status_code == 200


def test_every_completed_epoch_leaves_a_checkpoint_that_loads(client, tmp_path):
    run_id = start_run(client, preset="default", epochs=2, train_size=2000, test_size=500)["run_id"]
    wait_for_run_end(client)
    run = next(r for r in client.get("/api/runs").json() if r["run_id"] == run_id)
    path = Path(run["checkpoint"])
    assert path.parent == tmp_path / "runs" and path.exists()
    model, metadata = Model.load_with_metadata(path)
    assert metadata["run_id"] == run_id and metadata["epoch"] == 2
    assert metadata["test_accuracy"] == run["epochs"][-1]["test_accuracy"]
    assert not list(path.parent.glob(".*.tmp"))  # written through a temporary file


def test_a_server_stopped_with_sigterm_mid_run_exits_quickly_and_keeps_the_last_epoch(
        mnist_dir, tmp_path):
    runs_dir = tmp_path / "runs"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    url = "http://127.0.0.1:%d" % listener.getsockname()[1]
    serve = ("import socket, sys, uvicorn\n"
             "from app.main import create_app\n"
             "from app.settings import Settings\n"
             f"app = create_app(Settings(data_dir={str(mnist_dir)!r}, download=False, "
             f"runs_dir={str(runs_dir)!r}))\n"
             "uvicorn.Server(uvicorn.Config(app, timeout_graceful_shutdown=2, "
             "log_level='warning')).run(sockets=[socket.socket(fileno=int(sys.argv[1]))])\n")
    server = subprocess.Popen([sys.executable, "-c", serve, str(listener.fileno())],
                              pass_fds=[listener.fileno()], cwd=ROOT)
    try:
        wait_for(lambda: _answers(url), timeout=30, what="the server to start")
        run_id = httpx.post(url + "/api/runs", json={"preset": "seed", "epochs": 500},
                            timeout=10).json()["run_id"]
        wait_for(lambda: httpx.get(url + "/api/status").json()["epoch"] >= 3, timeout=30,
                 what="a few epochs")
        server.send_signal(signal.SIGTERM)
        started = time.monotonic()
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert server.wait(15) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 8
    finally:
        if server.poll() is None:
            server.kill()
        listener.close()
    model, metadata = Model.load_with_metadata(runs_dir / f"run-{run_id}.npz")
    assert metadata["run_id"] == run_id and 2 <= metadata["epoch"] < 500


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# -- killed while writing a checkpoint ----------------------------------------------------

# A process that saves a ~46 MB model to the same path over and over, each version's
# weights all equal to its number, until it is killed.
CHECKPOINT_WRITER = """
import sys
from cnn.model import Model
path, first = sys.argv[1], int(sys.argv[2])
model = Model({"input": [1, 28, 28], "layers": [{"type": "flatten"},
              {"type": "dense", "units": 4096}, {"type": "dense", "units": 2048}]})
for version in range(first, first + 1_000_000):
    for weights in model.parameters():
        weights.fill(version)
    model.save(path, metadata={"version": version})
"""
KILLS = 3          # kills that must land mid-write (the temporary file half written)
MAX_ATTEMPTS = 12  # a busy machine may let a writer finish its file before the kill


def temporaries(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def kill_while_writing(path: Path, first_version: int, rng) -> int:
    """Starts a writer and SIGKILLs it a few milliseconds after it starts writing the
    temporary file of a version after one it completed; returns the size that file
    had when the writer died (-1 if it was renamed in time)."""
    before = {tmp.name for tmp in temporaries(path)}
    replaced = path.stat().st_ino if path.exists() else None
    writer = subprocess.Popen([sys.executable, "-c", CHECKPOINT_WRITER, str(path),
                               str(first_version)], cwd=ROOT)
    try:
        def writing():
            # A rename gives the path a new inode: after one, any new temporary file
            # belongs to a later version.
            if not path.exists() or path.stat().st_ino == replaced:
                return None
            new = [tmp for tmp in temporaries(path) if tmp.name not in before]
            return new[0] if new and new[0].stat().st_size > 0 else None
        tmp = wait_for(writing, timeout=60, interval=0.0005, what="the writer to write")
        time.sleep(rng.uniform(0, 0.01))
        writer.kill()
        assert writer.wait(10) == -signal.SIGKILL
        return tmp.stat().st_size if tmp.exists() else -1
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()


def test_a_writer_killed_mid_checkpoint_leaves_the_previous_checkpoint_whole(tmp_path):
    path = tmp_path / "run-killed.npz"
    rng = np.random.default_rng(5)
    cut, attempts = 0, 0
    while cut < KILLS and attempts < MAX_ATTEMPTS:
        first = 1000 * attempts  # versions 0.., 1000.., 2000..: whose they are is known
        attempts += 1
        size = kill_while_writing(path, first, rng)
        model, metadata = Model.load_with_metadata(path)  # never half a file
        version = metadata["version"]
        assert version >= first  # one this writer completed
        for weights in model.parameters():
            assert np.all(weights == version), "a checkpoint mixing two versions"
        cut += 0 <= size < path.stat().st_size
    assert cut == KILLS, f"only {cut} of {attempts} kills landed mid-write"
    left = temporaries(path)
    assert len(left) <= attempts and all(tmp.stat().st_size < path.stat().st_size
                                         for tmp in left)
    # The next save to that path clears what the killed writers left behind.
    Model(SMALL_SPEC).save(path)
    assert temporaries(path) == [] and os.listdir(tmp_path) == [path.name]


def test_a_save_leaves_the_temporary_file_of_a_live_writer_alone(tmp_path):
    path = Model(SMALL_SPEC).save(tmp_path / "run-a.npz")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = path.parent / f".{path.name}.{gone.stdout.strip()}.abc123.tmp"
    live = path.parent / f".{path.name}.{os.getpid()}.def456.tmp"  # as if another thread wrote
    dead.write_bytes(b"PK half")
    live.write_bytes(b"PK half")
    Model(SMALL_SPEC).save(path)
    assert not dead.exists() and live.exists()


# -- corrupt and foreign files ----------------------------------------------------------------

def _flipped_byte(content: bytes) -> bytes:
    """A checkpoint with one byte of its weights flipped (a bad disk, a bad copy)."""
    corrupt = bytearray(content)
    corrupt[len(corrupt) // 2] ^= 0xFF
    return bytes(corrupt)


def _foreign_spec(content: bytes) -> bytes:
    return _npz(spec=np.array(json.dumps({"input": [1, 28, 28], "layers": [{"type": "lstm"}]})),
                **{"0.weight": np.zeros((10, 784), np.float32)})


@pytest.mark.parametrize("spoil, words", [
    (_flipped_byte, "Bad CRC-32"),
    (_foreign_spec, "'type' must be one of"),
], ids=["flipped-byte", "foreign-spec"])
def test_a_corrupt_or_foreign_checkpoint_is_refused_with_a_clear_message(
        client, tmp_path, spoil, words):
    path = tmp_path / "run-spoilt.npz"
    path.write_bytes(spoil(Model(SMALL_SPEC, seed=1).to_bytes({"epoch": 1})))
    with pytest.raises(ModelFileError) as refused:
        Model.load(path)
    assert str(refused.value).startswith(f"{path}: ") and words in str(refused.value)
    before = client.get("/api/model/info").json()
    answer = client.post("/api/model", content=path.read_bytes(), headers=OCTETS)
    assert answer.status_code == 422 and words in answer.json()["detail"]
    assert client.get("/api/model/info").json() == before
