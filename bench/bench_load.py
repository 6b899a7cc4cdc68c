"""A classroom's load: 200 browsers watch a whole training run while 50 drawings a
second are read.

Starts the real app (uvicorn, in a child process on a socket bound to port 0, as
bench_stream.py does) and trains `default` runs of --epochs full epochs (all 60,000
images unless --train-size), alternating:
- quiet: no SSE client, no prediction (the reference);
- loaded: --clients SSE clients connected to /api/events before the run starts and
  reading it to its `done` event, while POST /api/predict is sent at --rate requests
  a second, open loop (each request leaves at its scheduled time, whether or not the
  earlier ones were answered; a new connection is opened when none is free).
The drawings are MNIST test digits redrawn as a person draws them (cnn/drawn.py: a
round pen on a canvas, anywhere, any size), resized to the 140x140 the page sends;
--explain-fraction of them ask for the feature maps as well, as the page does when a
stroke ends.

Prints for each loaded run: per epoch the training throughput (the epoch record's
images/s, training only) against the quiet run before it (target ratio >= 0.95: the
run trains in a worker process, the server's core is the load's); that every client
received every `epoch` event, with gap-free ids from the run's `run`
event to its `done` event (events and epoch events per client); the predictions'
latency p50/p95/p99/max (target p99 <= 10 ms), measured from each request's scheduled
time to the last byte of its answer, so a server that falls behind cannot hide it;
the server's resident memory before and after, and its peak (VmHWM, reset before each
run through /proc/PID/clear_refs); the CPU seconds of the server and of this process
(the load generator). Then the medians over --repeats pairs.

The load generator is one asyncio loop in this process on raw sockets (the streams'
HTTP chunks decoded by hand; keep-alive connections for the predictions): it
shares the server's two cores, and a heavy one would measure itself.

Usage: python bench/bench_load.py [--data-dir DIR] [--clients 200] [--rate 50]
                                  [--epochs 1] [--repeats 2] [--explain-fraction 0.1]
                                  [--train-size N] [--test-size N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402
from server import Server, predict_body  # noqa: E402

machine.use_fast_blas()
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from bench_stream import Client, cpu_seconds  # noqa: E402

ACTIVE_STATES = ("running", "paused", "stopping")
TARGET_RATIO, TARGET_P99_MS = 0.95, 10.0  # issue 12 (was 0.85 and 20 ms with training in a thread)
PAGE_SIDE = 140  # static/js/draw.js sends the pad as SEND_SIZE x SEND_SIZE


# -- what is sent ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    label: int
    explain: bool
    wire: bytes  # the whole HTTP request


def drawings(data_dir: str | None, count: int, explain_fraction: float,
             as_rows: bool = False) -> list[Request]:
    """`count` drawn MNIST test digits at the page's size, as ready-to-send requests
    in the page's format (or as rows of numbers)."""
    from cnn.data import load_mnist
    from cnn.drawn import make_drawn_set
    from cnn.preprocess import _resample_matrix

    mnist = load_mnist(data_dir, download=False)
    drawn = make_drawn_set(mnist.test_images, mnist.test_labels, count, seed=0)
    requests = []
    for i, (canvas, label) in enumerate(zip(drawn.canvases, drawn.labels)):
        shrink = _resample_matrix(PAGE_SIDE, canvas.shape[0])
        image = np.rint(shrink @ canvas.astype(np.float64) @ shrink.T).astype(int)
        explain = (i + 0.5) * explain_fraction % 1 < explain_fraction  # spread evenly
        body = predict_body(image, bool(explain), as_rows)
        head = (f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                f"\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        requests.append(Request(int(label), bool(explain), head + body))
    return requests


# -- the SSE clients ---------------------------------------------------------------------------

def parse_block(block: bytes) -> tuple[int, str, bytes] | None:
    """(id, event name, data) of one SSE block; None for a comment-only block."""
    event_id = name = data = None
    for line in block.split(b"\n"):
        if line.startswith(b"id: "):
            event_id = int(line[4:])
        elif line.startswith(b"event: "):
            name = line[7:].decode()
        elif line.startswith(b"data: "):
            data = line[6:]
    return None if event_id is None or name is None else (event_id, name, data)


async def watch(client: Client, address: tuple[str, int], connected: asyncio.Event,
                run_id: list) -> None:
    """One browser: reads /api/events until the `done` event of run_id[0]. The body
    comes in HTTP chunks (uvicorn chunks it even for HTTP/1.0), each holding whole
    events as the server wrote them."""
    writer = None
    try:
        reader, writer = await asyncio.open_connection(*address, limit=1 << 22)
        writer.write(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)  # the response's head
        pending = b""
        while True:
            size = (await asyncio.wait_for(reader.readline(), 120)).strip()
            if not size or size == b"0":
                raise ConnectionError("the server ended the stream")
            pending += (await reader.readexactly(int(size, 16) + 2))[:-2]  # chunk, CRLF
            *blocks, pending = pending.split(b"\n\n")
            for block in blocks:
                if block.startswith(b": connected"):
                    connected.set()
                event = parse_block(block)
                if event is None:
                    continue
                event_id, name, data = event
                rid = json.loads(data)["run_id"] if name in ("run", "epoch", "done") else None
                client.events.append((event_id, name, rid))
                if name == "done" and rid is not None and rid == run_id[0]:
                    return
    except BaseException as exc:  # reported by Client.check
        client.error = exc
    finally:
        connected.set()
        if writer is not None:
            writer.close()


async def connect_all(count: int, address: tuple[str, int], run_id: list
                      ) -> tuple[list[Client], list[asyncio.Task]]:
    """`count` browsers subscribed (each told `connected`), 50 at a time: the listening
    socket's backlog is 128."""
    clients, tasks = [Client() for _ in range(count)], []
    for start in range(0, count, 50):
        ready = [asyncio.Event() for _ in clients[start:start + 50]]
        tasks += [asyncio.create_task(watch(client, address, event, run_id))
                  for client, event in zip(clients[start:start + 50], ready)]
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in ready)), 30)
    failed = [client.error for client in clients if client.error]
    if failed:
        raise SystemExit(f"{len(failed)} clients could not connect: {failed[0]!r}")
    return clients, tasks


