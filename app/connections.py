"""Connection limits for `cnn-live serve`: what uvicorn's own options leave open.

uvicorn (0.54, httptools) offers, and `cnn-live serve` uses:
- `timeout_keep_alive`: closes a connection left idle *after a response*.
It lacks, and an adversarial test against the real server showed:
- no timer at all until the first response: a connection that sends nothing, or
  sends its request head a line a second (slowloris), is kept forever;
- no cap on the request head: httptools gathers a header's pieces until it ends,
  so one unfinished 300 MB header took the server from 62 to 417 MB
  (`h11_max_incomplete_event_size` is the h11 parser's cap; httptools has none);
- `limit_concurrency` answers 503 only once a request head is complete, so idle and
  slowloris connections, the ones that pile up, never meet it; meanwhile each holds a
  file descriptor, and at RLIMIT_NOFILE asyncio stops accepting (for a second at a
  time), so a health check can time out (it did under `ulimit -n 256`).

`LimitedHttpTools` (uvicorn's HttpToolsProtocol, passed to uvicorn as `http=`) adds:
- idle deadline (IDLE_SECONDS) whenever the connection waits for a request: from
  the moment it is accepted, and after each response; any byte starts the head;
- head deadline (HEAD_SECONDS), from the head's first byte to its end: 408;
- head size cap (MAX_HEAD_BYTES, request line and headers), counted as bytes
  arrive and fed to the parser no further than the cap: 431;
- body pace: while a body is read, at least BODY_MIN_BYTES every BODY_WINDOW_SECONDS
  (windows in which the server itself paused reading do not count), else closed;
- a cap on open connections: past it, a newcomer takes the place of the connection
  that has waited longest for a request (idle, or still sending its head; dropping
  it is what its idle deadline would do anyway, and HTTP clients retry a request on
  a closed idle connection); when every connection has a request in progress (SSE
  streams included), the newcomer gets a 503 and is closed at once. The cap is
  below RLIMIT_NOFILE, and uvicorn's `backlog` (how many connections asyncio accepts
  in one go) sized to what it leaves: accept() must never fail for want of
  descriptors (accept_backlog()).
A response in progress (an SSE stream of hours) has no deadline: it is not idle.

uvicorn internals relied on, each caught by a test against the real server
(tests/test_connections.py) if it changes: `on_headers_complete` and
`on_message_complete` (httptools' callback names) calling on to uvicorn's,
`on_response_complete` (called when a response ends: the keep-alive idle test) and
`self.transport`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("cnn_live.connections")

IDLE_SECONDS = 5             # uvicorn's timeout_keep_alive default, now also before a request
HEAD_SECONDS = 10.0          # a browser sends its head in one packet; 10 s is lenient
MAX_HEAD_BYTES = 16 * 1024   # browsers' heads are 0.5-2 KiB, cookies included; nginx: 8 KiB
BODY_WINDOW_SECONDS = 10.0
BODY_MIN_BYTES = 10 * 1024   # per window: 1 KiB/s, Apache's MinRate is 500 B/s
LINGER_SECONDS = 1.0         # after a 408/431: time for the client to read it...
LINGER_BYTES = 1024 * 1024   # ...while what it still sends is read and dropped, this much
WARN_EVERY_SECONDS = 10.0    # an attack logs a line per kind every 10 s, not per connection

# The default cap: most of the file descriptors, the rest left for the process's own
# (9 at rest: stdio, the listening socket, epoll, pipes), files and checkpoints of
# runs, and a burst of connections accepted before the oldest are dropped.
MAX_CONNECTIONS_CEILING = 1024  # a classroom needs a few hundred; each may hold ~100 KB (head
#                               cap, uvicorn's 64 KiB of body before it pauses reading)
FD_RESERVE = 48
PROCESS_FDS = 16    # the process's own descriptors and a run's open files
MAX_BACKLOG = 2048  # uvicorn's default


def default_max_connections(soft_limit: int | None = None) -> int:
    """Connections allowed at once when CNN_LIVE_MAX_CONNECTIONS is not set, from the
    soft RLIMIT_NOFILE: 208 under `ulimit -n 256` (200 browsers fit), 896 under 1024,
    MAX_CONNECTIONS_CEILING above."""
    if soft_limit is None:
        soft_limit = _soft_file_limit()
    reserve = max(FD_RESERVE, soft_limit // 8)
    return min(MAX_CONNECTIONS_CEILING, max(soft_limit // 2, soft_limit - reserve))


def accept_backlog(max_connections: int, soft_limit: int | None = None) -> int:
    """uvicorn's `backlog`: the listen queue, and also how many connections asyncio
    accepts in one go, each a descriptor, before any reaches the cap's check. Half of
    the descriptors the cap leaves spare: a flood must never make accept() fail with
    EMFILE, on which asyncio (3.11) logs a traceback per queued connection and stops
    accepting for a second (measured: 16 under `ulimit -n 256` kept /healthz fast
    through a burst of 300 sockets; 32 did not)."""
    if soft_limit is None:
        soft_limit = _soft_file_limit()
    spare = soft_limit - max_connections - PROCESS_FDS
    return max(8, min(MAX_BACKLOG, spare // 2))


def _soft_file_limit() -> int:
    try:
        import resource
    except ImportError:  # not Unix: no descriptor limit to read
        return 2 * MAX_CONNECTIONS_CEILING
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 2 * MAX_CONNECTIONS_CEILING if soft == resource.RLIM_INFINITY else soft


def uvicorn_options(max_connections: int | None = None) -> dict:
    """Keyword arguments for uvicorn.run / uvicorn.Config: the protocol with its limits."""
    limit = max_connections or default_max_connections()
    return {"http": limited_protocol(limit), "timeout_keep_alive": IDLE_SECONDS,
            "backlog": accept_backlog(limit)}


def limited_protocol(max_connections: int) -> type["LimitedHttpTools"]:
    """A LimitedHttpTools class with its own registry: one per server."""
    return type("LimitedHttpTools", (LimitedHttpTools,),
                {"registry": Registry(max_connections)})


class Registry:
    """One server's open connections, and those waiting for a request, oldest first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: set[LimitedHttpTools] = set()
        self.waiting: dict[LimitedHttpTools, None] = {}  # insertion order: longest waiting first
        self._warned: dict[str, tuple[float, int]] = {}

    def admit(self, connection: "LimitedHttpTools") -> bool:
        """Room for `connection`, if need be by dropping the longest-waiting one."""
        if len(self.open) >= self.limit:
            victim = next(iter(self.waiting), None)
            if victim is None:
                return False
            self.warn("evicted", f"at the limit of {self.limit} connections: the one "
                                 f"waiting longest for a request was closed")
            victim.drop()
        self.open.add(connection)
        return True

    def wait(self, connection: "LimitedHttpTools") -> None:
        self.waiting.pop(connection, None)
        self.waiting[connection] = None  # to the end: the newest to wait

    def busy(self, connection: "LimitedHttpTools") -> None:
        self.waiting.pop(connection, None)

    def forget(self, connection: "LimitedHttpTools") -> None:
        self.open.discard(connection)
        self.waiting.pop(connection, None)

    def warn(self, kind: str, message: str) -> None:
        """A warning at most every WARN_EVERY_SECONDS per kind, with how many were
        not logged in between."""
        now = time.monotonic()
        last, quiet = self._warned.get(kind, (-WARN_EVERY_SECONDS, 0))
        if now - last < WARN_EVERY_SECONDS:
            self._warned[kind] = (last, quiet + 1)
            return
        self._warned[kind] = (now, 0)
        log.warning("%s%s", message, f" ({quiet} more since the last such line)" if quiet else "")


