"""Several runs at once on the page (issue 12), in a real Chromium (Playwright) against a
real uvicorn server on the real MNIST: a comparison started with one click draws both
runs live, each in its own colour and named in the legend, and lists both with their
states; a page that joins late shows both runs' histories; each run's row pauses,
resumes, steps and stops that run alone, and a queued run shows its place and can be
taken out of the queue; the drawing pad's chooser lists the runs and says which answered.

The browser rule, fixtures and helpers are those of test_browser.py (imported: without
a browser this module is skipped too, or fails under CNN_LIVE_REQUIRE_BROWSER=1). The
server here trains two runs at once whatever the machine's cores (in threads of the
test's process, as every in-process test app does). Screenshots go to artifacts/.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_browser import (  # noqa: E402,F401  (fixtures are used by name)
    Problems, api, browser_context_args, browser_type_launch_args, hook, open_dashboard,
    save_screenshot, unfold, wait_hook,
)
from playwright.sync_api import Page, expect  # noqa: E402

from server_helpers import LiveServer, make_app, wait_for  # noqa: E402

AT_ONCE = 2
# The 2017 experiment, short: the seed CNN and the fully connected seed-fc, one image a
# step on 1000 images (a fraction of a second an epoch each on 2 cores).
COMPARED_EPOCHS = 5
# Long enough for a page to join after a few epochs and still see both train (the test
# stops them then).
LATE_EPOCHS = 40
# Runs that never end by themselves: the test stops them.
ENDLESS = {"preset": "seed", "epochs": 300}


@pytest.fixture
def server(mnist_dir):
    """The real app, training AT_ONCE runs at once (more wait in the queue)."""
    with LiveServer(make_app(mnist_dir, max_concurrent_runs=AT_ONCE)) as live:
        yield live


# -- reading the page ----------------------------------------------------------------------------

def runs_of(page: Page) -> dict[str, dict]:
    """The page's runs by id: name, state, queuePosition, colour, ticked, epochs."""
    return {run["id"]: run for run in hook(page, "runs")}


def drawn_of(page: Page) -> dict[str, dict]:
    """The runs last drawn on the charts by id: label, colour, lossPoints, epochPoints."""
    return {run["id"]: run for run in hook(page, "drawnRuns")}


def row(page: Page, run_id: str):
    return page.locator(f'#runs li.run[data-run-id="{run_id}"]')


def rgb(colour: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"#([0-9a-f]{6})", colour.strip(), re.I)
    if match:
        n = int(match.group(1), 16)
        return (n >> 16) & 255, (n >> 8) & 255, n & 255
    match = re.match(r"rgba?\(\s*(\d+)[\s,]+(\d+)[\s,]+(\d+)", colour)
    assert match, colour
    return tuple(int(v) for v in match.groups())


def pixels_of_colour(page: Page, selector: str, colour: tuple[int, int, int]) -> int:
    """Opaque pixels of the chart's canvas within a small distance of `colour`."""
    return page.evaluate("""([selector, [r, g, b]]) => {
        const canvas = document.querySelector(selector);
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let n = 0;
        for (let i = 0; i < data.length; i += 4) {
            if (data[i + 3] < 200) continue;
            const d = Math.abs(data[i] - r) + Math.abs(data[i + 1] - g) + Math.abs(data[i + 2] - b);
            if (d < 40) n++;
        }
        return n;
    }""", [selector, list(colour)])


def state_on_server(api: httpx.Client, run_id: str) -> str:
    return api.get(f"/api/runs/{run_id}").json()["state"]


def steps_done(api: httpx.Client, run_id: str) -> tuple[int, int]:
    """(epoch, step) of an active run, from the status."""
    for run in api.get("/api/status").json()["runs"]:
        if run["run_id"] == run_id:
            return run["epoch"], run["step"]
    raise AssertionError(f"run {run_id} is not active")


def epochs_done(api: httpx.Client, run_id: str) -> int:
    return len(api.get(f"/api/runs/{run_id}").json()["epochs"])


def start_comparison(api: httpx.Client, *runs: dict) -> list[str]:
    response = api.post("/api/comparisons", json={"runs": list(runs)})
    assert response.status_code == 201, response.text
    return response.json()["run_ids"]