# -- the predictions ---------------------------------------------------------------------------

@dataclass
class Answer:
    latency: float      # s, from the scheduled time to the answer's last byte
    client_lag: float   # s, from the scheduled time to the request leaving
    explain: bool
    status: int
    correct: bool
    source: str | None  # which model answered


@dataclass
class Predictions:
    """POSTs at `rate` a second, open loop, over a pool of keep-alive connections."""
    address: tuple[str, int]
    requests: list[Request]
    rate: float
    answers: list[Answer] = field(default_factory=list)
    idle: list = field(default_factory=list)
    connections_opened: int = 0

    async def send_until(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        start, pending, i = loop.time(), set(), 0
        while not stop.is_set():
            due = start + i / self.rate
            if due > loop.time():
                try:
                    await asyncio.wait_for(stop.wait(), due - loop.time())
                    break
                except asyncio.TimeoutError:
                    pass
            task = asyncio.create_task(self._one(due, self.requests[i % len(self.requests)]))
            pending.add(task)
            task.add_done_callback(pending.discard)
            i += 1
        await asyncio.gather(*pending)

    async def _one(self, due: float, request: Request) -> None:
        loop = asyncio.get_running_loop()
        sent = loop.time()
        try:
            try:
                head, body, connection = await self._exchange(request, reuse=True)
            except (asyncio.IncompleteReadError, ConnectionError):
                # The server closed an idle keep-alive connection (after 5 s): once more
                # on a new one. The latency still counts from the scheduled time.
                head, body, connection = await self._exchange(request, reuse=False)
        except (OSError, asyncio.IncompleteReadError) as exc:
            print(f"   prediction failed: {exc!r}", flush=True)
            self.answers.append(Answer(loop.time() - due, sent - due, request.explain, 0,
                                       False, None))
            return
        done = loop.time()
        status = int(head[9:12])
        answer = json.loads(body) if status == 200 else {}
        self.answers.append(Answer(done - due, sent - due, request.explain, status,
                                   answer.get("digit") == request.label,
                                   answer.get("model", {}).get("source")))
        if b"connection: close" in head.lower():
            connection[1].close()
        else:
            self.idle.append(connection)

    async def _exchange(self, request: Request, reuse: bool) -> tuple[bytes, bytes, tuple]:
        """One request and its answer: (head, body, the connection)."""
        if reuse and self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection(*self.address)
            self.connections_opened += 1
        try:
            writer.write(request.wire)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
            return head, await reader.readexactly(length), (reader, writer)
        except BaseException:
            writer.close()
            raise

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


def percentiles(latencies: list[float]) -> dict:
    if not latencies:
        return {"n": 0}
    ms = np.array(latencies) * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"n": len(ms), "p50": p50, "p95": p95, "p99": p99, "max": float(ms.max())}


