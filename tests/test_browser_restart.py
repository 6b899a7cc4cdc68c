"""Runs that outlive the server, on the page (real Chromium, Playwright): a checkpoint
that cannot be written shows as a line under the run's progress, not as a failed run;
a run interrupted by the server's death is listed with a Continue button that trains it
on. Skipped without the system Chromium, as tests/test_browser.py is."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/lib/chromium/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]
try:
    import playwright.sync_api  # noqa: F401
    import pytest_playwright  # noqa: F401
except ImportError as exc:
    _NO_BROWSER = f"Playwright is not installed ({exc})"
else:
    _NO_BROWSER = None if os.access(CHROMIUM, os.X_OK) else f"no Chromium at {CHROMIUM}"
if _NO_BROWSER is not None:
    if os.environ.get("CNN_LIVE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"CNN_LIVE_REQUIRE_BROWSER=1 but: {_NO_BROWSER}", pytrace=False)
    pytest.skip(f"browser tests skipped: {_NO_BROWSER}", allow_module_level=True)

import httpx  # noqa: E402
from playwright.sync_api import Page, expect  # noqa: E402

from cnn.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from server_helpers import LiveServer, make_app, start_run, wait_for  # noqa: E402

SHORT = {"preset": "default", "epochs": 2, "train_size": 2000, "test_size": 500}


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS}


def finished(api, run_id: str) -> dict | None:
    run = next(r for r in api.get("/api/runs").json() if r["run_id"] == run_id)
    return run if run["state"] == "finished" else None


def test_a_checkpoint_that_cannot_be_written_shows_under_the_progress_not_as_a_failure(
        mnist_dir, tmp_path, page: Page):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # a runs "folder" under a file: nothing is written
    with LiveServer(make_app(mnist_dir, runs_dir=str(blocker / "runs"))) as server:
        page.goto(server.url)
        expect(page.locator("#connection")).to_have_text("connected")
        with httpx.Client(base_url=server.url, timeout=10) as api:
            run_id = start_run(api, **SHORT)["run_id"]
            wait_for(lambda: finished(api, run_id), timeout=60, what="the run to finish")
        line = page.locator("#storage-error")
        expect(line).to_be_visible()
        expect(line).to_contain_text("Not saved:")
        expect(line).to_contain_text(str(blocker / "runs"))
        expect(page.locator("#state")).to_have_text("finished")
        expect(page.locator("#error")).to_be_hidden()  # the run did not fail
        page.close()


def test_an_interrupted_run_is_listed_with_a_continue_button_that_trains_it_on(
        mnist_dir, tmp_path, page: Page):
    runs_dir = tmp_path / "runs"
    with LiveServer(make_app(mnist_dir, runs_dir=str(runs_dir))) as server:
        with httpx.Client(base_url=server.url, timeout=10) as api:
            run_id = start_run(api, **SHORT)["run_id"]
            wait_for(lambda: finished(api, run_id), timeout=60, what="the run to finish")
    # As a server killed mid-run leaves its record, with the last epoch to do again.
    with sqlite3.connect(runs_dir / "runs.sqlite3") as connection:
        connection.execute("UPDATE runs SET state = 'running', outcome = NULL")
        connection.execute("DELETE FROM epochs WHERE epoch = 2")
    connection.close()
    checkpoint = load_checkpoint(runs_dir / f"run-{run_id}.npz")  # back to epoch 1's: redo 2
    save_checkpoint(runs_dir / f"run-{run_id}.npz", checkpoint.model,
                    checkpoint.optimizer_state, {**checkpoint.metadata, "epoch": 1})

    with LiveServer(make_app(mnist_dir, runs_dir=str(runs_dir))) as server:
        page.goto(server.url)
        item = page.locator(f'#runs li[data-run-id="{run_id}"]')
        expect(item.locator(".run-meta")).to_contain_text("interrupted")
        expect(item).to_have_attribute("title", "the server stopped during epoch 2; continue "
                                                "it from its checkpoint of epoch 1")
        item.locator("button.run-continue").click()
        with httpx.Client(base_url=server.url, timeout=10) as api:
            run = wait_for(lambda: finished(api, run_id), timeout=60, what="the continued run")
        assert [epoch["epoch"] for epoch in run["epochs"]] == [1, 2]
        expect(item.locator(".run-meta")).to_contain_text("finished")
        expect(item.locator("button.run-continue")).to_have_count(0)
        expect(page.locator("#runs-error")).to_be_hidden()
        page.close()
