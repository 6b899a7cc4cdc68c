"""Tests for "draw a digit -> prediction" (app/predict.py, app/routers/predict.py): the
bundled model, a drawn digit recognised, feature maps, bad drawings refused with a
422 (and an oversized body with a 413) without harming the server, and which model
answers: the run in training, the last finished run, or the bundled model, never a
broken one. In process, with Starlette's TestClient as a context manager."""

from __future__ import annotations

import base64
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np
import pytest
from fastapi.testclient import TestClient

import cnn.model
import app.predict
from app.predict import (BUNDLED_MODEL, EXPLAIN_BUDGET, KEEP_ENDED, MAX_MAPS, MAX_VECTOR_VALUES,
                         DrawingError, Predictor, Snapshot, UnknownRun, UnusableModel,
                         check_answers, parse_drawing, probe_images)
from cnn.model import Model, TrainingDiverged
from cnn.presets import PRESETS
from cnn.train import scale_images
from server_helpers import (LONG_RUN, fail_after, make_app, start_run, wait_for,
                            wait_for_run_end)

MAX_BODY = 2 * 1024 * 1024
# A run that trains for a few seconds: long enough to be seen in training.
TRAINING_RUN = {"preset": "default", "epochs": 2, "train_size": 5000, "test_size": 1000}


@pytest.fixture
def client(mnist_dir):
    with TestClient(make_app(mnist_dir)) as client:
        yield client


def drawing_of(digit: np.ndarray, canvas: int = 200, scale: int = 5,
               top: int = 50, left: int = 15) -> list[list[int]]:
    """An MNIST digit (28x28 uint8) upscaled onto a larger canvas, off-centre, as a
    page's canvas would send it."""
    big = np.kron(digit.astype(np.int64), np.ones((scale, scale), np.int64))
    image = np.zeros((canvas, canvas), np.int64)
    image[top:top + big.shape[0], left:left + big.shape[1]] = big
    return image.tolist()


@pytest.fixture(scope="module")
def drawn(mnist):
    """(label, drawing) of the first MNIST test digit."""
    return int(mnist.test_labels[0]), drawing_of(mnist.test_images[0])


def assert_good_prediction(body: dict) -> None:
    probabilities = body["probabilities"]
    assert len(probabilities) == 10 and all(math.isfinite(p) and 0 <= p <= 1
                                            for p in probabilities)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    assert body["digit"] == int(np.argmax(probabilities))
    image = np.array(body["input"])
    assert image.shape == (28, 28) and image.min() >= 0 and image.max() <= 1


def predict(client, image, **extra):
    response = client.post("/api/predict", json={"image": image, **extra})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_good_prediction(body)
    return body


# -- the bundled model -------------------------------------------------------------------------

def test_the_bundled_model_is_small_and_accurate(mnist):
    assert BUNDLED_MODEL.is_file(), "run `make bundled-model`"
    assert BUNDLED_MODEL.stat().st_size < 1_000_000
    model, metadata = Model.load_with_metadata(BUNDLED_MODEL)
    assert model.spec == cnn.model.normalize_spec(PRESETS["default"].spec)
    _, correct = model.evaluate(scale_images(mnist.test_images), mnist.test_labels)
    assert correct / len(mnist.test_labels) >= 0.985, correct


# -- predictions -------------------------------------------------------------------------------

@pytest.mark.parametrize("index", range(5))
def test_a_drawn_digit_is_recognised_by_the_bundled_model(client, mnist, index):
    label = int(mnist.test_labels[index])
    body = predict(client, drawing_of(mnist.test_images[index], top=20 + 10 * index,
                                      left=50 - 8 * index))
    assert body["digit"] == label, body["probabilities"]
    assert body["probabilities"][label] > 0.5
    assert body["model"]["source"] == "bundled"
    assert body["model"]["run_id"] is None and body["model"]["epoch"] is None
    assert body["model"]["description"]
    assert body["feature_maps"] is None


def test_pixels_in_base64_give_the_same_answer_as_rows_of_numbers(client, drawn):
    rows = np.array(drawn[1], np.uint8)
    compact = {"pixels": base64.b64encode(rows.tobytes()).decode("ascii"),
               "width": rows.shape[1], "explain": True}
    response = client.post("/api/predict", json=compact)
    assert response.status_code == 200, response.text
    as_pixels = response.json()
    assert_good_prediction(as_pixels)
    as_rows = predict(client, drawn[1], explain=True)
    assert as_pixels == as_rows
    assert as_pixels["digit"] == drawn[0]


