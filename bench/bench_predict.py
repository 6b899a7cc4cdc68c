"""How fast /api/predict answers, idle and while a run trains.

Starts the real app (uvicorn, in a child process on a socket bound to port 0, as
bench_stream.py does), then from one client (httpx, one keep-alive connection) sends
POST /api/predict with a real 200x200 drawing (an MNIST test digit upscaled 5x,
off-centre) at about --rate requests a second:
1. idle, for --seconds: answered by the bundled model;
2. while a `default` run trains one epoch on all 60,000 images, for --seconds once
   the answers come from the run ("training" snapshots).
Prints the latency percentiles (p50, p95, p99, max, client side: request sent to
response read) of each phase against the target (p99 <= 10 ms), and the run's
training throughput (images/s of the epoch record) with and without the requests.

--endpoint drawings sends POST /api/drawings instead (the same drawing with its label:
saving a labelled drawing, which the server answers and stores; target p99 <= 20 ms).

--blas-threads N [N ...] repeats everything with CNN_LIVE_TRAINING_BLAS_THREADS=N in
the server's environment (0: leave OpenBLAS as it is, all cores), so the trade-off
between prediction latency and training speed is visible.

Usage: python bench/bench_predict.py [--data-dir DIR] [--rate 50] [--seconds 10]
                                     [--blas-threads 0 1] [--skip-baseline]
                                     [--endpoint predict|drawings]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402
from server import Server, predict_body  # noqa: E402

machine.use_fast_blas()

import numpy as np  # noqa: E402

sys.path.insert(0, str(ROOT))
import httpx  # noqa: E402

ACTIVE_STATES = ("running", "paused", "stopping")
TARGETS_P99_MS = {"predict": 10.0, "drawings": 20.0}
ENDPOINT = "predict"  # --endpoint


# -- the client -------------------------------------------------------------------------------

def drawing(data_dir: str | None) -> tuple[int, list[list[int]]]:
    """(label, a 200x200 canvas with an MNIST test digit upscaled 5x, off-centre)."""
    from cnn.data import load_mnist
    mnist = load_mnist(data_dir, download=False)
    digit = mnist.test_images[0].astype(np.int64)
    canvas = np.zeros((200, 200), np.int64)
    canvas[40:180, 20:160] = np.kron(digit, np.ones((5, 5), np.int64))
    return int(mnist.test_labels[0]), canvas.tolist()


def send_for(client: httpx.Client, body: bytes, seconds: float, rate: float,
             stop_when=None) -> list[tuple[float, dict]]:
    """POST at about `rate` a second for `seconds` (or until `stop_when(answer)`):
    [(latency in seconds, answer)]."""
    results = []
    interval = 1.0 / rate
    start = time.perf_counter()
    i = 0
    while True:
        due = start + i * interval
        now = time.perf_counter()
        if now - start >= seconds:
            break
        if due > now:
            time.sleep(due - now)
        sent = time.perf_counter()
        response = client.post(f"/api/{ENDPOINT}", content=body,
                               headers={"content-type": "application/json"})
        latency = time.perf_counter() - sent
        if response.status_code not in (200, 201):
            raise SystemExit(f"/api/{ENDPOINT} answered {response.status_code}: "
                             f"{response.text}")
        answer = response.json()
        results.append((latency, answer))
        i += 1
        if stop_when is not None and stop_when(answer):
            break
    return results


def percentiles(latencies: list[float]) -> str:
    if not latencies:
        return "no answers"
    ms = np.array(latencies) * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    target = TARGETS_P99_MS[ENDPOINT]
    verdict = "met" if p99 <= target else "NOT met"
    return (f"n={len(ms)}, p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms, "
            f"max {ms.max():.1f} ms (target p99 <= {target:g} ms: {verdict})")


def answered_by(answer: dict) -> tuple[str, str | None]:
    """(the answering model's source, its run id) of a prediction or a saved drawing."""
    if "model" in answer:
        return answer["model"]["source"], answer["model"]["run_id"]
    description = answer["answered_by"]  # "run ID in training: ..." or the bundled model's
    if description.startswith("run ") and " in training" in description:
        return "training", description.split()[1]
    return ("bundled" if "bundled" in description else "other"), None


def run_epoch(url: str, client: httpx.Client, body: bytes | None, seconds: float,
              rate: float) -> tuple[list[float], dict, int]:
    """Start a one-epoch `default` run; with `body`, send predictions while it trains.
    Returns (latencies of answers from the run in training, the epoch record, how many
    answers came from the training snapshot)."""
    response = httpx.post(url + "/api/runs", json={"preset": "default", "epochs": 1},
                          timeout=30)
    if response.status_code != 201:
        raise SystemExit(f"starting the run failed: {response.status_code} {response.text}")
    run_id = response.json()["run_id"]
    latencies: list[float] = []
    if body is not None:
        # Until the first snapshot is taken (the data loads, the first batch runs).
        send_for(client, body, 30, rate, lambda a: answered_by(a)[0] == "training")
        results = send_for(client, body, seconds, rate)
        latencies = [lat for lat, answer in results
                     if answered_by(answer) == ("training", run_id)]
    while (status := httpx.get(url + "/api/status", timeout=30).json())["state"] in ACTIVE_STATES:
        time.sleep(0.5)
    if status["state"] != "finished":
        raise SystemExit(f"the run ended {status['state']}: {status['message']}")
    run = next(r for r in httpx.get(url + "/api/runs", timeout=30).json()
               if r["run_id"] == run_id)
    return latencies, run["epochs"][0], len(latencies)


def bench(data_dir: str | None, blas_threads: int, body: bytes, label: int, args) -> None:
    env = {"CNN_LIVE_TRAINING_BLAS_THREADS": str(blas_threads),
           # the drawings saved by --endpoint drawings go to a folder of their own
           "CNN_LIVE_DRAWINGS_DIR": tempfile.mkdtemp(prefix="cnn-live-bench-drawings-")}
    server = Server(data_dir, env)
    try:
        server.wait_ready()
        print(f"\n== training BLAS threads: {blas_threads or 'all (OpenBLAS default)'} "
              f"(server {server.url}, pid {server.process.pid})", flush=True)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            warm = send_for(client, body, 1.0, args.rate)  # loads the bundled model
            assert warm[-1][1].get("digit", warm[-1][1].get("answer")) == label, warm[-1][1]
            idle = send_for(client, body, args.seconds, args.rate)
            idle_latencies = [lat for lat, a in idle if answered_by(a)[0] == "bundled"]
            print(f"idle (bundled model):          {percentiles(idle_latencies)}; "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
            latencies, epoch, _ = run_epoch(server.url, client, body, args.seconds, args.rate)
            print(f"while training (run snapshot): {percentiles(latencies)}; "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
            print(f"training throughput with predictions: {epoch['images_per_second']:,.0f} "
                  f"images/s (epoch {epoch['seconds']:.1f} s, test accuracy "
                  f"{epoch['test_accuracy']:.4f})", flush=True)
            if not args.skip_baseline:
                _, quiet, _ = run_epoch(server.url, client, None, 0, args.rate)
                print(f"training throughput without:          "
                      f"{quiet['images_per_second']:,.0f} images/s (epoch "
                      f"{quiet['seconds']:.1f} s)", flush=True)
    finally:
        server.close()
        shutil.rmtree(env["CNN_LIVE_DRAWINGS_DIR"], ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    machine.add_data_argument(parser)
    parser.add_argument("--rate", type=float, default=50.0, help="requests a second")
    parser.add_argument("--seconds", type=float, default=10.0, help="of requests per phase")
    parser.add_argument("--blas-threads", type=int, nargs="+", default=None,
                        help="CNN_LIVE_TRAINING_BLAS_THREADS values to compare "
                             "(default: the server's default only)")
    parser.add_argument("--skip-baseline", action="store_true",
                        help="do not train a second epoch without predictions")
    parser.add_argument("--endpoint", choices=sorted(TARGETS_P99_MS), default="predict",
                        help="predict: POST /api/predict; drawings: save a labelled drawing")
    machine.add_blas_argument(parser)
    args = parser.parse_args()

    global ENDPOINT
    ENDPOINT = args.endpoint
    machine.describe_with_load()
    label, image = drawing(args.data_dir)
    body = predict_body(image)
    if ENDPOINT == "drawings":
        fields = json.loads(body)
        del fields["explain"]  # not a field of a saved drawing
        body = json.dumps({**fields, "label": label}).encode()
    print(f"drawing: 200x200 (an MNIST {label}), {len(body):,} bytes a request; "
          f"{args.rate:g} requests/s for {args.seconds:g} s per phase", flush=True)
    if args.blas_threads is None:
        from app.settings import Settings
        args.blas_threads = [Settings.training_blas_threads]
    for threads in args.blas_threads:
        bench(args.data_dir, threads, body, label, args)


if __name__ == "__main__":
    main()