def wait_all_ended(api: httpx.Client, ids, timeout: float = 60.0) -> None:
    wait_for(lambda: all(state_on_server(api, i) not in ("queued", "running", "paused", "stopping")
                         for i in ids), timeout, what="the runs to end")


# -- the tests -------------------------------------------------------------------------------------

def test_cnn_against_fully_connected_in_one_click_draws_both_live_in_their_own_colours(
        server, page, api):
    problems = Problems(page)
    open_dashboard(page, server)
    unfold(page)
    page.fill("#epochs", str(COMPARED_EPOCHS))
    expect(page.locator("#compare-help")).to_contain_text(f"{COMPARED_EPOCHS} epochs each")
    page.get_by_role("button", name="CNN against fully connected").click()

    # Both train at once, both listed as running and both drawn with points so far.
    page.wait_for_function("""() => {
        const drawn = window.cnnLive.drawnRuns();
        const running = document.querySelectorAll('#runs li.run[data-state="running"]').length;
        return running === 2 && drawn.length === 2 && drawn.every((run) => run.lossPoints > 0);
    }""", timeout=20_000)
    runs = runs_of(page)
    assert len(runs) == 2
    by_preset = {run["name"].split(" #")[0]: run for run in runs.values()}
    assert set(by_preset) == {"seed", "seed-fc"}
    cnn, fc = by_preset["seed"], by_preset["seed-fc"]
    assert hook(page, "selectedRun") == cnn["id"], "the comparison's first run is followed"
    for run in (cnn, fc):
        expect(row(page, run["id"]).locator(".run-meta")).to_contain_text(
            re.compile(r"running|finished"))
        expect(row(page, run["id"]).locator(".run-name")).to_have_text(run["name"])

    ids = [cnn["id"], fc["id"]]
    wait_all_ended(api, ids)
    for run in (cnn, fc):
        expect(row(page, run["id"]).locator(".run-meta")).to_contain_text(
            f"finished · {COMPARED_EPOCHS}/{COMPARED_EPOCHS} epochs", timeout=10_000)
    page.wait_for_function("""(epochs) => window.cnnLive.drawnRuns().length === 2
        && window.cnnLive.drawnRuns().every((run) => run.epochPoints === epochs)""",
                           arg=COMPARED_EPOCHS, timeout=10_000)

    # Finished, both stay drawn: each in its own colour, named in both legends.
    drawn = drawn_of(page)
    assert drawn.keys() == set(ids)
    colours = {run_id: rgb(drawn[run_id]["colour"]) for run_id in ids}
    assert colours[cnn["id"]] != colours[fc["id"]]
    for chart in ("loss", "accuracy"):
        labels = " | ".join(page.evaluate(f"() => window.cnnLive.legend('{chart}')"))
        for run in (cnn, fc):
            assert run["name"] in labels, (chart, labels)
        legend = page.locator(f"#{chart}-chart .u-legend")
        for run in (cnn, fc):
            expect(legend).to_contain_text(run["name"])
        for run_id in ids:
            assert pixels_of_colour(page, f"#{chart}-chart canvas", colours[run_id]) > 30, \
                f"no line of run {run_id}'s colour on the {chart} chart"
    # The runs list shows each run's colour.
    for run_id in ids:
        swatch = row(page, run_id).locator(".run-swatch")
        assert rgb(swatch.evaluate("(el) => getComputedStyle(el).backgroundColor")) == colours[run_id]
        expect(row(page, run_id).locator("input.run-toggle")).to_be_checked()
        expect(row(page, run_id).locator("input.run-toggle")).to_be_enabled()

    # Unticking a finished run takes it off the charts.
    row(page, fc["id"]).locator("input.run-toggle").uncheck()
    # (The charts are drawn while they can be seen: back up to them from the runs list.)
    page.locator("#loss-chart").scroll_into_view_if_needed()
    page.wait_for_function("(id) => !window.cnnLive.drawnRuns().some((run) => run.id === id)",
                           arg=fc["id"], timeout=5_000)
    save_screenshot(page, "jobs-comparison.png", full_page=True)
    assert problems.items == []