def test_the_input_is_the_digit_fitted_and_centred(client, drawn):
    image = np.array(predict(client, drawn[1])["input"])
    rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 21  # fits 20x20 (grey edges)
    assert image == pytest.approx(np.round(image, 4))
    total = image.sum()
    centre = (image.sum(axis=1) @ np.arange(28) / total, image.sum(axis=0) @ np.arange(28) / total)
    assert centre == pytest.approx((13.5, 13.5), abs=1.0)


def test_explain_returns_every_image_layers_output(client, drawn):
    body = predict(client, drawn[1], explain=True)
    maps = body["feature_maps"]
    expected = [(0, "conv", [8, 28, 28]), (1, "relu", [8, 28, 28]), (2, "maxpool", [8, 14, 14]),
                (3, "conv", [16, 14, 14]), (4, "relu", [16, 14, 14]),
                (5, "maxpool", [16, 7, 7])]
    assert [(m["layer"], m["kind"], m["shape"]) for m in maps] == expected
    # The layers' real outputs for the same input: the maps are them, scaled to 0..255.
    x = np.array(body["input"], np.float32)[None, None]
    truth = Predictor().current().model.feature_maps(x)
    for entry in maps:
        assert entry["name"] == f"{entry['layer']}.{entry['kind']}"
        levels = np.array(entry["maps"])
        assert levels.shape == tuple(entry["shape"])
        assert levels.dtype.kind == "i" and levels.min() == 0 and levels.max() == 255
        values = truth[entry["layer"]][1][0]
        assert entry["low"] == pytest.approx(values.min(), abs=1e-4)
        assert entry["high"] == pytest.approx(values.max(), abs=1e-4)
        step = (entry["high"] - entry["low"]) / 255
        restored = entry["low"] + step * levels
        np.testing.assert_allclose(restored, values, atol=step / 2 + 1e-3)
        if entry["kind"] == "relu":
            assert entry["low"] >= 0
    assert np.array(maps[0]["filters"]).shape == (8, 1, 3, 3)
    assert np.array(maps[3]["filters"]).shape == (16, 8, 3, 3)
    assert all(m["filters"] is None for m in maps if m["kind"] != "conv")


def test_the_model_info_says_which_model_answers(client):
    info = client.get("/api/model/info").json()
    assert info["source"] == "bundled" and "bundled" in info["description"]


