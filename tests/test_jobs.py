"""Runs as jobs (issue 12), against a real `cnn-live serve` and its real worker
processes (the default `process` executor): two runs train at once, each in a worker
process of the server's own; a third waits in the queue; each run is steered on its
own; a queued run is cancelled; a worker killed mid-run fails its run alone; a worker
that ignores a stop is killed after the grace period; a server that is stopped leaves
no process behind, and the workers of a killed server end by themselves.

Runs are small (the `seed` preset on 1000 images, always stopped; `default` on 2000
where a checkpoint is needed) and every wait polls with a generous timeout."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

import httpx
import pytest

from app.executors import WORKER_NICENESS
from cnn.checkpoint import load_checkpoint

sys.path.insert(0, str(Path(__file__).parent))

from conftest import CLOSED_PORT_MIRROR  # noqa: E402
from serve_process import Serve  # noqa: E402
from server_helpers import SSE, events_only, parse_sse, wait_for  # noqa: E402

# Thousands of one-image steps (an epoch in ~1.5 s): always stopped by the test.
LONG = {"preset": "seed", "epochs": 50, "train_size": 1000}
LONG_LEARNING_RATE = 2.0  # the seed preset's
# Short epochs, each ending in a checkpoint.
CHECKPOINTED = {"preset": "default", "epochs": 30, "train_size": 2000, "test_size": 500}
SHORT = {"preset": "default", "epochs": 3, "train_size": 2000, "test_size": 500}
ENV = {"CNN_LIVE_MAX_CONCURRENT_RUNS": "2", "CNN_LIVE_MAX_QUEUED_RUNS": "4",
       "CNN_LIVE_MNIST_MIRRORS": CLOSED_PORT_MIRROR}
LIVE_STATES = ("queued", "running", "paused", "stopping")
WAIT = 60.0  # seconds: generous, for a busy two-core machine


# -- the server and its runs -------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared_server(mnist_dir, tmp_path_factory):
    """One server for the tests that leave it running (two workers, a queue of four)."""
    with Serve(tmp_path_factory.mktemp("jobs"), mnist_dir, **ENV) as server:
        yield server
        assert server.terminate() == 0


@pytest.fixture
def server(shared_server):
    """The shared server, with no live run before the test nor after it."""
    settle(shared_server)
    yield shared_server
    settle(shared_server)


def settle(server: Serve) -> None:
    """Every queued run cancelled, every active one stopped, and their workers gone."""
    def quiet() -> bool:
        runs = server.request("GET", "/api/status")[1]["runs"]
        for run in runs:
            if run["state"] == "queued":
                cancel(server, run["run_id"])
            elif run["state"] in ("running", "paused"):
                server.request("POST", f"/api/runs/{run['run_id']}/stop", {})
        return not runs
    server.wait_until(quiet, "every run to end", timeout=WAIT)


def start(server: Serve, **body) -> dict:
    status, answer = server.request("POST", "/api/runs", body)
    assert status == 201, answer
    return answer


def control(server: Serve, run_id: str, action: str, body: dict | None = None) -> dict:
    status, answer = server.request("POST", f"/api/runs/{run_id}/{action}", body or {})
    assert status == 200, (action, answer)
    return answer


def cancel(server: Serve, run_id: str) -> int:
    return server.send("DELETE", f"/api/runs/{run_id}", b"{}",
                       {"Content-Type": "application/json"})[0]


def record(server: Serve, run_id: str) -> dict:
    status, answer = server.request("GET", f"/api/runs/{run_id}")
    assert status == 200, answer
    return answer


def live(server: Serve, run_id: str) -> dict | None:
    """The run's entry in /api/status (state, queue position, epoch, step), while live."""
    runs = server.request("GET", "/api/status")[1]["runs"]
    return next((run for run in runs if run["run_id"] == run_id), None)


def position(server: Serve, run_id: str) -> tuple[int, int]:
    """(epoch, step) of the run's last reported batch."""
    run = live(server, run_id)
    return run["epoch"], run["step"]


def training(server: Serve, *run_ids: str) -> None:
    """Waits until each run reports batches (its worker has loaded the data)."""
    server.wait_until(lambda: all((run := live(server, run_id)) and run["state"] == "running"
                                  and run["step"] > 0 for run_id in run_ids),
                      f"runs {run_ids} to train", timeout=WAIT)


def ended(server: Serve, run_id: str, timeout: float = WAIT) -> dict:
    return server.wait_until(
        lambda: (run := record(server, run_id))["state"] not in LIVE_STATES and run,
        f"run {run_id} to end", timeout=timeout)