def test_a_page_joining_late_shows_both_runs_histories(server, context, page, api):
    watcher = page
    open_dashboard(watcher, server)
    ids = start_comparison(api, {"preset": "seed", "epochs": LATE_EPOCHS},
                           {"preset": "seed-fc", "epochs": LATE_EPOCHS})
    wait_for(lambda: all(len(api.get(f"/api/runs/{i}").json()["epochs"]) >= 3 for i in ids), 30,
             what="a few epochs of both runs")
    late = context.new_page()
    problems = Problems(late)
    open_dashboard(late, server)
    assert any(state_on_server(api, i) == "running" for i in ids), \
        "both runs ended before the page joined: the test needs longer runs"
    late.wait_for_function("""(ids) => {
        const drawn = window.cnnLive.drawnRuns();
        return ids.every((id) => drawn.some((run) => run.id === id && run.epochPoints >= 3
                                                     && run.lossPoints > 0));
    }""", arg=ids, timeout=15_000)

    # Both stopped now: the late page then draws what the watching page drew, run by run.
    for i in ids:
        api.post(f"/api/runs/{i}/stop", json={})
    wait_all_ended(api, ids)
    epochs = {i: len(api.get(f"/api/runs/{i}").json()["epochs"]) for i in ids}
    for p in (watcher, late):
        p.wait_for_function("""(epochs) => Object.entries(epochs).every(([id, n]) =>
            window.cnnLive.drawnRuns().some((run) => run.id === id && run.epochPoints === n))""",
                            arg=epochs, timeout=10_000)
    wait_for(lambda: all(drawn_of(watcher)[i]["lossPoints"] == drawn_of(late)[i]["lossPoints"]
                         for i in ids), 5, what="both pages to draw the same loss points")
    assert len({drawn_of(late)[i]["colour"] for i in ids}) == 2
    assert {i: drawn_of(late)[i]["colour"] for i in ids} == {i: drawn_of(watcher)[i]["colour"]
                                                             for i in ids}
    for i in ids:
        expect(row(late, i).locator(".run-meta")).to_contain_text(
            f"stopped · {epochs[i]}/{LATE_EPOCHS} epochs")
    late.close()  # before the server stops: its event stream would hold uvicorn up
    assert problems.items == []


