"""`cnn-live serve` in a real subprocess: a log line per request and per run event at
INFO, --log-level, and a clean exit (status 0) on SIGTERM."""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from serve_process import Serve  # noqa: E402

# Thousands of one-image steps: long enough to pause, resume and stop.
LONG_RUN = {"preset": "seed", "epochs": 20, "train_size": 1000, "seed": 0}
SHORT_RUN = {"preset": "seed", "epochs": 2, "train_size": 200, "test_size": 100, "seed": 0}
ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/1\.1" (?P<status>\d{3})')


def run_events(server: Serve, run_id: str) -> list[str]:
    """The word after "run ID" in each of its lines but the epochs': started, paused..."""
    words = [line.split(f"run {run_id}", 1)[1].strip(" :").split()[0].rstrip(":")
             for line in server.lines_about(run_id)]
    return [word for word in words if word != "epoch"]


def access_counts(log: str) -> collections.Counter:
    return collections.Counter((match["method"], match["path"])
                               for match in map(ACCESS_LINE.search, log.splitlines()) if match)


@pytest.fixture(scope="module")
def session(mnist_dir, tmp_path_factory):
    """One server at --log-level info: a run started, paused, resumed and stopped, a
    second run that finishes, then SIGTERM while a third run trains."""
    with Serve(tmp_path_factory.mktemp("logs"), mnist_dir, "--log-level", "info") as server:
        stopped = server.request("POST", "/api/runs", LONG_RUN)[1]["run_id"]
        server.wait_for_state("running")
        for action, state in (("pause", "paused"), ("resume", "running"), ("stop", "finished")):
            assert server.request("POST", f"/api/runs/current/{action}")[0] == 200
            server.wait_for_state(state)
        finished = server.request("POST", "/api/runs", SHORT_RUN)[1]["run_id"]
        server.wait_for_state("finished")
        runs = {run["run_id"]: run for run in server.request("GET", "/api/runs")[1]}
        interrupted = server.request("POST", "/api/runs", LONG_RUN)[1]["run_id"]
        server.wait_for_state("running")
        exit_code = server.terminate()
    return {"server": server, "exit_code": exit_code, "runs": runs, "stopped": stopped,
            "finished": finished, "interrupted": interrupted}


def test_every_request_is_logged_once_with_its_status(session):
    server = session["server"]
    logged = access_counts(server.log())
    assert logged == server.sent
    assert '"POST /api/runs HTTP/1.1" 201' in server.log()


def test_a_run_started_paused_resumed_and_stopped_is_logged_once_per_event(session):
    server, run_id = session["server"], session["stopped"]
    assert run_events(server, run_id) == ["started", "paused", "running", "stopping", "stopped"]
    assert all(line.startswith("INFO:") for line in server.lines_about(run_id))


def test_a_finished_run_logs_its_start_and_its_end_once(session):
    server, run_id = session["server"], session["finished"]
    assert run_events(server, run_id) == ["started", "finished"]
    assert f"run {run_id} started: preset seed" in server.log()
    assert f"run {run_id} finished after {SHORT_RUN['epochs']} epochs" in server.log()


def test_every_epoch_of_a_run_is_logged_once(session):
    logged = {run_id: [line for line in session["server"].lines_about(run_id) if " epoch " in line]
              for run_id in (session["stopped"], session["finished"])}
    assert {run_id: len(lines) for run_id, lines in logged.items()} == {
        run_id: len(session["runs"][run_id]["epochs"]) for run_id in logged}
    assert logged[session["finished"]], "the finished run logged no epoch"


def test_sigterm_stops_the_training_run_as_interrupted_and_exits_with_status_0(session):
    assert session["exit_code"] == 0
    log = session["server"].log()
    assert f"run {session['interrupted']} interrupted after" in log
    assert log.rstrip().endswith("Finished server process [%d]" % session["server"].process.pid)


def test_a_failed_run_is_logged_once(tmp_path):
    # No MNIST in the data folder, and no download: the run fails while loading data.
    with Serve(tmp_path, tmp_path / "empty", "--log-level", "info") as server:
        run_id = server.request("POST", "/api/runs", SHORT_RUN)[1]["run_id"]
        server.wait_for_state("failed")
        assert server.terminate() == 0
    assert run_events(server, run_id) == ["started", "failed"]
    assert f"run {run_id} failed: " in server.log()


def test_log_level_warning_keeps_requests_and_run_events_out(tmp_path, mnist_dir):
    with Serve(tmp_path, mnist_dir, "--log-level", "warning") as server:
        run_id = server.request("POST", "/api/runs", SHORT_RUN)[1]["run_id"]
        server.wait_for_state("finished")
        assert server.terminate() == 0
    assert access_counts(server.log()) == collections.Counter()
    assert server.lines_about(run_id) == []

