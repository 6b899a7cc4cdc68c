"""POST /api/specs/check and runs from a whole spec (issue 14): shapes and costs of the
presets against hand-computed values, every kind of bad spec refused with a 422 that
names the layer, each limit named when passed, and a custom network that trains and
keeps its spec in its record, its metrics export and its checkpoint."""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest
from fastapi.testclient import TestClient

from cnn.checkpoint import load_checkpoint
from cnn.cost import ModelLimits
from cnn.losses import LOSSES
from cnn.model import INITS, LAYER_KEYS, normalize_spec
from cnn.presets import PRESETS
from server_helpers import make_app, wait_for_run_end

# Hand-computed: (type, output shape, parameters, multiply-adds per image) per layer.
EXPECTED = {
    "seed": [("conv", [5, 26, 26], 5 * (9 + 1), 5 * 26 * 26 * 9), ("sigmoid", [5, 26, 26], 0, 0),
             ("maxpool", [5, 13, 13], 0, 0), ("flatten", [845], 0, 0),
             ("dense", [25], 845 * 25 + 25, 845 * 25), ("sigmoid", [25], 0, 0),
             ("dense", [10], 25 * 10 + 10, 250), ("sigmoid", [10], 0, 0)],
    "seed-fc": [("flatten", [784], 0, 0), ("dense", [25], 784 * 25 + 25, 784 * 25),
                ("sigmoid", [25], 0, 0), ("dense", [10], 260, 250), ("sigmoid", [10], 0, 0)],
    "default": [("conv", [8, 28, 28], 80, 8 * 784 * 9), ("relu", [8, 28, 28], 0, 0),
                ("maxpool", [8, 14, 14], 0, 0), ("conv", [16, 14, 14], 16 * 73, 16 * 196 * 72),
                ("relu", [16, 14, 14], 0, 0), ("maxpool", [16, 7, 7], 0, 0),
                ("flatten", [784], 0, 0), ("dense", [64], 784 * 64 + 64, 784 * 64),
                ("relu", [64], 0, 0), ("dense", [10], 650, 640)],
}
CUSTOM = {"input": [1, 28, 28],
          "layers": [{"type": "conv", "filters": 4, "kernel": 5, "stride": 2},
                     {"type": "tanh"}, {"type": "flatten"}, {"type": "dense", "units": 10}],
          "loss": "softmax_cross_entropy", "init": "glorot"}


def flat(*layers):
    return {"layers": [*layers, {"type": "flatten"}, {"type": "dense", "units": 10}]}


@pytest.fixture(scope="module")
def client(mnist_dir):
    with TestClient(make_app(mnist_dir, calibration="reference")) as client:
        yield client


def check(client, spec, **settings):
    return client.post("/api/specs/check", json={"spec": spec, **settings})


@pytest.mark.parametrize("name", EXPECTED)
def test_a_presets_shapes_parameters_and_multiply_adds_are_the_hand_computed_ones(client, name):
    response = check(client, PRESETS[name].spec, preset=name)
    assert response.status_code == 200, response.text
    body = response.json()
    got = [(layer["type"], layer["output_shape"], layer["parameters"], layer["multiply_adds"])
           for layer in body["layers"]]
    assert got == EXPECTED[name]
    assert body["parameters"] == sum(row[2] for row in EXPECTED[name])
    assert body["multiply_adds"] == sum(row[3] for row in EXPECTED[name])
    assert body["seconds_per_epoch"] > 0
    assert body["run_seconds"] == pytest.approx(body["seconds_per_epoch"] * body["epochs"])
    assert body["spec"] == normalize_spec(PRESETS[name].spec)


def test_the_estimate_follows_the_run_settings(client):
    full = check(client, PRESETS["default"].spec).json()["seconds_per_epoch"]
    tenth = check(client, PRESETS["default"].spec, train_size=6000,
                  test_size=1000).json()["seconds_per_epoch"]
    assert tenth < full / 5


