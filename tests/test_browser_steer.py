"""Steering a run and the page's looks, in a real Chromium (Playwright) against a real
uvicorn server on the real MNIST: the learning rate changed mid-run (marked on the loss
chart, also for a page that joins later; the next batches train with it), bad values
and a step while running answered with the server's message, "Step one epoch" from a
paused and from a finished run, the augmentation preview, the light/dark/system theme
(kept across a reload, applied before the page's modules run), and the downloads: a
run's metrics as CSV and JSON (also when reading needs the token) and the charts as PNG.

The browser rule, fixtures and helpers are those of test_browser.py (imported: without
a browser this module is skipped too, or fails under CNN_LIVE_REQUIRE_BROWSER=1).
Screenshots go to artifacts/; with CNN_LIVE_UPDATE_SCREENSHOT=1 the dark one mid-training
also replaces docs/dashboard-dark.png.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import struct
import sys
import zlib
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from test_browser import (  # noqa: E402,F401  (fixtures are used by name)
    ARTIFACTS, DESKTOP, REPO, Problems, api, browser_context_args, browser_type_launch_args, hook, open_dashboard,
    save_screenshot, server, unfold, wait_hook,
)
from playwright.sync_api import Page, expect  # noqa: E402

from app.run_record import DRAWINGS_FIELDS, EPOCH_FIELDS  # noqa: E402
from server_helpers import (LiveServer, StreamReader, make_app, start_run,  # noqa: E402
                            wait_for, wait_for_run_end)

DARK_SCREENSHOT = REPO / "docs" / "dashboard-dark.png"
SCREENSHOT_VIEWPORT = {"width": 1280, "height": 1160}
LIGHT_BACKGROUND = "rgb(244, 246, 249)"   # --bg of each theme in app.css
DARK_BACKGROUND = "rgb(14, 17, 23)"
DARK_SURFACE = "rgb(22, 27, 35)"  # the chosen theme in the toggle
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TOKEN = "steer-test-token"

# The default preset on 30,000 images: about 470 batches an epoch, a few seconds each
# on 2 cores, long enough to change the learning rate well inside the first epoch.
# Without the preset's first-epoch boost, the rate a batch trains at is the one steered.
STEERED_RUN = {"preset": "default", "epochs": 2, "train_size": 30000, "test_size": 2000,
               "lr_boost": 1.0}
NEW_LEARNING_RATE = 0.001
# One image per step: thousands of steps to pause in; always stopped by the test.
LONG_RUN = {"preset": "seed", "epochs": 200}


# -- helpers ------------------------------------------------------------------------------------

def state_of(api: httpx.Client) -> str:
    return api.get("/api/status").json()["state"]


def background(page: Page) -> str:
    return page.evaluate("() => getComputedStyle(document.body).backgroundColor")


def canvas_pixels(page: Page, selector: str) -> list[str]:
    return page.evaluate("""(selector) => Array.from(document.querySelectorAll(selector),
        (canvas) => canvas.toDataURL())""", selector)


def png_size_and_corner(data: bytes) -> tuple[int, int, tuple[int, ...]]:
    """(width, height, the top-left pixel) of an 8-bit RGB or RGBA PNG. The first pixel of
    the first row is stored as is whatever the row's filter (its neighbours count as 0)."""
    assert data[:8] == PNG_SIGNATURE, data[:8]
    width, height, depth, colour_type = struct.unpack(">IIBB", data[16:26])
    assert depth == 8 and colour_type in (2, 6), (depth, colour_type)
    chunks, at = [], 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        if kind == b"IDAT":
            chunks.append(data[at + 8:at + 8 + length])
        at += 12 + length
    pixels = zlib.decompress(b"".join(chunks))
    channels = 4 if colour_type == 6 else 3
    return width, height, tuple(pixels[1:1 + channels])


def download(page: Page, selector: str):
    """Click `selector`; the download it starts (name and bytes)."""
    with page.expect_download(timeout=10_000) as info:
        page.click(selector)
    item = info.value
    return item.suggested_filename, Path(item.path()).read_bytes()


