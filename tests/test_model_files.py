"""The answering model as a file (GET/POST /api/model) and runs' checkpoints, kept
through a server stopped mid-run; the loader that reads every model file
(cnn/model_file.py), each part of a file checked before it costs memory."""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from cnn.cost import ModelLimits
from cnn.model import Model, ModelFileError
from cnn.model_file import load_model_file, parameter_shapes
from cnn.presets import PRESETS

sys.path.insert(0, str(Path(__file__).parent))
import hostile_files as hostile  # noqa: E402
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
    run_id = start_run(client, preset="default", epochs=2, train_size=500, test_size=100)["run_id"]
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
# Over the default limit of 5 M parameters (a server's): a file this size is read
# with a caller's own limits, as a program that trusts its own files would.
CHECKPOINT_LIMITS = ModelLimits(parameters=12_000_000)
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
        model, metadata = Model.load_with_metadata(path, CHECKPOINT_LIMITS)  # never half a file
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


# -- the loader: every part checked before it costs memory (cnn/model_file.py) -----------------

# What the loader may hold while refusing a file, whatever the file declares (the
# deflate bomb held 2.0 GB before these checks, the bzip2 member 4.1 GB).
REFUSAL_MEMORY = 5 * 2 ** 20
HOSTILE = {
    "deflate-bomb": (hostile.deflate_bomb, "declares 1,979,711,616 bytes inside"),
    "deflate-bomb-declaring-a-small-size": (
        lambda: hostile.deflate_bomb(declared=784 * 10 * 4 + 128), "compressed data"),
    "bzip2-member": (hostile.bzip2_bomb, "bzip2"),
    "20-dense-layers-of-4096": (hostile.wide_dense_spec_file, "CNN_LIVE_MAX_PARAMETERS"),
    "npy-header-of-10^12-elements": (hostile.huge_array_header, "(1000000, 1000000)"),
    "spec-nested-30000-deep": (hostile.nested_spec_file, "nested too deeply"),
    "spec-nested-beyond-its-size-cap": (lambda: hostile.nested_spec_file(60_000),
                                        "a spec of up to 64 layers needs"),
    "5000-digit-integer": (hostile.long_integer_spec_file, "4,300 digits"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_file_is_refused_before_it_costs_memory(name):
    build, words = HOSTILE[name]
    content = build()
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError) as refused:
            Model.load(content)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert words in str(refused.value)
    assert peak < REFUSAL_MEMORY, f"{peak / 2**20:.1f} MB to refuse {name}"


def _members(model: Model, **extra) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(model.to_bytes({"epoch": 1}, **extra))) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _rezipped(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize("compression, words", [
    (zipfile.ZIP_BZIP2, "method 12 (bzip2)"),
    (zipfile.ZIP_LZMA, "method 14 (lzma)"),
], ids=["bzip2", "lzma"])
def test_members_compressed_other_than_stored_or_deflated_are_refused(compression, words):
    content = _rezipped(_members(Model(SMALL_SPEC)), compression)
    with pytest.raises(ModelFileError, match="only stored or deflated") as refused:
        Model.load(content)
    assert words in str(refused.value)


def test_a_file_written_by_savez_compressed_loads_the_same_weights():
    model = Model(PRESETS["default"].spec, seed=2)
    loaded = Model.load(_rezipped(_members(model), zipfile.ZIP_DEFLATED))
    for name, value in model.state().items():
        assert np.array_equal(loaded.state()[name], value)


@pytest.mark.parametrize("change, words", [
    (lambda m: {**m, "evil.sh": b"#!/bin/sh"}, "unknown member 'evil.sh'"),
    (lambda m: {**m, "0.weights.npy": m["1.weight.npy"]}, "unknown member '0.weights.npy'"),
    (lambda m: {**m, "../1.bias.npy": m["1.bias.npy"]}, "unknown member"),
    (lambda m: {**m, "3.weight.npy": m["1.weight.npy"]}, "unexpected ['3.weight']"),
    (lambda m: {k: v for k, v in m.items() if k != "1.bias.npy"}, "missing ['1.bias']"),
    (lambda m: {k: v for k, v in m.items() if k != "spec.npy"}, "no spec inside"),
], ids=["foreign", "misnamed", "path", "extra-layer", "missing", "no-spec"])
def test_members_that_do_not_fit_the_spec_are_refused_by_name(change, words):
    with pytest.raises(ModelFileError) as refused:
        Model.load(_rezipped(change(_members(Model(SMALL_SPEC)))))
    assert words in str(refused.value)


def test_a_member_listed_twice_is_refused():
    members = [hostile.RawMember.stored(name, content)
               for name, content in _members(Model(SMALL_SPEC)).items()]
    with pytest.raises(ModelFileError, match="appears twice"):
        Model.load(hostile.zip_of(members + members[:1]))


def test_an_encrypted_member_is_refused():
    members = [hostile.RawMember.stored(name, content)
               for name, content in _members(Model(SMALL_SPEC)).items()]
    members[0].flags = 0x1
    with pytest.raises(ModelFileError, match="encrypted"):
        Model.load(hostile.zip_of(members))


def _with_weight(array, name="1.weight.npy", header: bytes | None = None) -> bytes:
    members = _members(Model(SMALL_SPEC))
    members[name] = hostile.npy(array) if header is None else header
    return _rezipped(members)


@pytest.mark.parametrize("weight, words", [
    (np.zeros((784, 10), np.int32), "floating-point"),
    (np.zeros((784, 10), np.complex64), "floating-point"),
    (np.zeros((784, 10), [("a", "<f4")]), "floating-point"),
    (np.zeros((10, 784), np.float32), "has shape (10, 784), the spec needs (784, 10)"),
    (np.zeros((784, 10, 1), np.float32), "the spec needs (784, 10)"),
    (np.full((784, 10), np.nan, np.float32), "must hold finite floating-point numbers"),
    (np.full((784, 10), 1e300), "too large for float32"),
], ids=["int", "complex", "structured", "transposed", "extra-axis", "nan", "float64-1e300"])
def test_weights_of_the_wrong_kind_shape_or_value_are_refused(weight, words):
    with pytest.raises(ModelFileError) as refused:
        Model.load(_with_weight(weight))
    assert words in str(refused.value)


@pytest.mark.parametrize("weight", [
    np.full((784, 10), 0.25, np.float64), np.full((784, 10), 0.25, np.float16),
    np.asfortranarray(np.arange(7840, dtype=np.float32).reshape(784, 10) / 7840),
    np.full((784, 10), 0.25, ">f4"),
], ids=["float64", "float16", "fortran-order", "big-endian"])
def test_weights_in_another_float_layout_load_as_float32(weight):
    model = Model.load(_with_weight(weight))
    loaded = model.state()["1.weight"]
    assert loaded.dtype == np.float32 and np.array_equal(loaded, weight.astype(np.float32))


@pytest.mark.parametrize("data, words", [
    (b"\0" * (784 * 10 * 4 - 1), "fewer bytes"),
    (b"\0" * (784 * 10 * 4 + 4), "more bytes"),
], ids=["short", "long"])
def test_a_member_holding_other_than_its_headers_bytes_is_refused(data, words):
    header = hostile.npy_header((784, 10))
    with pytest.raises(ModelFileError, match=words):
        Model.load(_with_weight(None, header=header + data))


@pytest.mark.parametrize("header, words", [
    (b"not an npy header at all", "not a readable .npy array"),
    (hostile.npy_header((784, 10))[:20], "not a readable .npy array"),
    # version 2.0 declaring a 4 GB header: read no further than the first 4 KB
    (b"\x93NUMPY\x02\x00" + (2 ** 32 - 1).to_bytes(4, "little") + b"{" * 100,
     "not a readable .npy array"),
    (hostile.npy_header((784, 10), version=(2, 0))[:10] + b"(" * 5000, "not a readable"),
], ids=["garbage", "cut-short", "4-GB-header", "nested-header"])
def test_a_header_that_cannot_be_read_is_refused(header, words):
    with pytest.raises(ModelFileError, match=words):
        Model.load(_with_weight(None, header=header))


def test_a_spec_over_the_callers_limits_is_refused_before_anything_is_built(monkeypatch):
    import cnn.model_file
    content = Model(PRESETS["default"].spec).to_bytes()

    def never(*args, **kwargs):
        raise AssertionError("a model was built")
    monkeypatch.setattr(cnn.model_file, "Model", never)
    for limits, words in ((ModelLimits(parameters=50_000), "CNN_LIVE_MAX_PARAMETERS"),
                          (ModelLimits(layers=5), "CNN_LIVE_MAX_LAYERS"),
                          (ModelLimits(multiply_adds=100_000), "CNN_LIVE_MAX_MULTIPLY_ADDS"),
                          (ModelLimits(values_per_image=10_000),
                           "CNN_LIVE_MAX_VALUES_PER_IMAGE")):
        with pytest.raises(ModelFileError, match=words):
            load_model_file(content, limits)


@pytest.mark.parametrize("spec, words", [
    ({"input": [1, 28, 28], "layers": [{"type": []}]}, "'type' must be one of"),
    ({"loss": {"a": 1}, "layers": [{"type": "flatten"}]}, "unknown loss"),
    ({"layers": [{"type": "flatten"}, {"type": "dense", "units": 10 ** 4000}]},
     "got a 4001-digit number"),
    ([1, 2, 3], "a spec is a JSON object"),
    ({"layers": [{"type": "flatten"}] * 2 + [{"type": "dense", "units": 10, "x" * 5000: 1}]},
     "unknown keys"),
], ids=["type-a-list", "loss-a-dict", "4001-digit-units", "a-list", "a-long-key"])
def test_a_spec_that_is_not_a_spec_is_refused_in_a_short_message(spec, words):
    with pytest.raises(ModelFileError) as refused:
        Model.load(hostile.spec_file(json.dumps(spec)))
    assert words in str(refused.value) and len(str(refused.value)) < 300


def test_metadata_too_large_is_refused_and_metadata_that_is_not_an_object_is_empty():
    members = _members(Model(SMALL_SPEC))
    members["metadata.npy"] = hostile.text_npy(json.dumps(["x" * 300_000]))
    with pytest.raises(ModelFileError, match="its metadata declares"):
        Model.load(_rezipped(members))
    members["metadata.npy"] = hostile.text_npy("[1, 2]")
    assert Model.load_with_metadata(_rezipped(members))[1] == {}


def test_a_checkpoints_extra_arrays_are_left_unread_but_no_larger_than_a_weight():
    model = Model(SMALL_SPEC, seed=4)
    velocity = {"optimizer.velocity.0": np.ones((784, 10), np.float32),
                "optimizer.learning_rate": np.array(0.1)}
    loaded = load_model_file(model.to_bytes({"epoch": 3}, velocity))
    assert loaded.extra_names == ("extra.optimizer.learning_rate", "extra.optimizer.velocity.0")
    assert np.array_equal(loaded.model.state()["1.weight"], model.state()["1.weight"])
    too_big = {"optimizer.velocity.0": np.ones((785, 11), np.float64)}
    with pytest.raises(ModelFileError, match="extra array 'extra.optimizer.velocity.0'"):
        Model.load(model.to_bytes({}, too_big))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_the_shapes_worked_out_from_a_spec_are_those_of_the_built_model(preset):
    model = Model(PRESETS[preset].spec)
    assert parameter_shapes(model.spec) == {k: v.shape for k, v in model.state().items()}


def test_a_folder_or_a_missing_path_is_refused_by_name(tmp_path):
    with pytest.raises(ModelFileError, match="a folder"):
        Model.load(tmp_path)
    with pytest.raises(ModelFileError, match="no such file"):
        Model.load(tmp_path / "nothing.npz")


def test_random_damage_to_a_model_file_is_only_ever_a_model_file_error():
    """Bytes flipped, cut or inserted anywhere (a fuzzer's mutations, seeded): the
    loader accepts the file or raises ModelFileError, never anything else."""
    rng = np.random.default_rng(11)
    original = Model(PRESETS["seed"].spec, seed=1).to_bytes({"epoch": 1})
    deflated = _rezipped(_members(Model(SMALL_SPEC)), zipfile.ZIP_DEFLATED)
    outcomes = {"accepted": 0, "refused": 0}
    for trial in range(600):
        content = bytearray(original if trial % 2 else deflated)
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(0, len(content)))
            action = rng.integers(0, 3)
            if action == 0:
                content[at] = int(rng.integers(0, 256))
            elif action == 1:
                del content[at:at + int(rng.integers(1, 64))]
            else:
                content[at:at] = rng.integers(0, 256, int(rng.integers(1, 16)), np.uint8).tobytes()
        try:
            Model.load(bytes(content))
            outcomes["accepted"] += 1
        except ModelFileError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 300, outcomes


