"""The event hub: numbers every event, keeps the current run's history and fans
events out to every subscriber (browser).

Events are published from the training thread (or the event loop) and serialised
to JSON once, whatever the number of subscribers. Delivery happens on the event
loop: each subscriber has a bounded backlog of pending events, and one that falls too
far behind is dropped rather than allowed to hold anything up; its browser reconnects
with Last-Event-ID and is replayed what it missed from the history.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from dataclasses import dataclass, field

from fastapi.sse import format_sse_event

# Kinds of event that may be dropped from a long run's history (oldest first): a late
# browser needs every epoch, but not every throttled batch or filter snapshot.
THINNABLE = frozenset({"batch", "filters", "status"})
# Kinds of which the history keeps only the newest: each is a whole picture (the
# confusion matrix and gallery, the histograms against the start), ~50 KB an epoch.
LATEST_ONLY = frozenset({"evaluation", "histograms"})


@dataclass(frozen=True)
class Event:
    id: int
    name: str
    data: str  # JSON
    wire: bytes  # the whole SSE message, formatted once for every subscriber


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
    dropped: bool = False
    replay: deque[Event] = field(default_factory=deque)
    pending: deque[Event] = field(default_factory=deque)
    _waiter: asyncio.Future | None = field(default=None, repr=False)

    async def next_event(self) -> Event | None:
        """The next event, or None once the hub dropped this subscription."""
        while True:
            if self.replay:
                return self.replay.popleft()
            if self.pending:
                return self.pending.popleft()
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
        return events

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
    def __init__(self, history_limit: int = 20_000, subscriber_backlog: int = 2_000,
                 crowd: int = CROWD, crowd_interval: float = CROWD_INTERVAL) -> None:
        self.history_limit, self.subscriber_backlog = history_limit, subscriber_backlog
        self.crowd, self.crowd_interval = crowd, crowd_interval
        self._lock = threading.Lock()
        self._next_id = 1
        self._history: list[Event] = []
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
        data = json.dumps(payload, separators=(",", ":"), allow_nan=False)
        with self._lock:
            event_id = self._next_id
            event = Event(event_id, name, data,
                          format_sse_event(data_str=data, event=name, id=str(event_id)))
            self._next_id += 1
            if name in LATEST_ONLY:
                self._history = [old for old in self._history if old.name != name]
            self._history.append(event)
            if len(self._history) > self.history_limit:
                self._thin_history()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._fan_out, event)
            except RuntimeError:  # the loop closed in between: nobody is listening
                pass
        return event

    def start_run(self) -> None:
        """A new run: the history starts again (ids keep increasing)."""
        with self._lock:
            self._history = []

    def history(self, after_id: int = 0) -> list[Event]:
        with self._lock:
            return [event for event in self._history if event.id > after_id]

    @property
    def last_id(self) -> int:
        with self._lock:
            return self._next_id - 1

    def _thin_history(self) -> None:
        """Drop the older half of the thinnable events (amortised: not on every event)."""
        thinnable = [i for i, event in enumerate(self._history) if event.name in THINNABLE]
        drop = set(thinnable[: max(len(thinnable) // 2, len(self._history) - self.history_limit)])
        self._history = [event for i, event in enumerate(self._history) if i not in drop]

    # -- subscribing (on the loop) ----------------------------------------------------------

    def subscribe(self, last_event_id: int | None = None) -> Subscription:
        """A subscription that first replays the history after `last_event_id`."""
        if last_event_id and last_event_id > self.last_id:
            last_event_id = 0  # an id this hub never issued (the server restarted): replay all
        subscription = Subscription(replay=deque(self.history(last_event_id or 0)))
        subscription.last_id = (subscription.replay[-1].id if subscription.replay
                                else (last_event_id or 0))
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
            if len(subscription.pending) < self.subscriber_backlog:
                subscription.pending.append(event)
                subscription.last_id = event.id
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