def describe_latency(figures: dict) -> str:
    if not figures["n"]:
        return "none"
    return (f"n={figures['n']}, p50 {figures['p50']:.1f}, p95 {figures['p95']:.1f}, "
            f"p99 {figures['p99']:.1f}, max {figures['max']:.1f} ms")


def loop_cpu_seconds(pid: int) -> float:
    """CPU seconds of the process's main thread: uvicorn's event loop, which parses the
    requests and writes the streams (the training runs in another thread)."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the server's memory -----------------------------------------------------------------------

def memory_kib(pid: int) -> dict:
    """VmRSS and VmHWM (peak resident set) of a process, KiB (Linux /proc)."""
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {name: int(fields[name].split()[0]) for name in ("VmRSS", "VmHWM")}


def reset_peak_memory(pid: int) -> None:
    """VmHWM starts again from the current RSS (Linux 4.0+; may need privileges)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError as exc:
        print(f"   (cannot reset the peak memory: {exc}; VmHWM is since the server started)")


# -- one run ---------------------------------------------------------------------------------

async def wait_finished(http: httpx.AsyncClient, run_id: str) -> dict:
    while (status := (await http.get("/api/status")).json())["state"] in ACTIVE_STATES:
        await asyncio.sleep(0.25)
    if status["state"] != "finished" or status["run_id"] != run_id:
        raise SystemExit(f"the run ended {status['state']}: {status['message']}")
    runs = (await http.get("/api/runs")).json()
    return next(run for run in runs if run["run_id"] == run_id)


async def train_once(server: Server, body: dict, clients: int, rate: float,
                     requests: list[Request]) -> dict:
    pid = server.process.pid
    host, port = server.url.removeprefix("http://").split(":")
    address = (host, int(port))
    reset_peak_memory(pid)
    before = memory_kib(pid)
    server_cpu, loop_cpu, own_cpu = cpu_seconds(pid), loop_cpu_seconds(pid), time.process_time()
    run_id: list = [None]  # filled in once the run is started; the watchers read it
    watchers, tasks = await connect_all(clients, address, run_id) if clients else ([], [])
    predictions = Predictions(address, requests, rate)
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        response = await http.post("/api/runs", json=body)
        if response.status_code != 201:
            raise SystemExit(f"starting the run failed: {response.status_code} {response.text}")
        run_id[0] = response.json()["run_id"]
        stop = asyncio.Event()
        sender = asyncio.create_task(predictions.send_until(stop)) if rate else None
        run = await wait_finished(http, run_id[0])
        stop.set()
        if sender is not None:
            await sender
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    predictions.close()
    checks = [watcher.check(run_id[0], body["epochs"]) for watcher in watchers]
    return {"clients": clients, "epochs": run["epochs"],
            "server_cpu": cpu_seconds(pid) - server_cpu,
            "loop_cpu": loop_cpu_seconds(pid) - loop_cpu,
            "load_cpu": time.process_time() - own_cpu,
            "memory_before": before, "memory_after": memory_kib(pid),
            "events": [count for count, _ in checks],
            "epoch_events": [sum(1 for _, name, rid in w.events if name == "epoch"
                                 and rid == run_id[0]) for w in watchers],
            "problems": [problem for _, problem in checks if problem],
            "answers": predictions.answers, "connections": predictions.connections_opened,
            "load_average": os.getloadavg()[0]}


