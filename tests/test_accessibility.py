"""The dashboard for the people who use it (issue 13), in a real Chromium: axe-core finds
no WCAG 2.2 AA violation (nor any best practice's, of any impact) in light and dark
themes, idle, mid-run, after an epoch and with a drawing answered, on a desktop and on a
phone, and in the network builder (checked, a layer at fault, JSON that does not parse,
a run's network loaded); targets are 24x24 px at least; the drawing pad and its answer are
on the first screen of a 1280x800 desktop; a run is started, paused, resumed and stopped,
and a drawing cleared, with the keyboard alone, the focus visible (3:1) and never dropped.

axe-core is the pinned version that .ci/run installs outside the checkout
(CNN_LIVE_AXE: the path of its axe.min.js). The page's CSP forbids injected scripts, so
the audits run in contexts made with bypass_csp=True (the CSP's own tests use ordinary
contexts).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import pytest

from test_browser import (  # noqa: E402,F401  (fixtures are used by name)
    PHONE, Problems, api, browser_context_args, browser_type_launch_args, hook, open_dashboard,
    save_screenshot, server, unfold, wait_hook,
)
from playwright.sync_api import Page, expect  # noqa: E402

from server_helpers import start_run, wait_for  # noqa: E402

AXE_VERSION = "4.10.3"
AXE_JS = Path(os.environ.get(
    "CNN_LIVE_AXE",
    Path.home() / ".cache" / "cnn-live" / "node" / "node_modules" / "axe-core" / "axe.min.js"))
# Every rule of WCAG 2.0, 2.1 and 2.2 at levels A and AA, and axe's best practices.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
DESKTOP_SCREEN = {"width": 1280, "height": 800}
# A run that trains for a while (about 6 s an epoch on 60,000 images here): pauses,
# resumes and stops before it ends; its first epoch on 3,000 images comes quickly.
WATCHED_RUN = {"preset": "default", "epochs": 6, "train_size": 3000, "test_size": 1000}


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE_JS.is_file():
        message = (f"axe-core {AXE_VERSION} not found at {AXE_JS}: .ci/run installs it "
                   f"(npm i -E axe-core@{AXE_VERSION}); or set CNN_LIVE_AXE to its axe.min.js")
        if os.environ.get("CNN_LIVE_REQUIRE_BROWSER") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    version = (AXE_JS.parent / "package.json").read_text()
    assert f'"version": "{AXE_VERSION}"' in version, f"axe-core is not {AXE_VERSION}: {AXE_JS}"
    return AXE_JS.read_text()


def audited_page(browser, browser_context_args, *, scheme="light", viewport=None, phone=False):
    context = browser.new_context(**{
        **browser_context_args, "viewport": viewport or DESKTOP_SCREEN, "color_scheme": scheme,
        "bypass_csp": True, "is_mobile": phone, "has_touch": phone,
        "device_scale_factor": 2 if phone else 1})
    return context, context.new_page()


def axe_violations(page: Page, source: str) -> list[str]:
    """axe's violations on the page as it is, one line per rule and element."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(content=source)
    found = page.evaluate("""async (tags) => {
        const result = await axe.run(document, {runOnly: {type: 'tag', values: tags},
                                                resultTypes: ['violations']});
        return result.violations.flatMap((v) => v.nodes.map((n) =>
            `${v.id} (${v.impact}): ${n.target.join(' ')}: ${n.failureSummary.replace(/\\s+/g, ' ')}`));
    }""", AXE_TAGS)
    return found


def small_targets(page: Page) -> list[str]:
    """Controls shown smaller than 24x24 px (a tick box or radio counts with its label;
    a link inside a sentence is exempt, as WCAG 2.5.8 says)."""
    return page.evaluate("""() => {
        const small = [];
        const controls = 'a[href], button, input, select, summary, [tabindex]:not([tabindex="-1"])';
        for (const el of document.querySelectorAll(controls)) {
            let r = el.getBoundingClientRect();
            if (!r.width && !r.height) continue;                  // not shown
            if (el.classList.contains('skip-link')) continue;     // off screen until focused
            if (el.tagName === 'A' && el.parentElement
                && el.parentElement.textContent.trim() !== el.textContent.trim()) continue;
            const label = el.closest('label') || (el.id && document.querySelector(`label[for="${el.id}"]`));
            if (label && (el.type === 'checkbox' || el.type === 'radio')) r = label.getBoundingClientRect();
            if (r.width < 24 || r.height < 24) {
                small.push(`${el.tagName.toLowerCase()}#${el.id}.${el.className}: ${Math.round(r.width)}x${Math.round(r.height)}`);
            }
        }
        return small;
    }""")


