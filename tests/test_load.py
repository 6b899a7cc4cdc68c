"""The event stream under a classroom's habits, on a real uvicorn server (in a thread
of this process, so its hub, event loop and memory can be looked at directly):

- browsers that connect and drop, a thousand times over, leave nothing behind: no
  subscriber, no task, no connection, no memory;
- a browser that stops reading is let go of after a bounded backlog, while another
  reads the whole run; when it reads again and reconnects with Last-Event-ID it has
  missed nothing.

Speed under load (200 browsers and 50 predictions a second during a whole run) is
measured by bench/bench_load.py, not here."""

from __future__ import annotations

import asyncio
import gc
import socket
import struct
import sys
import weakref
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import httpx

from app.hub import CHUNK_BYTES, EventHub
from server_helpers import (LiveServer, SSE, StreamReader, events_only, fast_pings,  # noqa: F401
                            make_app, parse_sse, run_async, wait_for)

CHURN_CYCLES = 1000
CHURN_AT_ONCE = 20             # browsers connected at the same moment
MEMORY_SLACK = 8 * 1024 * 1024  # RSS may move a little (allocator arenas), not per browser
# What the page draws from the newest event alone: of these, a browser that comes back
# is replayed only the newest of each run.
PICTURES = ("filters", "status", "evaluation", "histograms")


def rss_bytes() -> int:
    """This process's resident memory (Linux /proc): the server runs in it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def loop_tasks(loop: asyncio.AbstractEventLoop) -> int:
    """How many tasks the server's event loop has (the one asking not counted)."""
    async def count() -> int:
        return len(asyncio.all_tasks()) - 1
    return asyncio.run_coroutine_threadsafe(count(), loop).result(5)


# -- connect and drop -------------------------------------------------------------------------

REQUEST = b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"


async def visit(address: tuple[str, int], how: int) -> None:
    """One browser that comes and goes, in one of four ways: reads the stream's first
    bytes then closes (0) or resets (1) the connection; sends the request and closes at
    once (2); closes in the middle of its request (3)."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        if how == 3:
            writer.write(REQUEST[:20])
            return
        writer.write(REQUEST)
        if how == 2:
            return
        received = b""
        while b": connected" not in received:
            chunk = await asyncio.wait_for(reader.read(4096), 10)
            assert chunk, f"the server closed the stream early: {received!r}"
            received += chunk
        if how == 1:  # RST instead of FIN, as a browser tab that is killed may do
            writer.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        writer.close()


def churn(url: str, cycles: int, hub) -> None:
    """`cycles` visits, CHURN_AT_ONCE at a time, all four kinds; an event is published
    now and then, so some streams are dropped while events reach them."""
    host, port = url.removeprefix("http://").split(":")
    address = (host, int(port))

    async def main() -> None:
        for start in range(0, cycles, CHURN_AT_ONCE):
            await asyncio.gather(*(visit(address, i % 4)
                                   for i in range(start, min(start + CHURN_AT_ONCE, cycles))))
            hub.publish("status", {"state": "idle", "visits": start})

    run_async(main, timeout=120)


def test_a_thousand_browsers_that_connect_and_drop_leave_nothing_behind(mnist_dir, capsys):
    app = make_app(mnist_dir)
    hub = app.state.hub
    subscriptions: list[weakref.ref] = []
    real_subscribe = hub.subscribe

    def subscribe(*args, **kwargs):  # keeps track of every subscription, without keeping it
        subscription = real_subscribe(*args, **kwargs)
        subscriptions.append(weakref.ref(subscription))
        return subscription

    hub.subscribe = subscribe
    with LiveServer(app) as server:
        connections = server.server.server_state.connections
        churn(server.url, 100, hub)  # warm up: imports, allocator pools, first-use caches
        wait_for(lambda: hub.subscriber_count == 0 and not connections, timeout=10,
                 what="the warm-up browsers to be gone")
        gc.collect()
        tasks_before, rss_before = loop_tasks(hub.loop), rss_bytes()
        subscriptions.clear()

        churn(server.url, CHURN_CYCLES, hub)
        wait_for(lambda: hub.subscriber_count == 0 and not connections, timeout=10,
                 what="every subscriber and connection to be gone")
        wait_for(lambda: loop_tasks(hub.loop) <= tasks_before, timeout=10,
                 what="the event loop's tasks to return to their number")
        tasks_after = loop_tasks(hub.loop)
        gc.collect()
        rss_after = rss_bytes()
        alive = sum(1 for ref in subscriptions if ref() is not None)
        # The server still works: a new browser is served (and counted) as before.
        reader = StreamReader(server.url, until=lambda record: False).start_subscribed()
        wait_for(lambda: hub.subscriber_count == 1, what="a new browser to subscribe")
        reader.close()
        hub.publish("status", {"state": "idle"})  # wakes the reader so that it sees close()
        reader.result(10)

    with capsys.disabled():
        print(f"\nchurn: {CHURN_CYCLES} visits ({len(subscriptions)} subscribed); tasks on the "
              f"loop {tasks_before} -> {tasks_after}; RSS "
              f"{rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB "
              f"({(rss_after - rss_before) / 2**10:+.0f} KiB)")
    # Most visits got as far as subscribing (those that drop mid-request cannot).
    assert len(subscriptions) >= CHURN_CYCLES // 2
    assert alive == 0, f"{alive} subscriptions are still referenced"
    assert rss_after - rss_before < MEMORY_SLACK, \
        f"RSS grew by {(rss_after - rss_before) / 2**20:.1f} MiB over {CHURN_CYCLES} visits"


# -- a crowd of browsers ---------------------------------------------------------------------

def test_a_crowd_of_browsers_gets_events_in_batches_and_a_few_get_each_at_once():
    async def main():
        hub = EventHub(crowd=3, crowd_interval=1.0)
        hub.attach(asyncio.get_running_loop())

        async def first_delivery(subscriptions) -> list[list[int]]:
            """What each waiting stream gets when it is first woken, as five events are
            published in quick succession."""
            waiting = [asyncio.create_task(s.next_events(30)) for s in subscriptions]
            await asyncio.sleep(0.01)
            for _ in range(5):
                hub.publish("batch", {})
                await asyncio.sleep(0)
            return [[e.id for e in await task] for task in waiting]

        few = [hub.subscribe() for _ in range(2)]
        first = hub.last_id + 1
        assert await first_delivery(few) == [[first]] * 2  # each event at once
        for subscription in few:
            await subscription.next_events(0)  # the rest

        crowd = few + [hub.subscribe(hub.last_id)]
        first = hub.last_id + 1
        assert await first_delivery(crowd) == [list(range(first, first + 5))] * 3  # one batch

    run_async(main)


# -- a browser that stops reading ---------------------------------------------------------

def silent_browser(url: str) -> socket.socket:
    """Asks for the stream (HTTP/1.0: the server closes the connection when it ends
    the stream), then reads nothing until told to."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(b"GET /api/events HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    return sock


