"""The server's memory from run to run (app/memory.py): on glibc the malloc arenas
are limited and each run's freed memory is given back; a series of runs with
browsers connected leaves the resident size where it was. bench/bench_load.py
measures the same with 200 browsers and predictions."""

from __future__ import annotations

import json
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import httpx
import pytest

import app.executors
from app import memory
from server_helpers import LiveServer, make_app, training_threads, wait_for

GLIBC = platform.libc_ver()[0] == "glibc"


def resident_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_on_glibc_the_arenas_are_limited_and_freed_memory_returned():
    assert memory.limit_arenas() is True
    assert memory.return_freed_memory() is True


def test_every_run_gives_its_memory_back_when_it_ends(
        mnist_dir, monkeypatch):
    calls = []
    monkeypatch.setattr(app.executors, "return_freed_memory", lambda: calls.append(1))
    with LiveServer(make_app(mnist_dir)) as server:
        for expected in (1, 2):  # each run's end
            response = httpx.post(server.url + "/api/runs", json={
                "preset": "default", "epochs": 1, "train_size": 2000, "test_size": 500})
            assert response.status_code == 201
            wait_for(lambda: server.manager.current.state == "finished" and
                     len(calls) == expected, 60, what="the run to end")


def silent_reader(url: str, stop: threading.Event) -> None:
    """A browser: reads the event stream until told to go."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                if not sock.recv(65536):
                    return
            except socket.timeout:
                pass


def resident_sizes_over_watched_runs(data_dir: str, runs: int = 4, browsers: int = 50) -> list:
    """The resident size (MiB) after each of `runs` `default` runs (one epoch of 15,000
    images), each watched by `browsers` event streams."""
    sizes = []
    with LiveServer(make_app(data_dir)) as server:
        for _ in range(runs):
            stop = threading.Event()
            readers = [threading.Thread(target=silent_reader, args=(server.url, stop))
                       for _ in range(browsers)]
            for reader in readers:
                reader.start()
            # A quarter of MNIST's training images: the data set holds views of the
            # same uint8 arrays whatever its size, and every run still evaluates the
            # whole test set.
            response = httpx.post(server.url + "/api/runs", json={
                "preset": "default", "epochs": 1, "train_size": 15_000})
            assert response.status_code == 201
            wait_for(lambda: server.manager.current.state == "finished", 120,
                     what="the run to end")
            for thread in training_threads():  # it gives memory back after "finished"
                thread.join(30)
            stop.set()
            for reader in readers:
                reader.join(10)
            time.sleep(0.2)
            # The 50 streams' teardown after the run's own trim frees memory that glibc
            # keeps until the next trim (the next run's start): trim here too, so that
            # what is measured is memory still held, not the allocator's timing (without
            # it one run in a few read 30-40 MiB high, and the next back at the line).
            memory.return_freed_memory()
            sizes.append(resident_mib())
    return sizes


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_runs_watched_by_browsers_leave_the_resident_size_flat(mnist_dir):
    # In a fresh process: the test session's own threads and arenas would blur it.
    result = subprocess.run([sys.executable, __file__, str(mnist_dir)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    sizes = json.loads(result.stdout.strip().splitlines()[-1])
    # Without the arena limit and the trims this grew by 40-60 MiB a run (120-180 MiB
    # over runs 2-4). With them it is flat but for one step of 28-31 MiB at a random run
    # (2, 3 or 4: seen in 3 of 7 runs of this test, then flat again): an allocator's
    # one-time step, not growth per run, which this bound still catches.
    assert max(sizes[1:]) - sizes[1] < 40, sizes


if __name__ == "__main__":
    print(json.dumps(resident_sizes_over_watched_runs(sys.argv[1])))