def audit(page: Page, source: str, what: str) -> None:
    # Nothing folded: every control is audited.
    page.evaluate("() => document.querySelectorAll('details').forEach((d) => { d.open = true; })")
    violations = axe_violations(page, source)
    assert violations == [], f"axe-core {AXE_VERSION}, {what}:\n" + "\n".join(violations)
    small = small_targets(page)
    assert small == [], f"targets under 24x24 px, {what}: {small}"


def draw_a_one(page: Page) -> None:
    box = page.locator("#draw-canvas").bounding_box()
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + 0.15 * box["height"])
    page.mouse.down()
    page.mouse.move(x + 2, box["y"] + 0.85 * box["height"], steps=12)
    page.mouse.up()
    expect(page.locator("#prediction")).to_have_text(re.compile(r"^[0-9]$"), timeout=10_000)
    expect(page.locator("#feature-maps canvas").first).to_be_visible(timeout=10_000)


# -- axe-core in every state ------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_idle_mid_run_after_an_epoch_and_with_a_drawing_answered(
        server, browser, browser_context_args, api, axe_source, scheme):
    context, page = audited_page(browser, browser_context_args, scheme=scheme)
    try:
        open_dashboard(page, server)
        audit(page, axe_source, f"{scheme}, idle")

        draw_a_one(page)
        audit(page, axe_source, f"{scheme}, a drawing answered")

        start_run(api, **WATCHED_RUN)
        expect(page.locator("#state")).to_have_text("running", timeout=10_000)
        # Below the network builder, which the audit opened: drawn when in view.
        page.locator("#loss-chart").scroll_into_view_if_needed()
        wait_hook(page, "lossPoints", ">", 0)
        audit(page, axe_source, f"{scheme}, mid-run")

        # The first epoch's evaluation: the matrix, the gallery of mistakes, histograms.
        page.locator("#evaluate").scroll_into_view_if_needed()
        page.wait_for_function("() => window.cnnLive.evaluation().version > 0", timeout=60_000)
        page.locator("#weights").scroll_into_view_if_needed()
        page.wait_for_function("() => window.cnnLive.histograms().version > 0", timeout=30_000)
        expect(page.locator("#confusion button").first).to_be_visible()
        expect(page.locator("#mistakes figure, #mistakes canvas").first).to_be_visible()
        page.locator("#confusion button").nth(1).click()   # a cell's images open too
        expect(page.locator("#confusion-detail")).to_be_visible()
        audit(page, axe_source, f"{scheme}, after an epoch")
        save_screenshot(page, f"accessibility-after-epoch-{scheme}.png", full_page=True)

        # On a 360 px phone the matrix fits, or scrolls sideways and says so.
        page.evaluate("() => { location.hash = 'evaluate'; }")
        page.set_viewport_size({"width": 360, "height": 780})
        expect(page.locator("#confusion button").first).to_be_visible()
        page.wait_for_timeout(200)  # the hint follows the matrix's size
        fits = page.evaluate("""() => {
            const m = document.getElementById('confusion');
            return m.scrollWidth <= m.clientWidth + 1; }""")
        if not fits:
            expect(page.locator(".confusion-hint")).to_be_visible()
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 361
        audit(page, axe_source, f"{scheme}, the matrix on a 360 px phone")
        save_screenshot(page, f"accessibility-matrix-360-{scheme}.png", full_page=True)
    finally:
        api.post("/api/runs/current/stop", json={})
        context.close()


def test_axe_finds_nothing_in_any_section_of_a_phone(
        server, browser, browser_context_args, api, axe_source):
    start_run(api, preset="seed", epochs=2)  # something in every panel
    wait_for(lambda: api.get("/api/status").json()["state"] == "finished", 30,
             what="the run to finish")
    for scheme in ("light", "dark"):
        context, page = audited_page(browser, browser_context_args, scheme=scheme,
                                     viewport=PHONE, phone=True)
        try:
            open_dashboard(page, server)
            nav = page.get_by_role("navigation", name="Sections")
            for link in ("Train", "Draw a digit", "Evaluate", "Runs"):
                nav.get_by_role("link", name=link).tap()
                expect(nav.get_by_role("link", name=link)).to_have_attribute("aria-current", "true")
                audit(page, axe_source, f"phone, {scheme}, {link}")
        finally:
            context.close()