def test_the_upload_declares_its_body_for_fuzzers_and_the_docs(client):
    post = client.get("/openapi.json").json()["paths"]["/api/model"]["post"]
    body = post["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/octet-stream"]["schema"] == {"type": "string",
                                                                     "format": "binary"}
    assert {"409", "413", "422", "503"} <= set(post["responses"])


def test_a_second_upload_while_one_is_checked_gets_503_at_once(client):
    from app.routers import model as model_router
    assert model_router._checking.acquire(blocking=False)
    try:
        answer = client.post("/api/model", content=Model(SMALL_SPEC).to_bytes(), headers=OCTETS)
    finally:
        model_router._checking.release()
    assert answer.status_code == 503 and "another model upload" in answer.json()["detail"]
    assert answer.headers["retry-after"]


def test_a_check_that_outlives_its_time_limit_is_a_503_and_the_server_answers_on(
        client, monkeypatch):
    from app.routers import model as model_router

    def slow(content, limits):
        time.sleep(1.0)
        raise AssertionError("never answered")
    monkeypatch.setattr(model_router, "UPLOAD_SECONDS", 0.2)
    monkeypatch.setattr(model_router, "_checked_model", slow)
    before = client.get("/api/model/info").json()
    answer = client.post("/api/model", content=Model(SMALL_SPEC).to_bytes(), headers=OCTETS)
    assert answer.status_code == 503 and "could not be checked within" in answer.json()["detail"]
    assert client.get("/api/model/info").json() == before
