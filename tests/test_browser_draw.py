"""The drawing pad in a real Chromium (Playwright), against a real uvicorn server: a digit
drawn with the mouse or a finger is read by the network, the answer is shown (digit,
ten bars, the 28x28 image the network saw, the feature maps), a finger drawing never
scrolls the page, Clear empties everything, and an empty drawing asks nothing.

The browser rule, fixtures and helpers are those of test_browser.py (imported: when
the browser is missing this module is skipped too, or fails under
CNN_LIVE_REQUIRE_BROWSER=1).

POST /api/predict is the real route (a fresh server's bundled model answers); every
request the page sends is checked against the API's contract (2D, 8..512 per side,
integers 0..255).
"""

from __future__ import annotations

import base64
import json
import re
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_browser import (  # noqa: E402,F401  (fixtures are used by name)
    PHONE, Problems, browser_context_args, browser_type_launch_args, hook, open_dashboard,
    save_screenshot, server, wait_hook,
)
from playwright.sync_api import Page, Route, expect  # noqa: E402
from server_helpers import finger_draws_one  # noqa: E402


PREDICT = "/api/predict"
EMPTY_DETAIL = "the drawing is empty: draw a digit first"


# -- POST /api/predict: every request the page sends, checked -------------------------------

def check_contract(body: dict) -> np.ndarray:
    """The request as the API defines it (the page sends the compact form: base64
    bytes with their width); returns the image."""
    assert set(body) == {"pixels", "width", "explain", "weights"}, body.keys()
    assert isinstance(body["explain"], bool)
    assert body["weights"] in ("averaged", "raw"), body["weights"]
    width = body["width"]
    assert type(width) is int and 8 <= width <= 200, width
    raw = base64.b64decode(body["pixels"], validate=True)
    assert raw and len(raw) % width == 0, "not whole rows"
    assert 8 <= len(raw) // width <= 200, len(raw) // width
    return np.frombuffer(raw, np.uint8).reshape(-1, width).astype(np.float64)


class Predictor:
    """Every POST /api/predict the page sends, checked against the contract, and how
    many were answered."""

    def __init__(self, page: Page) -> None:
        self.requests: list[dict] = []
        self.finished = 0
        page.on("request", self._seen)
        page.on("requestfinished", self._finished)

    def _seen(self, request) -> None:
        if request.method == "POST" and request.url.endswith(PREDICT):
            body = request.post_data_json
            self.requests.append({"explain": body["explain"], "weights": body["weights"],
                                  "size": check_contract(body).shape})

    def _finished(self, request) -> None:
        if request.method == "POST" and request.url.endswith(PREDICT):
            self.finished += 1

    def settle(self, page: Page, timeout: float = 10.0) -> None:
        """Wait for the last stroke's answer (explain: true): every request answered,
        the feature maps current. (Page events arrive while Playwright waits.)"""
        deadline = time.monotonic() + timeout
        while not (self.requests and self.requests[-1]["explain"]
                   and self.finished == len(self.requests)):
            assert time.monotonic() < deadline, f"no final answer: {self.requests}"
            page.wait_for_timeout(25)
        expect(page.locator("#feature-maps")).not_to_have_class(re.compile(r"\bis-stale\b"))


@pytest.fixture
def predictor(page) -> Predictor:
    return Predictor(page)


# -- drawing ---------------------------------------------------------------------------------

def pad_box(page: Page) -> dict:
    canvas = page.locator("#draw-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box and box["width"] >= 200 and abs(box["width"] - box["height"]) < 1, box
    return box


def at(box: dict, fx: float, fy: float) -> tuple[float, float]:
    return box["x"] + fx * box["width"], box["y"] + fy * box["height"]


def mouse_stroke(page: Page, points: list[tuple[float, float]], pause_ms: int = 0):
    """One stroke through `points` (fractions of the pad), 10 mouse moves per segment."""
    box = pad_box(page)  # read again each time: a click elsewhere may have scrolled
    page.mouse.move(*at(box, *points[0]))
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*at(box, *point), steps=10)
        if pause_ms:
            page.wait_for_timeout(pause_ms)
    page.mouse.up()


