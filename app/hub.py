"""The event hub: numbers every event, keeps the active runs' history and fans
events out to every subscriber (browser), or to those that follow one run.

Events are published from any thread (a worker's reader, the event loop), serialised
to JSON once, whatever the number of subscribers (a run's events arrive from its
worker as JSON text already: `publish_text`). Every run event carries its run's id. Delivery happens on the event
loop: each subscriber has a bounded backlog of pending events, and one that falls too
far behind is dropped rather than allowed to hold anything up; its browser reconnects
with Last-Event-ID and is replayed what it missed from the history.

Memory: the history is bounded in events and in bytes (CNN_LIVE_HISTORY_MB), and so is
what one browser is replayed or has pending. Before these bounds a run whose filters
events were 20 MB each grew the server by 1.7 GB in 55 s and replayed 327 MB to a late
browser (issue 11). Of the pictures the page draws from the newest event alone (filters,
status, evaluation, histograms) only the newest of each run is kept: when every filters
and status event was kept, a late browser at epoch 9 of a `default` run was replayed
680 KB, 360 KB of them older filters and status events the page skipped; now ~300 KB,
most of it the batches of the loss chart.
"""

from __future__ import annotations

import asyncio
import json
import threading
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field
from operator import attrgetter

from fastapi.sse import format_sse_event

# Kinds of which the history keeps only the newest of each run (by the event's run_id:
# a status carries the current run's, or none when idle). Each is a whole picture the
# page draws from its newest event alone: the filters (~2 KB) and the server's status
# (~1.6 KB), each about once a second, the confusion matrix and gallery and the
# histograms against the start (~50 KB an epoch).
LATEST_ONLY = frozenset({"filters", "status", "evaluation", "histograms"})
# Kinds that may be dropped from a long run's history, oldest first: a late browser
# needs every epoch, but not every throttled batch (~300 B, ~100 an epoch: the loss
# chart, drawn coarser). Not LATEST_ONLY kinds: of those the history holds one per run.
THINNABLE = frozenset({"batch"})
# Thinning by bytes goes down to this share of the limit, so it runs once per many
# events rather than on every one.
THIN_TO = 0.75
HISTORY_BYTES = 8 * 2**20  # CNN_LIVE_HISTORY_MB's default


@dataclass(frozen=True)
class Event:
    id: int
    name: str
    wire: bytes  # the whole SSE message, formatted once for every subscriber
    run_id: str | None = None  # the run it is about; None for the server's status

    @property
    def data(self) -> str:
        """The JSON, read back from the wire: an event is kept once, as the bytes every
        subscriber is sent (it was kept as a str as well, twice the memory)."""
        lines = self.wire.decode("utf-8").split("\n")
        return "\n".join(line[6:] for line in lines if line.startswith("data: "))


_EVENT_ID = attrgetter("id")  # the history's sort key


def grouped_batches(events: list[Event]) -> list[Event]:
    """`events` with the batch events of each run (since its latest "run" event before
    them) as one "batches" event, {"run_id": ..., "batches": [each batch's data, in
    order]}, in the place and with the id of the last of them, so ids stay in order.

    Why: a page that opens late (GET /api/events?group_batches=true) was replayed ~1,000
    batch events at epoch 9 of a `default` run; a slow phone parsed and applied them
    one by one for about half a second. As one event they are parsed in one go and the
    loss chart is drawn once (issue 13). The batches of one run never cross its "run"
    event: that event clears the run's curves, so the ones before it stay before it."""
    starts: dict[str | None, int] = {}      # run id -> its "run" events seen so far
    groups: dict[tuple[str | None, int], list[Event]] = {}
    for event in events:
        if event.name == "run":
            starts[event.run_id] = starts.get(event.run_id, 0) + 1
        elif event.name == "batch":
            groups.setdefault((event.run_id, starts.get(event.run_id, 0)), []).append(event)
    last_of_group = {group[-1].id: group for group in groups.values()}
    return [_batches_event(last_of_group[event.id]) if event.name == "batch" else event
            for event in events if event.name != "batch" or event.id in last_of_group]


def _batches_event(batches: list[Event]) -> Event:
    last = batches[-1]
    data = '{"run_id":%s,"batches":[%s]}' % (json.dumps(last.run_id),
                                              ",".join(event.data for event in batches))
    return Event(last.id, "batches", format_sse_event(data_str=data, event="batches",
                                                      id=str(last.id)), last.run_id)


# Events handed to a stream at once are capped near this many bytes: one write to the
# socket per wake-up rather than one per event, without building huge buffers when a
# late browser is replayed a long history.
CHUNK_BYTES = 64 * 1024


