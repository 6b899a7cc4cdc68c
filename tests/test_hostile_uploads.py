"""Hostile model uploads against a real `cnn-live serve` with its default settings
(issue 11): each is refused with the right 4xx and a message saying why, while a
second client sees the server unharmed (tests/serve_process.py Watch: resident
memory never over 800 MB and back within 50 MB of where it started, every /healthz
answered within 100 ms), a run in progress keeps training, and the answering model
stays the same.

Before the loader checked files part by part, the deflate bomb here held the server
for 19.8 s at 2.0 GB, the bzip2 member 18.5 s at 4.1 GB, the spec of 20 dense layers
of 4096 units 18 s at 1.43 GB; the lying .npy header, the nested spec and the
5000-digit number were 500s, and the weights near 1e38 were accepted and made every
prediction a 503.

One server for the whole series (module-scoped): the attacks are cheap now, so the
file is quick; the hostile files are built here (tests/hostile_files.py), in memory.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import hostile_files as hostile  # noqa: E402
from hostile_files import SettledWatch as Watch  # noqa: E402
from serve_process import Serve  # noqa: E402

from cnn.model import Model  # noqa: E402

OCTETS = {"Content-Type": "application/octet-stream"}
# Long enough for the whole series (seed trains 1000 images an epoch in about 0.5 s
# here); stopped at the end.
LONG_RUN = {"preset": "seed", "epochs": 400, "train_size": 1000}
ATTACKS = {
    # name: (builder, status, words the message must hold)
    "deflate bomb (1.9 GiB of zeros in 1.9 MB)": (hostile.deflate_bomb, 422, "declares"),
    "deflate bomb declaring a small size": (
        lambda: hostile.deflate_bomb(declared=784 * 10 * 4 + 128), 422, "compressed data"),
    "bzip2 member (2 GiB in 1.8 KB)": (hostile.bzip2_bomb, 422, "bzip2"),
    "two bzip2 members": (lambda: hostile.bzip2_bomb(2), 422, "bzip2"),
    "spec of 20 dense layers of 4096 units": (hostile.wide_dense_spec_file, 422,
                                              "CNN_LIVE_MAX_PARAMETERS"),
    "npy header declaring 10^12 elements": (hostile.huge_array_header, 422,
                                            "the spec needs (784, 10)"),
    "spec nested 30,000 deep": (hostile.nested_spec_file, 422, "nested too deeply"),
    "spec with a 5000-digit integer": (hostile.long_integer_spec_file, 422, "4,300 digits"),
    "weights near 1e38": (hostile.overflowing_weights, 422, "not finite"),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory, mnist_dir):
    with Serve(tmp_path_factory.mktemp("hostile-uploads"), mnist_dir,
               "--log-level", "warning") as served:
        yield served
        if served.request("GET", "/api/status")[1]["state"] in ("running", "paused"):
            served.request("POST", "/api/runs/current/stop", {})
        log = served.log()
        assert served.terminate() == 0
        assert "Traceback" not in log and " 500 " not in log, log[-3000:]


@pytest.fixture(scope="module")
def files():
    """Each hostile file, built once when a test first needs it (the bombs take ~1 s)."""
    built: dict[str, bytes] = {}

    def get(name: str) -> bytes:
        if name not in built:
            built[name] = ATTACKS[name][0]()
        return built[name]
    return get


def upload(server: Serve, content: bytes) -> tuple[int, dict]:
    status, body = server.send("POST", "/api/model", content, OCTETS, timeout=60)
    return status, json.loads(body)


def status_of(server: Serve) -> dict:
    return server.request("GET", "/api/status")[1]


def training(server: Serve) -> dict:
    """The status of a run in training, started if none is, and past its first steps
    (its data loaded, its memory settled)."""
    if status_of(server)["state"] != "running":
        code, answer = server.request("POST", "/api/runs", LONG_RUN)
        assert code == 201, answer
    return server.wait_until(
        lambda: (s := status_of(server))["state"] == "running" and s["progress"] > 0.02 and s,
        "the run to be well under way", timeout=60)


def batches_done(status: dict) -> int:
    return status["epoch"] * status["steps"] + status["step"]


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_hostile_upload_during_a_run_is_refused_and_harms_nothing(server, files, attack):
    content = files(attack)
    assert len(content) < 2 * 2 ** 20  # under the server's body limit: the loader's to refuse
    _, expected_status, words = ATTACKS[attack]
    before = training(server)
    info_before = server.request("GET", "/api/model/info")[1]
    with Watch(server) as watch:
        began = time.monotonic()
        status, answer = upload(server, content)
        seconds = time.monotonic() - began
        time.sleep(0.5)  # health checks after the answer too
    print(f"{attack}: {status} in {1000 * seconds:.0f} ms; {watch.report()}")
    assert status == expected_status and words in answer["detail"], answer
    assert answer["detail"].startswith("uploaded model: ")
    watch.assert_unharmed()
    after = status_of(server)
    assert after["state"] == "running" and after["run_id"] == before["run_id"]
    assert batches_done(after) > batches_done(before), "the run stopped training"
    info_after = server.request("GET", "/api/model/info")[1]
    assert (info_after["source"], info_after["run_id"]) == ("training", before["run_id"])
    assert info_before["run_id"] == before["run_id"]


def test_a_valid_model_uploaded_during_a_run_gets_409_and_the_run_keeps_answering(server):
    run = training(server)
    status, answer = upload(server, hostile.small_model_bytes())
    assert status == 409, answer
    assert "a run is training" in answer["detail"] and "stop it" in answer["detail"]
    info = server.request("GET", "/api/model/info")[1]
    assert (info["source"], info["run_id"]) == ("training", run["run_id"])


def stop_the_run(server: Serve) -> None:
    if status_of(server)["state"] in ("running", "paused"):
        server.request("POST", "/api/runs/current/stop", {})
    server.wait_for_state("finished", "idle", "failed")


def test_with_no_run_every_hostile_upload_leaves_the_answering_model_exactly_as_it_was(
        server, files):
    stop_the_run(server)
    before = server.request("GET", "/api/model/info")[1]
    with Watch(server) as watch:
        for attack, (_, expected_status, words) in ATTACKS.items():
            status, answer = upload(server, files(attack))
            assert status == expected_status and words in answer["detail"], (attack, answer)
        time.sleep(0.5)
    print(f"the whole series, idle: {watch.report()}")
    watch.assert_unharmed()
    assert server.request("GET", "/api/model/info")[1] == before


# The largest network the default limits allow, by what an explained prediction sends:
# 62 image layers of 16 maps 28x28 (27 M multiply-adds, 5.0 M values per image).
def conv(filters: int) -> dict:
    return {"type": "conv", "filters": filters, "kernel": 3, "padding": 1}


RELU = {"type": "relu"}
LARGEST = {"input": [1, 28, 28],
           "layers": [conv(16)] + [RELU, conv(16)] * 15 + [RELU] * 30
           + [{"type": "flatten"}, {"type": "dense", "units": 10}]}


def test_an_explained_prediction_by_the_largest_model_allowed_stays_small_and_quick(
        server, mnist):
    stop_the_run(server)
    model = Model(LARGEST, seed=1)
    for weights in model.parameters():  # keep values in range through 31 convs
        weights *= 0.5
    status, answer = upload(server, model.to_bytes({"preset": "largest"}))
    assert status == 200 and answer["source"] == "uploaded", answer
    digit = mnist.test_images[0].astype(int).tolist()
    with Watch(server) as watch:
        began = time.monotonic()
        status, body = server.send("POST", "/api/predict",
                                   json.dumps({"image": digit, "explain": True}).encode(),
                                   {"Content-Type": "application/json"})
        seconds = time.monotonic() - began
        time.sleep(0.5)
    print(f"explained prediction of the largest model: {len(body):,} bytes in "
          f"{1000 * seconds:.0f} ms; {watch.report()}")
    assert status == 200, body[:500]
    assert len(body) < 400_000
    watch.assert_unharmed()
    prediction = json.loads(body)
    maps = prediction["feature_maps"]
    assert len(maps) == 61 and all(m["total_maps"] == 16 for m in maps)
    assert maps[0]["shown_maps"] == 16 and maps[-1]["shown_maps"] == 1
    assert all(len(m["maps"]) == m["shown_maps"] for m in maps)
