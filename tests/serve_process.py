"""`cnn-live serve` as a child process, for tests that need the real thing: its own
process (signals, resident memory, a log), talked to over a real socket.

Imported by path, like server_helpers: `sys.path.insert(0, str(Path(__file__).parent))`.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Serve:
    """`cnn-live serve` as a child process, its stderr in a file; counts the requests
    it is sent, by method and path, to compare with its access log. A context manager:
    ready on entry, killed on exit if a failed test left it running."""

    def __init__(self, tmp_path: Path, data_dir: Path, *options: str, **env: str) -> None:
        self.port = free_port()
        self.log_path = tmp_path / "serve.log"
        environ = {**os.environ, "CNN_LIVE_DATA_DIR": str(data_dir), "CNN_LIVE_DOWNLOAD": "0",
                   "CNN_LIVE_RUNS_DIR": str(tmp_path / "runs"),
                   "XDG_CACHE_HOME": str(tmp_path / "cache"), **env}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port), *options],
                cwd=REPO_ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT)
        self.sent: collections.Counter = collections.Counter()

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        status, content = self.send(method, path, data, {"Content-Type": "application/json"})
        return status, json.loads(content)

    def send(self, method: str, path: str, data: bytes | None = None,
             headers: dict | None = None, timeout: float = 30) -> tuple[int, bytes]:
        """Any request, as bytes; the status and the body, whatever the status."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                         method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                self.sent[method, path] += 1
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            self.sent[method, path] += 1
            return error.code, error.read()

    def wait_until(self, predicate, what: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server exited:\n{self.log()}"
            try:
                value = predicate()
            except (urllib.error.URLError, ConnectionError):
                value = None  # not listening yet
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n{self.log()}")

    def wait_for_state(self, *states: str) -> dict:
        return self.wait_until(
            lambda: (status := self.request("GET", "/api/status")[1])["state"] in states
            and status, f"the run to be {' or '.join(states)}")

    def __enter__(self) -> "Serve":
        try:
            self.wait_until(lambda: self.request("GET", "/healthz")[0] == 200,
                            "the server to start")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        if self.process.poll() is None:  # a test that failed before its SIGTERM
            self.process.kill()
            self.process.wait()

    def terminate(self) -> int:
        """SIGTERM, as `docker stop` sends; the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines_about(self, run_id: str) -> list[str]:
        return [line for line in self.log().splitlines() if f"run {run_id}" in line]


def resident_bytes(pid: int) -> int:
    """A process's resident memory (VmRSS), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


class Watch:
    """While an attack runs: the server's resident memory sampled every 20 ms, and
    /healthz asked every 50 ms from a client of its own (a new connection each time,
    as a load balancer would), each answer timed. A context manager; `.report()` after.

    The figures the hostile-input tests hold the server to: memory never over a cap
    and back near where it started, every health check answered fast."""

    def __init__(self, server: Serve, interval: float = 0.05) -> None:
        import threading

        self.server, self.interval = server, interval
        self.start_rss = resident_bytes(server.process.pid)
        self.peak_rss = self.start_rss
        self.health_seconds: list[float] = []
        self.health_failures: list[str] = []
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._sample_memory, daemon=True),
                         threading.Thread(target=self._ask_health, daemon=True)]

    def __enter__(self) -> "Watch":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join(10)

    def _sample_memory(self) -> None:
        while not self._done.wait(0.02):
            try:
                self.peak_rss = max(self.peak_rss, resident_bytes(self.server.process.pid))
            except (OSError, AssertionError):
                return  # the process is gone: the test sees that on its own

    def _ask_health(self) -> None:
        url = f"http://127.0.0.1:{self.server.port}/healthz"
        while not self._done.wait(self.interval):
            began = time.perf_counter()
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    answer.read()
                    ok = answer.status == 200
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                self.health_failures.append(repr(exc))
                continue
            self.health_seconds.append(time.perf_counter() - began)
            if not ok:
                self.health_failures.append(f"status {answer.status}")

    def end_rss(self, settle: float = 3.0) -> int:
        """Resident memory once the server has had `settle` s to give memory back
        (the lowest sample over that time)."""
        deadline, lowest = time.monotonic() + settle, resident_bytes(self.server.process.pid)
        while time.monotonic() < deadline:
            time.sleep(0.1)
            lowest = min(lowest, resident_bytes(self.server.process.pid))
        return lowest

    def report(self) -> str:
        slowest = max(self.health_seconds, default=float("nan"))
        return (f"rss start {self.start_rss / 2**20:.0f} MB, peak {self.peak_rss / 2**20:.0f} MB;"
                f" {len(self.health_seconds)} health checks, slowest {1000 * slowest:.0f} ms,"
                f" {len(self.health_failures)} failed")

    def assert_unharmed(self, rss_cap: int = 800 * 2**20, rss_return: int = 50 * 2**20,
                        health_limit: float = 0.1) -> None:
        """The bounds of issue 11: resident memory never over `rss_cap`, back within
        `rss_return` of the start, every health check answered within `health_limit` s."""
        assert self.health_seconds, "no health check was answered during the attack"
        assert not self.health_failures, f"health checks failed: {self.health_failures[:3]}"
        assert max(self.health_seconds) <= health_limit, self.report()
        assert self.peak_rss <= rss_cap, self.report()
        assert self.end_rss() <= self.start_rss + rss_return, self.report()