def draw_one(page: Page, pause_ms: int = 0) -> None:
    """A "1": one vertical stroke down the middle."""
    mouse_stroke(page, [(0.5, 0.15), (0.5, 0.5), (0.5, 0.85)], pause_ms)


def draw_seven(page: Page) -> None:
    """A "7" in two strokes: the bar, then the diagonal."""
    mouse_stroke(page, [(0.25, 0.2), (0.75, 0.2)])
    mouse_stroke(page, [(0.75, 0.2), (0.45, 0.85)])


def ink_pixels(page: Page, selector: str) -> int:
    """How many pixels of the canvas are not fully transparent."""
    return page.evaluate("""(selector) => {
        const canvas = document.querySelector(selector);
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let n = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i]) n++;
        return n;
    }""", selector)


def expect_a_prediction(page: Page, predictor: Predictor) -> int:
    """The page shows the full answer to the last stroke; returns the digit shown."""
    predictor.settle(page)
    wait_hook(page, "predictions", ">", 0)
    expect(page.locator("#prediction")).to_have_text(re.compile(r"^[0-9]$"))
    bars = page.locator("#probabilities li")
    expect(bars).to_have_count(10)
    for digit in range(10):
        expect(bars.nth(digit)).to_have_text(re.compile(rf"^\s*{digit}\s+\d{{1,3}}\.\d%\s*$"))
    digit = int(page.locator("#prediction").text_content())
    expect(page.locator("#probabilities li.is-top")).to_have_count(1)
    expect(page.locator("#probabilities li.is-top")).to_have_attribute("data-digit", str(digit))
    assert page.evaluate("""() => { const c = document.getElementById('network-input');
        return [c.width, c.height]; }""") == [28, 28]
    assert ink_pixels(page, "#network-input") > 10, "the network's input is blank"
    assert hook(page, "lastPrediction") == digit
    return digit


def expect_feature_maps(page: Page) -> None:
    maps = page.locator("#feature-maps .fmap-layer")
    expect(maps.first).to_be_visible()
    assert page.locator("#feature-maps canvas.fmap-canvas").count() > 0
    expect(page.locator("#feature-maps .fmap-layer-title").first).to_contain_text("×")
    expect(page.locator("#feature-maps")).not_to_have_class(re.compile(r"\bis-stale\b"))
    assert ink_pixels(page, "#feature-maps canvas.fmap-canvas") > 0


def expect_cleared(page: Page) -> None:
    expect(page.locator("#prediction")).to_have_text("")
    expect(page.locator("#probabilities li.is-top")).to_have_count(0)
    expect(page.locator("#probabilities .prob-value")).to_have_text(["–"] * 10)
    expect(page.locator("#feature-maps canvas")).to_have_count(0)
    expect(page.locator("#prediction-model")).to_have_text("")
    expect(page.locator("#draw-error")).to_be_hidden()
    assert ink_pixels(page, "#draw-canvas") == 0, "the pad still has ink"
    assert ink_pixels(page, "#network-input") == 0, "the network's input is still shown"
    assert hook(page, "lastPrediction") is None


# -- the tests -------------------------------------------------------------------------------

def test_a_one_drawn_with_the_mouse_is_read_while_drawing_and_explained_when_the_pen_lifts(
        server, page, predictor):
    problems = Problems(page)
    open_dashboard(page, server)
    expect(page.locator("#prediction")).to_have_text("")
    pad_box(page)

    draw_one(page, pause_ms=200)  # slow enough for predictions while drawing
    digit = expect_a_prediction(page, predictor)
    expect_feature_maps(page)
    assert ink_pixels(page, "#draw-canvas") > 0
    explained = [r["explain"] for r in predictor.requests]
    assert explained and explained[-1] is True, explained       # the stroke's end
    assert False in explained, "nothing was asked while the stroke was drawn"
    assert all(r["size"] == predictor.requests[0]["size"] for r in predictor.requests)
    assert digit == 1, f"a drawn 1 was read as {digit}"  # by the bundled model
    expect(page.locator("#prediction-model")).not_to_have_text("")

    # A "7" in two strokes, after a clear.
    page.click("#draw-clear")
    count = hook(page, "predictions")
    draw_seven(page)
    wait_hook(page, "predictions", ">", count)
    expect_a_prediction(page, predictor)
    expect_feature_maps(page)
    save_screenshot(page.locator("#draw"), "draw.png")
    page.wait_for_timeout(200)  # late answers and their errors
    assert problems.items == []


