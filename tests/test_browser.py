"""The dashboard in a real Chromium (Playwright), against a real uvicorn server on the
real MNIST: the page loads cleanly, a run started from the page is drawn live, pause,
resume and stop work from the page, a page reloaded mid-run shows the whole history,
the layout fits a phone, and the connection indicator notices a server going away.

The browser is the system Chromium (Playwright's own download cannot work here). When
it is missing the module is skipped, unless CNN_LIVE_REQUIRE_BROWSER=1 (as in CI): then
the module fails. Screenshots go to artifacts/ (git-ignored); with
CNN_LIVE_UPDATE_SCREENSHOT=1 the mid-training one also replaces docs/dashboard.png.

The page's debug hook, window.cnnLive, counts what was last drawn and may lag a frame:
every check of it polls. The page's CSP forbids eval, so every expression given to
wait_for_function or evaluate is written as a function.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
import threading
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/lib/chromium/chromium")
# Keeps Chromium off the (closed) network: only the test server on 127.0.0.1 resolves.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]


def _why_no_browser() -> str | None:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return (f"no Chromium at {CHROMIUM} (install it with `apt-get install -y chromium`; "
                "Playwright's own browser download does not work here)")
    try:
        import playwright.sync_api  # noqa: F401
        import pytest_playwright  # noqa: F401
    except ImportError as exc:
        return f"Playwright is not installed ({exc}); run `pip install -e \".[test]\"`"
    return None


_NO_BROWSER = _why_no_browser()
if _NO_BROWSER is not None:
    if os.environ.get("CNN_LIVE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"CNN_LIVE_REQUIRE_BROWSER=1 but the browser tests cannot run: {_NO_BROWSER}",
                    pytrace=False)
    pytest.skip(f"browser tests skipped: {_NO_BROWSER}", allow_module_level=True)

import httpx  # noqa: E402
from playwright.sync_api import Page, expect  # noqa: E402

from cnn.presets import PRESETS  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from server_helpers import LiveServer, make_app, start_run, unfold, wait_for  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts"
README_SCREENSHOT = REPO / "docs" / "dashboard.png"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

# Long enough to watch, short enough for the file to stay well under a minute (2 cores):
# the default preset on all 60,000 images takes about 6 s an epoch; the seed preset
# (one image per step, 1000 images) about 0.17 s an epoch.
WATCHED_RUN_EPOCHS = 2
REPLAYED_RUN = {"preset": "seed", "epochs": 30}
PAUSED_RUN_EPOCHS = 200  # never runs out: the test stops it


# -- the browser (pytest-playwright's fixtures, on the system Chromium) ----------------------

@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": DESKTOP, "color_scheme": "light"}


# -- the server ------------------------------------------------------------------------------

@pytest.fixture
def server(mnist_dir):
    """The real app on a real socket. Request it before `page`, so that the page (and
    its open event stream) closes first and uvicorn stops at once."""
    with LiveServer(make_app(mnist_dir)) as live:
        yield live


@pytest.fixture
def api(server):
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


class ReusableLiveServer(LiveServer):
    """A LiveServer whose address can be bound again at once by another one
    (SO_REUSEADDR on both, as uvicorn's own sockets have), even while connections of the
    first linger: a server that goes away and comes back on the same address."""

    def __init__(self, app, port: int = 0) -> None:
        super().__init__(app)
        self.socket.close()
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", port))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       name="uvicorn-test-server", daemon=True)


# -- reading the page ------------------------------------------------------------------------

class Problems:
    """Everything that would show in DevTools as a problem: console errors, uncaught
    exceptions, failed requests and HTTP error answers."""

    def __init__(self, page: Page) -> None:
        self.items: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.items.append(f"uncaught exception: {error}"))
        page.on("requestfailed", lambda request: self.items.append(
            f"request failed: {request.method} {request.url}: {request.failure}"))
        page.on("response", self._response)

    def _console(self, message) -> None:
        if message.type == "error":
            self.items.append(f"console error: {message.text} ({message.location.get('url')})")

    def _response(self, response) -> None:
        if response.status >= 400:
            self.items.append(f"HTTP {response.status}: {response.request.method} {response.url}")


def hook(page: Page, name: str):
    """window.cnnLive.<name>(): what the page last drew."""
    return page.evaluate(f"() => window.cnnLive.{name}()")


def wait_hook(page: Page, name: str, condition: str, value, timeout: float = 15.0) -> None:
    """Wait until `window.cnnLive.<name>() <condition> value` holds in the page."""
    page.wait_for_function(f"(value) => window.cnnLive.{name}() {condition} value",
                           arg=value, timeout=timeout * 1000)


def open_dashboard(page: Page, server: LiveServer) -> None:
    page.goto(server.url + "/")
    expect(page.locator("#connection")).to_have_class(re.compile(r"\bconnected\b"), timeout=10_000)


def filter_pixels(page: Page) -> list[str]:
    """The pixels of every filter tile, as PNG data URLs."""
    return page.evaluate("""() => Array.from(
        document.querySelectorAll('#filters canvas.filter-canvas[data-layer]'),
        (canvas) => canvas.toDataURL())""")


def server_progress(api: httpx.Client) -> tuple[int, int]:
    status = api.get("/api/status").json()
    return status["epoch"], status["step"]


def save_screenshot(page: Page, name: str, **options) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), type="png", **options)
    assert path.stat().st_size > 0
    return path


# -- the tests -------------------------------------------------------------------------------

def test_the_page_loads_cleanly_with_the_presets_idle_and_connected(server, page):
    problems = Problems(page)
    open_dashboard(page, server)

    options = page.locator("#preset option")
    expect(options).to_have_count(len(PRESETS))
    assert [options.nth(i).get_attribute("value") for i in range(len(PRESETS))] == list(PRESETS)
    expect(page.locator("#preset")).to_have_value("default")
    expect(page.locator("#epochs")).to_have_value(str(PRESETS["default"].config.epochs))
    expect(page.locator("#state")).to_have_text("idle")
    expect(page.locator("#connection")).to_have_text("connected")
    expect(page.locator("#start")).to_be_enabled()
    expect(page.locator("#pause")).to_be_disabled()
    expect(page.locator("#stop")).to_be_disabled()
    expect(page.locator("#runs")).to_contain_text("No runs yet.")
    expect(page.locator("#data-missing")).to_be_hidden()
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#form-error")).to_be_hidden()
    assert hook(page, "lossPoints") == 0 and hook(page, "epochPoints") == 0

    page.wait_for_timeout(500)  # late requests (runs list, status) and their errors
    assert problems.items == []


def test_a_run_started_from_the_page_is_drawn_live_and_listed_when_finished(server, page, api):
    problems = Problems(page)
    open_dashboard(page, server)

    page.select_option("#preset", "default")
    unfold(page)
    page.fill("#epochs", str(WATCHED_RUN_EPOCHS))
    page.click("#start")
    expect(page.locator("#state")).to_have_text("running", timeout=10_000)
    run_id = api.get("/api/status").json()["run_id"]
    assert run_id

    # The loss chart gains points as batches come in.
    wait_hook(page, "lossPoints", ">", 0)
    first = hook(page, "lossPoints")
    wait_hook(page, "lossPoints", ">", first)

    # The filter tiles are redrawn with new weights (while in view: issue 13).
    page.locator("#filters").scroll_into_view_if_needed()
    wait_hook(page, "filterVersion", ">", 0)
    version, pixels = hook(page, "filterVersion"), filter_pixels(page)
    assert pixels, "no filter canvases were drawn"
    wait_hook(page, "filterVersion", ">=", version + 2)
    assert hook(page, "filterVersion") > version
    assert filter_pixels(page) != pixels, "the filter images did not change during training"

    expect(page.locator("#progress-text")).to_have_text(re.compile(r"ETA \d+:\d\d"))

    # Mid-training, with an epoch on the accuracy chart (back in view): the screenshot.
    page.locator("#accuracy-chart").scroll_into_view_if_needed()
    wait_hook(page, "epochPoints", ">=", 1, timeout=30)
    page.wait_for_function("() => document.getElementById('progress').value >= 0.6",
                           timeout=15_000)
    expect(page.locator("#state")).to_have_text("running")
    # The runs list follows the run's epochs while it trains, not only at its end.
    expect(page.locator("#runs")).to_contain_text(f"1/{WATCHED_RUN_EPOCHS} epochs", timeout=5_000)
    shot = save_screenshot(page, "dashboard-training.png")
    if os.environ.get("CNN_LIVE_UPDATE_SCREENSHOT") == "1":
        README_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, README_SCREENSHOT)

    expect(page.locator("#state")).to_have_text("finished", timeout=40_000)
    wait_hook(page, "epochPoints", "===", WATCHED_RUN_EPOCHS)
    expect(page.locator("#progress-text")).to_contain_text("done in")
    expect(page.locator("#pause")).to_be_disabled()
    expect(page.locator("#start")).to_be_enabled()
    entry = page.locator(f'#runs li.run[data-run-id="{run_id}"]')
    expect(entry).to_have_count(1)
    expect(entry.locator(f'input.run-toggle[data-run-id="{run_id}"]')).to_have_count(1)
    expect(entry).to_contain_text("default")
    expect(entry).to_contain_text(f"finished · {WATCHED_RUN_EPOCHS}/{WATCHED_RUN_EPOCHS} epochs")
    assert problems.items == []


def test_a_wide_layer_shows_its_first_filters_and_says_how_many_of_all(server, page, api):
    problems = Problems(page)
    open_dashboard(page, server)
    # More filters than the 32 a layer's event carries (app/filter_images.py), and in the
    # second layer more input channels (40) than the 16 it carries.
    start_run(api, preset="default", filters=[40, 48], epochs=1, train_size=500, test_size=100)
    page.locator("#filters").scroll_into_view_if_needed()   # drawn while in view
    wait_hook(page, "filterVersion", ">", 0)
    layers = page.locator("#filters .filter-layer")
    expect(layers).to_have_count(2)
    for i, text in enumerate(("showing 32 of 40 filters 3×3 · 1 input channel",
                              "showing 32 of 48 filters 3×3 · 40 input channels (first 16 shown)")):
        expect(layers.nth(i).locator(".filter-layer-meta")).to_contain_text(text)
        expect(layers.nth(i).locator("canvas.filter-canvas")).to_have_count(32)
    # Every tile painted: more than one colour in each.
    colours = page.evaluate("""() => Array.from(
        document.querySelectorAll('#filters canvas.filter-canvas'), (canvas) => {
          const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
          const seen = new Set();
          for (let i = 0; i < data.length; i += 4) seen.add(`${data[i]},${data[i + 1]},${data[i + 2]}`);
          return seen.size;
        })""")
    assert len(colours) == 64 and min(colours) > 1, colours
    expect(page.locator("#state")).to_have_text("finished", timeout=30_000)
    assert problems.items == []


def test_pause_and_resume_from_the_page_hold_and_continue_the_run_and_stop_ends_it(
        server, page, api):
    open_dashboard(page, server)
    page.select_option("#preset", "seed")
    unfold(page)
    page.fill("#epochs", str(PAUSED_RUN_EPOCHS))
    page.click("#start")
    expect(page.locator("#state")).to_have_text("running", timeout=10_000)
    wait_hook(page, "lossPoints", ">", 0)
    expect(page.locator("#pause")).to_have_text("Pause")

    page.click("#pause")
    expect(page.locator("#state")).to_have_text("paused")
    expect(page.locator("#pause")).to_have_text("Resume")
    expect(page.locator("#progress-text")).to_contain_text("paused")
    assert api.get("/api/status").json()["state"] == "paused"
    page.wait_for_timeout(300)  # the batch in flight when the pause came lands and is drawn
    points, progress = hook(page, "lossPoints"), server_progress(api)
    page.wait_for_timeout(1000)
    assert hook(page, "lossPoints") == points, "the loss chart grew while paused"
    assert server_progress(api) == progress, "training advanced while paused"

    page.click("#pause")  # now labelled Resume
    expect(page.locator("#state")).to_have_text("running")
    expect(page.locator("#pause")).to_have_text("Pause")
    wait_hook(page, "lossPoints", ">", points)
    wait_for(lambda: server_progress(api) > progress, 10, what="training to go on after resume")

    page.click("#stop")
    expect(page.locator("#state")).to_have_text("finished", timeout=10_000)
    expect(page.locator("#progress-text")).to_contain_text("stopped after")
    expect(page.locator("#pause")).to_be_disabled()
    expect(page.locator("#stop")).to_be_disabled()
    status = api.get("/api/status").json()
    assert status["state"] == "finished"
    (run,) = api.get("/api/runs").json()
    assert run["outcome"] == "stopped" and len(run["epochs"]) < PAUSED_RUN_EPOCHS


def test_a_page_reloaded_mid_run_shows_the_whole_history(server, context, page, api):
    watcher, reloaded = page, context.new_page()
    open_dashboard(watcher, server)
    open_dashboard(reloaded, server)

    start_run(api, **REPLAYED_RUN)
    wait_for(lambda: server_progress(api)[0] >= 5, 20, what="a few epochs")
    streams = []
    reloaded.on("request", lambda request: "/api/events" in request.url and streams.append(request.url))
    reloaded.reload()
    expect(reloaded.locator("#connection")).to_have_class(re.compile(r"\bconnected\b"))
    # The page asks for its replayed history's batches grouped, one event a run (one
    # pass on a slow phone); the curves below must be the same as the watcher's.
    assert streams and all("group_batches=true" in url for url in streams), streams
    status = api.get("/api/status").json()
    assert status["state"] == "running" and status["epoch"] < REPLAYED_RUN["epochs"], \
        "the run ended before the page was reloaded: the test needs a longer run"
    wait_hook(reloaded, "epochPoints", ">=", 5)  # the history so far, replayed at once

    for p in (watcher, reloaded):
        expect(p.locator("#state")).to_have_text("finished", timeout=30_000)
        wait_hook(p, "epochPoints", "===", REPLAYED_RUN["epochs"])
    wait_for(lambda: hook(watcher, "lossPoints") == hook(reloaded, "lossPoints")
             == hook(watcher, "lossPoints"), 5, what="both pages to draw the same loss points")
    assert hook(reloaded, "lossPoints") > REPLAYED_RUN["epochs"]
    assert hook(reloaded, "epochPoints") == hook(watcher, "epochPoints") == REPLAYED_RUN["epochs"]
    assert hook(reloaded, "lastEventId") == hook(watcher, "lastEventId")
    for p in (watcher, reloaded):
        expect(p.locator("#progress-text")).to_contain_text("done in")


def test_the_layout_fits_a_phone_screen_without_horizontal_scrolling(
        server, browser, browser_context_args, api):
    start_run(api, preset="seed", epochs=3)  # something in every panel
    wait_for(lambda: api.get("/api/status").json()["state"] == "finished", 20,
             what="the run to finish")
    context = browser.new_context(**{**browser_context_args, "viewport": PHONE, "is_mobile": True,
                                     "has_touch": True, "device_scale_factor": 2})
    try:
        _check_phone_layout(context.new_page(), server)
    finally:
        context.close()


# Layout shifts from the page's first moment (PerformanceObserver, buffered): each
# entry's value and the elements it moved.
LAYOUT_SHIFTS = """
window.__shifts = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    window.__shifts.push({ value: entry.value, moved: (entry.sources || [])
      .map((s) => s.node && s.node.nodeType === 1 ? `${s.node.tagName}#${s.node.id}.${s.node.className}` : '?') });
  }
}).observe({ type: 'layout-shift', buffered: true });
"""


@pytest.mark.parametrize("view", ["phone", "desktop"])
def test_the_page_does_not_move_under_the_reader_while_its_scripts_start(
        server, browser, browser_context_args, view):
    """The preset's description is in the page as served and its settings line has its
    room: when the scripts fill them, nothing below jumps (it moved 117 px on a phone;
    Lighthouse's layout shift was 0.08)."""
    args = ({"viewport": PHONE, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
            if view == "phone" else {"viewport": {"width": 1280, "height": 800}})
    context = browser.new_context(**{**browser_context_args, **args})
    try:
        context.add_init_script(LAYOUT_SHIFTS)
        page = context.new_page()
        open_dashboard(page, server)
        expect(page.locator("#preset-fixed")).not_to_be_empty()
        page.wait_for_timeout(500)   # what the first answers change
        shifts = page.evaluate("() => window.__shifts")
        assert sum(shift["value"] for shift in shifts) < 0.01, shifts
        assert not any("advanced" in element for shift in shifts for element in shift["moved"]), shifts
    finally:
        context.close()


def _check_phone_layout(page: Page, server: LiveServer) -> None:
    open_dashboard(page, server)
    wait_hook(page, "epochPoints", "===", 3)
    page.locator("#filters").scroll_into_view_if_needed()   # drawn while in view
    wait_hook(page, "filterVersion", ">", 0)
    expect(page.locator("#runs li.run")).to_have_count(1)

    sizes = page.evaluate("""() => ({
        innerWidth: window.innerWidth,
        scrollWidth: document.documentElement.scrollWidth,
        bodyScrollWidth: document.body.scrollWidth})""")
    assert sizes["innerWidth"] == PHONE["width"], sizes
    assert sizes["scrollWidth"] <= sizes["innerWidth"] + 1, f"horizontal scroll: {sizes}"
    assert sizes["bodyScrollWidth"] <= sizes["innerWidth"] + 1, f"horizontal scroll: {sizes}"
    # One section at a time on a phone, chosen in the nav: Train first.
    sections = {"Train": ("#loss-chart", "#accuracy-chart", "#filters", "#start"),
                "Runs": ("#runs",), "Draw a digit": ("#draw-canvas",), "Evaluate": ("#confusion",)}
    for link, selectors in sections.items():
        if link != "Train":
            page.get_by_role("navigation", name="Sections").get_by_role("link", name=link).tap()
        for selector in selectors:
            element = page.locator(selector)
            expect(element).to_be_visible()
            box = element.bounding_box()
            assert box["width"] > 0 and box["height"] > 0, selector
            assert box["x"] >= -1 and box["x"] + box["width"] <= PHONE["width"] + 1, (selector, box)
        sizes = page.evaluate("() => document.documentElement.scrollWidth")
        assert sizes <= PHONE["width"] + 1, f"horizontal scroll in {link}: {sizes}"
        if link == "Train":
            for chart in ("#loss-chart", "#accuracy-chart"):
                expect(page.locator(f"{chart} canvas").first).to_be_visible()
            save_screenshot(page, "dashboard-phone.png", full_page=True)


def test_the_connection_indicator_shows_when_the_server_goes_away_and_comes_back(
        mnist_dir, page):
    with ReusableLiveServer(make_app(mnist_dir)) as server:
        open_dashboard(page, server)
        expect(page.locator("#connection")).to_have_text("connected")
        assert server.stop(), "uvicorn did not stop"  # the open event stream is cut
        expect(page.locator("#connection")).to_have_class(
            re.compile(r"\b(reconnecting|disconnected)\b"), timeout=10_000)
        expect(page.locator("#connection")).not_to_have_text("connected")

    # A server back on the same address: the page reconnects by itself.
    with ReusableLiveServer(make_app(mnist_dir), server.port):
        expect(page.locator("#connection")).to_have_class(re.compile(r"\bconnected\b"),
                                                          timeout=20_000)
        expect(page.locator("#connection")).to_have_text("connected")
        page.close()  # before the server stops: its event stream would hold uvicorn up


def test_a_server_that_wants_a_token_to_read_asks_for_it_and_then_streams(mnist_dir, page):
    """CNN_LIVE_TOKEN_READ: the page's first try at the stream (asked for before it
    knows) is refused; once the token is given the stream opens at once, not after a
    back-off, and the page follows a run."""
    token = "browser-read-token"
    with LiveServer(make_app(mnist_dir, token=token, token_read=True)) as server:
        page.goto(server.url + "/")
        expect(page.locator("#token-dialog")).to_be_visible(timeout=10_000)
        expect(page.locator("#connection")).not_to_have_class(re.compile(r"\bconnected\b"))
        page.fill("#token-input", token)
        page.click("#token-submit")
        expect(page.locator("#token-dialog")).to_be_hidden(timeout=10_000)
        expect(page.locator("#connection")).to_have_class(re.compile(r"\bconnected\b"), timeout=3_000)
        started = httpx.post(server.url + "/api/runs", json={"preset": "seed", "epochs": 1},
                             headers={"Authorization": f"Bearer {token}"})
        assert started.status_code == 201, started.text
        wait_hook(page, "epochPoints", ">=", 1, timeout=30)
        page.close()  # before the server stops: its event stream would hold uvicorn up


def test_a_server_with_a_token_asks_for_it_on_start_and_then_starts_the_run(mnist_dir, page):
    token = "browser-test-token"
    with LiveServer(make_app(mnist_dir, token=token)) as server:
        problems = Problems(page)
        open_dashboard(page, server)
        expect(page.locator("#state")).to_have_text("idle")
        expect(page.locator("#token-dialog")).to_be_hidden()

        page.select_option("#preset", "seed")
        unfold(page)
        page.fill("#epochs", "1")
        page.click("#start")
        expect(page.locator("#token-dialog")).to_be_visible(timeout=10_000)

        # A wrong token is refused with a clear message, and the dialog asks again.
        page.fill("#token-input", "not-the-token")
        page.click("#token-submit")
        expect(page.locator("#token-message")).to_contain_text("not accepted", timeout=10_000)
        expect(page.locator("#token-dialog")).to_be_visible()

        page.fill("#token-input", token)
        page.click("#token-submit")
        expect(page.locator("#token-dialog")).to_be_hidden(timeout=10_000)
        expect(page.locator("#state")).not_to_have_text("idle", timeout=10_000)
        assert httpx.get(server.url + "/api/status").json()["run_id"]
        expect(page.locator("#form-error")).to_be_hidden()
        assert page.evaluate("() => sessionStorage.getItem('cnn-live-token')") == token

        page.wait_for_timeout(300)
        assert [item for item in problems.items if "401" not in item] == []
        page.close()  # before the server stops: its event stream would hold uvicorn up
