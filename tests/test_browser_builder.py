"""Your own network on the page (issue 14), in a real Chromium (Playwright) against a real
uvicorn server on the real MNIST: a second conv layer added to `seed`'s network updates
the shapes (the server's own check) and the run Start begins trains that network; an
invalid edit (a dense before flatten, a pool larger than its input) shows the server's
message at the layer at fault and Start refuses it; the JSON view and the builder follow
each other both ways; the keyboard alone adds a layer and starts the network; "Edit
network" on a run loads its spec, and "Race it against <preset>" trains it beside the
preset's own.

The browser rule, fixtures and helpers are those of test_browser.py (imported: without a
browser this module is skipped too, or fails under CNN_LIVE_REQUIRE_BROWSER=1). The
server's time estimates use the fixed reference calibration (no second of measuring).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_browser import (  # noqa: E402,F401  (fixtures are used by name)
    Problems, browser_context_args, browser_type_launch_args, hook, open_dashboard,
    save_screenshot, unfold, wait_hook,
)
from playwright.sync_api import Page, expect  # noqa: E402

from cnn.model import normalize_spec  # noqa: E402
from cnn.presets import PRESETS  # noqa: E402
from server_helpers import LiveServer, make_app, wait_for  # noqa: E402

# seed's network with a second conv: the builder's new conv (8 filters, 3x3, padded by 1)
# goes before the flatten, after the 2x2 pool: 5x13x13 -> 8x13x13 -> flatten 1,352.
SEED_SHAPES = ["5×26×26", "5×26×26", "5×13×13", "845", "25", "25", "10", "10"]
TWO_CONVS = ["5×26×26", "5×26×26", "5×13×13", "8×13×13", "1352", "25", "25", "10", "10"]
# A run of its own network to edit: a strided 5x5 conv, tanh, one dense layer.
OWN = {"input": [1, 28, 28],
       "layers": [{"type": "conv", "filters": 4, "kernel": 5, "stride": 2},
                  {"type": "tanh"}, {"type": "flatten"}, {"type": "dense", "units": 10}],
       "loss": "softmax_cross_entropy", "init": "glorot"}
TINY = {"epochs": 1, "train_size": 200, "test_size": 50}


@pytest.fixture
def server(mnist_dir):
    with LiveServer(make_app(mnist_dir, calibration="reference", max_concurrent_runs=2)) as live:
        yield live


@pytest.fixture
def api(server):
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


# -- reading and driving the builder ----------------------------------------------------------

def open_builder(page: Page, preset: str = "default") -> None:
    if page.locator("#preset").input_value() != preset:
        page.locator("#preset").select_option(preset)
    unfold(page, "#builder")
    expect(page.locator("#builder-status")).to_contain_text("an epoch", timeout=10_000)


def layer(page: Page, index: int):
    return page.locator(f'#builder-layers li[data-index="{index}"]')


def expect_shapes(page: Page, shapes: list[str]) -> None:
    rows = page.locator("#builder-layers li")
    expect(rows).to_have_count(len(shapes))
    expect(page.locator("#builder-layers .builder-out .builder-value")).to_have_text(shapes)


def json_spec(page: Page) -> dict:
    return json.loads(page.locator("#builder-json").input_value())


def types(spec: dict) -> list[str]:
    return [entry["type"] for entry in spec["layers"]]


def sizes(page: Page, index: int) -> list[str]:
    """The texts of layer `index`'s size fields ("": the engine's default, shown greyed)."""
    return layer(page, index).locator("input").evaluate_all("(inputs) => inputs.map((i) => i.value)")


def runs_on_server(api: httpx.Client) -> list[dict]:
    return api.get("/api/runs").json()


def tab_to(page: Page, selector: str, limit: int = 120) -> int:
    """Tab until `selector` has the focus (each stop's focus ring showing); the presses."""
    for presses in range(1, limit + 1):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            assert page.evaluate("() => document.activeElement.matches(':focus-visible')")
            return presses
    raise AssertionError(f"{selector} not reached in {limit} Tabs")


# -- the tests --------------------------------------------------------------------------------

def test_a_second_conv_added_to_seed_updates_the_shapes_and_start_trains_that_network(
        server, page, api):
    problems = Problems(page)
    open_dashboard(page, server)
    open_builder(page, "seed")
    expect_shapes(page, SEED_SHAPES)
    expect(page.locator("#builder-total-parameters")).to_have_text("21,460")  # 50 + 21,150 + 260
    expect(page.locator("#builder-limits")).to_contain_text("5,000,000 parameters")
    expect(page.locator("#builder-badge")).to_be_hidden()   # the preset's own network

    # "conv" is offered before the flatten, where an image layer goes.
    expect(page.locator("#builder-add-type")).to_have_value("conv")
    expect(page.locator("#builder-add-at option:checked")).to_have_text("After layer 2 (maxpool)")
    page.locator("#builder-add").click()
    expect_shapes(page, TWO_CONVS)
    expect(layer(page, 3).locator(".builder-cost .builder-value")).to_have_text(
        ["368", "60,840"])                                       # 8 x (5 x 9 + 1); 8 x 169 x 45
    expect(layer(page, 5).locator(".builder-cost .builder-value").first).to_have_text("33,825")
    expect(page.locator("#builder-badge")).to_contain_text("changed")
    assert types(json_spec(page)) == ["conv", "sigmoid", "maxpool", "conv", "flatten", "dense",
                                      "sigmoid", "dense", "sigmoid"]
    save_screenshot(page, "builder-two-convs.png", full_page=True)

    # A tiny run (one epoch of seed's 1000 images, one image a step) with Start.
    unfold(page)
    page.locator("#epochs").fill("1")
    page.locator("#start").click()
    page.locator("#loss-chart").scroll_into_view_if_needed()   # below the open builder
    wait_hook(page, "lossPoints", ">", 0, timeout=20)           # its batches on the charts
    run = wait_for(lambda: runs_on_server(api), 10, what="the run")[0]
    assert run["preset"] == "seed" and run["config"]["epochs"] == 1
    assert types(run["spec"]) == types(json_spec(page))
    assert run["spec"]["layers"][3] == {"type": "conv", "filters": 8, "kernel": 3, "stride": 1,
                                        "padding": 1}
    expect(page.locator(f'#runs li[data-run-id="{run["run_id"]}"] .run-preset')).to_contain_text(
        "own network")
    wait_for(lambda: api.get(f"/api/runs/{run['run_id']}").json()["state"] == "finished", 30,
             what="the run to finish")
    assert problems.items == []


def test_an_invalid_edit_shows_the_servers_message_at_the_layer_and_start_refuses_it(
        server, page, api):
    open_dashboard(page, server)
    open_builder(page, "default")

    # A dense before the flatten: default's dense 64 (layer 7) moved up one place.
    layer(page, 7).get_by_role("button", name="Move layer 7 (dense) up").click()
    at_fault = layer(page, 6)
    expect(at_fault).to_have_class(re.compile(r"\bis-invalid\b"))
    message = at_fault.locator(".builder-layer-error")
    expect(message).to_have_text("layer 6 (dense): needs a flat input; add {\"type\": \"flatten\"} "
                                 "before it")
    for control in (at_fault.locator("select"), at_fault.locator("input")):
        expect(control).to_have_attribute("aria-invalid", "true")
        expect(control).to_have_attribute("aria-describedby", "builder-layer-6-error")
    expect(at_fault.get_by_role("button", name="Move layer 6 (dense) up")).to_be_focused()
    expect(page.locator("#builder-status")).to_have_text("Not trainable: see layer 6 (dense).")
    expect(page.locator("#builder-layers li.is-invalid")).to_have_count(1)

    page.locator("#builder-start").click()
    expect(page.locator("#form-error")).to_contain_text("layer 6 (dense): needs a flat input")
    assert runs_on_server(api) == []

    # Back down: trainable again, and the marks are gone.
    layer(page, 6).get_by_role("button", name="Move layer 6 (dense) down").click()
    expect(page.locator("#builder-layers li.is-invalid")).to_have_count(0)
    expect(page.locator("#builder-status")).to_contain_text("an epoch")
    expect(layer(page, 6).locator("select")).not_to_have_attribute("aria-invalid", "true")

    # A pool larger than its input: the second max-pool (14x14 in) of size 16.
    layer(page, 5).locator("input").fill("16")
    expect(layer(page, 5).locator(".builder-layer-error")).to_have_text(
        "layer 5 (maxpool): size 16 is larger than its input 14x14")
    expect(layer(page, 5).locator("input")).to_have_attribute("aria-invalid", "true")
    page.locator("#start").click()
    expect(page.locator("#form-error")).to_contain_text("size 16 is larger than its input")
    save_screenshot(page, "builder-invalid.png", full_page=True)
    assert runs_on_server(api) == []


def test_the_json_view_and_the_builder_follow_each_other_both_ways(server, page, api):
    open_dashboard(page, server)
    open_builder(page, "default")
    assert json_spec(page) == normalize_spec(PRESETS["default"].spec)

    # The form -> the JSON: dense 64 made 128, a layer removed, the loss changed.
    layer(page, 7).locator("input").fill("128")
    expect(page.locator("#builder-json")).to_have_value(re.compile(r'"units": 128'))
    layer(page, 8).get_by_role("button", name="Remove layer 8 (relu)").click()
    page.locator("#builder-loss").select_option("squared_error")
    spec = json_spec(page)
    assert spec["layers"][7] == {"type": "dense", "units": 128}
    assert types(spec)[7:] == ["dense", "dense"] and spec["loss"] == "squared_error"
    expect(page.locator("#builder-layers li")).to_have_count(9)

    # The JSON -> the form: a network typed in rebuilds the list, checked by the server.
    page.locator("#builder-json").fill(json.dumps(OWN))
    expect_shapes(page, ["4×12×12", "4×12×12", "576", "10"])
    expect(layer(page, 0).locator("select")).to_have_value("conv")
    assert sizes(page, 0) == ["4", "5", "2", ""]   # no padding given: the default, 0
    expect(layer(page, 0).locator("input").last).to_have_attribute("placeholder", "0")
    expect(page.locator("#builder-init")).to_have_value("glorot")
    expect(page.locator("#builder-loss")).to_have_value("softmax_cross_entropy")
    expect(page.locator("#builder-json-error")).to_be_hidden()

    # JSON that does not parse: said under the text; the list waits; Start refuses.
    page.locator("#builder-json").fill('{"layers": [{"type": "conv", "filters": 4},')
    error = page.locator("#builder-json-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("Not JSON")
    expect(page.locator("#builder-json")).to_have_attribute("aria-invalid", "true")
    assert "builder-json-error" in page.locator("#builder-json").get_attribute("aria-describedby")
    expect(page.locator("#builder-layers li")).to_have_count(4)
    page.locator("#start").click()
    expect(page.locator("#form-error")).to_contain_text("JSON does not parse")
    assert runs_on_server(api) == []

    # A type the engine does not have: shown as such, refused at its layer.
    page.locator("#builder-json").fill(json.dumps(
        {**OWN, "layers": [{"type": "avgpool", "size": 2}, *OWN["layers"]]}))
    expect(error).to_be_hidden()
    expect(layer(page, 0).locator("select option:checked")).to_have_text("avgpool (unknown)")
    expect(layer(page, 0).locator(".builder-layer-error")).to_contain_text(
        "layer 0: 'type' must be one of")

    # And the form again -> the JSON: that layer made a max-pool.
    layer(page, 0).locator("select").select_option("maxpool")
    expect_shapes(page, ["1×14×14", "4×5×5", "4×5×5", "100", "10"])
    assert json_spec(page)["layers"][0] == {"type": "maxpool", "size": 2}


def test_the_keyboard_alone_adds_a_layer_and_starts_the_network(server, page, api):
    open_dashboard(page, server)
    page.locator("#preset").select_option("seed")
    page.locator("body").focus()
    page.keyboard.press("Tab")   # from the top: the skip links first
    assert tab_to(page, "#builder-title") <= 20
    page.keyboard.press("Enter")
    expect(page.locator("#builder")).to_have_attribute("open", "")
    expect(page.locator("#builder-status")).to_contain_text("an epoch", timeout=10_000)
    tab_to(page, "#builder-add")
    page.keyboard.press("Space")
    expect(page.locator("#builder-layers li")).to_have_count(9)
    expect(page.locator("#builder-add")).to_be_focused()     # add another, or Tab on
    expect_shapes(page, TWO_CONVS)
    assert tab_to(page, "#builder-start") <= 8
    page.keyboard.press("Enter")
    run = wait_for(lambda: runs_on_server(api), 10, what="the run")[0]
    try:
        assert run["preset"] == "seed" and types(run["spec"])[3] == "conv"
        expect(page.locator("#builder-start")).to_be_focused()
        expect(page.locator("#state")).to_have_text(re.compile("running|finished"), timeout=10_000)
    finally:
        api.post(f"/api/runs/{run['run_id']}/stop", json={})


def test_edit_network_loads_a_runs_spec_and_race_trains_it_beside_its_preset(server, page, api):
    response = api.post("/api/runs", json={"preset": "seed", "spec": OWN, **TINY})
    assert response.status_code == 201, response.text
    own_id = response.json()["run_id"]
    wait_for(lambda: api.get(f"/api/runs/{own_id}").json()["state"] == "finished", 30,
             what="the run to finish")
    open_dashboard(page, server)
    expect(page.locator("#preset")).to_have_value("seed")
    row = page.locator(f'#runs li[data-run-id="{own_id}"]')
    expect(row.locator(".run-preset")).to_contain_text("own network")

    page.locator("#preset").select_option("default")   # the run's preset comes back with it
    row.get_by_role("button", name=re.compile(r"^Edit the network of seed #")).click()
    expect(page.locator("#builder")).to_have_attribute("open", "")
    expect(page.locator("#builder-title")).to_be_focused()
    expect(page.locator("#preset")).to_have_value("seed")
    expect_shapes(page, ["4×12×12", "4×12×12", "576", "10"])
    assert sizes(page, 0) == ["4", "5", "2", "0"]
    assert json_spec(page) == normalize_spec(OWN)
    expect(page.locator("#builder-badge")).to_contain_text("changed")
    expect(page.locator("#builder-race")).to_have_text("Race it against seed")

    # One click: the network against seed's own, with the form's settings (one epoch).
    unfold(page)
    page.locator("#epochs").fill("1")
    page.locator("#builder-race").click()
    raced = wait_for(lambda: (runs := runs_on_server(api)[1:]) and len(runs) == 2 and runs, 10,
                     what="the two runs of the race")
    assert [run["preset"] for run in raced] == ["seed", "seed"]
    assert raced[0]["spec"] == normalize_spec(OWN) and raced[1]["spec"] == PRESETS["seed"].spec
    assert all(run["config"]["epochs"] == 1 for run in raced)
    page.locator("#loss-chart").scroll_into_view_if_needed()
    for run in raced:
        page.wait_for_function("(id) => window.cnnLive.drawnRuns().some((r) => r.id === id "
                               "&& r.lossPoints > 0)", arg=run["run_id"], timeout=20_000)
    legend = {run["id"]: run["label"] for run in hook(page, "drawnRuns")}
    assert legend[raced[0]["run_id"]].endswith("own network")
    assert "own network" not in legend[raced[1]["run_id"]]
    save_screenshot(page, "builder-race.png", full_page=True)
    for run in raced:
        api.post(f"/api/runs/{run['run_id']}/stop", json={})