# -- reporting ---------------------------------------------------------------------------------

def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def report_quiet(index: int, quiet: dict) -> None:
    speeds = ", ".join(f"{e['images_per_second']:,.0f}" for e in quiet["epochs"])
    print(f"pair {index}, quiet run: images/s per epoch {speeds}; server RSS "
          f"{mib(quiet['memory_before']['VmRSS'])} -> {mib(quiet['memory_after']['VmRSS'])}, "
          f"peak {mib(quiet['memory_after']['VmHWM'])}; CPU s server "
          f"{quiet['server_cpu']:.1f}; load {quiet['load_average']:.1f}", flush=True)


def report_loaded(index: int, quiet: dict, loaded: dict) -> dict:
    """Prints one loaded run against its quiet reference; returns its key figures."""
    print(f"pair {index}, loaded run ({loaded['clients']} clients, predictions):", flush=True)
    ratios = []
    for q, e in zip(quiet["epochs"], loaded["epochs"]):
        ratios.append(e["images_per_second"] / q["images_per_second"])
        print(f"   epoch {e['epoch']}: {e['images_per_second']:,.0f} images/s against "
              f"{q['images_per_second']:,.0f} quiet: ratio {ratios[-1]:.3f}; test accuracy "
              f"{e['test_accuracy']:.4f}", flush=True)
    clients = loaded["clients"]
    if clients:
        complete = clients - len(loaded["problems"])
        print(f"   clients: {complete}/{clients} received every event of the run with gap-free "
              f"ids; events per client {min(loaded['events'])}..{max(loaded['events'])}, epoch "
              f"events per client {min(loaded['epoch_events'])}..{max(loaded['epoch_events'])} "
              f"(of {len(loaded['epochs'])})", flush=True)
    for problem in sorted(set(loaded["problems"])):
        print(f"   client problem: {problem}", flush=True)
    answers = loaded["answers"]
    every = percentiles([a.latency for a in answers])
    plain = percentiles([a.latency for a in answers if not a.explain])
    explained = percentiles([a.latency for a in answers if a.explain])
    failed = sum(1 for a in answers if a.status != 200)
    correct = sum(a.correct for a in answers) / max(len(answers), 1)
    sources = {s: sum(1 for a in answers if a.source == s) for s in {a.source for a in answers}}
    print(f"   predictions (ms from the scheduled time): all {describe_latency(every)}", flush=True)
    print(f"      plain {describe_latency(plain)}; with explain {describe_latency(explained)}",
          flush=True)
    sent = percentiles([a.latency - a.client_lag for a in answers])
    print(f"      from the request leaving this process (without its own lag): "
          f"{describe_latency(sent)}", flush=True)
    print(f"      {failed} not 200; {100 * correct:.1f}% read correctly; answered by "
          f"{sources}; client lag max {1000 * max((a.client_lag for a in answers), default=0):.1f}"
          f" ms; {loaded['connections']} connections", flush=True)
    print(f"   server RSS {mib(loaded['memory_before']['VmRSS'])} -> "
          f"{mib(loaded['memory_after']['VmRSS'])}, peak {mib(loaded['memory_after']['VmHWM'])}; "
          f"CPU s: server {loaded['server_cpu']:.1f} (quiet {quiet['server_cpu']:.1f}), of which "
          f"its event loop {loaded['loop_cpu']:.1f} (quiet {quiet['loop_cpu']:.1f}); load "
          f"generator {loaded['load_cpu']:.1f}; load {loaded['load_average']:.1f}", flush=True)
    return {"ratio": statistics.median(ratios), "p99": every.get("p99", float("nan")),
            "p50": every.get("p50", float("nan")), "p95": every.get("p95", float("nan")),
            "p99_sent": sent.get("p99", float("nan")),
            "peak_kib": loaded["memory_after"]["VmHWM"],
            "quiet_peak_kib": quiet["memory_after"]["VmHWM"],
            "complete": not loaded["problems"] and failed == 0}