class State(enum.Enum):
    WAITING = "waiting for a request"      # idle deadline
    HEAD = "reading a request head"        # head deadline and size cap
    BODY = "reading a request body"        # body pace
    BUSY = "answering"                     # no deadline: a response (an SSE stream) in progress
    CLOSING = "answered an error, closing"  # input dropped, closed after LINGER_SECONDS


class LimitedHttpTools(HttpToolsProtocol):
    registry: Registry  # set by limited_protocol()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timer: asyncio.TimerHandle | None = None
        self._pending = 0  # requests whose head is in and whose response is not finished
        self._answerable = False  # may a 408/431 be written (no response in progress)?
        self._counted = 0  # bytes of the head, or of the body in this window, or dropped
        if not self.registry.admit(self):
            self._state = State.CLOSING
            self.registry.warn("refused", f"at the limit of {self.registry.limit} connections, "
                                          f"all with a request in progress: 503")
            self._write_error(503, "too many connections: try again shortly")
            transport.close()
            return
        self._wait_for_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.registry.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._state is State.CLOSING:
            self._discard(data)
            return
        while data and not self.transport.is_closing():
            if self._state in (State.WAITING, State.BUSY):
                self._begin_head()
            if self._state is State.HEAD:
                # At most up to the cap reaches the parser, which buffers a header's
                # pieces. A piece may end this head and begin a pipelined one: that
                # one's first bytes go uncounted, so a head may reach twice the cap.
                room = MAX_HEAD_BYTES - self._counted
                if room <= 0:
                    self._head_failed(431, "the request head is larger than "
                                           f"{MAX_HEAD_BYTES} bytes")
                    return
                piece, data = data[:room], data[room:]
            else:  # the body: its size is BodySizeLimit's (app/main.py), its pace ours
                piece, data = data, b""
            self._counted += len(piece)
            super().data_received(piece)

    # httptools' callbacks, through uvicorn's

    def on_headers_complete(self) -> None:
        self._pending += 1
        self._state, self._counted, self._reading = State.BODY, 0, self.transport.is_reading()
        self.registry.busy(self)
        self._arm(BODY_WINDOW_SECONDS, self._check_body_pace)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._pending or self.transport.is_closing():
            self._state = State.BUSY
            self._cancel_timer()
        else:  # answered before the body was in (a 404 to a POST)
            self._wait_for_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._pending -= 1
        if not self._pending and self._state is State.BUSY and not self.transport.is_closing():
            self._wait_for_request()

    # the states

    def _wait_for_request(self) -> None:
        self._state, self._counted = State.WAITING, 0
        self.registry.wait(self)
        self._arm(IDLE_SECONDS, self._idle_too_long)

    def _begin_head(self) -> None:
        # A 408/431 may be written only between responses, not into one in progress
        # (a head that comes while a response is written is a pipelined request).
        self._answerable = self._state is State.WAITING
        self._state, self._counted = State.HEAD, 0
        self._arm(HEAD_SECONDS, self._head_too_slow)

    def _idle_too_long(self) -> None:
        self.transport.close()  # as uvicorn's keep-alive timeout does: no answer

    def _head_too_slow(self) -> None:
        self.registry.warn("slow head", f"a request head took over {HEAD_SECONDS:g} s: 408")
        self._head_failed(408, f"the request head took over {HEAD_SECONDS:g} s")

    def _check_body_pace(self) -> None:
        # A window in which the server paused reading (the app not reading yet, a
        # pipelined request waiting) proves nothing about the client: not counted.
        reading, self._reading = self._reading, self.transport.is_reading()
        if reading and self._reading and self._counted < BODY_MIN_BYTES:
            self.registry.warn("slow body", f"a request body came slower than {BODY_MIN_BYTES} "
                                            f"bytes in {BODY_WINDOW_SECONDS:g} s: closed")
            self.transport.close()
            return
        self._counted = 0
        self._arm(BODY_WINDOW_SECONDS, self._check_body_pace)

    def _head_failed(self, status: int, message: str) -> None:
        if status == 431:
            self.registry.warn("large head", f"{message}: 431")
        if not self._answerable:
            self.transport.close()
            return
        # The answer, then a half-close, reading and dropping what the client still
        # sends for a moment: closing with unread input would reset the connection and
        # could destroy the answer before the client reads it.
        self._state, self._counted = State.CLOSING, 0
        self._write_error(status, message)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._arm(LINGER_SECONDS, self.transport.close)

    def _discard(self, data: bytes) -> None:
        self._counted += len(data)
        if self._counted > LINGER_BYTES:
            self.transport.close()

    def drop(self) -> None:
        """Closed to make room for a newcomer (by the registry)."""
        self.registry.forget(self)
        self._cancel_timer()
        self.transport.close()

    def _write_error(self, status: int, message: str) -> None:
        body = message.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, REASONS[status], len(body), body))

    def _arm(self, seconds: float, callback) -> None:
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(seconds, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large",
           503: b"Service Unavailable"}