# A run of a network of its own (its row says so and offers "Edit network").
OWN_NETWORK_RUN = {"preset": "seed", "epochs": 1, "train_size": 200, "test_size": 50,
                   "spec": {"layers": [{"type": "conv", "filters": 4, "kernel": 5, "stride": 2},
                                       {"type": "tanh"}, {"type": "flatten"},
                                       {"type": "dense", "units": 10}]}}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_in_the_network_builder_checked_refused_and_with_bad_json(
        server, browser, browser_context_args, api, axe_source, scheme):
    start_run(api, **OWN_NETWORK_RUN)
    wait_for(lambda: api.get("/api/status").json()["state"] == "finished", 30,
             what="the run to finish")
    context, page = audited_page(browser, browser_context_args, scheme=scheme)
    try:
        open_dashboard(page, server)
        page.locator("#builder summary").click()
        status = page.locator("#builder-status")
        expect(status).to_contain_text("an epoch", timeout=10_000)
        audit(page, axe_source, f"{scheme}, the builder, checked")

        layers = page.locator("#builder-layers li")
        layers.nth(3).get_by_role("button", name=re.compile("^Move layer 3 .* up")).click()
        expect(page.locator("#builder-layers li.is-invalid")).to_have_count(1)
        audit(page, axe_source, f"{scheme}, the builder, a layer at fault")

        page.locator("#builder-json").fill('{"layers": [')
        expect(page.locator("#builder-json-error")).to_be_visible()
        audit(page, axe_source, f"{scheme}, the builder, JSON that does not parse")
        save_screenshot(page, f"accessibility-builder-{scheme}.png", full_page=True)

        # "Edit network" on the run: its network in the builder.
        page.locator("#runs .run-edit").first.click()
        expect(page.locator("#builder-json-error")).to_be_hidden()
        expect(status).to_contain_text("an epoch", timeout=10_000)
        audit(page, axe_source, f"{scheme}, the builder, a run's network loaded")
    finally:
        context.close()


# -- the first screen -------------------------------------------------------------------------

def test_the_drawing_pad_and_its_answer_are_on_the_first_screen_of_a_desktop_beside_the_charts(
        server, browser, browser_context_args):
    context, page = audited_page(browser, browser_context_args)
    try:
        open_dashboard(page, server)
        for selector in ("#draw-canvas", "#draw-clear", "#prediction", "#probabilities"):
            expect(page.locator(selector)).to_be_in_viewport(ratio=1)
        expect(page.locator("#draw")).to_contain_text("before any training")
        expect(page.locator("#loss-chart")).to_be_in_viewport()
        pad, chart = page.locator("#draw-canvas").bounding_box(), page.locator("#loss-chart").bounding_box()
        assert pad["y"] < chart["y"] + chart["height"] and chart["y"] < pad["y"] + pad["height"], \
            "the pad is not beside the charts"
        assert page.evaluate("() => window.scrollY") == 0
        draw_a_one(page)
        expect(page.locator("#prediction")).to_be_in_viewport(ratio=1)
        save_screenshot(page, "first-screen-desktop.png")
    finally:
        context.close()