BAD_SPECS = {
    "wrong order (conv after flatten)": (
        {"layers": [{"type": "flatten"}, {"type": "conv", "filters": 2},
                    {"type": "dense", "units": 10}]}, 1, "conv", "put it before flatten"),
    "a pool that shrinks below 1x1": (
        flat({"type": "maxpool", "size": 8}, {"type": "maxpool", "size": 8}), 1, "maxpool",
        "larger than its input"),
    "a dense before flatten": (
        {"layers": [{"type": "dense", "units": 10}]}, 0, "dense", "add {\"type\": \"flatten\"}"),
    "zero filters": (flat({"type": "conv", "filters": 0}), 0, "conv", "'filters' must be"),
    "negative units": ({"layers": [{"type": "flatten"}, {"type": "dense", "units": -4}]}, 1,
                       "dense", "'units' must be"),
    "a zero kernel": (flat({"type": "conv", "filters": 2, "kernel": 0}), 0, "conv", "'kernel'"),
    "an unknown type": (flat({"type": "dropout"}), 0, "dropout", "'type' must be one of"),
    "a missing size": (flat({"type": "conv"}), 0, "conv", "'filters' is required"),
    "an unknown key": (flat({"type": "relu", "slope": 2}), 0, "relu", "unknown keys"),
    "a conv whose stride leaves no output": (
        flat({"type": "conv", "filters": 2, "kernel": 28}, {"type": "conv", "filters": 2}),
        1, "conv", "larger than its padded input"),
    "no class scores at the end": ({"layers": [{"type": "conv", "filters": 2}]}, 0, "conv",
                                   "flat vector of class scores"),
    "fewer class scores than MNIST's 10": (
        {"layers": [{"type": "flatten"}, {"type": "dense", "units": 3}]}, 1, "dense",
        "MNIST has 10 classes"),
}


@pytest.mark.parametrize("name", BAD_SPECS)
def test_every_kind_of_bad_spec_is_a_422_naming_the_layer_and_the_reason(client, name):
    spec, layer, layer_type, words = BAD_SPECS[name]
    response = check(client, spec)
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["layer"], body["layer_type"]) == (layer, layer_type), body
    assert body["detail"].startswith(f"layer {layer}") and words in body["detail"], body


def test_a_spec_that_is_not_a_network_is_a_422_without_a_layer(client):
    body = check(client, {"layers": []}).json()
    assert body["layer"] is None and "non-empty" in body["detail"]


def test_a_spec_for_other_images_than_mnists_is_a_422(client):
    small = {"input": [1, 8, 8], "layers": [{"type": "flatten"}, {"type": "dense", "units": 10}]}
    response = check(client, small)
    assert response.status_code == 422 and "[1, 28, 28]" in response.json()["detail"]
    assert client.post("/api/runs", json={"spec": small}).status_code == 422


def deep(layers: int) -> dict:
    return {"layers": [{"type": "conv", "filters": 2, "padding": 1}]
            + [{"type": "relu"}] * (layers - 3) + [{"type": "flatten"}, {"type": "dense", "units": 10}]}


OVER = {  # limit: (spec, settings, layer, variable)
    "layers": (deep(70), {}, 64, "CNN_LIVE_MAX_LAYERS"),
    "parameters": ({"layers": [{"type": "conv", "filters": 64}, {"type": "flatten"},
                               {"type": "dense", "units": 4096}, {"type": "dense", "units": 10}]},
                   {}, 2, "CNN_LIVE_MAX_PARAMETERS"),
    "multiply-adds": (flat({"type": "conv", "filters": 64, "padding": 1},
                           {"type": "conv", "filters": 512, "padding": 1}), {}, 1,
                      "CNN_LIVE_MAX_MULTIPLY_ADDS"),
    "estimated time": (PRESETS["default"].spec, {"epochs": 1000, "batch_size": 1}, None,
                       "CNN_LIVE_MAX_RUN_MINUTES"),
}


@pytest.mark.parametrize("limit", OVER)
def test_a_spec_over_each_limit_is_a_422_naming_the_limit_its_value_and_a_layer(client, limit):
    spec, settings, layer, variable = OVER[limit]
    response = check(client, {"input": [1, 28, 28], **spec}, **settings)
    assert response.status_code == 422, response.text
    body = response.json()
    assert variable in body["detail"] and "over the limit of" in body["detail"], body
    assert body["layer"] is not None and body["layer_type"], body
    if layer is not None:
        assert body["layer"] == layer, body
    # POST /api/runs refuses it the same way.
    run = client.post("/api/runs", json={"preset": "default", "spec": spec, **settings})
    assert run.status_code == 422 and variable in run.json()["detail"]


def test_the_limits_are_in_the_answer_and_come_from_the_settings(mnist_dir):
    limits = ModelLimits(layers=5)
    with TestClient(make_app(mnist_dir, calibration="reference", model_limits=limits)) as c:
        body = check(c, PRESETS["seed-fc"].spec).json()
        assert body["limits"]["layers"] == 5
        refused = check(c, PRESETS["default"].spec).json()
        assert "CNN_LIVE_MAX_LAYERS" in refused["detail"] and refused["layer"] == 5