def choose_theme(page: Page, theme: str) -> None:
    page.click(f"label:has(#theme-{theme})")
    expect(page.locator(f"#theme-{theme}")).to_be_checked()


def marker_labels(page: Page) -> list[str]:
    return [m["label"] for m in hook(page, "lossMarkers")]


# -- the learning rate, live --------------------------------------------------------------------

def test_the_learning_rate_changed_mid_run_is_marked_and_the_next_batches_use_it(
        server, page, api, context):
    problems = Problems(page)
    open_dashboard(page, server)
    expect(page.locator("#steer-apply")).to_be_disabled()  # nothing to steer yet

    reader = StreamReader(server.url, timeout=120).start_subscribed()
    start_run(api, **STEERED_RUN)
    expect(page.locator("#state")).to_have_text("running", timeout=10_000)
    expect(page.locator("#steer-apply")).to_be_enabled()
    expect(page.locator("#steer-lr")).to_have_value("0.003")  # the run's current value
    expect(page.locator("#steer-momentum-label")).to_contain_text("β₁")  # Adam's momentum
    # Well inside the first epoch (0.15 of the run is 0.3 of an epoch), so that the
    # marker stands apart from the start and batches follow before the epoch's end.
    page.wait_for_function("() => document.getElementById('progress').value >= 0.15",
                           timeout=30_000)

    unfold(page, "#steer")
    page.fill("#steer-lr", str(NEW_LEARNING_RATE))
    page.click("#steer-apply")
    wait_for(lambda: marker_labels(page), 10, what="the marker on the loss chart")
    assert marker_labels(page) == ["lr 0.003 → 0.001"]
    expect(page.locator("#steer-error")).to_be_hidden()
    expect(page.locator("#stat-lr")).to_have_text("0.001", timeout=10_000)

    # A page that joins now is sent the change with the run's history.
    late = context.new_page()
    open_dashboard(late, server)
    wait_for(lambda: hook(late, "lossMarkers") == hook(page, "lossMarkers"), 10,
             what="the late page's marker")
    late.close()

    wait_hook(page, "epochPoints", ">=", 1, timeout=60)
    choose_theme(page, "dark")
    page.set_viewport_size(SCREENSHOT_VIEWPORT)  # down to the steering controls
    page.wait_for_timeout(300)  # the charts' redraw in the new colours and size
    shot = save_screenshot(page, "steer-learning-rate-dark.png")
    if os.environ.get("CNN_LIVE_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, DARK_SCREENSHOT)
    page.set_viewport_size(DESKTOP)
    choose_theme(page, "system")

    wait_for_run_end(api, 90)
    events = [(r.event, r.json()) for r in reader.result(30)
              if r.event in ("batch", "epoch", "hyperparameters")]
    names = [name for name, _ in events]
    assert names.count("hyperparameters") == 1
    at = names.index("hyperparameters")
    change = events[at][1]
    assert change["previous"]["learning_rate"] == 0.003
    assert change["learning_rate"] == NEW_LEARNING_RATE
    # Every batch before the change trained with the old rate; every batch after it, up
    # to the epoch's end (where the preset's decay multiplies it), with the new one.
    epoch_end = names.index("epoch", at)
    batches_after = [data for name, data in events[at + 1:epoch_end] if name == "batch"]
    assert batches_after, "no batch between the change and the epoch's end"
    assert all(data["learning_rate"] == NEW_LEARNING_RATE for data in batches_after)
    assert all(data["learning_rate"] == 0.003 for name, data in events[:at] if name == "batch")
    # The marker sits where the change took effect, in epochs.
    (marker,) = hook(page, "lossMarkers")
    assert marker["x"] == change["global_step"] / change["steps"]
    expect(page.locator("#steer-apply")).to_be_disabled()  # finished: nothing to steer
    assert problems.items == []


def test_bad_values_and_a_step_while_running_show_the_servers_message(server, page, api):
    open_dashboard(page, server)
    start_run(api, **LONG_RUN)
    expect(page.locator("#state")).to_have_text("running", timeout=10_000)
    wait_hook(page, "lossPoints", ">", 0)  # training, not loading its data any more
    expect(page.locator("#steer-apply")).to_be_enabled()
    expect(page.locator("#step-epoch")).to_be_disabled()  # only paused or finished runs

    unfold(page, "#steer")
    page.fill("#steer-lr", "-0.5")
    page.click("#steer-apply")
    expect(page.locator("#steer-error")).to_be_visible()
    expect(page.locator("#steer-error")).to_contain_text("learning_rate")
    expect(page.locator("#steer-error")).to_contain_text("greater than 0")

    page.fill("#steer-lr", "")
    page.fill("#steer-momentum", "1")
    page.click("#steer-apply")
    expect(page.locator("#steer-error")).to_contain_text("momentum")
    expect(page.locator("#steer-error")).to_contain_text("less than 1")
    save_screenshot(page, "steer-bad-value.png")
    assert api.get("/api/status").json()["learning_rate"] == 2.0  # nothing changed
    assert marker_labels(page) == []

    # The page keeps the button disabled while running; sent anyway, the server says why.
    page.evaluate("""() => {
        const button = document.getElementById('step-epoch');
        button.removeAttribute('aria-disabled');
        button.click();
    }""")
    expect(page.locator("#step-error")).to_contain_text("pause it first")
    assert state_of(api) == "running"

    # A good value clears the message.
    page.fill("#steer-momentum", "0.5")
    page.click("#steer-apply")
    expect(page.locator("#steer-error")).to_be_hidden()
    wait_for(lambda: marker_labels(page) == ["momentum 0 → 0.5"], 10, what="the momentum marker")
    api.post("/api/runs/current/stop", json={})
    wait_for_run_end(api)


# -- one epoch more -----------------------------------------------------------------------------

def test_step_one_epoch_from_a_paused_run_trains_to_the_epoch_end_and_pauses_again(
        server, page, api):
    open_dashboard(page, server)
    start_run(api, **LONG_RUN)
    wait_hook(page, "epochPoints", ">=", 1, timeout=20)
    page.click("#pause")
    expect(page.locator("#state")).to_have_text("paused")
    expect(page.locator("#step-epoch")).to_be_enabled()
    page.wait_for_timeout(300)  # the epoch in flight, if one ended as the pause came
    done = len(api.get("/api/runs").json()[0]["epochs"])
    wait_hook(page, "epochPoints", "===", done)

    unfold(page, "#steer")
    for expected in (done + 1, done + 2):  # from mid-epoch, then from an epoch's start
        page.click("#step-epoch")
        wait_hook(page, "epochPoints", "===", expected, timeout=20)
        expect(page.locator("#state")).to_have_text("paused", timeout=10_000)
        wait_for(lambda: state_of(api) == "paused", 10, what="the run to pause again")
        page.wait_for_timeout(500)
        assert hook(page, "epochPoints") == expected, "more than one epoch was trained"
        assert len(api.get("/api/runs").json()[0]["epochs"]) == expected
        expect(page.locator("#step-epoch")).to_be_enabled()
        expect(page.locator("#step-error")).to_be_hidden()
    save_screenshot(page, "steer-step-paused.png")
    page.click("#stop")
    wait_for_run_end(api)


def test_step_one_epoch_from_a_finished_run_trains_exactly_one_more(server, page, api):
    open_dashboard(page, server)
    start_run(api, preset="seed", epochs=2)
    wait_for_run_end(api)
    expect(page.locator("#state")).to_have_text("finished", timeout=10_000)
    wait_hook(page, "epochPoints", "===", 2)
    expect(page.locator("#step-epoch")).to_be_enabled()

    unfold(page, "#steer")
    page.click("#step-epoch")
    wait_hook(page, "epochPoints", "===", 3, timeout=20)
    expect(page.locator("#state")).to_have_text("finished", timeout=10_000)
    status = wait_for_run_end(api)
    assert status["state"] == "finished" and status["epochs"] == 3
    (run,) = api.get("/api/runs").json()
    assert [e["epoch"] for e in run["epochs"]] == [1, 2, 3]
    expect(page.locator("#progress-text")).to_contain_text("epoch 3/3")
    expect(page.locator("#progress-text")).to_contain_text("done in")
    expect(page.locator("#runs")).to_contain_text("3/3 epochs", timeout=5_000)
    save_screenshot(page, "steer-step-finished.png")


# -- augmentation ---------------------------------------------------------------------------------

def test_the_augmentation_preview_shows_digits_and_follows_the_settings(server, page, api):
    problems = Problems(page)
    open_dashboard(page, server)
    # The default preset's settings, prefilled.
    expect(page.locator("#augment-shift")).to_have_value("2")
    expect(page.locator("#augment-rotation")).to_have_value("10")
    wait_hook(page, "augmentVersion", ">=", 1)
    originals = "#augment-grid canvas.augment-original"
    augmented = "#augment-grid canvas.augment-augmented"
    expect(page.locator(originals)).to_have_count(12)
    expect(page.locator(augmented)).to_have_count(12)
    before, distorted = canvas_pixels(page, originals), canvas_pixels(page, augmented)
    assert distorted != before

    version = hook(page, "augmentVersion")
    unfold(page)
    page.fill("#augment-rotation", "40")
    page.fill("#augment-stroke", "1")
    wait_hook(page, "augmentVersion", ">", version)
    expect(page.locator("#augment-stamp")).to_contain_text("rotation ±40°")
    assert canvas_pixels(page, originals) == before
    assert canvas_pixels(page, augmented) != distorted
    save_screenshot(page, "steer-augmentation.png", full_page=True)

    # Everything off: the copies are the originals.
    for field in ("shift", "scale", "rotation", "stroke"):
        page.fill(f"#augment-{field}", "0")
    wait_for(lambda: canvas_pixels(page, augmented) == before, 10,
             what="the unaugmented copies")

    # The form sends the settings with the run.
    page.select_option("#preset", "seed")
    page.fill("#epochs", "1")
    page.fill("#augment-shift", "1.5")
    page.fill("#augment-stroke", "0.5")
    page.click("#start")
    expect(page.locator("#state")).not_to_have_text("idle", timeout=10_000)
    config = api.get("/api/status").json()["config"]
    assert config["augment_shift"] == 1.5 and config["augment_stroke"] == 0.5
    assert config["augment_rotation"] == 0
    wait_for_run_end(api)
    assert problems.items == []


# -- themes -----------------------------------------------------------------------------------------

def test_the_theme_toggle_changes_the_colours_and_is_kept_across_a_reload(server, page, api):
    start_run(api, preset="seed", epochs=2)  # something on the charts
    wait_for_run_end(api)
    open_dashboard(page, server)
    wait_hook(page, "epochPoints", "===", 2)
    expect(page.locator("#theme-system")).to_be_checked()
    assert background(page) == LIGHT_BACKGROUND  # the browser asks for light
    chart = canvas_pixels(page, "#loss-chart canvas")

    choose_theme(page, "dark")
    assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"
    assert background(page) == DARK_BACKGROUND
    wait_for(lambda: canvas_pixels(page, "#loss-chart canvas") != chart, 5,
             what="the loss chart redrawn in the dark colours")
    save_screenshot(page, "theme-dark.png")

    page.reload()
    expect(page.locator("#connection")).to_have_class(re.compile(r"\bconnected\b"))
    expect(page.locator("#theme-dark")).to_be_checked()
    assert background(page) == DARK_BACKGROUND

    choose_theme(page, "light")
    assert background(page) == LIGHT_BACKGROUND
    page.emulate_media(color_scheme="dark")  # a choice beats the system's setting
    assert background(page) == LIGHT_BACKGROUND
    save_screenshot(page, "theme-light.png")

    choose_theme(page, "system")  # follows the system, also when it changes
    assert background(page) == DARK_BACKGROUND
    page.emulate_media(color_scheme="light")
    wait_for(lambda: background(page) == LIGHT_BACKGROUND, 5, what="the light theme")


def test_the_saved_theme_applies_before_the_pages_modules_run(server, page):
    open_dashboard(page, server)
    choose_theme(page, "dark")
    held = []
    page.route("**/static/dist/app.js", lambda route: held.append(route))
    # (The page's DOMContentLoaded waits for its module scripts: only wait for the answer.)
    page.reload(wait_until="commit")
    page.wait_for_function("() => document.body && getComputedStyle(document.body)"
                           ".backgroundColor !== 'rgba(0, 0, 0, 0)'")
    # Parsed and styled, while the bundle has not even arrived: already dark.
    assert held, "the bundle was not asked for"
    assert page.evaluate("() => window.cnnLive === undefined")
    assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"
    assert background(page) == DARK_BACKGROUND
    expect(page.locator("#theme-dark + span")).to_have_css("background-color", DARK_SURFACE)
    save_screenshot(page, "theme-before-modules.png")  # dark, empty: no light flash
    held[0].continue_()
    expect(page.locator("#connection")).to_have_class(re.compile(r"\bconnected\b"))
    page.unroute("**/static/dist/app.js")


# -- exports ------------------------------------------------------------------------------------------

def check_metrics_downloads(page: Page, run_id: str) -> None:
    """The run's CSV and JSON buttons download its metrics."""
    entry = f'#runs li.run[data-run-id="{run_id}"]'
    name, data = download(page, f"{entry} button.run-csv")
    assert name == f"cnn-live-{run_id}.csv"
    rows = list(csv.reader(io.StringIO(data.decode())))
    assert tuple(rows[0]) == EPOCH_FIELDS + DRAWINGS_FIELDS
    assert [row[0] for row in rows[1:]] == ["1", "2"]

    name, data = download(page, f"{entry} button.run-json")
    assert name == f"cnn-live-{run_id}.json"
    metrics = json.loads(data)
    assert {"run_id", "preset", "config", "spec", "epochs", "batches",
            "hyperparameter_changes"} <= set(metrics)
    assert metrics["run_id"] == run_id and len(metrics["epochs"]) == 2
    assert metrics["batches"] and {"loss", "learning_rate"} <= set(metrics["batches"][0])


def test_the_metrics_and_the_charts_download_as_csv_json_and_png(server, page, api):
    problems = Problems(page)
    run_id = start_run(api, preset="seed", epochs=2)["run_id"]
    wait_for_run_end(api)
    open_dashboard(page, server)
    wait_hook(page, "epochPoints", "===", 2)
    expect(page.locator(f'#runs li.run[data-run-id="{run_id}"]')).to_have_count(1)
    check_metrics_downloads(page, run_id)

    for chart in ("loss", "accuracy"):
        name, data = download(page, f"#{chart}-png")
        assert name == f"cnn-live-{run_id}-{chart}.png"
        width, height, corner = png_size_and_corner(data)
        box = page.locator(f"#{chart}-chart canvas").bounding_box()
        assert width > box["width"] and height > box["height"]  # the chart plus a frame
        # Filled with the card's colour (white in the light theme), not transparent.
        assert corner[:3] == (255, 255, 255) and corner[3:] in ((), (255,)), corner
        (ARTIFACTS / f"export-{chart}.png").write_bytes(data)
    save_screenshot(page, "export.png")
    assert problems.items == []


def test_the_metrics_download_when_reading_needs_the_token(mnist_dir, page):
    with LiveServer(make_app(mnist_dir, token=TOKEN, token_read=True)) as server:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=server.url, headers=auth, timeout=10) as api:
            run_id = start_run(api, preset="seed", epochs=2)["run_id"]
            wait_for_run_end(api)
            # Without the token the metrics are closed: a plain link could not fetch them.
            assert httpx.get(f"{server.url}/api/runs/{run_id}/metrics.csv").status_code == 401

            page.goto(server.url + "/")
            expect(page.locator("#token-dialog")).to_be_visible(timeout=10_000)
            page.fill("#token-input", TOKEN)
            page.click("#token-submit")
            expect(page.locator("#connection")).to_have_class(re.compile(r"\bconnected\b"),
                                                              timeout=10_000)
            expect(page.locator(f'#runs li.run[data-run-id="{run_id}"]')).to_have_count(
                1, timeout=10_000)
            check_metrics_downloads(page, run_id)
            expect(page.locator("#runs-error")).to_be_hidden()
            save_screenshot(page, "export-token.png")
        page.close()  # before the server stops: its event stream would hold uvicorn up
