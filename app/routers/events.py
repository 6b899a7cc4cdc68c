"""The live stream: server-sent events from the hub."""

from __future__ import annotations

from collections.abc import AsyncIterable

from fastapi import APIRouter, Depends, Header, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from ..dependencies import get_hub
from ..hub import EventHub

router = APIRouter(tags=["events"])
RETRY_MILLISECONDS = 2000


def _event_id(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None  # a stranger's id: start from the beginning of the run


@router.get("/api/events", response_class=EventSourceResponse,
            summary="Live training events (status, run, batch, epoch, filters, done, error)")
async def events(hub: EventHub = Depends(get_hub),
                 last_event_id: str | None = Header(None, alias="Last-Event-ID"),
                 after: str | None = Query(None, description="replay events after this id "
                                           "(as Last-Event-ID, for clients that cannot set it)"),
                 ) -> AsyncIterable[ServerSentEvent]:
    subscription = hub.subscribe(_event_id(last_event_id) or _event_id(after))
    try:
        yield ServerSentEvent(comment="connected", retry=RETRY_MILLISECONDS)
        while (event := await subscription.next_event()) is not None:
            yield ServerSentEvent(raw_data=event.data, event=event.name, id=str(event.id))
    finally:
        hub.unsubscribe(subscription)