def test_each_row_steers_its_own_run_and_a_queued_run_can_be_cancelled(server, page, api):
    problems = Problems(page)
    open_dashboard(page, server)
    first, second, third = start_comparison(api, ENDLESS, ENDLESS, ENDLESS)
    try:
        # Two train, the third waits: its row says where it is and offers Cancel only.
        queued = row(page, third)
        expect(queued).to_have_attribute("data-state", "queued", timeout=10_000)
        expect(queued.locator(".run-meta")).to_contain_text("queued · next in the queue")
        expect(queued.locator("button.run-cancel")).to_be_visible()
        for hidden in ("pause", "stop", "step"):
            expect(queued.locator(f"button.run-{hidden}")).to_have_count(0)
        expect(page.locator("#runs-summary")).to_contain_text("2 training")
        expect(page.locator("#runs-summary")).to_contain_text("1 queued")
        wait_for(lambda: all(steps_done(api, i)[1] > 0 for i in (first, second)), 20,
                 what="both runs to train")

        # Pause the first from its row: it holds, the second goes on.
        row(page, first).locator("button.run-pause").click()
        expect(row(page, first)).to_have_attribute("data-state", "paused", timeout=10_000)
        assert state_on_server(api, first) == "paused"
        expect(row(page, first).locator("button.run-resume")).to_be_visible()
        held, going = steps_done(api, first), steps_done(api, second)
        page.wait_for_timeout(800)
        assert steps_done(api, first) == held, "the paused run trained on"
        assert steps_done(api, second) > going, "the other run stopped training"
        assert state_on_server(api, second) == "running"

        # Step the paused run one epoch from its row: it trains to its epoch's end, pauses.
        epochs = epochs_done(api, first)
        row(page, first).locator("button.run-step").click()
        wait_for(lambda: epochs_done(api, first) == epochs + 1
                 and state_on_server(api, first) == "paused", 20, what="the step to end")
        expect(row(page, first)).to_have_attribute("data-state", "paused", timeout=10_000)
        expect(row(page, first).locator(".run-meta")).to_contain_text(f"{epochs + 1}/")
        page.wait_for_timeout(300)
        assert epochs_done(api, first) == epochs + 1, "more than one epoch was trained"

        # Follow the second run with the keyboard: the panels and the controls follow it.
        row(page, second).locator("button.run-select").focus()
        page.keyboard.press("Enter")
        page.wait_for_function("(id) => window.cnnLive.selectedRun() === id", arg=second,
                               timeout=5_000)
        expect(row(page, second)).to_have_attribute("aria-current", "true")
        expect(page.locator("#state")).to_have_text("running")
        page.locator("#weights").scroll_into_view_if_needed()   # drawn while in view
        page.wait_for_function("(id) => window.cnnLive.histograms().runId === id", arg=second,
                               timeout=10_000)
        expect(page.locator("#runs-follow-newest")).to_be_visible()

        # Resume the first from its row.
        row(page, first).locator("button.run-resume").click()
        expect(row(page, first)).to_have_attribute("data-state", "running", timeout=10_000)

        # Take the third out of the queue: gone from the page and the server.
        queued.locator("button.run-cancel").click()
        expect(queued).to_have_count(0, timeout=10_000)
        assert api.get(f"/api/runs/{third}").status_code == 404
        expect(page.locator("#runs-summary")).not_to_contain_text("queued")

        # Stop both from their rows.
        for run_id in (first, second):
            row(page, run_id).locator("button.run-stop").click()
        wait_all_ended(api, (first, second), 20)
        for run_id in (first, second):
            expect(row(page, run_id).locator(".run-meta")).to_contain_text("stopped", timeout=10_000)
        expect(page.locator("#state")).to_have_text("finished")
        expect(page.locator("#runs-error")).to_be_hidden()
    finally:
        for run_id in (first, second, third):
            api.post(f"/api/runs/{run_id}/stop", json={})
            api.delete(f"/api/runs/{run_id}", headers={"Content-Type": "application/json"})
    save_screenshot(page, "jobs-controls.png")
    assert problems.items == []


def test_the_drawing_pad_says_which_run_answers_and_lets_one_choose(server, page, api):
    problems = Problems(page)
    ids = start_comparison(api, {"preset": "seed", "epochs": 3}, {"preset": "seed-fc", "epochs": 3})
    wait_all_ended(api, ids)
    choices = api.get("/api/model/choices").json()
    assert {c["run_id"] for c in choices} >= set(ids), choices
    open_dashboard(page, server)
    names = {run_id: run["name"] for run_id, run in runs_of(page).items()}

    chooser = page.get_by_label("Answered by")
    expect(chooser).to_be_visible()
    for run_id in ids:
        expect(chooser.locator(f'option[value="{run_id}"]')).to_have_count(1)
        expect(chooser.locator(f'option[value="{run_id}"]')).to_contain_text(names[run_id])
    expect(chooser.locator("option").first).to_contain_text("Newest run")

    from test_browser_draw import draw_one  # the same strokes as the drawing tests

    # The default: the newest run's model answers, and the pad says which.
    draw_one(page)
    wait_hook(page, "predictions", ">", 0)
    newest = choices[0]["run_id"]
    expect(page.locator("#prediction-model")).to_contain_text(names[newest])

    # Each run chosen in turn answers the same drawing, and is named.
    for run_id in ids:
        count = hook(page, "predictions")
        chooser.select_option(run_id)
        wait_hook(page, "predictions", ">", count)
        page.wait_for_function("(id) => window.cnnLive.lastModel()?.run_id === id", arg=run_id,
                               timeout=10_000)
        expect(page.locator("#prediction-model")).to_contain_text(names[run_id])
        expect(page.locator("#prediction-model")).to_contain_text("epoch 3")
    save_screenshot(page.locator("#draw"), "jobs-draw-chooser.png")
    assert problems.items == []
