"""How soon a run trains on Ray: from POST /api/runs to the run's first batch event.

Starts `cnn-live serve` (bench/server.py) with CNN_LIVE_EXECUTOR=ray on a running Ray
cluster (--address host:port), or, without --address, on a two-node cluster it starts
on this machine (ray.cluster_utils, 1 CPU a node, every process on loopback) and stops
at the end. Then, --runs times: POST /api/runs, read the run's stream
(/api/runs/{id}/events, which replays what came before it connected) to its first
batch event, stop the run and wait for its end, so that each run starts a new actor
as a user's would. The first run also connects the server to the cluster (ray.init):
it is printed, and the median is over every run and over the runs after the first.
The same is measured with the default process executor, as a reference on this
machine (--no-reference to skip it). Target: a median of at most 5 s on Ray.

Usage: python bench/bench_ray.py [--address HOST:PORT] [--runs 3] [--preset default]
                                 [--data-dir DIR] [--no-reference]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import machine  # noqa: E402

machine.use_fast_blas()
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before Ray is imported

import httpx  # noqa: E402
from server import Server  # noqa: E402

TARGET_SECONDS = 5.0


def first_batch(url: str, run_id: str, timeout: float = 120) -> None:
    """Read the run's stream until its first batch event."""
    with httpx.stream("GET", f"{url}/api/runs/{run_id}/events",
                      timeout=httpx.Timeout(timeout, read=timeout)) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.strip() == "event: batch":
                return
    raise SystemExit(f"run {run_id}: its stream ended before a batch event")


def wait_for_end(url: str, run_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = httpx.get(f"{url}/api/runs/{run_id}", timeout=10).json()
        if run["state"] in ("finished", "failed", "interrupted"):
            return run
        time.sleep(0.1)
    raise SystemExit(f"run {run_id} did not end within {timeout} s")


def measure(url: str, runs: int, preset: str, first_note: str = "") -> list[float]:
    seconds = []
    for index in range(runs):
        began = time.perf_counter()
        answer = httpx.post(f"{url}/api/runs", json={"preset": preset}, timeout=120)
        if answer.status_code != 201:
            raise SystemExit(f"POST /api/runs: {answer.status_code} {answer.text}")
        placed = time.perf_counter() - began
        run = answer.json()
        first_batch(url, run["run_id"])
        seconds.append(time.perf_counter() - began)
        httpx.post(f"{url}/api/runs/{run['run_id']}/stop", json={}, timeout=30)
        ended = wait_for_end(url, run["run_id"])
        print(f"  run {index + 1}: first batch {seconds[-1]:.2f} s after the POST (the POST "
              f"answered in {placed:.2f} s); on {run['node']}; {ended['outcome']}"
              + (first_note if index == 0 else ""), flush=True)
    return seconds


def report(name: str, seconds: list[float]) -> float:
    median = statistics.median(seconds)
    later = f", after the first {statistics.median(seconds[1:]):.2f} s" if len(seconds) > 1 else ""
    print(f"{name}: median {median:.2f} s from POST to the first batch over {len(seconds)} "
          f"runs{later} (min {min(seconds):.2f}, max {max(seconds):.2f})", flush=True)
    return median


def start_cluster(workdir: str):
    from ray.cluster_utils import Cluster

    began = time.perf_counter()
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={
        "num_cpus": 1, "include_dashboard": False,
        "temp_dir": tempfile.mkdtemp(prefix="rh", dir=workdir)})
    cluster.add_node(num_cpus=1, temp_dir=tempfile.mkdtemp(prefix="rn", dir=workdir))
    cluster.wait_for_nodes()
    print(f"a two-node Ray cluster at {cluster.address} started in "
          f"{time.perf_counter() - began:.1f} s", flush=True)
    return cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", help="a running Ray cluster's head, host:port "
                        "(default: start a two-node cluster on this machine)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the process executor's reference figures")
    machine.add_data_argument(parser)
    machine.add_blas_argument(parser)
    args = parser.parse_args()
    machine.describe_with_load()
    if args.address is None:  # its own cluster: no token (~/.ray/auth_token or not)
        os.environ["RAY_AUTH_MODE"] = "disabled"
    import ray
    print(f"ray {ray.__version__}", flush=True)

    workdir = tempfile.mkdtemp(prefix="br", dir="/tmp")  # short: Ray's socket paths
    cluster = None
    env = {"CNN_LIVE_RUNS_DIR": os.path.join(workdir, "runs"),
           "CNN_LIVE_MAX_CONCURRENT_RUNS": "2", "CNN_LIVE_DOWNLOAD": "0"}
    try:
        if args.address is None:
            os.environ.setdefault("CNN_LIVE_DATA_DIR", args.data_dir or "")
            cluster = start_cluster(workdir)
        address = args.address or cluster.address
        server = Server(args.data_dir, {**env, "CNN_LIVE_EXECUTOR": "ray",
                                        "CNN_LIVE_RAY_ADDRESS": address})
        try:
            server.wait_ready(60)
            print(f"ray executor (cluster at {address}), preset {args.preset}:", flush=True)
            ray_median = report("ray", measure(server.url, args.runs, args.preset,
                                                " (the first: the server connects to the cluster)"))
        finally:
            server.close()
        if not args.no_reference:
            server = Server(args.data_dir, {**env, "CNN_LIVE_EXECUTOR": "process"})
            try:
                server.wait_ready(60)
                print(f"process executor (the default), preset {args.preset}:", flush=True)
                reference = report("process", measure(server.url, args.runs, args.preset))
            finally:
                server.close()
            print(f"ray / process: {ray_median / reference:.2f}x", flush=True)
        verdict = "met" if ray_median <= TARGET_SECONDS else "MISSED"
        print(f"target: at most {TARGET_SECONDS:g} s on Ray: {verdict} ({ray_median:.2f} s)",
              flush=True)
    finally:
        if cluster is not None:
            try:
                cluster.shutdown()
            except Exception:  # then every Ray process of this machine
                subprocess.run(["ray", "stop", "--force"], capture_output=True, timeout=60)
                raise
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