def test_a_run_from_a_custom_spec_trains_and_keeps_its_spec_in_record_export_and_checkpoint(
        mnist_dir):
    with TestClient(make_app(mnist_dir, calibration="reference")) as client:
        response = client.post("/api/runs", json={"preset": "default", "spec": CUSTOM,
                                                  "epochs": 1, "train_size": 600,
                                                  "test_size": 200})
        assert response.status_code == 201, response.text
        run_id = response.json()["run_id"]
        status = wait_for_run_end(client)
        assert status["state"] == "finished", status
        info = client.get(f"/api/runs/{run_id}").json()
        assert info["epochs"] and info["checkpoint"]
        spec = normalize_spec(CUSTOM)
        assert info["spec"] == spec
        assert client.get(f"/api/runs/{run_id}/metrics.json").json()["spec"] == spec
        assert client.app.state.manager.runs[run_id].spec == spec
        assert load_checkpoint(info["checkpoint"]).model.spec == spec


def test_every_runs_spec_is_in_its_record_and_the_runs_list_and_outlives_the_server(
        mnist_dir, tmp_path):
    """What the page's "Edit this network" loads: GET /api/runs/{id} and the list give
    the network a run trains, its own spec or its preset's, today and after a restart."""
    runs_dir = str(tmp_path / "runs")
    tiny = {"epochs": 1, "train_size": 100, "test_size": 50}
    with TestClient(make_app(mnist_dir, calibration="reference", runs_dir=runs_dir)) as client:
        custom = client.post("/api/runs", json={"preset": "default", "spec": CUSTOM, **tiny})
        assert custom.status_code == 201, custom.text
        wait_for_run_end(client)
        preset = client.post("/api/runs", json={"preset": "seed", **tiny})
        assert preset.status_code == 201, preset.text
        wait_for_run_end(client)
    expected = {custom.json()["run_id"]: normalize_spec(CUSTOM),
                preset.json()["run_id"]: PRESETS["seed"].spec}
    with TestClient(make_app(mnist_dir, calibration="reference", runs_dir=runs_dir)) as client:
        for run_id, spec in expected.items():
            assert client.get(f"/api/runs/{run_id}").json()["spec"] == spec
        listed = {run["run_id"]: run["spec"] for run in client.get("/api/runs").json()}
        assert listed == expected
        # The spec as the record gives it starts a run of the same network again.
        again = client.post("/api/runs", json={"preset": "default", "epochs": 1,
                                               "spec": listed[custom.json()["run_id"]]})
        assert again.status_code == 201, again.text
        client.post(f"/api/runs/{again.json()['run_id']}/stop", json={})
        wait_for_run_end(client)


def test_the_pages_builder_offers_the_engines_layers_and_starts_from_the_presets_networks(
        client):
    """The page's network builder (static/js/builder.js) reads what it offers from the
    page: every layer type of the engine with its keys, in order, and their defaults, the
    losses, the initialisations and a spec's own defaults; and each preset's network."""
    page = client.get("/").text
    attribute = re.search(r"data-schema='([^']*)'", page)
    assert attribute, "no data-schema on #builder"
    schema = json.loads(html.unescape(attribute.group(1)))
    assert [kind for kind, _ in schema["layers"]] == list(LAYER_KEYS)
    assert {kind: dict(keys) for kind, keys in schema["layers"]} == LAYER_KEYS
    assert [[key for key, _ in keys] for _, keys in schema["layers"]] == \
        [list(keys) for keys in LAYER_KEYS.values()]
    assert schema["losses"] == list(LOSSES) and schema["inits"] == list(INITS)
    spec = normalize_spec({"layers": [{"type": "flatten"}, {"type": "dense", "units": 10}]})
    assert schema["defaults"] == {key: spec[key] for key in ("input", "loss", "init")}
    specs = {name: json.loads(html.unescape(text)) for name, text in re.findall(
        r'<option value="([\w-]+)" data-config=\'[^\']*\'\s+data-spec=\'([^\']*)\'', page)}
    assert specs == {name: preset.spec for name, preset in PRESETS.items()}


def test_a_spec_with_filters_is_refused(client):
    response = client.post("/api/runs", json={"spec": CUSTOM, "filters": [3]})
    assert response.status_code == 422 and "filters" in response.json()["detail"]