def phone_context(browser, browser_context_args):
    """A 390x844 touch phone at device scale 2."""
    return browser.new_context(**{**browser_context_args, "viewport": PHONE, "is_mobile": True,
                                  "has_touch": True, "device_scale_factor": 2})


def test_a_finger_draws_on_a_phone_without_scrolling_the_page(
        server, browser, browser_context_args):
    context = phone_context(browser, browser_context_args)
    try:
        page = context.new_page()
        problems = Problems(page)
        predictor = Predictor(page)
        open_dashboard(page, server)
        # One tap from the first screen, and the whole pad is on the screen.
        page.get_by_role("navigation", name="Sections").get_by_role("link", name="Draw a digit").tap()
        expect(page.locator("#draw-canvas")).to_be_in_viewport(ratio=1)
        page.evaluate("() => document.getElementById('draw-canvas').scrollIntoView({block: 'center'})")
        page.wait_for_timeout(100)
        box = page.locator("#draw-canvas").bounding_box()
        scroll = page.evaluate("() => window.scrollY")
        assert scroll > 0, "the page must be scrolled for the check to mean anything"
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
        sizes = page.evaluate("""() => ({inner: window.innerWidth,
            scroll: document.documentElement.scrollWidth,
            backing: document.getElementById('draw-canvas').width})""")
        assert sizes["scroll"] <= sizes["inner"] + 1, f"horizontal scroll: {sizes}"
        assert sizes["backing"] >= 2 * box["width"] - 2, f"not drawn at the pixel ratio: {sizes}"

        finger_draws_one(context, page, box)

        expect_a_prediction(page, predictor)
        expect_feature_maps(page)
        assert predictor.requests and predictor.requests[-1]["explain"] is True
        assert ink_pixels(page, "#draw-canvas") > 0
        assert page.evaluate("() => window.scrollY") == scroll, "the finger scrolled the page"
        assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"] + 1
        save_screenshot(page, "draw-phone.png")
        assert problems.items == []
    finally:
        context.close()


def test_a_phone_opened_at_draw_shows_the_pad_and_its_answer_on_one_screen(
        server, browser, browser_context_args):
    """Issue 13: a 390x844 touch phone opened at /#draw; a digit drawn with a finger is
    answered where it is drawn: the pad and the answer's digit both wholly on the screen,
    the page not scrolled, the pad not moved by the answer. And from the page's top (the
    top bar in view) both would still end within the first screen."""
    context = phone_context(browser, browser_context_args)
    try:
        page = context.new_page()
        problems = Problems(page)
        predictor = Predictor(page)
        page.goto(server.url + "/#draw")
        expect(page.locator("#connection")).to_have_class(re.compile(r"\bconnected\b"),
                                                          timeout=10_000)
        expect(page.locator("#draw")).to_have_class(re.compile(r"\bis-current\b"))
        pad, answer = page.locator("#draw-canvas"), page.locator("#prediction")
        expect(pad).to_be_in_viewport(ratio=1)
        page.wait_for_timeout(200)  # the fragment's scroll, if any, done
        scroll = page.evaluate("() => window.scrollY")
        before = pad.bounding_box()

        finger_draws_one(context, page, before)
        expect_a_prediction(page, predictor)

        assert page.evaluate("() => window.scrollY") == scroll, "the finger scrolled the page"
        assert pad.bounding_box() == before, "the answer moved the pad"
        for element in (pad, answer):
            expect(element).to_be_in_viewport(ratio=1)
        boxes = page.evaluate("""() => ['draw-canvas', 'prediction'].map((id) => {
            const r = document.getElementById(id).getBoundingClientRect();
            return {id, left: r.left, top: r.top, right: r.right, bottom: r.bottom,
                    pageBottom: r.bottom + window.scrollY};
        })""")
        for box in boxes:
            assert box["left"] >= 0 and box["top"] >= 0, box
            assert box["right"] <= PHONE["width"] and box["bottom"] <= PHONE["height"], box
            assert box["pageBottom"] <= PHONE["height"], f"below the first screen: {box}"
        save_screenshot(page, "draw-phone-answer.png")
        assert problems.items == []
    finally:
        context.close()


