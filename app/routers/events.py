"""The live stream: server-sent events from the hub.

Each event reaches the wire as the bytes the hub formatted once when it was
published (with fastapi.sse's own formatter), however many browsers listen: with
a room full of them, formatting per browser would cost the training its CPU.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from fastapi.responses import StreamingResponse
from fastapi.sse import EventSourceResponse, format_sse_event

from ..dependencies import UNAUTHORIZED, get_hub, get_manager, require_read_stream
from ..hub import EventHub, Subscription
from ..runs import RunManager

router = APIRouter(tags=["events"])
RETRY_MILLISECONDS = 2000
KEEPALIVE_SECONDS = 15.0  # a comment line while idle keeps proxies from closing the stream
PING = format_sse_event(comment="ping")


def _event_id(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None  # a stranger's id: start from the beginning of the run


# Not response_class=EventSourceResponse: that makes FastAPI expect a generator that
# yields events to format one by one; this endpoint returns the response itself.
@router.get("/api/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "the event stream"}, **UNAUTHORIZED},
            dependencies=[Depends(require_read_stream)],
            summary="Live training events (status, run, batch, epoch, filters, done, error)")
async def events(hub: EventHub = Depends(get_hub),
                 last_event_id: str | None = Header(None, alias="Last-Event-ID"),
                 after: str | None = Query(None, description="replay events after this id "
                                           "(as Last-Event-ID, for clients that cannot set it)"),
                 group_batches: bool = Query(False, description="replay each run's batch "
                                             "events as one `batches` event {run_id, batches: "
                                             "[...]} (live ones still come one by one)"),
                 ) -> EventSourceResponse:
    subscription = hub.subscribe(_event_id(last_event_id) or _event_id(after),
                                 group_batches=group_batches)
    return EventSourceResponse(_stream(hub, subscription))


@router.get("/api/runs/{run_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "the run's event stream"}, **UNAUTHORIZED,
                       404: {"description": "no such run"}},
            dependencies=[Depends(require_read_stream)],
            summary="One run's live events (run, batch, epoch, filters, evaluation, done, ...)",
            description="Its history first (after `Last-Event-ID`), then its live events. "
                        "Events of other runs are left out, and so are the server's statuses "
                        "while another run is its current one.")
async def run_events(run_id: str, hub: EventHub = Depends(get_hub),
                     manager: RunManager = Depends(get_manager),
                     last_event_id: str | None = Header(None, alias="Last-Event-ID"),
                     after: str | None = Query(None, description="replay events after this "
                                               "id (as Last-Event-ID)"),
                     ) -> EventSourceResponse:
    if run_id not in manager.runs:
        raise HTTPException(404, f"no run {run_id[:64]!r} on this server")
    subscription = hub.subscribe(_event_id(last_event_id) or _event_id(after), run_id=run_id)
    return EventSourceResponse(_stream(hub, subscription))


async def _stream(hub: EventHub, subscription: Subscription) -> AsyncIterator[bytes]:
    try:
        yield format_sse_event(comment="connected", retry=RETRY_MILLISECONDS)
        while True:
            # Everything pending in one write: a stream that fell behind (a busy loop,
            # a replay) catches up in a few large writes, not one small write per event.
            events = await subscription.next_events(KEEPALIVE_SECONDS)
            if events is None:  # dropped for falling behind: the browser reconnects
                return
            yield b"".join(event.wire for event in events) if events else PING
    finally:
        hub.unsubscribe(subscription)
