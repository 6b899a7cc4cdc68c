"""Helpers shared by the API and stream tests: apps on the real MNIST, polling with
timeouts, an SSE parser, in-process and real-socket stream readers, a real
uvicorn server in a thread, and a browser test's unfolding of a folded part.

Imported by path, like naive_reference: `sys.path.insert(0, str(Path(__file__).parent))`.
"""

from __future__ import annotations

import cnn.model

import asyncio
import json
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from app.routers import events as events_router
import httpx
import pytest
import uvicorn

from app.main import create_app
from app.settings import Settings

# About one second of training each (2 cores): the tests' usual run.
SHORT_RUN = {"preset": "default", "epochs": 2, "train_size": 2000, "test_size": 500}
# Thousands of one-image steps: long enough to pause, watch and stop (always stopped).
LONG_RUN = {"preset": "seed", "epochs": 20, "train_size": 1000}
ACTIVE_STATES = ("running", "paused", "stopping")
FAST_PING_SECONDS = 0.2


# The Host that Starlette's TestClient sends: allowed by every test app, as a user
# would allow a name with CNN_LIVE_ALLOWED_HOSTS (real servers in tests use 127.0.0.1).
TEST_CLIENT_HOST = "testserver"


def make_app(data_dir, **settings):
    """The real application on `data_dir`, never downloading, answering to TestClient's
    Host too (unless `allowed_hosts` is given). Its runs directory (checkpoints and run
    records, which a restarted server lists again) is a fresh temporary folder unless
    `runs_dir` is given: a module's app, made before the per-test cache, would otherwise
    share the user's cache, and list every earlier session's runs. Runs train in threads
    of the app (the `thread` executor): a test can reach into the engine (fail_after);
    tests/test_jobs.py and the tests of a served `cnn-live serve` use worker processes."""
    settings.setdefault("allowed_hosts", (TEST_CLIENT_HOST,))
    settings.setdefault("executor", "thread")
    settings.setdefault("runs_dir", tempfile.mkdtemp(prefix="cnn-live-test-runs-"))
    settings.setdefault("drawings_dir", str(Path(settings["runs_dir"]).parent
                                            / (Path(settings["runs_dir"]).name + "-drawings")))
    return create_app(Settings(data_dir=str(data_dir), download=False, **settings))


@pytest.fixture
def fast_pings(monkeypatch):
    """Idle SSE streams send `: ping` every 0.2 s instead of 15 s, so that a reader
    blocked on an idle stream wakes up often enough to honour its deadline."""
    monkeypatch.setattr(events_router, "KEEPALIVE_SECONDS", FAST_PING_SECONDS)
    return FAST_PING_SECONDS


# -- waiting -------------------------------------------------------------------------------