def test_clear_empties_the_pad_and_every_result_and_drops_an_answer_still_on_its_way(
        server, page, predictor):
    problems = Problems(page)
    open_dashboard(page, server)
    pad_box(page)

    draw_one(page)
    expect_a_prediction(page, predictor)
    expect_feature_maps(page)
    count = hook(page, "predictions")
    page.click("#draw-clear")
    expect_cleared(page)
    assert hook(page, "predictions") == count

    # Cleared at once after the stroke, before its answer came back: it is not shown.
    asked = len(predictor.requests)
    draw_one(page)
    page.click("#draw-clear")
    page.wait_for_timeout(600)
    assert len(predictor.requests) > asked
    expect_cleared(page)
    assert problems.items == []


def test_an_empty_drawing_asks_nothing_and_a_refused_one_shows_a_short_message(
        server, page, predictor):
    problems = Problems(page)
    open_dashboard(page, server)
    pad_box(page)

    page.click("#draw-clear")  # nothing drawn: nothing to ask
    page.wait_for_timeout(400)
    assert predictor.requests == []
    expect_cleared(page)
    assert hook(page, "predictions") == 0

    # The server refuses a drawing (422): a short message, no result, no exception.
    def refuse(route: Route) -> None:
        route.fulfill(status=422, content_type="application/json",
                      body=json.dumps({"detail": EMPTY_DETAIL}))

    page.route(f"**{PREDICT}", refuse)
    draw_one(page)
    expect(page.locator("#draw-error")).to_be_visible()
    expect(page.locator("#draw-error")).to_have_text(EMPTY_DETAIL)
    expect(page.locator("#prediction")).to_have_text("")
    assert hook(page, "predictions") == 0
    page.unroute(f"**{PREDICT}", refuse)

    # The next stroke is answered: the message goes.
    mouse_stroke(page, [(0.45, 0.2), (0.45, 0.8)])
    expect_a_prediction(page, predictor)
    expect(page.locator("#draw-error")).to_be_hidden()
    # Only the refusals themselves show up (as the 422 answers and Chromium's own
    # "Failed to load resource" line for them): nothing thrown, nothing else logged.
    unexpected = [item for item in problems.items
                  if not (f"HTTP 422: POST {server.url}{PREDICT}" == item
                          or ("Failed to load resource" in item and "422" in item))]
    assert unexpected == []


def test_a_run_in_training_answers_with_its_averaged_weights_and_the_toggle_asks_for_the_raw_ones(
        server, page, predictor):
    problems = Problems(page)
    open_dashboard(page, server)
    with httpx.Client(base_url=server.url, timeout=10) as api:
        # Long enough to be watched: the full default preset (8 epochs of 60,000).
        response = api.post("/api/runs", json={"preset": "default"})
        assert response.status_code == 201, response.text
        deadline = time.monotonic() + 60
        while api.get("/api/model/info").json()["source"] != "training":
            assert time.monotonic() < deadline, "no snapshot of the run in training"
            time.sleep(0.1)
        try:
            line = page.locator("#prediction-model")
            toggle = page.locator("#draw-raw-weights")
            expect(toggle).not_to_be_checked()
            draw_one(page)
            expect_a_prediction(page, predictor)
            expect(line).to_contain_text("training")
            expect(line).to_contain_text("averaged weights")
            assert {r["weights"] for r in predictor.requests} == {"averaged"}

            count = len(predictor.requests)
            toggle.check()  # asks again about the same drawing, with the raw weights
            expect(line).to_contain_text("raw weights")
            expect(line).to_contain_text("training")
            assert predictor.requests[count:] and all(
                r["weights"] == "raw" for r in predictor.requests[count:])
            expect_a_prediction(page, predictor)

            toggle.uncheck()
            expect(line).to_contain_text("averaged weights")
            save_screenshot(page.locator("#draw"), "draw-averaged.png")
        finally:
            api.post("/api/runs/current/stop", json={})
    page.wait_for_timeout(200)
    assert problems.items == []
