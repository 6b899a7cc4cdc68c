"""Streaming costs the training almost nothing.

Starts the real app (uvicorn, in a child process on a socket bound to port 0) and
trains one full epoch of the `default` preset with no SSE client connected, then with
20 clients reading /api/events, alternating (0, 20, 0, 20 with --repeats 2). The
training throughput is the epoch record's `images_per_second` (training only, not
the test evaluation), read from GET /api/runs. Prints each run's images/s, the
medians and the ratio with/without clients (target >= 0.95), and checks that every
client received every event of its run (the epoch event included) with gap-free
increasing ids.

The clients run on one asyncio loop in a thread of this process, reading raw
streams as cheaply as a client can: they share the server's two cores, as browsers
on the same machine would; with --nice-clients they run at the lowest priority,
which leaves mostly the server's own cost of streaming (as with browsers on other
machines). The CPU seconds of the
server process and of this one (the clients) are printed for each run.

Usage: python bench/bench_stream.py [--data-dir DIR] [--clients 20] [--repeats 2]
                                    [--train-size N] [--test-size N] [--nice-clients]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402
from server import Server  # noqa: E402

machine.use_fast_blas()
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

ACTIVE_STATES = ("running", "paused", "stopping")


# -- the clients ------------------------------------------------------------------------------

class Client:
    """One browser's record: (id, event, run_id) of every event it read."""

    def __init__(self) -> None:
        self.events: list[tuple[int, str, str | None]] = []
        self.error: BaseException | None = None

    def check(self, run_id: str, epochs: int) -> tuple[int, str | None]:
        """(events of the run received, what is wrong or None)."""
        if self.error is not None:
            return 0, f"failed: {self.error!r}"
        starts = [i for i, (_, name, rid) in enumerate(self.events)
                  if name == "run" and rid == run_id]
        if not starts:
            return 0, "no run event"
        run = self.events[starts[0]:]
        ids = [event_id for event_id, _, _ in run]
        if ids != list(range(ids[0], ids[0] + len(ids))):
            return len(run), "ids not gap-free and increasing"
        if run[-1][1:] != ("done", run_id):
            return len(run), "no done event"
        received = sum(1 for _, name, rid in run if name == "epoch" and rid == run_id)
        if received != epochs:
            return len(run), f"{received} epoch events of {epochs}"
        return len(run), None


class Clients(threading.Thread):
    """`count` SSE clients on one asyncio loop in one thread. Each reads the raw
    stream (an HTTP/1.0 request, so the body is the event stream as it is, not in
    chunks) and parses it with a few bytes operations, as cheaply as a client can:
    they share the server's two cores, and a heavy client would measure itself.
    They stop at the `done` event of the run they are told to watch."""

    def __init__(self, url: str, count: int, nice: bool = False) -> None:
        super().__init__(daemon=True)
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port, self.nice = host, int(port), nice
        self.clients = [Client() for _ in range(count)]
        self.connected = threading.Event()
        self.run_id: str | None = None  # set once the run is started

    def run(self) -> None:
        if self.nice:  # Linux: the priority of this thread alone
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        asyncio.run(self._read_all())

    async def _read_all(self) -> None:
        opened = [asyncio.Event() for _ in self.clients]
        tasks = [asyncio.create_task(self._read(client, ready))
                 for client, ready in zip(self.clients, opened)]
        await asyncio.gather(*(ready.wait() for ready in opened))
        self.connected.set()
        await asyncio.gather(*tasks)

    async def _read(self, client: Client, ready: asyncio.Event) -> None:
        writer = None
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            writer.write(b"GET /api/events HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            buffer = b""
            while True:
                chunk = await asyncio.wait_for(reader.read(65536), 120)
                if not chunk:
                    raise ConnectionError("the server closed the stream")
                buffer += chunk
                *blocks, buffer = buffer.split(b"\n\n")
                for block in blocks:
                    if block.startswith(b": connected") or b"\n: connected" in block:
                        ready.set()
                    if self._record(client, block):
                        return
        except BaseException as exc:
            client.error = exc
        finally:
            ready.set()
            if writer is not None:
                writer.close()

    def _record(self, client: Client, block: bytes) -> bool:
        """Keep one event; True at the done event of the watched run."""
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n")
                      if line and not line.startswith(b":") and b": " in line)
        if b"event" not in fields:
            return False
        name = fields[b"event"].decode()
        run_id = None
        if name in ("run", "epoch", "done"):
            run_id = json.loads(fields[b"data"]).get("run_id")
        client.events.append((int(fields[b"id"]), name, run_id))
        return name == "done" and run_id is not None and run_id == self.run_id