def worker_pid(server: Serve, run_id: str) -> int:
    node = server.wait_until(lambda: record(server, run_id)["node"], f"run {run_id}'s node")
    assert node.startswith("pid "), node
    return int(node.removeprefix("pid "))


# -- processes -------------------------------------------------------------------------------

def parent_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid for process {pid}")


def descendants(pid: int) -> set[int]:
    """Every process under `pid` (children, their children...), from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = parent_of(int(entry.name))
            except (OSError, AssertionError):
                pass  # ended meanwhile
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def thread_niceness(pid: int) -> dict[int, int]:
    """Each thread of process `pid` (Linux: the niceness is a thread's): its niceness."""
    niceness = {}
    for tid in map(int, os.listdir(f"/proc/{pid}/task")):
        with contextlib.suppress(ProcessLookupError):   # a thread that ended meanwhile
            niceness[tid] = os.getpriority(os.PRIO_PROCESS, tid)
    return niceness


def reaped(pid: int) -> bool:
    """The process is gone and its parent collected its exit status."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def exited(pid: int) -> bool:
    """The process has ended: reaped, or a zombie (an orphan's exit status waits for
    whoever adopted it)."""
    if reaped(pid):
        return True
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


# -- the stream ------------------------------------------------------------------------------

class Events(threading.Thread):
    """/api/events of a server, read in a thread from now on, until closed. Not
    server_helpers' StreamReader: its 10 s read timeout is shorter than the server's
    15 s keepalive, and the stream is silent that long while workers start on a busy
    machine. Like a browser, it reconnects with Last-Event-ID if the server ends it."""

    def __init__(self, server: Serve) -> None:
        super().__init__(name="events", daemon=True)
        self.url = f"http://127.0.0.1:{server.port}/api/events"
        self.records: list[SSE] = []
        self._read, self._parsed = 0, []  # records parsed so far: (name, payload)
        self.error: BaseException | None = None
        self._subscribed, self._closing = threading.Event(), threading.Event()
        self.start()
        assert self._subscribed.wait(30), "the stream did not open"

    def run(self) -> None:
        headers = {}
        try:
            while not self._closing.is_set():
                with httpx.stream("GET", self.url, headers=headers,
                                  timeout=httpx.Timeout(10.0, read=60.0)) as response:
                    response.raise_for_status()
                    for record in parse_sse(response.iter_lines()):
                        self.records.append(record)
                        if record.id is not None:
                            headers["Last-Event-ID"] = str(record.id)
                        self._subscribed.set()  # the hub registered us before "connected"
                        if self._closing.is_set():
                            return
        except BaseException as exc:
            self.error = exc
        finally:
            self._subscribed.set()

    def events(self) -> list[tuple[str, dict]]:
        """(name, payload) of every event so far, in the stream's order (each parsed
        once: filters and evaluations are large)."""
        if self.error is not None:
            raise AssertionError(f"the stream failed: {self.error!r}")
        records = self.records[self._read:]  # a copy: the reader appends meanwhile
        self._read += len(records)
        self._parsed += [(record.event, record.json()) for record in events_only(records)]
        return list(self._parsed)

    def named(self, name: str, run_id: str | None = None) -> list[dict]:
        return [payload for event, payload in self.events() if event == name
                and (run_id is None or payload.get("run_id") == run_id)]

    def index(self, name: str, run_id: str) -> int:
        """Where the run's first `name` event is in the stream (-1: none yet)."""
        return next((index for index, (event, payload) in enumerate(self.events())
                     if event == name and payload.get("run_id") == run_id), -1)

    def close(self) -> None:
        self._closing.set()  # it ends at its next record (events, or a ping while idle)


# -- the tests -------------------------------------------------------------------------------