def test_a_phone_offers_draw_and_train_on_its_first_screen_and_each_section_has_its_fragment(
        server, browser, browser_context_args):
    context, page = audited_page(browser, browser_context_args, viewport=PHONE, phone=True)
    try:
        open_dashboard(page, server)
        nav = page.get_by_role("navigation", name="Sections")
        for name in ("Train", "Draw a digit", "Evaluate", "Runs"):
            expect(nav.get_by_role("link", name=name)).to_be_in_viewport(ratio=1)
        expect(page.locator("#start")).to_be_in_viewport(ratio=1)
        expect(page.locator("#draw-canvas")).to_be_hidden()   # one section at a time

        nav.get_by_role("link", name="Draw a digit").tap()
        assert page.url.endswith("#draw")
        expect(page.locator("#draw-canvas")).to_be_in_viewport(ratio=1)
        expect(page.locator("#start")).to_be_hidden()
        # The pad and its answer on one screen: a finger's drawing is answered in view.
        box = page.locator("#draw-canvas").bounding_box()
        cdp = context.new_cdp_session(page)
        x = box["x"] + box["width"] / 2
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [
            {"x": x, "y": box["y"] + 0.15 * box["height"], "id": 1}]})
        for i in range(1, 11):
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [
                {"x": x, "y": box["y"] + (0.15 + 0.07 * i) * box["height"], "id": 1}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        expect(page.locator("#prediction")).to_have_text(re.compile(r"^[0-9]$"), timeout=10_000)
        expect(page.locator("#prediction")).to_be_in_viewport(ratio=1)
        save_screenshot(page, "first-screen-phone-draw.png")

        # A teacher's link to a section opens on it.
        for fragment, shown in (("evaluate", "#confusion"), ("runs", "#runs"), ("draw", "#draw-canvas"),
                                ("train", "#loss-chart")):
            page.goto(f"{page.url.split('#')[0]}#{fragment}")
            expect(page.locator(shown)).to_be_visible()
    finally:
        context.close()


# -- your own drawings (issue 15) --------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_with_the_labelling_buttons_the_gallery_and_a_teaching_shown(
        server, browser, browser_context_args, axe_source, mnist, monkeypatch, scheme):
    import app.routers.drawings as drawings_router
    from cnn.teach import Teaching
    from test_browser_drawings import save_mnist_drawings
    monkeypatch.setattr(drawings_router, "Teaching", functools.partial(Teaching, replay=1000))
    save_mnist_drawings(server, mnist, 12)  # enough to teach: ids 5 and 10 held out
    context, page = audited_page(browser, browser_context_args, scheme=scheme)
    try:
        open_dashboard(page, server)
        draw_a_one(page)
        expect(page.locator("#label-offer")).to_be_visible()
        audit(page, axe_source, f"{scheme}, the labelling buttons offered")

        page.locator("#label-offer .label-digit[data-label='1']").click()
        expect(page.locator("#label-status")).to_contain_text("Saved as a 1")
        expect(page.locator("#drawings-gallery .drawing-tile")).to_have_count(13)  # audit opened it
        audit(page, axe_source, f"{scheme}, a drawing saved, the gallery shown")

        page.locator("#teach-now").click()
        expect(page.locator("#teach-result")).to_have_attribute("data-state", "finished",
                                                                 timeout=60_000)
        page.locator("#confusion-tab-drawings").click()
        expect(page.locator("#confusion-summary")).to_contain_text("held-out drawings")
        audit(page, axe_source, f"{scheme}, taught: before and after, the drawings' matrix")
        save_screenshot(page, f"accessibility-drawings-{scheme}.png", full_page=True)
    finally:
        context.close()


# -- the keyboard alone -----------------------------------------------------------------------

def focused(page: Page) -> dict:
    """The focused element: its id, whether its focus ring shows, and the ring's contrast
    against the page behind it."""
    return page.evaluate("""() => {
        const el = document.activeElement;
        const style = getComputedStyle(el);
        const rgb = (text) => (text.match(/[\\d.]+/g) || []).slice(0, 3).map(Number);
        const lum = ([r, g, b]) => {
            const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
            return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
        };
        // The colour behind the ring: the first opaque background of the ancestors.
        let node = el.parentElement;
        let behind = 'rgb(255, 255, 255)';
        while (node) {
            const bg = getComputedStyle(node).backgroundColor;
            if (bg && !bg.startsWith('rgba(0, 0, 0, 0)') && bg !== 'transparent') { behind = bg; break; }
            node = node.parentElement;
        }
        const [a, b] = [lum(rgb(style.outlineColor)), lum(rgb(behind))].sort((x, y) => y - x);
        return {
            id: el.id, tag: el.tagName, visible: el.matches(':focus-visible'),
            outline: style.outlineStyle !== 'none' ? parseFloat(style.outlineWidth) : 0,
            contrast: (a + 0.05) / (b + 0.05),
        };
    }""")


def tab_to(page: Page, element_id: str, limit: int = 40) -> int:
    """Press Tab until `element_id` has the focus; how many presses it took."""
    for presses in range(1, limit + 1):
        page.keyboard.press("Tab")
        now = focused(page)
        assert now["visible"] and now["outline"] >= 2 and now["contrast"] >= 3, \
            f"focus not visible at 3:1 on {now}"
        if now["id"] == element_id:
            return presses
    raise AssertionError(f"#{element_id} not reached in {limit} Tabs")