def test_the_endpoint_is_documented(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/predict" in paths and "/api/model/info" in paths
    schema = paths["/api/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert "PredictRequest" in schema["schema"]["$ref"]


def test_a_large_drawing_is_checked_in_bulk_not_pixel_by_pixel():
    """Checking a 512x512 drawing costs at most a few times what turning its rows into
    an array costs at all (measured side by side, so a busy machine slows both): its
    checks are array operations (here 1.7x), not a NumPy call per pixel (over 10x)."""
    image = np.random.default_rng(0).integers(0, 256, (512, 512)).tolist()
    checked = min(_timed(parse_drawing, image) for _ in range(5))
    converted = min(_timed(np.asarray, image, np.float64) for _ in range(5))
    assert checked < 4 * converted, (f"checking took {checked * 1000:.0f} ms, converting "
                                     f"{converted * 1000:.0f} ms")


def _timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


# -- bad drawings -------------------------------------------------------------------------------

def _grid(height=16, width=16, value=0, at=None):
    image = [[0] * width for _ in range(height)]
    image[height // 2][width // 2] = 200  # some ink
    if at is not None:
        image[at[0]][at[1]] = value
    return image


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


BAD_BODIES = {
    "image is a string": ({"image": "a digit"}, "list"),
    "image is a flat list": ({"image": list(range(64))}, "list of rows"),
    "image is empty": ({"image": []}, "list"),
    "ragged rows": ({"image": _grid()[:-1] + [[0] * 15]}, "same length"),
    "too small": ({"image": _grid(7, 16)}, "512"),
    "too narrow": ({"image": _grid(16, 4)}, "from 8 to 512"),
    "too large": ({"image": [[1] * 8] * 513}, "from 8 to 512"),
    "a string pixel": ({"image": _grid(value="255", at=(3, 4))}, "row 3, column 4"),
    "a null pixel": ({"image": _grid(value=None, at=(2, 2))}, "null"),
    "a bool pixel": ({"image": _grid(value=True, at=(1, 1))}, "bool"),
    "a list pixel": ({"image": _grid(value=[1], at=(1, 1))}, "number"),
    "a negative pixel": ({"image": _grid(value=-1, at=(0, 0))}, "0 to 255"),
    "a pixel over 255": ({"image": _grid(value=255.5, at=(0, 0))}, "0 to 255"),
    "a huge whole number": ({"image": _grid(value=10 ** 400, at=(0, 0))}, "255"),
    "an empty drawing": ({"image": [[0] * 20] * 20}, "draw a digit first"),
    "explain is not a bool": ({"image": _grid(), "explain": "yes"}, "bool"),
    "no image": ({"explain": True}, "image"),
    "an unknown field": ({"image": _grid(), "colour": "red"}, "colour"),
    "image and pixels": ({"image": _grid(), "pixels": _b64(bytes(256)), "width": 16}, "either"),
    "width with image": ({"image": _grid(), "width": 16}, "'width' goes with 'pixels'"),
    "pixels without width": ({"pixels": _b64(bytes([9]) * 256)}, "needs 'width'"),
    "pixels not base64": ({"pixels": "not base64!", "width": 16}, "base64"),
    "pixels not whole rows": ({"pixels": _b64(bytes([9]) * 250), "width": 16}, "whole rows"),
    "pixels too few rows": ({"pixels": _b64(bytes([9]) * 112), "width": 16}, "from 8 to 512"),
    "pixels too wide": ({"pixels": _b64(bytes([9]) * 5130), "width": 513}, "512"),
    "pixels width a string": ({"pixels": _b64(bytes([9]) * 256), "width": "16"}, "integer"),
    "pixels all blank": ({"pixels": _b64(bytes(256)), "width": 16}, "draw a digit first"),
}


def detail_text(response) -> str:
    detail = response.json()["detail"]
    if isinstance(detail, str):
        assert detail.strip()
        return detail
    assert isinstance(detail, list) and detail
    return "; ".join(".".join(map(str, item["loc"])) + ": " + item["msg"] for item in detail)


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_a_bad_drawing_is_a_422_with_a_message(client, drawn, name):
    body, words = BAD_BODIES[name]
    response = client.post("/api/predict", content=json.dumps(body),
                           headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert words.lower() in detail_text(response).lower()
    predict(client, drawn[1])  # and the server keeps answering


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_a_422(client, drawn, token):
    text = json.dumps({"image": _grid()}).replace("200", token, 1)
    assert token in text
    response = client.post("/api/predict", content=text,
                           headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert "finite" in detail_text(response)
    predict(client, drawn[1])


def test_a_body_that_is_not_json_is_a_422(client, drawn):
    response = client.post("/api/predict", content=b"[[1, 2",
                           headers={"content-type": "application/json"})
    assert response.status_code == 422
    detail_text(response)
    predict(client, drawn[1])


def test_an_oversized_body_is_a_413(client, drawn):
    body = b'{"image": [' + b"0," * (MAX_BODY // 2) + b"0]}"
    response = client.post("/api/predict", content=body,
                           headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    predict(client, drawn[1])


def test_an_oversized_body_without_a_length_is_a_413(client, drawn):
    def chunks():  # sent chunked: no Content-Length to check, the bytes are counted
        yield b'{"image": ['
        for _ in range(40):
            yield b"0," * 32768
        yield b"0]}"

    response = client.post("/api/predict", content=chunks(),
                           headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    predict(client, drawn[1])


def test_the_body_limit_is_a_setting(mnist_dir, drawn):
    with TestClient(make_app(mnist_dir, max_body_bytes=1000)) as client:
        response = client.post("/api/predict", json={"image": drawn[1]})
        assert response.status_code == 413
        assert "1000 bytes" in response.json()["detail"]
        assert client.get("/healthz").status_code == 200


# -- which model answers --------------------------------------------------------------------------

def test_predictions_come_from_the_run_in_training_then_from_the_finished_run(client, drawn):
    run_id = start_run(client, **TRAINING_RUN)["run_id"]
    during = wait_for(lambda: (b := predict(client, drawn[1]))["model"]["source"] == "training"
                      and b, timeout=30, what="a prediction from the run in training")
    model = during["model"]
    assert model["run_id"] == run_id and model["epoch"] >= 1 and model["step"] >= 1
    assert client.get("/api/status").json()["state"] in ("running", "finished")
    wait_for_run_end(client, timeout=120)
    after = predict(client, drawn[1])["model"]
    steps = -(-TRAINING_RUN["train_size"] // 64)
    assert after == {**after, "source": "finished", "run_id": run_id, "epoch": 2, "step": steps}
    assert client.get("/api/model/info").json() == after


def test_a_run_answers_with_its_averaged_weights_and_with_the_raw_ones_when_asked(
        client, drawn):
    start_run(client, **TRAINING_RUN)
    during = wait_for(lambda: (b := predict(client, drawn[1]))["model"]["source"] == "training"
                      and b, timeout=30, what="a prediction from the run in training")
    assert during["model"]["weights"] == "averaged"
    assert during["model"]["weights_available"] == ["averaged", "raw"]
    raw = predict(client, drawn[1], weights="raw")["model"]
    assert raw["weights"] == "raw" and raw["source"] == "training"
    assert client.post("/api/predict", json={"image": drawn[1], "weights": "best"}
                       ).status_code == 422
    wait_for_run_end(client, timeout=120)
    assert predict(client, drawn[1])["model"]["weights"] == "averaged"
    assert client.get("/api/model/info").json()["weights"] == "averaged"


def test_the_two_kinds_of_weights_of_a_snapshot_give_their_own_answers():
    predictor = Predictor()
    model = Model(PRESETS["default"].spec, seed=1)
    from cnn.average import WeightAverage
    average = WeightAverage(model.parameters(), 0.9)
    for p in model.parameters():
        p *= 1.5  # the raw weights move away from their average
    assert predictor.offer("run", model, 1, 5, average)
    snapshot = predictor.current()
    image = probe_images()[2]
    averaged, _ = snapshot.predict(image)
    raw, _ = snapshot.predict(image, weights="raw")
    np.testing.assert_allclose(averaged, Model(PRESETS["default"].spec, seed=1)
                               .predict_proba(image[None, None])[0], rtol=1e-5)
    np.testing.assert_allclose(raw, model.predict_proba(image[None, None])[0], rtol=1e-5)
    assert not np.allclose(averaged, raw)


def test_the_downloaded_model_holds_the_weights_that_answer_and_says_which(client, drawn):
    start_run(client, **{**TRAINING_RUN, "epochs": 1, "train_size": 1000})
    wait_for_run_end(client, timeout=120)
    snapshot = client.app.state.predictor.current()
    response = client.get("/api/model")
    model, metadata = Model.load_with_metadata(response.content)
    assert metadata["weights"] == "averaged"
    for name, value in model.state().items():
        np.testing.assert_array_equal(value, snapshot.model.state()[name])
    raw_model, raw_metadata = Model.load_with_metadata(client.get("/api/model?weights=raw").content)
    assert raw_metadata["weights"] == "raw"
    for name, value in raw_model.state().items():
        np.testing.assert_array_equal(value, snapshot.raw.state()[name])


def test_a_stopped_run_answers_with_the_weights_it_stopped_with(client, drawn):
    run_id = start_run(client, **LONG_RUN)["run_id"]
    wait_for(lambda: predict(client, drawn[1])["model"]["source"] == "training", timeout=30,
             what="a prediction from the run in training")
    assert client.post("/api/runs/current/stop", json={}).status_code == 200
    status = wait_for_run_end(client)
    model = predict(client, drawn[1])["model"]
    assert model["source"] == "finished" and model["run_id"] == run_id
    assert "stopped" in model["description"]
    assert (model["epoch"], model["step"]) == (status["epoch"], status["step"])


def test_a_diverging_run_leaves_a_good_model_answering(client, drawn, monkeypatch):
    fail_after(monkeypatch, 4, TrainingDiverged("the loss became nan: training diverged"))
    start_run(client, **TRAINING_RUN)
    assert wait_for_run_end(client)["state"] == "failed"
    body = predict(client, drawn[1])
    assert body["model"]["source"] == "bundled"
    assert body["digit"] == drawn[0]


def test_a_failed_run_after_a_finished_one_leaves_the_finished_one_answering(
        client, drawn, monkeypatch):
    run_id = start_run(client, **{**TRAINING_RUN, "epochs": 1, "train_size": 1000})["run_id"]
    wait_for_run_end(client)
    fail_after(monkeypatch, 3, TrainingDiverged("the loss became nan: training diverged"))
    start_run(client, **TRAINING_RUN)
    assert wait_for_run_end(client)["state"] == "failed"
    model = predict(client, drawn[1])["model"]
    assert model["source"] == "finished" and model["run_id"] == run_id


def test_weights_that_are_not_finite_are_never_snapshot(drawn):
    predictor = Predictor()
    model = Model(PRESETS["default"].spec, seed=1)
    assert predictor.offer("good", model, 1, 5)
    good = predictor.current()
    model.parameters()[0][...] = np.nan
    assert not predictor.offer("good", model, 1, 6)
    assert predictor.current() is good
    image = np.zeros((28, 28), np.float32)
    image[8:20, 12:16] = 1
    probabilities, _ = good.predict(image)
    assert np.isfinite(probabilities).all()


def test_parse_drawing_returns_floats():
    pixels = parse_drawing([[0, 1.5] * 4] * 8)
    assert pixels.dtype == np.float64 and pixels.shape == (8, 8)
    with pytest.raises(DrawingError, match="draw a digit first"):
        parse_drawing([[0] * 8] * 8)


# -- explained predictions cost at most a fixed budget ------------------------------------


def explained(spec: dict, scale: float = 1.0, seed: int = 1) -> tuple[Model, dict]:
    model = Model(spec, seed=seed)
    for weights in model.parameters():
        weights *= scale
    _, layers = Snapshot(model, "uploaded", "test").predict(probe_images()[2], explain=True)
    return model, layers


def test_a_wide_layer_sends_its_first_32_maps_averaged_down_to_28x28_and_says_so():
    spec = {"input": [1, 28, 28], "layers": [
        {"type": "conv", "filters": 64, "kernel": 1, "padding": 14}, {"type": "relu"},
        {"type": "maxpool", "size": 4}, {"type": "flatten"}, {"type": "dense", "units": 10}]}
    model, layers = explained(spec)
    conv, relu, pool = layers["feature_maps"]
    assert conv["shape"] == [64, 56, 56] and conv["total_maps"] == 64
    assert conv["shown_maps"] == MAX_MAPS == len(conv["maps"]) and conv["downsampled"]
    assert np.array(conv["maps"]).shape == (32, 28, 28)
    assert np.array(conv["filters"]).shape == (32, 1, 1, 1)
    # Each level is the mean of a 2x2 block of the layer's real values, on low..high.
    truth = model.feature_maps(probe_images()[2][None, None])[0][1][0, :32]
    blocks = truth.reshape(32, 28, 2, 28, 2).mean(axis=(2, 4))
    step = (conv["high"] - conv["low"]) / 255
    restored = conv["low"] + step * np.array(conv["maps"])
    np.testing.assert_allclose(restored, blocks, atol=step / 2 + 1e-4)
    everything = model.feature_maps(probe_images()[2][None, None])[0][1]
    assert conv["low"] == pytest.approx(float(everything.min()))  # over all 64 maps
    assert pool["shape"] == [64, 14, 14] and not pool["downsampled"]


def test_large_kernels_and_many_channels_of_a_filter_are_cut_to_what_the_page_shows():
    spec = {"input": [1, 28, 28], "layers": [
        {"type": "conv", "filters": 20, "kernel": 3, "padding": 1},
        {"type": "conv", "filters": 4, "kernel": 15, "padding": 7},
        {"type": "flatten"}, {"type": "dense", "units": 10}]}
    _, layers = explained(spec, scale=0.1)
    second = layers["feature_maps"][1]
    assert np.array(second["filters"]).shape == (4, 16, 5, 5)  # 16 of 20 channels, 15 -> 5
    assert second["downsampled"] and not layers["feature_maps"][0]["downsampled"]


def test_a_long_vector_sends_its_first_256_values_and_the_scores_whole():
    spec = {"input": [1, 28, 28], "layers": [{"type": "flatten"}, {"type": "dense", "units": 4096},
                                             {"type": "relu"}, {"type": "dense", "units": 10}]}
    _, layers = explained(spec)
    dense, relu, scores = layers["vectors"]
    assert len(dense["values"]) == MAX_VECTOR_VALUES and dense["total_values"] == 4096
    assert len(scores["values"]) == scores["total_values"] == 10


def test_a_deep_network_spends_the_budget_then_shows_one_small_map_a_layer():
    conv = {"type": "conv", "filters": 16, "kernel": 3, "padding": 1}
    spec = {"input": [1, 28, 28], "layers": [conv] + [{"type": "relu"}, conv] * 15
            + [{"type": "relu"}] * 30 + [{"type": "flatten"}, {"type": "dense", "units": 10}]}
    model, layers = explained(spec, scale=0.5)
    maps = layers["feature_maps"]
    assert len(maps) == 61 and maps[0]["shown_maps"] == 16 and maps[0]["filters"] is not None
    spent = [m for m in maps if m["shown_maps"] < m["total_maps"]]
    assert spent and all(m["shown_maps"] >= 1 for m in maps)
    assert all(np.array(m["maps"]).shape[1] <= 14 and m["filters"] is None
               for m in maps if m["shown_maps"] == 1)
    values = sum(np.array(m["maps"]).size + 2 * np.array(m["filters"] or []).size for m in maps)
    assert values <= EXPLAIN_BUDGET + 61 * 14 * 14
    size = len(json.dumps(layers))
    assert size < 400_000, size


def test_the_bundled_model_is_explained_whole(client, drawn):
    maps = predict(client, drawn[1], explain=True)["feature_maps"]
    assert all(m["shown_maps"] == m["total_maps"] and not m["downsampled"] for m in maps)


# -- a model is tried before it answers ---------------------------------------------------

def test_the_bundled_model_answers_the_probe_images():
    check_answers(Predictor().current().model)


@pytest.mark.parametrize("fill, words", [
    (3e38, "not finite"),
    (1e17, r"over 1e\+30"),
], ids=["overflowing", "out-of-range"])
def test_weights_so_large_that_outputs_overflow_are_refused(fill, words):
    model = Model({"input": [1, 28, 28], "layers": [
        {"type": "flatten"}, {"type": "dense", "units": 16}, {"type": "dense", "units": 10}]})
    for weights in model.parameters():
        weights.fill(fill)
    with pytest.raises(UnusableModel, match=words):
        check_answers(model)


# -- several runs at once: each has its own model to ask ---------------------------------------

def test_each_run_answers_with_its_own_snapshot_and_the_newest_by_default():
    predictor = Predictor()
    older, newer = Model(PRESETS["default"].spec, seed=1), Model(PRESETS["default"].spec, seed=2)
    assert predictor.offer("older", older, 1, 5) and predictor.offer("newer", newer, 1, 3)
    assert predictor.current().run_id == "newer"  # the newest run in training
    chosen = predictor.current("older")
    assert chosen.run_id == "older" and chosen.step == 5
    np.testing.assert_array_equal(chosen.model.parameters()[0], older.parameters()[0])
    assert [choice["run_id"] for choice in predictor.choices()] == ["newer", "older"]
    with pytest.raises(UnknownRun, match="'elsewhere' has no model here"):
        predictor.current("elsewhere")
    # The newer fails: it is dropped; the older ends well and answers as finished.
    predictor.run_ended("newer", "failed")
    predictor.run_ended("older", "finished")
    assert predictor.current().run_id == "older" and predictor.current().source == "finished"
    with pytest.raises(UnknownRun):
        predictor.current("newer")


def test_the_models_of_ended_runs_kept_are_bounded_in_count_and_bytes(monkeypatch):
    predictor = Predictor()
    model = Model(PRESETS["default"].spec)
    for index in range(KEEP_ENDED + 3):
        predictor.offer(f"run{index}", model, 1, 1)
        predictor.run_ended(f"run{index}", "finished")
    kept = [choice["run_id"] for choice in predictor.choices()]
    assert kept == [f"run{index}" for index in reversed(range(3, KEEP_ENDED + 3))]
    # Over the byte bound only the newest stays, however large it is.
    monkeypatch.setattr(app.predict, "ENDED_BYTES", 1)
    predictor.offer("large", model, 1, 1)
    predictor.run_ended("large", "stopped")
    assert [choice["run_id"] for choice in predictor.choices()] == ["large"]


def test_a_prediction_names_the_run_asked_for_and_404s_for_a_run_without_a_model(client, drawn):
    run_id = start_run(client, **{**LONG_RUN, "epochs": 2})["run_id"]
    wait_for_run_end(client, timeout=60)
    answer = predict(client, drawn[1], run_id=run_id)
    assert answer["model"]["run_id"] == run_id
    assert client.get(f"/api/model/info?run_id={run_id}").json()["run_id"] == run_id
    assert run_id in [choice["run_id"] for choice in client.get("/api/model/choices").json()]
    missing = client.post("/api/predict", json={"image": drawn[1], "run_id": "nosuchrun"})
    assert missing.status_code == 404 and "'nosuchrun' has no model here" in missing.json()["detail"]