def test_two_runs_train_at_the_same_time_each_in_its_own_worker_process(server):
    events = Events(server)
    first, second = start(server, **LONG), start(server, **LONG)
    assert first["state"] == second["state"] == "running"
    a, b = first["run_id"], second["run_id"]

    def interleaved() -> bool:
        order = [p["run_id"] for p in events.named("batch") if p["run_id"] in (a, b)]
        return sum(x != y for x, y in zip(order, order[1:])) >= 6  # a b a b a b a ...
    server.wait_until(interleaved, "the two runs' batch events to interleave", timeout=WAIT)
    training(server, a, b)
    # Every event of a run says which run it is of (the server's status speaks of all).
    for name, payload in events.events():
        if name != "status":
            assert payload.get("run_id"), (name, str(payload)[:200])
    assert {p["run_id"] for p in events.named("batch")} >= {a, b}

    # Each run in a worker process of its own, under the server: forked by the
    # server's own fork server (multiprocessing's, a child of the server).
    pids = worker_pid(server, a), worker_pid(server, b)
    assert pids[0] != pids[1]
    assert server.process.pid not in pids
    fork_server = parent_of(pids[0])
    assert parent_of(pids[1]) == fork_server
    assert parent_of(fork_server) == server.process.pid
    assert set(pids) <= descendants(server.process.pid)
    # Each trains at a lower priority than the server (its answers and streams first),
    # every thread of it.
    server_niceness = os.getpriority(os.PRIO_PROCESS, server.process.pid)
    for pid in pids:
        niceness = thread_niceness(pid)
        assert len(niceness) >= 2   # the training and the command reader at least
        assert set(niceness.values()) == {min(server_niceness + WORKER_NICENESS, 19)}

    for run_id in (a, b):
        control(server, run_id, "stop")
    for run_id in (a, b):
        run = ended(server, run_id)
        assert (run["state"], run["outcome"]) == ("finished", "stopped")
    events.close()
    # Their workers ended and the server collected them: no zombie left.
    for pid in pids:
        server.wait_until(lambda: reaped(pid), f"worker {pid} to be reaped")


def test_a_third_run_queues_and_starts_when_another_ends(server):
    events = Events(server)
    a, b = start(server, **LONG)["run_id"], start(server, **LONG)["run_id"]
    third = start(server, **LONG)
    c = third["run_id"]
    assert (third["state"], third["queue_position"]) == ("queued", 1)
    assert (live(server, c)["state"], live(server, c)["queue_position"]) == ("queued", 1)
    assert record(server, c)["node"] is None
    training(server, a, b)
    assert live(server, c)["state"] == "queued"  # both workers busy: it still waits
    assert events.index("run", c) == -1

    control(server, a, "stop")
    server.wait_until(lambda: events.index("run", c) >= 0, "the queued run to start",
                      timeout=WAIT)
    done = events.named("done", a)
    assert done and done[0]["state"] == "stopped"
    # It started when a worker was free: its "run" event after the other's "done".
    assert events.index("done", a) < events.index("run", c)
    training(server, c)
    assert live(server, c)["queue_position"] is None
    assert worker_pid(server, c) != worker_pid(server, a)
    assert live(server, b)["state"] == "running"
    events.close()


def test_each_run_is_paused_resumed_stepped_steered_and_stopped_on_its_own(server):
    events = Events(server)
    a, b = start(server, **LONG)["run_id"], start(server, **LONG)["run_id"]
    training(server, a, b)

    def other_trains_on(times: int = 1) -> None:
        for _ in range(times):
            then = position(server, b)
            server.wait_until(lambda: position(server, b) > then, "the other run to train on")

    # Pause: that run waits, the other trains on.
    assert control(server, a, "pause")["state"] == "paused"
    other_trains_on(2)  # the paused worker's last reports have arrived by then
    held = position(server, a)
    other_trains_on()
    assert position(server, a) == held
    assert live(server, a)["state"] == "paused" and live(server, b)["state"] == "running"

    # Resume: it trains on.
    assert control(server, a, "resume")["state"] == "running"
    server.wait_until(lambda: position(server, a) > held, "the resumed run to train on")

    # Step on a paused run: it trains to its epoch's end and pauses again.
    control(server, a, "pause")
    other_trains_on(2)  # paused now, and said so
    paused_at = position(server, a)
    assert control(server, a, "step")["state"] == "running"

    def paused_at_an_epoch_end():
        run = live(server, a)
        return (run["state"] == "paused" and run["step"] == run["steps"]
                and (run["epoch"], run["step"]) > paused_at and run)
    stepped = server.wait_until(paused_at_an_epoch_end, "the stepped run to pause at its "
                                "epoch's end", timeout=WAIT)
    assert stepped["epoch"] in (paused_at[0], paused_at[0] + 1)
    assert record(server, a)["epochs"][-1]["epoch"] == stepped["epoch"]
    other_trains_on()
    assert live(server, a)["state"] == "paused"
    assert position(server, a) == (stepped["epoch"], stepped["step"])

    # A learning rate for one run: in its events and records only.
    assert control(server, b, "hyperparameters", {"learning_rate": 0.5})["run_id"] == b
    server.wait_until(lambda: any(p["learning_rate"] == 0.5 for p in events.named("epoch", b)),
                      "an epoch of the other run at the new learning rate", timeout=WAIT)
    (change,) = events.named("hyperparameters", b)
    assert change["learning_rate"] == 0.5
    assert events.named("hyperparameters", a) == []
    assert live(server, b)["learning_rate"] == 0.5
    assert live(server, a)["learning_rate"] == LONG_LEARNING_RATE
    # B's batches: at the seed preset's rate up to the change, at the new one after.
    changed = events.index("hyperparameters", b)
    rates = [(index > changed, payload["learning_rate"])
             for index, (name, payload) in enumerate(events.events())
             if name == "batch" and payload["run_id"] == b]
    assert {rate for after, rate in rates if not after} == {LONG_LEARNING_RATE}
    assert {rate for after, rate in rates if after} == {0.5}
    for name in ("batch", "epoch"):
        assert all(p["learning_rate"] == LONG_LEARNING_RATE for p in events.named(name, a))
    assert record(server, b)["epochs"][-1]["learning_rate"] == 0.5
    assert all(e["learning_rate"] == LONG_LEARNING_RATE for e in record(server, a)["epochs"])
    changes = {run_id: server.request("GET", f"/api/runs/{run_id}/metrics.json")[1]
               ["hyperparameter_changes"] for run_id in (a, b)}
    assert changes[a] == [] and [c["learning_rate"] for c in changes[b]] == [0.5]

    # Stop: that run ends, the other (paused) is still there, and trains on when resumed.
    assert control(server, b, "stop")["state"] == "stopping"
    run = ended(server, b)
    assert (run["state"], run["outcome"]) == ("finished", "stopped")
    assert events.named("done", b)[-1]["state"] == "stopped"
    assert live(server, a)["state"] == "paused" and events.named("done", a) == []
    control(server, a, "resume")
    resumed_at = position(server, a)
    server.wait_until(lambda: position(server, a) > resumed_at, "the resumed run to train on")
    control(server, a, "stop")
    assert ended(server, a)["outcome"] == "stopped"
    events.close()