# -- one timed run ----------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def train_once(url: str, body: dict, clients: int, server_pid: int,
               nice: bool = False) -> dict:
    server_cpu, own_cpu = cpu_seconds(server_pid), time.process_time()
    readers = Clients(url, clients, nice)
    if clients:
        readers.start()
        if not readers.connected.wait(30) or any(c.error for c in readers.clients):
            raise SystemExit(f"a client could not connect: {readers.clients[0].error!r}")
    response = httpx.post(url + "/api/runs", json=body, timeout=30)
    if response.status_code != 201:
        raise SystemExit(f"starting the run failed: {response.status_code} {response.text}")
    run_id = response.json()["run_id"]
    readers.run_id = run_id
    while (status := httpx.get(url + "/api/status", timeout=30).json())["state"] in ACTIVE_STATES:
        time.sleep(0.5)
    if status["state"] != "finished":
        raise SystemExit(f"the run ended {status['state']}: {status['message']}")
    if clients:
        readers.join(60)
    run = next(r for r in httpx.get(url + "/api/runs", timeout=30).json() if r["run_id"] == run_id)
    epoch = run["epochs"][0]
    checks = [client.check(run_id, body["epochs"]) for client in readers.clients]
    return {"clients": clients, "images_per_second": epoch["images_per_second"],
            "server_cpu": cpu_seconds(server_pid) - server_cpu,
            "clients_cpu": time.process_time() - own_cpu,
            "seconds": epoch["seconds"], "accuracy": run["final_test_accuracy"],
            "counts": [count for count, _ in checks],
            "problems": [problem for _, problem in checks if problem]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    machine.add_data_argument(parser)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2,
                        help="pairs of runs (without, with clients)")
    parser.add_argument("--train-size", type=int, default=None,
                        help="training images per epoch (default: all 60,000)")
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--nice-clients", action="store_true",
                        help="run the client threads at the lowest CPU priority, so that "
                             "they read mostly on idle time: the server's own cost, as "
                             "with browsers on other machines")
    machine.add_blas_argument(parser)
    args = parser.parse_args()

    machine.describe_with_load()
    body = {"preset": "default", "epochs": 1}
    if args.train_size:
        body["train_size"] = args.train_size
    if args.test_size:
        body["test_size"] = args.test_size
    server = Server(args.data_dir)
    try:
        server.wait_ready()
        print(f"server {server.url} (pid {server.process.pid}); run: {body}", flush=True)
        warmup_size = min(args.train_size or 2000, 2000)
        warmup = train_once(server.url, {**body, "train_size": warmup_size}, 0,
                            server.process.pid)
        print(f"warm-up: {warmup['images_per_second']:,.0f} images/s", flush=True)
        results = []
        for repeat in range(args.repeats):
            for clients in (0, args.clients):
                result = train_once(server.url, body, clients, server.process.pid,
                                    args.nice_clients)
                results.append(result)
                line = (f"run {len(results)}: {clients:2d} clients: "
                        f"{result['images_per_second']:8,.0f} images/s, epoch "
                        f"{result['seconds']:.1f} s, test accuracy {result['accuracy']:.4f}; "
                        f"CPU s: server {result['server_cpu']:.1f}, this process (clients) "
                        f"{result['clients_cpu']:.1f}; load {os.getloadavg()[0]:.1f}")
                if clients:
                    counts = result["counts"]
                    line += (f"; events per client {min(counts)}..{max(counts)}, "
                             f"{clients - len(result['problems'])}/{clients} complete")
                print(line, flush=True)
                for problem in sorted(set(result["problems"])):
                    print(f"   client problem: {problem}", flush=True)
    finally:
        server.close()

    without = statistics.median(r["images_per_second"] for r in results if r["clients"] == 0)
    with_clients = statistics.median(r["images_per_second"] for r in results if r["clients"])
    ratio = with_clients / without
    complete = all(not r["problems"] for r in results)
    print(f"median images/s: {without:,.0f} with 0 clients, {with_clients:,.0f} with "
          f"{args.clients} clients{' (niced)' if args.nice_clients else ''}")
    print(f"ratio with/without clients: {ratio:.3f} (target >= 0.95: "
          f"{'met' if ratio >= 0.95 else 'NOT met'})")
    print("every client received every event of its run, epoch event included, ids gap-free: "
          + ("yes" if complete else "NO"))
    sys.exit(0 if complete else 1)


if __name__ == "__main__":
    main()