def report_medians(figures: list[dict], clients: int, rate: float) -> bool:
    def median(key):
        return statistics.median(f[key] for f in figures)
    ratio, p99 = median("ratio"), median("p99")
    print(f"\nmedians over {len(figures)} pairs ({clients} clients, {rate:g} predictions/s):")
    print(f"   training throughput loaded/quiet: {ratio:.3f} (target >= {TARGET_RATIO}: "
          f"{'met' if ratio >= TARGET_RATIO else 'NOT met'})")
    print(f"   predict latency: p50 {median('p50'):.1f}, p95 {median('p95'):.1f}, p99 {p99:.1f} "
          f"ms (target p99 <= {TARGET_P99_MS:g} ms: {'met' if p99 <= TARGET_P99_MS else 'NOT met'}); "
          f"p99 from the request leaving {median('p99_sent'):.1f} ms")
    print(f"   server peak RSS: {mib(max(f['peak_kib'] for f in figures))} loaded, "
          f"{mib(max(f['quiet_peak_kib'] for f in figures))} quiet")
    complete = all(f["complete"] for f in figures)
    print("   every client received every epoch event, ids gap-free, every prediction "
          "answered 200: " + ("yes" if complete else "NO"))
    return complete


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    machine.add_data_argument(parser)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="predictions a second")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of each run")
    parser.add_argument("--repeats", type=int, default=2, help="pairs of runs (quiet, loaded)")
    parser.add_argument("--rows", action="store_true",
                        help="send the drawings as rows of numbers, not as the page does "
                             "(base64 bytes)")
    parser.add_argument("--explain-fraction", type=float, default=0.1,
                        help="share of the predictions that ask for the feature maps")
    parser.add_argument("--train-size", type=int, default=None,
                        help="training images per epoch (default: all 60,000)")
    parser.add_argument("--test-size", type=int, default=None)
    machine.add_blas_argument(parser)
    args = parser.parse_args()

    machine.describe_with_load()
    requests = drawings(args.data_dir, 64, args.explain_fraction, args.rows)
    sizes = sorted(len(r.wire) for r in requests)
    print(f"drawings: {len(requests)} drawn MNIST test digits at {PAGE_SIDE}x{PAGE_SIDE}, "
          f"{sizes[0]:,}..{sizes[-1]:,} bytes a request, "
          f"{sum(r.explain for r in requests)} with explain", flush=True)
    body = {"preset": "default", "epochs": args.epochs}
    body.update({k: v for k, v in (("train_size", args.train_size),
                                   ("test_size", args.test_size)) if v})
    server = Server(args.data_dir)
    try:
        server.wait_ready()
        print(f"server {server.url} (pid {server.process.pid}); run: {body}", flush=True)
        figures = asyncio.run(bench(server, body, args, requests))
    finally:
        server.close()
    sys.exit(0 if report_medians(figures, args.clients, args.rate) else 1)


async def bench(server: Server, body: dict, args, requests: list[Request]) -> list[dict]:
    warmup = await train_once(server, {**body, "epochs": 1, "train_size": 2000},
                              0, 5.0, requests[:4])  # loads MNIST and the bundled model
    print(f"warm-up: {warmup['epochs'][0]['images_per_second']:,.0f} images/s", flush=True)
    figures = []
    for index in range(1, args.repeats + 1):
        quiet = await train_once(server, body, 0, 0, requests)
        report_quiet(index, quiet)
        loaded = await train_once(server, body, args.clients, args.rate, requests)
        figures.append(report_loaded(index, quiet, loaded))
    return figures


if __name__ == "__main__":
    main()