def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02,
             what: str = "the condition"):
    """Poll until `predicate()` is truthy and return its value; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def unfold(page, selector: str = "#advanced") -> None:
    """Open a folded part of the page (the Advanced settings, the steering) as a person
    would: by pressing its summary (`page`: a Playwright page)."""
    from playwright.sync_api import expect  # only browser tests have Playwright

    details = page.locator(selector)
    if details.get_attribute("open") is None:
        details.locator("summary").first.click()
    expect(details).to_have_attribute("open", "")


def finger_draws_one(context, page, box: dict) -> None:
    """A "1" drawn with a finger (CDP touch events, as a phone sends them) on the pad at
    `box` (viewport coordinates)."""
    cdp = context.new_cdp_session(page)
    x = box["x"] + box["width"] / 2
    top, bottom = box["y"] + 0.15 * box["height"], box["y"] + 0.85 * box["height"]
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart",
                                          "touchPoints": [{"x": x, "y": top, "id": 1}]})
    for i in range(1, 13):
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [
            {"x": x + (i % 2), "y": top + (bottom - top) * i / 12, "id": 1}]})
        page.wait_for_timeout(16)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def training_threads(run_id: str | None = None) -> list[threading.Thread]:
    prefix = f"training-{run_id}" if run_id else "training-"
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def wait_for_run_end(client, timeout: float = 30.0) -> dict:
    """Poll /api/status until the run is over, then wait for its thread to end (so its
    last events are published); returns the final status."""
    status = wait_for(lambda: (s := client.get("/api/status").json())["state"]
                      not in ACTIVE_STATES and s, timeout, what="the run to end")
    for thread in training_threads(status["run_id"]):
        thread.join(timeout)
        assert not thread.is_alive(), "the training thread outlived its run"
    return status


def stop_every_run(manager, timeout: float = 60.0) -> None:
    """Take every queued run out of the queue, stop every active one, and wait until
    none is left in a worker (a test that may have started several: fuzzing)."""
    deadline = time.monotonic() + timeout
    while True:
        live = [run for run in list(manager.runs.values())
                if run.state in ("queued", "running", "paused", "stopping")]
        if not live and not manager.status()["runs"]:
            break
        for run in live:
            try:
                manager.cancel(run.run_id) if run.state == "queued" else manager.stop(run.run_id)
            except Exception:  # it changed state in between
                pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for every run to stop")
        time.sleep(0.05)
    for thread in training_threads():
        thread.join(30)
        assert not thread.is_alive(), "a training thread outlived its stopped run"


def start_run(client, **body) -> dict:
    response = client.post("/api/runs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


# -- server-sent events -------------------------------------------------------------------

@dataclass(frozen=True)
class SSE:
    """One block of an event stream (up to a blank line)."""
    id: int | None = None
    event: str | None = None
    data: str | None = None
    retry: int | None = None
    comments: tuple[str, ...] = ()

    def json(self):
        return json.loads(self.data)

    @property
    def is_event(self) -> bool:
        return self.event is not None or self.data is not None


def parse_sse(lines: Iterable[str]) -> Iterator[SSE]:
    """SSE records from decoded lines (as `iter_lines()` gives them), per the WHATWG
    rules this server uses: `field: value`, `: comment`, a blank line ends a record."""
    fields: dict = {}
    comments: list[str] = []
    data: list[str] = []
    for line in lines:
        if line == "":
            if fields or comments or data:
                yield SSE(id=int(fields["id"]) if "id" in fields else None,
                          event=fields.get("event"),
                          data="\n".join(data) if data else None,
                          retry=int(fields["retry"]) if "retry" in fields else None,
                          comments=tuple(comments))
            fields, comments, data = {}, [], []
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "":
            comments.append(value)
        elif name == "data":
            data.append(value)
        else:
            fields[name] = value


def events_only(records: Iterable[SSE], name: str | None = None) -> list[SSE]:
    """The records that are events (not comments), optionally only those named `name`."""
    return [r for r in records if r.is_event and (name is None or r.event == name)]


def epoch_payloads(records: Iterable[SSE]) -> list[dict]:
    return [r.json() for r in events_only(records, "epoch")]


def stream_events(client, until: Callable[[SSE], bool], *, headers: dict | None = None,
                  params: dict | None = None, timeout: float = 20.0,
                  path: str = "/api/events") -> list[SSE]:
    """In process (Starlette's TestClient): read /api/events (or another stream) until
    `until(record)` holds for a record (included); fails after `timeout` s. Needs
    `fast_pings` to notice a deadline on a quiet stream."""
    deadline = time.monotonic() + timeout
    records: list[SSE] = []
    with client.stream("GET", path, headers=headers, params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for record in parse_sse(response.iter_lines()):
            records.append(record)
            if until(record):
                return records
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"the stream did not deliver the awaited event within {timeout} s; "
                         f"got {[(r.id, r.event) for r in events_only(records)]}")


def is_done(record: SSE) -> bool:
    return record.event == "done"


def is_last(event_id: int) -> Callable[[SSE], bool]:
    return lambda record: record.id is not None and record.id >= event_id


# -- a real server -----------------------------------------------------------------------

class LiveServer:
    """uvicorn serving `app` on 127.0.0.1 (a socket bound to port 0) in a thread.

    `send_buffer` fixes the kernel's send buffer of every connection (accepted sockets
    inherit it from the listening one), instead of letting it grow to megabytes: a
    client that stops reading then holds the server's writes up within kilobytes."""

    def __init__(self, app, send_buffer: int | None = None) -> None:
        self.app = app
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if send_buffer:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        self.socket.bind(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d" % self.socket.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, timeout_graceful_shutdown=1,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.socket]},
                                       name="uvicorn-test-server", daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), 10,
                 what="uvicorn to start")
        assert self.server.started, "uvicorn did not start"
        return self

    def stop(self, timeout: float = 10.0) -> bool:
        """Ask uvicorn to exit; True once its thread has ended."""
        self.server.should_exit = True
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.socket.close()

    @property
    def manager(self):
        return self.app.state.manager


class StreamReader(threading.Thread):
    """Reads /api/events of a real server in a thread (httpx), keeping every record,
    until `until(record)` holds, `close()` is called or `timeout` s pass. Like a
    browser's EventSource, it reconnects with Last-Event-ID when the server ends the
    stream (as the hub does to a subscriber that fell too far behind)."""

    def __init__(self, url: str, until: Callable[[SSE], bool] = is_done, *,
                 headers: dict | None = None, timeout: float = 30.0,
                 reconnect: bool = True) -> None:
        super().__init__(name="sse-reader", daemon=True)
        self.url, self.until, self.headers, self.timeout = url, until, headers, timeout
        self.reconnect = reconnect
        self.records: list[SSE] = []
        self.connections = 0
        self.subscribed = threading.Event()
        self.error: BaseException | None = None
        self._closing = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        headers = dict(self.headers or {})
        try:
            while True:
                self.connections += 1
                with httpx.stream("GET", self.url + "/api/events", headers=headers,
                                  timeout=httpx.Timeout(10.0)) as response:
                    response.raise_for_status()
                    for record in parse_sse(response.iter_lines()):
                        self.records.append(record)
                        if record.id is not None:
                            headers["Last-Event-ID"] = str(record.id)
                        if "connected" in record.comments:
                            self.subscribed.set()  # the hub registered us before this
                        if self.until(record) or self._closing.is_set():
                            return
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"no awaited event within {self.timeout} s")
                if not self.reconnect or self._closing.is_set():
                    return
        except BaseException as exc:  # reported by result()
            self.error = exc
        finally:
            self.subscribed.set()

    def start_subscribed(self) -> "StreamReader":
        self.start()
        assert self.subscribed.wait(10), "the stream did not open"
        if self.error:
            raise self.error
        return self

    def close(self) -> None:
        self._closing.set()

    def result(self, timeout: float = 30.0) -> list[SSE]:
        self.join(timeout)
        assert not self.is_alive(), "the stream reader did not finish"
        if self.error is not None:
            raise AssertionError(f"the stream reader failed: {self.error!r}") from self.error
        return self.records


def run_async(main: Callable[[], object], timeout: float = 30.0):
    """asyncio.run(main()) in a worker thread: safe even when another fixture (such as
    pytest-playwright's) keeps an event loop running in the test's thread."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(main())
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="asyncio-test", daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"the asyncio test did not finish within {timeout} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def fail_after(monkeypatch, steps: int, error: BaseException) -> None:
    """Model.train_step raises `error` from its (steps + 1)-th call on."""
    real_step, calls = cnn.model.Model.train_step, []

    def train_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > steps:
            raise error
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(cnn.model.Model, "train_step", train_step)
