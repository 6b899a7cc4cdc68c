"""The layer view in a real Chromium says what an explained prediction left out: a model
with 64 maps of 56x56 a layer (an uploaded one) is shown as "showing 32 of 64 maps ·
averaged down to 28×28", a model that fits is shown whole with no such note.

The browser rule, fixtures and helpers are those of test_browser.py (imported: when
the browser is missing this module is skipped too, or fails under
CNN_LIVE_REQUIRE_BROWSER=1).
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from test_browser import (  # noqa: E402,F401  (fixtures are used by name)
    Problems, browser_context_args, browser_type_launch_args, open_dashboard, server,
)
from playwright.sync_api import Page, expect  # noqa: E402

from cnn.model import Model  # noqa: E402

WIDE = {"input": [1, 28, 28], "layers": [
    {"type": "conv", "filters": 64, "kernel": 1, "padding": 14}, {"type": "relu"},
    {"type": "maxpool", "size": 4}, {"type": "flatten"}, {"type": "dense", "units": 10}]}


def draw_a_stroke(page: Page) -> None:
    canvas = page.locator("#draw-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.15)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.85, steps=20)
    page.mouse.up()


def titles(page: Page) -> list[str]:
    return page.locator("#feature-maps .fmap-layer-title").all_text_contents()


def test_the_layer_view_says_how_many_maps_it_shows_and_that_they_were_averaged_down(
        server, page):
    problems = Problems(page)
    upload = httpx.post(server.url + "/api/model", content=Model(WIDE, seed=1).to_bytes(),
                        headers={"Content-Type": "application/octet-stream"}, timeout=30)
    assert upload.status_code == 200, upload.text
    open_dashboard(page, server)
    draw_a_stroke(page)
    conv = page.locator("#feature-maps .fmap-layer[data-name='0.conv']")
    expect(conv.locator(".fmap-layer-title")).to_contain_text(
        "conv · 64×56×56 (showing 32 of 64 maps · averaged down to 28×28)", timeout=15_000)
    expect(conv.locator("canvas.fmap-canvas")).to_have_count(32)
    pool = page.locator("#feature-maps .fmap-layer[data-name='2.maxpool']")
    expect(pool.locator(".fmap-layer-title")).to_contain_text("(showing 32 of 64 maps)")
    assert problems.items == []


def test_a_model_shown_whole_has_no_note(server, page):
    open_dashboard(page, server)  # the bundled model: 8 and 16 maps
    draw_a_stroke(page)
    expect(page.locator("#feature-maps .fmap-layer-title").first).to_contain_text(
        "×", timeout=15_000)
    assert not any("showing" in title or "averaged" in title for title in titles(page))