def test_a_queued_run_is_cancelled(server):
    events = Events(server)
    a, b = start(server, **LONG)["run_id"], start(server, **LONG)["run_id"]
    queued = start(server, **LONG)
    c = queued["run_id"]
    assert queued["state"] == "queued"
    assert c in {run["run_id"] for run in server.request("GET", "/api/runs")[1]}

    assert cancel(server, c) == 204
    assert c not in {run["run_id"] for run in server.request("GET", "/api/runs")[1]}
    assert server.request("GET", f"/api/runs/{c}")[0] == 404
    assert live(server, c) is None
    server.wait_until(lambda: events.named("cancelled", c), "the cancelled event")
    assert cancel(server, c) == 404  # gone
    assert cancel(server, a) == 409  # a training run is stopped, not deleted
    assert live(server, a)["state"] == "running"
    training(server, a, b)
    assert events.index("run", c) == -1  # it never trained
    events.close()


def test_a_worker_killed_mid_run_fails_its_run_alone(server):
    events = Events(server)
    a = start(server, **CHECKPOINTED)["run_id"]
    b = start(server, **SHORT)["run_id"]
    pid = worker_pid(server, a)

    def mid_epoch_after_a_checkpoint() -> bool:
        # Killed mid-epoch, not as it writes its next checkpoint: the record names the
        # file's epoch (an epoch is ~32 batches: far from the next one).
        held = record(server, a)["checkpoint_epoch"]
        run = live(server, a)
        return bool(held and run["epoch"] == held + 1 and 0 < run["step"] <= run["steps"] // 2)
    server.wait_until(mid_epoch_after_a_checkpoint, "a checkpoint, then half an epoch",
                      timeout=WAIT)
    os.kill(pid, signal.SIGKILL)

    run = ended(server, a)
    assert (run["state"], run["message"]) == ("failed", "worker died: signal 9 (SIGKILL)")
    assert run["outcome"] == "failed"
    server.wait_until(lambda: events.named("error", a), "the failed run's error event")
    assert events.named("error", a)[0]["message"] == "worker died: signal 9 (SIGKILL)"
    # The server answers on, and collected the dead worker.
    assert server.send("GET", "/healthz")[0] == 200
    assert server.request("GET", "/api/status")[0] == 200
    server.wait_until(lambda: reaped(pid), "the killed worker to be reaped")
    # The other run trains to its end.
    other = ended(server, b)
    assert (other["state"], other["outcome"]) == ("finished", "finished")
    assert [e["epoch"] for e in other["epochs"]] == list(range(1, SHORT["epochs"] + 1))
    # The killed run's last checkpoint is whole: it loads, and holds the recorded epoch.
    checkpoint = load_checkpoint(run["checkpoint"])
    assert run["checkpoint_epoch"] >= 1
    assert checkpoint.epoch == run["checkpoint_epoch"] == len(run["epochs"])
    assert checkpoint.metadata["run_id"] == a
    assert server.send("GET", "/healthz")[0] == 200
    events.close()


def test_a_worker_that_ignores_a_stop_is_killed_after_the_grace_period(mnist_dir, tmp_path):
    with Serve(tmp_path, mnist_dir, **ENV, CNN_LIVE_STOP_GRACE="2") as server:
        run_id = start(server, **LONG)["run_id"]
        training(server, run_id)
        pid = worker_pid(server, run_id)
        try:
            os.kill(pid, signal.SIGSTOP)  # it reads no command now: a stop goes unheeded
            assert control(server, run_id, "stop")["state"] == "stopping"
            run = ended(server, run_id, timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):  # else it lets the worker go on
                os.kill(pid, signal.SIGCONT)
        # Killed by the server once the grace period was over: the run failed, and its
        # message says why the server killed it.
        assert (run["state"], run["outcome"]) == ("failed", "failed")
        assert run["message"] == "worker killed: it did not stop within 2 s of being asked"
        assert f"worker {pid} did not stop within 2 s: killed" in server.log()
        server.wait_until(lambda: reaped(pid), "the killed worker to be reaped")
        assert server.send("GET", "/healthz")[0] == 200
        assert server.terminate() == 0


def test_a_server_stopped_with_sigterm_leaves_no_process_and_its_runs_interrupted(
        mnist_dir, tmp_path):
    runs_dir = tmp_path / "runs"

    def serve(name: str) -> Serve:
        (tmp_path / name).mkdir()
        return Serve(tmp_path / name, mnist_dir, **ENV, CNN_LIVE_RUNS_DIR=str(runs_dir))

    with serve("first") as first:
        run_ids = [start(first, **LONG)["run_id"] for _ in range(2)]
        first.wait_until(lambda: all((record(first, run_id)["checkpoint_epoch"] or 0) >= 1
                                     for run_id in run_ids),
                         "both runs' first checkpoints", timeout=WAIT)
        training(first, *run_ids)
        pids = {worker_pid(first, run_id) for run_id in run_ids}
        processes = descendants(first.process.pid)  # its fork server's and tracker's too
        assert pids <= processes
        assert first.terminate() == 0
        # The workers stopped and were collected before the server exited, not even a
        # zombie left; multiprocessing's helpers end as their pipes from it close.
        for pid in pids:
            assert reaped(pid), f"worker {pid} outlived its server"
        wait_for(lambda: all(exited(pid) for pid in processes), timeout=WAIT, interval=0.1,
                 what=f"the server's processes {sorted(processes)} to exit")

    with serve("again") as again:
        runs = {run["run_id"]: run for run in again.request("GET", "/api/runs")[1]}
        for run_id in run_ids:
            run = runs[run_id]
            assert (run["state"], run["outcome"]) == ("interrupted", "interrupted")
            assert run["checkpoint_epoch"] >= 1
            assert run["message"].endswith(
                f"continue it from its checkpoint of epoch {run['checkpoint_epoch']}")
        # Continuable: one trains on from its checkpoint, in a worker again.
        answer = control(again, run_ids[0], "continue")
        assert answer["state"] == "running"
        training(again, run_ids[0])
        pid = worker_pid(again, run_ids[0])
        assert pid in descendants(again.process.pid)
        assert again.terminate() == 0
        assert reaped(pid)


def test_the_workers_of_a_killed_server_notice_and_exit(mnist_dir, tmp_path):
    with Serve(tmp_path, mnist_dir, **ENV) as server:
        a, b = start(server, **LONG)["run_id"], start(server, **LONG)["run_id"]
        training(server, a, b)
        control(server, b, "pause")  # a paused worker, too, must notice
        pids = {worker_pid(server, a), worker_pid(server, b)}
        processes = descendants(server.process.pid)
        assert pids <= processes
        server.process.kill()
        server.process.wait(10)
        try:
            # Their command pipes closed: each stops between batches and exits (adopted,
            # a zombie at most until its new parent collects it).
            wait_for(lambda: all(exited(pid) for pid in processes), timeout=WAIT,
                     interval=0.1, what=f"the dead server's processes {sorted(processes)} "
                                        "to exit")
        finally:
            for pid in processes:  # a failed test leaves no orphan training on
                if not exited(pid):
                    os.kill(pid, signal.SIGKILL)
