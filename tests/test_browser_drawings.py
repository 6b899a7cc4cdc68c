"""Your own handwriting on the page (issue 15), in a real Chromium against a real server:
a digit drawn on the pad and answered is corrected with "It is a N" and saved; it shows
in the gallery under N; a drawing is relabelled and another deleted; with 10 drawings
or more, "Teach now" starts a teaching run that trains on the charts, and when it ends
the page shows before and after (the held-out drawings and MNIST's test images), a
"your drawings" line on the accuracy chart (from before to after) and a "Your drawings"
confusion matrix; the drawings exported and imported again. A refused save shows the
server's message. The same on a 390x844 touch screen, drawn with a finger.

The browser rule and helpers are test_browser.py's (and test_browser_draw.py's strokes).
Teaching is shortened for the tests (a replay of 1,000 MNIST images, not 4,000): the page
shows the same, sooner.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_browser import (  # noqa: E402,F401  (fixtures are used by name)
    PHONE, Problems, browser_context_args, browser_type_launch_args, hook, open_dashboard,
    save_screenshot, server, wait_hook,
)
from test_browser_draw import draw_one, pad_box  # noqa: E402
from test_drawings import drawing_of  # noqa: E402
from server_helpers import finger_draws_one  # noqa: E402
from playwright.sync_api import Page, expect  # noqa: E402

import app.routers.drawings as drawings_router  # noqa: E402
from cnn.teach import Teaching  # noqa: E402


@pytest.fixture(autouse=True)
def quick_teaching(monkeypatch):
    """Teach now replays 1,000 MNIST images instead of 4,000 (the server's Teaching)."""
    monkeypatch.setattr(drawings_router, "Teaching", functools.partial(Teaching, replay=1000))


def save_mnist_drawings(server, mnist, count: int, start: int = 0) -> None:
    """`count` MNIST test digits saved with their labels, as another browser would."""
    with httpx.Client(base_url=server.url, timeout=20) as client:
        for i in range(start, start + count):
            answer = client.post("/api/drawings", json={
                "image": drawing_of(mnist.test_images[i]), "label": int(mnist.test_labels[i])})
            assert answer.status_code == 201, answer.text


def reload(page: Page, problems: Problems) -> None:
    """Open the page again (it counts the drawings saved meanwhile); the event stream
    the reload cuts is not a problem."""
    assert problems.items == []
    page.reload()
    expect(page.locator("#connection")).to_have_class(re.compile(r"\bconnected\b"), timeout=10_000)
    problems.items[:] = [item for item in problems.items
                         if not re.search(r"/api/events\b.*ERR_ABORTED", item)]


def drawings_state(page: Page) -> dict:
    return hook(page, "drawings")


def offer_buttons(page: Page):
    return page.locator("#label-offer button")


def expect_offer(page: Page, digit: int) -> None:
    """The pad answered `digit`: "Right" and the ten digits can be pressed."""
    expect(page.locator("#label-offer")).to_be_visible()
    expect(page.locator("#label-right")).to_have_text(f"Right: it is a {digit}")
    expect(page.locator("#label-offer button[aria-disabled='true']")).to_have_count(0)
    expect(page.locator("#label-offer .label-digit")).to_have_count(10)


def tile(page: Page, label: int):
    return page.locator(f"#drawings-gallery .drawings-group[data-label='{label}'] .drawing-tile")


def correct_relabel_and_delete(page: Page, tap: bool) -> int:
    """The pad's answer is corrected with "It is a N"; the drawing shows under N in the
    gallery; it is relabelled to what it is (1), then deleted. Returns N."""
    press = (lambda locator: locator.tap()) if tap else (lambda locator: locator.click())
    digit = int(page.locator("#prediction").text_content())
    expect_offer(page, digit)
    wrong = 7 if digit != 7 else 4
    press(page.locator(f"#label-offer .label-digit[data-label='{wrong}']"))
    expect(page.locator("#label-status")).to_have_text(
        re.compile(rf"^Saved as a {wrong} · 1 drawing\b"))
    # Saved: the pad is cleared for the next one; the offer waits for its answer.
    expect(page.locator("#prediction")).to_have_text("")
    expect(page.locator("#label-offer")).to_be_visible()
    expect(page.locator("#label-offer button[aria-disabled='true']")).to_have_count(11)
    expect(page.locator("#drawings-count")).to_have_text("· 1")

    press(page.locator("#drawings > summary"))
    expect(tile(page, wrong)).to_have_count(1)
    expect(page.locator(f"#drawings-counts li[data-label='{wrong}'] .drawings-counts-value")).to_have_text("1")
    expect(page.locator(f"#drawings-group-{wrong}")).to_have_text(f"{wrong} · 1 drawing")
    canvas_label = tile(page, wrong).locator("canvas").get_attribute("aria-label")
    assert canvas_label.startswith(f"Drawing 1: a {wrong}, read as {digit}"), canvas_label

    tile(page, wrong).locator("select").select_option("1")
    expect(tile(page, 1)).to_have_count(1)
    expect(tile(page, wrong)).to_have_count(0)
    expect(page.locator("#drawings-status")).to_have_text(f"Drawing 1 is now a 1 (it was a {wrong}).")
    press(tile(page, 1).locator(".drawing-delete"))
    expect(page.locator("#drawings-gallery .drawing-tile")).to_have_count(0)
    expect(page.locator("#drawings-status")).to_have_text("Deleted drawing 1 (a 1).")
    expect(page.locator("#drawings-count")).to_have_text("· none yet")
    return wrong


def teach_and_see_before_and_after(page: Page, nav=None) -> str:
    """Teach now (available with 10 drawings): its run trains on the charts (on a phone,
    `nav` goes to them and back); when it ends, before and after are shown. Returns the
    teaching run's id."""
    press = (lambda locator: locator.tap()) if nav else (lambda locator: locator.click())
    teach = page.locator("#teach-now")
    expect(teach).not_to_have_attribute("aria-disabled", "true")
    press(teach)
    page.wait_for_function("() => window.cnnLive.drawings().teach?.runId", timeout=30_000)
    run_id = drawings_state(page)["teach"]["runId"]
    assert hook(page, "selectedRun") == run_id   # followed, like a run started here
    # A run like any: it trains on the charts (drawn while in view).
    if nav:
        nav.get_by_role("link", name="Train").tap()
    page.locator("#loss-chart").scroll_into_view_if_needed()
    page.wait_for_function("""(id) => window.cnnLive.drawnRuns().some(
        (r) => r.id === id && r.lossPoints > 0)""", arg=run_id, timeout=20_000)
    page.wait_for_function(
        "() => ['finished', 'failed', 'stopped'].includes(window.cnnLive.drawings().teach.state)",
        timeout=60_000)
    # Its epoch's figure on the drawings: a line of its own on the accuracy chart.
    page.locator("#accuracy-chart").scroll_into_view_if_needed()
    page.wait_for_function(
        "() => window.cnnLive.legend('accuracy').some((label) => label.endsWith('· your drawings'))",
        timeout=10_000)
    # From before (epoch 0, the answer to Teach now) to after (its one epoch).
    page.wait_for_function("(id) => window.cnnLive.drawnRuns().some((r) => r.id === id && r.epochPoints === 2)",
                           arg=run_id, timeout=10_000)
    if nav:
        save_screenshot(page, "drawings-phone-charts.png")
        nav.get_by_role("link", name="Draw a digit").tap()
    result = page.locator("#teach-result")
    expect(result).to_be_visible()
    expect(result).to_have_attribute("data-state", "finished")
    expect(result).to_contain_text("it answers the pad now")
    mine = result.locator("tr[data-row='drawings'] td")
    mnist = result.locator("tr[data-row='mnist'] td")
    expect(mine).to_have_count(2)
    # The held-out fifth: 2 of the 10 (ids 5 and 10), before and after.
    expect(mine.nth(0)).to_have_text(re.compile(r"^[0-2] of 2 \(\d+%\)$"))
    expect(mine.nth(1)).to_have_text(re.compile(r"^[0-2] of 2 \(\d+%\)$"))
    expect(mnist.nth(0)).to_have_text(re.compile(r"^9\d\.\d\d%$"))
    expect(mnist.nth(1)).to_have_text(re.compile(r"^\d{1,3}\.\d\d%$"))
    return run_id


def expect_drawings_matrix(page: Page, tap: bool) -> None:
    """The Evaluate panel's "Your drawings" tab: the held-out drawings' matrix."""
    tab = page.locator("#confusion-tab-drawings")
    tab.tap() if tap else tab.click()
    expect(tab).to_have_attribute("aria-selected", "true")
    expect(page.locator("#confusion-summary")).to_have_text(
        re.compile(r"^[0-2] of 2 held-out drawings read right"))
    assert hook(page, "evaluation")["drawingsTotal"] == 2
    expect(page.locator("#confusion button.confusion-cell")).to_have_count(100)


def test_a_drawing_is_corrected_kept_relabelled_deleted_and_taught(server, page, mnist,
                                                                   tmp_path):
    problems = Problems(page)
    open_dashboard(page, server)
    expect(page.locator("#label-offer")).to_be_hidden()
    expect(page.locator("#teach-now")).to_have_attribute("aria-disabled", "true")

    pad_box(page)
    draw_one(page)
    expect(page.locator("#prediction")).to_have_text(re.compile(r"^[0-9]$"), timeout=10_000)
    # A save the server refuses: its message, in the live region; the drawing stays.
    full = "the drawings store holds 10,000 of at most 10,000 (CNN_LIVE_MAX_DRAWINGS)"
    page.route("**/api/drawings", lambda route: route.fulfill(
        status=413, content_type="application/json", body=json.dumps({"detail": full})))
    page.locator("#label-offer .label-digit[data-label='3']").click()
    expect(page.locator("#label-status")).to_have_text(f"Could not save the drawing: {full}")
    expect(page.locator("#label-status")).to_have_class(re.compile(r"\bis-error\b"))
    expect(page.locator("#label-status")).to_have_attribute("role", "status")
    expect(page.locator("#prediction")).to_have_text(re.compile(r"^[0-9]$"))
    page.unroute("**/api/drawings")
    assert all("413" in item for item in problems.items) and problems.items, problems.items
    problems.items.clear()   # the refusal asked for, and the console's note of it
    correct_relabel_and_delete(page, tap=False)

    # With the keyboard: "Right" saves the answer as it is.
    draw_one(page)
    expect(page.locator("#prediction")).to_have_text(re.compile(r"^[0-9]$"), timeout=10_000)
    digit = int(page.locator("#prediction").text_content())
    expect_offer(page, digit)
    page.locator("#label-right").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#label-status")).to_have_text(re.compile(rf"^Saved as a {digit} · 1 drawing\b"))
    expect(page.locator("#label-right")).to_be_focused()   # unavailable, the focus kept
    expect(tile(page, digit)).to_have_count(1)
    expect(page.locator("#teach-note")).to_contain_text("9 more to go")

    # Ten more, from another browser: this page counts them when it opens again.
    save_mnist_drawings(server, mnist, 9)
    reload(page, problems)
    expect(page.locator("#drawings-count")).to_have_text("· 10")
    page.locator("#drawings > summary").click()
    expect(page.locator("#drawings-gallery .drawing-tile")).to_have_count(10)
    expect(page.locator("#drawings-gallery .drawing-tile.is-held-out")).to_have_count(2)
    expect(page.locator("#drawings")).to_contain_text("Every fifth drawing is held out")

    teach_and_see_before_and_after(page)
    save_screenshot(page.locator("#draw"), "drawings-taught.png")
    page.locator("#evaluate").scroll_into_view_if_needed()
    expect_drawings_matrix(page, tap=False)
    save_screenshot(page.locator("#evaluate"), "drawings-confusion.png")

    # Exported, then imported again (as another classroom's file): twice as many.
    page.locator("#drawings-files").scroll_into_view_if_needed()
    with page.expect_download() as download:
        page.locator("#drawings-export-npz").click()
    exported = tmp_path / download.value.suggested_filename
    download.value.save_as(exported)
    assert exported.name == "drawings.npz" and exported.stat().st_size > 0
    page.locator("#drawings-import").set_input_files(str(exported))
    expect(page.locator("#drawings-status")).to_have_text("Imported 10 drawings from drawings.npz.")
    expect(page.locator("#drawings-count")).to_have_text("· 20")
    expect(page.locator("#drawings-gallery .drawing-tile")).to_have_count(20)
    assert problems.items == []


def touch_stroke(context, page: Page) -> None:
    """A "1" drawn with a finger on the pad, scrolled into view first."""
    page.locator("#draw-canvas").scroll_into_view_if_needed()
    finger_draws_one(context, page, page.locator("#draw-canvas").bounding_box())


def test_the_same_on_a_phone_with_a_finger(server, browser, browser_context_args, mnist):
    context = browser.new_context(**{**browser_context_args, "viewport": PHONE, "is_mobile": True,
                                     "has_touch": True, "device_scale_factor": 2})
    try:
        page = context.new_page()
        problems = Problems(page)
        open_dashboard(page, server)
        nav = page.get_by_role("navigation", name="Sections")
        nav.get_by_role("link", name="Draw a digit").tap()
        touch_stroke(context, page)
        expect(page.locator("#prediction")).to_have_text(re.compile(r"^[0-9]$"), timeout=10_000)
        correct_relabel_and_delete(page, tap=True)
        widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1] + 1, f"sideways scroll on a phone: {widths}"
        # Every labelling button is a finger's target (24 px at least).
        for box in [b.bounding_box() for b in offer_buttons(page).all()]:
            assert box["width"] >= 24 and box["height"] >= 24, box

        save_mnist_drawings(server, mnist, 10)
        reload(page, problems)
        expect(page.locator("#drawings-count")).to_have_text("· 10")
        page.locator("#drawings > summary").tap()
        expect(page.locator("#drawings-gallery .drawing-tile")).to_have_count(10)
        teach_and_see_before_and_after(page, nav)
        save_screenshot(page, "drawings-phone.png", full_page=True)
        nav.get_by_role("link", name="Evaluate").tap()
        expect_drawings_matrix(page, tap=True)
        widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1] + 1, f"sideways scroll on a phone: {widths}"
        assert problems.items == []
    finally:
        context.close()