@dataclass(eq=False)
class Subscription:
    """One browser's view of the hub: events in id order, missed ones (the replayed
    history) first, then live ones, pending until its stream takes them.

    Deliberately not an asyncio.Queue read through asyncio.wait_for: that makes a task
    and a timer per event per browser. With a room full of browsers on two cores the
    event loop's work is taken from the training thread (the GIL), so a stream takes
    everything pending in one go (`next_events`) and waits on a single future."""
    last_id: int = 0
    run_id: str | None = None  # follows only this run's events; None: every event
    dropped: bool = False
    replay: deque[Event] = field(default_factory=deque)
    pending: deque[Event] = field(default_factory=deque)
    pending_bytes: int = 0  # of the events in `pending`
    _waiter: asyncio.Future | None = field(default=None, repr=False)

    async def next_event(self) -> Event | None:
        """The next event, or None once the hub dropped this subscription."""
        while True:
            if self.replay:
                return self.replay.popleft()
            if self.pending:
                return self._take_pending()
            if self.dropped:
                return None
            await self._wait(None)

    async def next_events(self, timeout: float) -> list[Event] | None:
        """The events waiting (at least one, up to about CHUNK_BYTES), after waiting up
        to `timeout` s for one; [] if none came; None once dropped and all handed out."""
        if not (self.replay or self.pending or self.dropped):
            await self._wait(timeout)
        source = self.replay or self.pending
        if not source:
            return None if self.dropped else []
        events, size = [], 0
        while source and (not events or size + len(source[0].wire) <= CHUNK_BYTES):
            events.append(source.popleft())
            size += len(events[-1].wire)
        if source is self.pending:
            self.pending_bytes -= size
        return events

    def _take_pending(self) -> Event:
        event = self.pending.popleft()
        self.pending_bytes -= len(event.wire)
        return event

    def add_pending(self, event: Event) -> None:
        self.pending.append(event)
        self.pending_bytes += len(event.wire)
        self.last_id = event.id

    async def _wait(self, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(timeout, _wake, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def wake(self) -> None:
        if self._waiter is not None:
            _wake(self._waiter)


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


# From this many browsers on, events reach them in batches, every CROWD_INTERVAL s:
# one wake-up and one write per browser per batch instead of one per event (about 12 a
# second while training). A room of 200 browsers otherwise costs the event loop 2,400
# writes a second, and the training thread the GIL they hold. A few browsers get each
# event at once.
CROWD = 20
CROWD_INTERVAL = 0.25


class EventHub:
    """`history_limit` events and `history_bytes_limit` bytes of the active runs are
    kept for late browsers (every epoch, run, done and error event whatever the bytes:
    a run has at most 10,000 epochs, ~300 B each; and the newest LATEST_ONLY event of
    each kind and run); a browser with more than `subscriber_backlog` events or
    `history_bytes_limit` bytes pending is dropped (it reconnects and is replayed the
    history)."""

    def __init__(self, history_limit: int = 20_000, subscriber_backlog: int = 2_000,
                 crowd: int = CROWD, crowd_interval: float = CROWD_INTERVAL,
                 history_bytes_limit: int = HISTORY_BYTES) -> None:
        self.history_limit, self.subscriber_backlog = history_limit, subscriber_backlog
        self.history_bytes_limit = history_bytes_limit
        self.crowd, self.crowd_interval = crowd, crowd_interval
        self._lock = threading.Lock()
        self._next_id = 1
        self._history: list[Event] = []
        self._history_bytes = 0  # of the events in _history
        # (kind, run_id) -> the id of its newest LATEST_ONLY event: a newer one replaces
        # it without a scan of the history (20,000 events: ~2 ms, twice a second a run).
        self._latest_ids: dict[tuple[str, str | None], int] = {}
        self._subscribers: set[Subscription] = set()  # touched on the loop only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batch_due: asyncio.TimerHandle | None = None  # a crowd's next delivery

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver to subscribers on this loop (the server's)."""
        self._loop = loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The server's event loop, once attached (tests count its tasks)."""
        return self._loop

    # -- publishing (any thread) ---------------------------------------------------------

    def publish(self, name: str, payload: dict) -> Event:
        """`payload` as the JSON of event `name`; a payload with a run_id is that run's."""
        data = json.dumps(payload, separators=(",", ":"), allow_nan=False)
        return self.publish_text(name, data, payload.get("run_id"))

    def publish_text(self, name: str, data: str, run_id: str | None = None) -> Event:
        """An event whose JSON is ready (a worker made it)."""
        with self._lock:
            event_id = self._next_id
            event = Event(event_id, name,
                          format_sse_event(data_str=data, event=name, id=str(event_id)), run_id)
            self._next_id += 1
            if name in LATEST_ONLY:
                self._replace_latest(event)
            self._history.append(event)
            self._history_bytes += len(event.wire)
            if len(self._history) > self.history_limit:
                self._thin_history()
            if self._history_bytes > self.history_bytes_limit:
                self._thin_history_bytes()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._fan_out, event)
            except RuntimeError:  # the loop closed in between: nobody is listening
                pass
        return event

    def keep_runs(self, run_ids) -> None:
        """A run starts: the history forgets the events of every run not in `run_ids`
        (the runs still active, and the new one). Ids keep increasing."""
        keep = set(run_ids)
        with self._lock:
            self._set_history([event for event in self._history
                               if event.run_id is None or event.run_id in keep])
            self._latest_ids = {key: event_id for key, event_id in self._latest_ids.items()
                                if key[1] is None or key[1] in keep}

    def history(self, after_id: int = 0, run_id: str | None = None) -> list[Event]:
        return self._history_after(after_id, run_id)[0]

    def _history_after(self, after_id: int, run_id: str | None) -> tuple[list[Event], int]:
        """The history after `after_id` (of one run, or all) and the last id issued."""
        with self._lock:
            return ([event for event in self._history if event.id > after_id
                     and (run_id is None or event.run_id == run_id)], self._next_id - 1)

    @property
    def history_bytes(self) -> int:
        """The bytes of the events in the history (what a late browser is replayed)."""
        with self._lock:
            return self._history_bytes

    @property
    def last_id(self) -> int:
        with self._lock:
            return self._next_id - 1

    def _set_history(self, events: list[Event]) -> None:
        self._history = events
        self._history_bytes = sum(len(event.wire) for event in events)

    def _replace_latest(self, event: Event) -> None:
        """Drop the older event of `event`'s LATEST_ONLY kind and run, found by its id
        (the history is in id order); `event` is the newest now."""
        key = (event.name, event.run_id)
        older_id = self._latest_ids.get(key)
        self._latest_ids[key] = event.id
        if older_id is None:
            return
        i = bisect_left(self._history, older_id, key=_EVENT_ID)
        # Always found (pictures are never thinned; keep_runs forgets the ids of the runs
        # it drops), but checked: a stale id must never cost another event its place.
        if i < len(self._history) and self._history[i].id == older_id:
            self._history_bytes -= len(self._history[i].wire)
            del self._history[i]

    def _thin_history(self) -> None:
        """Drop the older half of the thinnable events (amortised: not on every event)."""
        thinnable = [i for i, event in enumerate(self._history) if event.name in THINNABLE]
        drop = set(thinnable[: max(len(thinnable) // 2, len(self._history) - self.history_limit)])
        self._set_history([event for i, event in enumerate(self._history) if i not in drop])

    def _thin_history_bytes(self) -> None:
        """Down to THIN_TO of the byte limit: the oldest thinnable events go, the newest
        of each kind staying (a batch carries the current step). If that is not enough,
        what is left (epochs, one picture of each kind a run) stays: it is small."""
        excess = self._history_bytes - int(self.history_bytes_limit * THIN_TO)
        newest = {event.name: i for i, event in enumerate(self._history)
                  if event.name in THINNABLE}
        drop: set[int] = set()
        for i, event in enumerate(self._history):
            if excess <= 0:
                break
            if event.name in THINNABLE and i != newest[event.name]:
                drop.add(i)
                excess -= len(event.wire)
        self._set_history([event for i, event in enumerate(self._history) if i not in drop])

    # -- subscribing (on the loop) ----------------------------------------------------------

    def subscribe(self, last_event_id: int | None = None,
                  run_id: str | None = None, group_batches: bool = False) -> Subscription:
        """A subscription that first replays the history after `last_event_id`: of
        every event, or of one run's (`run_id`) only; with `group_batches`, each run's
        replayed batch events as one "batches" event (see grouped_batches)."""
        if last_event_id and last_event_id > self.last_id:
            last_event_id = 0  # an id this hub never issued (the server restarted): replay all
        replay, last_issued = self._history_after(last_event_id or 0, run_id)
        if group_batches:
            replay = grouped_batches(replay)
        # Everything issued up to now was in the history we looked at: live ones after it.
        subscription = Subscription(replay=deque(replay), run_id=run_id)
        subscription.last_id = max(last_issued, last_event_id or 0)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def _fan_out(self, event: Event) -> None:
        for subscription in list(self._subscribers):
            if event.id <= subscription.last_id:
                continue  # already in its replayed history
            if subscription.run_id is not None and event.run_id != subscription.run_id:
                continue
            if (len(subscription.pending) < self.subscriber_backlog
                    and subscription.pending_bytes < self.history_bytes_limit):
                subscription.add_pending(event)
            else:  # it stopped reading: let it go (it reconnects with Last-Event-ID)
                subscription.dropped = True
                self._subscribers.discard(subscription)
                subscription.wake()
        if len(self._subscribers) < self.crowd:
            self._deliver()
        elif self._batch_due is None:
            self._batch_due = self._loop.call_later(self.crowd_interval, self._deliver)

    def _deliver(self) -> None:
        """Wake the streams that have events pending."""
        self._batch_due = None
        for subscription in self._subscribers:
            if subscription.pending:
                subscription.wake()
