"""Runs as jobs: what training several runs at once in worker processes gives.

Against a real server (bench/server.py, the `process` executor, two runs at once),
alternately, --repeats times:
  alone     one `default` run of --images training images: its images/s (the epoch's
            own figure, training only);
  together  two such runs started at once: their images/s summed (they train side by
            side for nearly all of their time), and that sum over the alone figure.
Each start is timed from POST /api/runs to the run's first batch event on the stream,
and the resident memory of the server and every process under it (the fork server,
the workers forked from it, multiprocessing's resource tracker) is sampled from /proc
while they train: its peak is printed, the server's and each other process's. Resident
memory counts the pages a worker shares with the fork server (MNIST, NumPy) in each.

    python bench/bench_jobs.py [--images 30000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
import machine  # noqa: E402

machine.use_fast_blas()
from server import Server  # noqa: E402


class Events(threading.Thread):
    """The server's stream, read in a thread: when each run's first batch and its
    epoch records came."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.first_batch: dict[str, float] = {}
        self.epochs: dict[str, list[dict]] = {}
        self.done: dict[str, float] = {}
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            self._read()
        except httpx.HTTPError:
            pass  # the server closed at the end

    def _read(self) -> None:
        with httpx.stream("GET", self.url + "/api/events", timeout=None) as response:
            self.ready.set()
            name = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: ") and name in ("batch", "epoch", "done"):
                    payload = json.loads(line[6:])
                    run_id, now = payload.get("run_id"), time.monotonic()
                    if name == "batch":
                        self.first_batch.setdefault(run_id, now)
                    elif name == "epoch":
                        self.epochs.setdefault(run_id, []).append(payload)
                    else:
                        self.done[run_id] = now


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    """Every process under `pid`: the fork server, the workers forked from it, ..."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def start(server: Server, events: Events, body: dict) -> tuple[str, float]:
    asked = time.monotonic()
    response = httpx.post(server.url + "/api/runs", json=body, timeout=30)
    response.raise_for_status()
    return response.json()["run_id"], asked


def train(server: Server, events: Events, count: int, body: dict) -> dict:
    """`count` runs started at once, to their end: images/s each, first-batch latency
    each, and the peak resident memory of the server and its workers meanwhile."""
    started = [start(server, events, body) for _ in range(count)]
    peak = {"server": 0.0, "workers": 0.0, "total": 0.0}
    while not all(run_id in events.done for run_id, _ in started):
        server_mib = rss_mib(server.process.pid)
        workers = [rss_mib(pid) for pid in descendants(server.process.pid)]
        total = server_mib + sum(workers)
        if total > peak["total"]:
            peak = {"server": server_mib, "workers": sum(workers), "total": total,
                    "each": workers}
        time.sleep(0.1)
    return {"images_per_second": [events.epochs[run_id][-1]["images_per_second"]
                                  for run_id, _ in started],
            "first_batch": [events.first_batch[run_id] - asked for run_id, asked in started],
            "memory": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=30_000, help="training images a run")
    parser.add_argument("--repeats", type=int, default=3)
    machine.add_data_argument(parser)
    machine.add_blas_argument(parser)
    args = parser.parse_args()
    machine.describe_with_load()
    body = {"preset": "default", "epochs": 1, "train_size": args.images, "test_size": 500}
    server = Server(args.data_dir, env={"CNN_LIVE_EXECUTOR": "process",
                                        "CNN_LIVE_MAX_CONCURRENT_RUNS": "2"})
    try:
        server.wait_ready()
        events = Events(server.url)
        events.start()
        events.ready.wait(10)
        train(server, events, 1, {**body, "train_size": 2000})  # warm: MNIST read once
        ratios, firsts, alone_figures, together_figures, memories = [], [], [], [], []
        for repeat in range(1, args.repeats + 1):
            alone = train(server, events, 1, body)
            together = train(server, events, 2, body)
            one, both = alone["images_per_second"][0], sum(together["images_per_second"])
            ratios.append(both / one)
            alone_figures.append(one)
            together_figures.append(both)
            firsts += alone["first_batch"] + together["first_batch"]
            memories.append(together["memory"])
            print(f"repeat {repeat}: alone {one:,.0f} images/s; two at once "
                  f"{' + '.join(f'{x:,.0f}' for x in together['images_per_second'])} = "
                  f"{both:,.0f} images/s: {both / one:.2f}x; first batch "
                  f"{', '.join(f'{s:.2f}' for s in alone['first_batch'] + together['first_batch'])}"
                  f" s; peak RSS server {together['memory']['server']:.0f} MiB + workers "
                  f"{' + '.join(f'{m:.0f}' for m in together['memory'].get('each', []))} MiB "
                  f"= {together['memory']['total']:.0f} MiB", flush=True)
        print(f"\nmedian of {args.repeats}: alone {statistics.median(alone_figures):,.0f} "
              f"images/s, two at once {statistics.median(together_figures):,.0f} images/s: "
              f"{statistics.median(ratios):.2f}x (target at least 1.6x)")
        print(f"POST /api/runs to the first batch event: median {statistics.median(firsts):.2f} "
              f"s, slowest {max(firsts):.2f} s of {len(firsts)} starts (target at most 2 s)")
        print(f"peak resident memory, server + fork server + two workers: "
              f"{max(m['total'] for m in memories):.0f} MiB (target under 1,500)")
    finally:
        server.close()


if __name__ == "__main__":
    main()