def read_to_the_end(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def sse_records(raw: bytes) -> list[SSE]:
    """The SSE records of a whole HTTP response (uvicorn chunks the stream, even for
    HTTP/1.0)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:100]
    assert b"transfer-encoding: chunked" in head.lower()
    content = []
    while body:
        size, _, rest = body.partition(b"\r\n")
        length = int(size, 16)
        content.append(rest[:length])
        body = rest[length + 2:]
    return list(parse_sse(b"".join(content).decode().split("\n")))


def wire_size(event_id: int, name: str, data: str) -> int:
    return len(f"event: {name}\ndata: {data}\nid: {event_id}\n\n".encode())


def run_events(records: list[SSE], run_id: str) -> list[tuple[int, str, str]]:
    """(id, name, data) of the events from `run_id`'s run event on."""
    events = [(e.id, e.event, e.data) for e in events_only(records)]
    start = next(i for i, (_, name, data) in enumerate(events)
                 if name == "run" and f'"run_id":"{run_id}"' in data)
    return events[start:]


def test_a_browser_that_stops_reading_is_let_go_and_misses_nothing_when_it_comes_back(
        mnist_dir, fast_pings):
    # Many tiny epochs make a dense stream (epoch, batch, status and filters events);
    # small socket buffers and a small backlog make the silent browser's share overflow.
    backlog = 20
    run = {"preset": "seed", "epochs": 150, "train_size": 40, "test_size": 10, "filters": [16]}
    app = make_app(mnist_dir, subscriber_backlog=backlog)
    hub = app.state.hub
    with LiveServer(app, send_buffer=8192) as server:
        silent = silent_browser(server.url)
        try:
            wait_for(lambda: hub.subscriber_count == 1, what="the silent browser to subscribe")
            reader = StreamReader(server.url).start_subscribed()
            response = httpx.post(server.url + "/api/runs", json=run)
            assert response.status_code == 201
            run_id = response.json()["run_id"]
            watched = run_events(reader.result(), run_id)
            # The reader was not held up: the whole run, in order (on a busy machine it
            # too may fall behind and reconnect, as a browser does, missing nothing).
            assert [name for _, name, _ in watched].count("epoch") == run["epochs"]
            assert [i for i, _, _ in watched] == list(range(watched[0][0], watched[-1][0] + 1))
            assert watched[-1][1] == "done"
            # The silent one was let go of (the reader's own stream ends as it leaves).
            wait_for(lambda: hub.subscriber_count == 0, timeout=5,
                     what="the silent browser to be let go of")

            # It reads again: what the server kept for it, then the end of the stream.
            first = sse_records(read_to_the_end(silent))
        finally:
            silent.close()

        kept = run_events(first, run_id)
        assert kept and kept[-1][1] != "done", "the silent browser was never cut off"
        assert kept == watched[:len(kept)]  # a gap-free beginning of the run
        # Bounded: at most the backlog of events, a chunk being written, what uvicorn's
        # write buffer takes before it pauses (64 KiB and a chunk) and the kernels' socket
        # buffers (set small above; Linux doubles them).
        largest = max(wire_size(*event) for event in watched)
        bound = backlog * largest + 2 * CHUNK_BYTES + 64 * 1024 + 2 * (8192 + 4096)
        kept_bytes = sum(wire_size(*event) for event in kept)
        run_bytes = sum(wire_size(*event) for event in watched)
        print(f"silent browser: kept {kept_bytes:,} bytes ({len(kept)} events) of the run's "
              f"{run_bytes:,} ({len(watched)} events); bound {bound:,}")
        assert kept_bytes <= bound
        assert run_bytes > 2 * bound  # the run was far more than the server could keep

        # Like EventSource, it reconnects with the id of the last event it got.
        again = StreamReader(server.url, headers={"Last-Event-ID": str(kept[-1][0])},
                             reconnect=False).start_subscribed()
        rest = [(e.id, e.event, e.data) for e in events_only(again.result())]
    # Missing nothing: everything after its last event, but the pictures the page draws
    # from the newest event alone (filters, status, evaluation, histograms): of those
    # the history keeps the newest of each run (a status may come after "done").
    newest = {event.id for event in hub.history() if event.name in PICTURES}
    assert rest == [event for event in watched[len(kept):]
                    if event[1] not in PICTURES or event[0] in newest]