def expect_focus_on(page: Page, element_id: str) -> None:
    """The focus is on `element_id` ("": a skip link) and its ring shows at 3:1."""
    page.wait_for_function("(id) => document.activeElement && document.activeElement.id === id",
                           arg=element_id, timeout=5_000)
    now = focused(page)
    assert now["visible"] and now["outline"] >= 2 and now["contrast"] >= 3, now


def test_start_pause_resume_stop_and_clear_with_the_keyboard_alone_focus_visible_throughout(
        server, browser, browser_context_args, api):
    context, page = audited_page(browser, browser_context_args)
    try:
        open_dashboard(page, server)
        # The second Tab stop is the skip link to the pad, shown when focused.
        page.keyboard.press("Tab")
        expect(page.locator(".skip-link").first).to_be_focused()
        page.keyboard.press("Tab")
        skip = page.locator(".skip-link").nth(1)
        expect(skip).to_be_focused()
        expect(skip).to_be_in_viewport(ratio=1)
        expect_focus_on(page, "")
        page.keyboard.press("Enter")
        assert tab_to(page, "draw-clear") <= 3
        # A drawing (with the mouse), then Clear with the keyboard.
        draw_a_one(page)
        expect_focus_on(page, "draw-clear")   # drawing does not take the focus away
        page.keyboard.press("Space")
        expect(page.locator("#prediction")).to_have_text("")
        expect_focus_on(page, "draw-clear")

        # From the top of a fresh page: Start, Pause, Resume, Stop.
        open_dashboard(page, server)
        assert tab_to(page, "start") <= 12
        page.keyboard.press("Enter")
        expect(page.locator("#state")).to_have_text("running", timeout=10_000)
        expect_focus_on(page, "start")   # kept while the request was pending

        page.keyboard.press("Tab")
        expect_focus_on(page, "pause")
        wait_hook(page, "lossPoints", ">", 0)
        page.keyboard.press("Space")
        expect(page.locator("#state")).to_have_text("paused", timeout=10_000)
        expect(page.locator("#pause")).to_have_text("Resume")
        expect_focus_on(page, "pause")   # not dropped on the page: Space resumes
        scroll = page.evaluate("() => window.scrollY")
        page.keyboard.press("Space")
        expect(page.locator("#state")).to_have_text("running", timeout=10_000)
        assert page.evaluate("() => window.scrollY") == scroll, "Space scrolled the page"
        expect_focus_on(page, "pause")

        page.keyboard.press("Tab")
        expect_focus_on(page, "stop")
        page.keyboard.press("Enter")
        expect(page.locator("#progress-text")).to_contain_text("stopped after", timeout=15_000)
        expect_focus_on(page, "stop")
        expect(page.locator("#stop")).to_be_disabled()    # aria-disabled: still focusable
        page.keyboard.press("Enter")                      # and ignored
        expect(page.locator("#form-error")).to_be_hidden()
    finally:
        api.post("/api/runs/current/stop", json={})
        context.close()


def test_the_tab_order_follows_the_order_on_screen(server, browser, browser_context_args):
    """Reading order: the sections top to bottom and, side by side, left to right (the
    training column, the charts, the pad)."""
    for viewport in (DESKTOP_SCREEN, PHONE):
        context, page = audited_page(browser, browser_context_args, viewport=viewport)
        try:
            open_dashboard(page, server)
            order = page.evaluate("""() => {
                const controls = 'a[href], button, input, select, summary, [tabindex]:not([tabindex="-1"])';
                const boxes = [];
                for (const section of document.querySelectorAll('[data-section]')) {
                    const shown = section.getBoundingClientRect();
                    if (!shown.width) continue;
                    boxes.push({name: section.dataset.section, x: shown.left, y: shown.top});
                }
                return boxes;
            }""")
            names = [box["name"] for box in order]
            # DOM order is Train, Draw, Evaluate, Runs; on screen each starts right of or
            # below the one before.
            for before, after in zip(order, order[1:]):
                assert after["y"] > before["y"] + 1 or after["x"] > before["x"] + 1, (viewport, names, order)
        finally:
            context.close()


