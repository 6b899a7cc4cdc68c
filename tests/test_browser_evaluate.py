"""The insight panels in a real Chromium (Playwright), against a real uvicorn server on the
real MNIST: after an epoch the confusion matrix counts every test image, a cell shows
its own images, the gallery shows mistakes, the weight and gradient histograms are
drawn; a page that connects mid-run ends up showing the same as one that watched; a new
run clears them; and the layer view shows every layer of the network, in order, from
the drawing to the ten probabilities.

The browser rule, fixtures and helpers are those of test_browser.py and
test_browser_draw.py (imported). Screenshots go to artifacts/ (git-ignored); with
CNN_LIVE_UPDATE_SCREENSHOT=1 the evaluation one also replaces docs/insight-evaluate.png.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from test_browser import (  # noqa: E402,F401  (fixtures are used by name)
    REPO, Problems, api, browser_context_args, browser_type_launch_args, hook, open_dashboard,
    save_screenshot, server, wait_hook,
)
from test_browser_draw import Predictor, draw_one, pad_box  # noqa: E402
from playwright.sync_api import Page, expect  # noqa: E402

from cnn.presets import PRESETS  # noqa: E402
from server_helpers import start_run, wait_for, wait_for_run_end  # noqa: E402

README_SCREENSHOT = REPO / "docs" / "insight-evaluate.png"
# One epoch of the default network on a small slice: a second or two on 2 cores, and
# wrong often enough (about 1 in 10) for every panel to have something to show.
EVALUATED_RUN = {"preset": "default", "epochs": 1, "train_size": 2000, "test_size": 500, "seed": 0}
GALLERY_SIZE = 36    # mistakes the evaluation event carries at most
CELL_LIMIT = 48      # images the page asks for per cell
# Many quick epochs (the seed preset: 100 test images), for a page that joins mid-run.
REPLAYED_RUN = {"preset": "seed", "epochs": 30, "seed": 1}


def weighted_layers(preset: str) -> list[int]:
    return [i for i, layer in enumerate(PRESETS[preset].spec["layers"])
            if layer["type"] in ("conv", "dense")]


def matrix(page: Page) -> list[list[int]]:
    """The counts the confusion matrix shows, row by row (true digit), read from the DOM."""
    return page.evaluate("""() => {
        const rows = [];
        for (const button of document.querySelectorAll('#confusion button.confusion-cell')) {
            const t = Number(button.dataset.label), p = Number(button.dataset.predicted);
            (rows[t] ||= [])[p] = Number(button.textContent.replace(/,/g, ''));
        }
        return rows;
    }""")


def digits(page: Page, selector: str) -> list[dict]:
    """The test images shown under `selector`: label, predicted, index, and whether the
    canvas has ink."""
    return page.evaluate("""(selector) => Array.from(
        document.querySelectorAll(`${selector} figure.digit`), (figure) => {
            const canvas = figure.querySelector('canvas');
            const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            let ink = 0;
            for (let i = 3; i < data.length; i += 4) if (data[i]) ink++;
            return {label: Number(figure.dataset.label), predicted: Number(figure.dataset.predicted),
                    index: Number(figure.dataset.index), ink, caption: figure.textContent.trim()};
        })""", selector)


def histogram_pixels(page: Page) -> list[dict]:
    """Every histogram canvas: its layer, kind, whether drawn, and its pixels."""
    return page.evaluate("""() => Array.from(
        document.querySelectorAll('#histograms canvas.hist-canvas'), (canvas) => ({
            layer: Number(canvas.closest('.hist-layer').dataset.layer),
            kind: canvas.dataset.kind, drawn: canvas.dataset.drawn === 'true' && !canvas.hidden,
            png: canvas.toDataURL(),
            painted: (() => {
                const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
                let n = 0;
                for (let i = 3; i < data.length; i += 4) if (data[i]) n++;
                return n;
            })(),
        }))""")


def wait_insight(page: Page, epoch: int) -> None:
    """Epoch `epoch`'s evaluation and histograms drawn: each panel is drawn while in
    view (issue 13), so each is scrolled to, as a person would."""
    page.locator("#evaluate").scroll_into_view_if_needed()
    page.wait_for_function("(epoch) => window.cnnLive.evaluation().epoch === epoch",
                           arg=epoch, timeout=30_000)
    page.locator("#weights").scroll_into_view_if_needed()
    page.wait_for_function("(epoch) => window.cnnLive.histograms().epoch === epoch",
                           arg=epoch, timeout=30_000)


def open_cell(page: Page, label: int, predicted: int) -> None:
    page.click(f'#confusion button[data-label="{label}"][data-predicted="{predicted}"]')
    page.wait_for_function("""([label, predicted]) => {
        const s = window.cnnLive.evaluation().selected;
        return s && s.label === label && s.predicted === predicted && s.loaded;
    }""", arg=[label, predicted], timeout=10_000)


def check_cell(page: Page, label: int, predicted: int, count: int) -> None:
    """The cell's images: as many as it counts (up to the page's limit), all of that cell."""
    open_cell(page, label, predicted)
    button = page.locator(f'#confusion button[data-label="{label}"][data-predicted="{predicted}"]')
    expect(button).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#confusion button[aria-pressed=true]")).to_have_count(1)
    shown = digits(page, "#confusion-images")
    assert len(shown) == min(count, CELL_LIMIT), (label, predicted, count, len(shown))
    assert all(d["label"] == label and d["predicted"] == predicted for d in shown), shown
    assert all(d["ink"] > 20 for d in shown), "a blank test image"
    assert len({d["index"] for d in shown}) == len(shown), "an image shown twice"
    expect(page.locator("#confusion-detail-title")).to_contain_text(
        f"True {label}, predicted {predicted}: {count} image")


# -- the tests -------------------------------------------------------------------------------

def test_the_page_loads_with_empty_insight_panels_and_no_console_errors(server, page):
    problems = Problems(page)
    open_dashboard(page, server)
    expect(page.locator("#confusion")).to_contain_text("appears after the first epoch")
    expect(page.locator("#confusion button")).to_have_count(0)
    expect(page.locator("#mistakes figure")).to_have_count(0)
    expect(page.locator("#histograms canvas")).to_have_count(0)
    expect(page.locator("#confusion-detail")).to_be_hidden()
    expect(page.locator("#evaluate-stamp")).to_have_text("")
    assert hook(page, "evaluation")["version"] == 0
    assert hook(page, "histograms")["version"] == 0
    page.wait_for_timeout(500)  # late requests and their errors
    assert problems.items == []


def test_after_an_epoch_the_matrix_its_cells_the_mistakes_and_the_histograms_are_shown(
        server, page, api):
    problems = Problems(page)
    open_dashboard(page, server)
    run_id = start_run(api, **EVALUATED_RUN)["run_id"]
    wait_for_run_end(api)
    wait_insight(page, 1)
    test_total = EVALUATED_RUN["test_size"]

    # The matrix: 10 x 10 counts of every test image, rows by the true digit.
    expect(page.locator("#confusion button.confusion-cell")).to_have_count(100)
    expect(page.locator("#evaluate-stamp")).to_have_text("epoch 1")
    counts = matrix(page)
    assert len(counts) == 10 and all(len(row) == 10 for row in counts)
    assert sum(map(sum, counts)) == test_total
    assert hook(page, "evaluation")["total"] == test_total and hook(page, "evaluation")["runId"] == run_id
    right = sum(counts[d][d] for d in range(10))
    epoch = api.get("/api/runs").json()[0]["epochs"][0]
    assert right == epoch["test_correct"], "the diagonal is not the test images read right"
    expect(page.locator("#confusion-summary")).to_contain_text(f"{right} of {test_total}")
    cell = page.locator('#confusion button[data-label="3"][data-predicted="5"]')
    expect(cell).to_have_attribute("aria-label", f"true 3, predicted 5: {counts[3][5]} "
                                                 f"image{'' if counts[3][5] == 1 else 's'}")
    expect(page.locator("#confusion button.is-diagonal")).to_have_count(10)
    assert page.evaluate("""() => Array.from(document.querySelectorAll('#confusion .is-diagonal'),
        (b) => b.dataset.label === b.dataset.predicted).every(Boolean)""")
    diagonal_colour = page.locator('#confusion button[data-label="1"][data-predicted="1"]') \
        .evaluate("(b) => getComputedStyle(b).backgroundColor")
    wrong = max(((t, p) for t in range(10) for p in range(10) if t != p), key=lambda c: counts[c[0]][c[1]])
    wrong_colour = page.locator(f'#confusion button[data-label="{wrong[0]}"][data-predicted="{wrong[1]}"]') \
        .evaluate("(b) => getComputedStyle(b).backgroundColor")
    assert diagonal_colour != wrong_colour

    # The gallery: the most confident mistakes, every one wrong.
    misclassified = test_total - right
    assert misclassified > 0, "the run made no mistake: the gallery cannot be checked"
    expect(page.locator("#mistakes-count")).to_have_attribute("data-count", str(misclassified))
    expect(page.locator("#mistakes-count")).to_contain_text(f"{misclassified} of {test_total}")
    gallery = digits(page, "#mistakes")
    assert len(gallery) == min(GALLERY_SIZE, misclassified)
    assert all(d["label"] != d["predicted"] for d in gallery), gallery
    assert all(d["ink"] > 20 for d in gallery), "a blank test image"
    assert all(re.fullmatch(rf"{d['label']}→{d['predicted']} \d+%", d["caption"]) for d in gallery)

    # The histograms: every conv and dense layer, weights and gradients, drawn.
    layers = weighted_layers("default")
    expect(page.locator("#histograms .hist-layer")).to_have_count(len(layers))
    charts = histogram_pixels(page)
    assert sorted({c["layer"] for c in charts}) == layers
    assert sorted(c["kind"] for c in charts) == sorted(["gradients", "weights"] * len(layers))
    assert all(c["drawn"] and c["painted"] > 100 for c in charts), charts
    expect(page.locator("#histograms-stamp")).to_have_text("epoch 1")

    # A cell's images: the largest mistake, then the diagonal (more than the limit).
    check_cell(page, *wrong, counts[wrong[0]][wrong[1]])
    check_cell(page, 1, 1, counts[1][1])

    # By keyboard: the matrix is one tab stop, the arrow keys move, Enter opens a cell.
    page.focus('#confusion button[data-label="1"][data-predicted="1"]')
    expect(page.locator("#confusion button[tabindex='0']")).to_have_count(1)
    expect(page.locator('#confusion button[data-label="1"][data-predicted="1"]')) \
        .to_have_attribute("tabindex", "0")
    page.keyboard.press("Home")
    page.keyboard.press("ArrowUp")
    for key in ["ArrowDown"] * wrong[0] + ["ArrowRight"] * wrong[1]:
        page.keyboard.press(key)
    focused = page.evaluate("""() => [document.activeElement.dataset.label,
                                      document.activeElement.dataset.predicted]""")
    assert focused == [str(wrong[0]), str(wrong[1])]
    expect(page.locator("#confusion button[tabindex='0']")).to_have_count(1)
    page.keyboard.press("Enter")
    page.wait_for_function("""([label, predicted]) => {
        const s = window.cnnLive.evaluation().selected;
        return s && s.label === label && s.predicted === predicted && s.loaded;
    }""", arg=list(wrong), timeout=10_000)
    check_cell(page, *wrong, counts[wrong[0]][wrong[1]])  # clicked again: the same images
    shot = save_screenshot(page.locator("#evaluate"), "insight-evaluate.png")
    if os.environ.get("CNN_LIVE_UPDATE_SCREENSHOT") == "1":
        README_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, README_SCREENSHOT)
    save_screenshot(page.locator("#weights"), "insight-histograms.png")

    # A switch to the dark theme repaints the charts in its colours (nothing else changes).
    light, version = histogram_pixels(page), hook(page, "histograms")["version"]
    page.emulate_media(color_scheme="dark")
    page.wait_for_function("() => document.documentElement.dataset.theme === 'dark'")
    wait_for(lambda: histogram_pixels(page) != light, 5, what="the histograms to be repainted")
    dark = histogram_pixels(page)
    assert all(d["png"] != l["png"] for d, l in zip(dark, light))
    assert [(c["layer"], c["kind"], c["drawn"]) for c in dark] == \
        [(c["layer"], c["kind"], c["drawn"]) for c in light]
    assert matrix(page) == counts and hook(page, "histograms")["version"] == version
    save_screenshot(page.locator("#evaluate"), "insight-evaluate-dark.png")
    assert problems.items == []


def test_a_page_joining_mid_run_shows_what_a_watching_page_shows_and_a_new_run_clears_it(
        server, context, page, api):
    watcher, late = page, context.new_page()
    problems = Problems(late)
    open_dashboard(watcher, server)
    start_run(api, **REPLAYED_RUN)
    wait_for(lambda: api.get("/api/status").json()["epoch"] >= 5, 20, what="a few epochs")
    open_dashboard(late, server)
    assert api.get("/api/status").json()["state"] == "running", \
        "the run ended before the page joined: the test needs a longer run"

    wait_for_run_end(api)
    epochs = REPLAYED_RUN["epochs"]
    for p in (watcher, late):
        wait_insight(p, epochs)
    assert matrix(late) == matrix(watcher)
    assert sum(map(sum, matrix(late))) == PRESETS["seed"].config.test_size
    assert digits(late, "#mistakes") == digits(watcher, "#mistakes")
    assert histogram_pixels(late) == histogram_pixels(watcher)
    expect(late.locator("#mistakes-count")).to_have_text(watcher.locator("#mistakes-count").inner_text())

    # A new run: the panels are emptied at its start. Paused before its first epoch
    # (60,000 images) can end, it shows only its start-of-run histograms.
    second = start_run(api, preset="default", epochs=1)
    assert api.post("/api/runs/current/pause", json={}).status_code == 200
    for p in (watcher, late):
        p.wait_for_function("(id) => window.cnnLive.histograms().runId === id",
                            arg=second["run_id"], timeout=15_000)
        expect(p.locator("#confusion button")).to_have_count(0)
        expect(p.locator("#confusion")).to_contain_text("appears after the first epoch")
        expect(p.locator("#mistakes figure")).to_have_count(0)
        expect(p.locator("#mistakes-count")).to_have_text("")
        expect(p.locator("#evaluate-stamp")).to_have_text("")
        expect(p.locator("#histograms-stamp")).to_have_text("start of the run")
        expect(p.locator("#histograms .hist-layer")).to_have_count(len(weighted_layers("default")))
        expect(p.locator("#histograms .hist-gradients .hist-missing").first).to_be_visible()
        assert hook(p, "evaluation")["epoch"] is None
    assert api.post("/api/runs/current/stop", json={}).status_code == 200
    wait_for_run_end(api)
    late.close()  # before the server stops: its event stream would hold uvicorn up
    assert problems.items == []


def test_the_layer_view_shows_every_layer_in_order_from_the_drawing_to_the_answer(server, page):
    problems = Problems(page)
    predictor = Predictor(page)
    open_dashboard(page, server)
    pad_box(page)
    draw_one(page)
    predictor.settle(page)
    page.wait_for_function("() => window.cnnLive.layerStages().length > 0")

    # The bundled model that answers a fresh server is the default network.
    kinds = ["input"] + [layer["type"] for layer in PRESETS["default"].spec["layers"]] + ["output"]
    stages = hook(page, "layerStages")
    assert [s["kind"] for s in stages] == kinds, stages
    assert [s["layer"] for s in stages[1:-1]] == list(range(len(kinds) - 2))
    items = page.locator("#feature-maps ol.pipeline > li.stage")
    expect(items).to_have_count(len(kinds))
    assert items.evaluate_all("(els) => els.map((el) => el.dataset.kind)") == kinds
    titles = items.locator(".fmap-layer-title").all_inner_texts()
    assert [t.split()[0] for t in titles] == [str(i + 1) for i in range(len(kinds))], titles

    # Every stage drawn: maps with ink, a filter beside every conv map, the dense values
    # as bars, and the ten probabilities with the answer on top.
    painted = page.evaluate("""() => Array.from(document.querySelectorAll('#feature-maps li.stage'),
        (stage) => {
            const ink = (canvas) => {
                const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
                let n = 0;
                for (let i = 3; i < data.length; i += 4) if (data[i]) n++;
                return n;
            };
            const canvases = Array.from(stage.querySelectorAll('canvas'));
            return {kind: stage.dataset.kind,
                    maps: stage.querySelectorAll('canvas.fmap-canvas').length,
                    filters: stage.querySelectorAll('canvas.fmap-filter').length,
                    inked: canvases.filter((c) => ink(c) > 0).length,
                    canvases: canvases.length,
                    bars: stage.querySelectorAll('.output-bar').length};
        })""")
    spec_layers = PRESETS["default"].spec["layers"]
    for stage, layer in zip(painted[1:-1], spec_layers):
        if layer["type"] == "conv":
            assert stage["maps"] == stage["filters"] == layer["filters"], stage
        if layer["type"] in ("dense", "flatten"):
            assert stage["canvases"] == 1, stage
    assert painted[0]["maps"] == 1
    assert all(s["inked"] > 0 for s in painted[:-1]), painted
    assert painted[-1]["bars"] == 10
    digit = int(page.locator("#prediction").text_content())
    expect(page.locator("#feature-maps .output-bar.is-top")).to_have_count(1)
    expect(page.locator("#feature-maps .output-bar.is-top")).to_have_attribute("data-digit", str(digit))
    save_screenshot(page.locator("#feature-maps"), "insight-layers.png")

    page.click("#draw-clear")
    expect(page.locator("#feature-maps li.stage")).to_have_count(0)
    assert hook(page, "layerStages") == []
    assert problems.items == []
