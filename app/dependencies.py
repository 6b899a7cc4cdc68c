"""Shared things the routers depend on, provided through FastAPI's Depends.

`async def`, all of them: FastAPI runs a plain `def` dependency in its thread pool,
and two such hand-offs per request (each waiting for the GIL behind the threads
that read the workers' events) were a large part of /api/predict's tail latency
under load (bench/bench_load.py)."""

from __future__ import annotations

from hmac import compare_digest

from fastapi import HTTPException, Query, Request

from .hub import EventHub
from .schemas import ErrorMessage
from .settings import Settings
from .runs import RunManager


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_manager(request: Request) -> RunManager:
    return request.app.state.manager


async def get_hub(request: Request) -> EventHub:
    return request.app.state.hub


# -- access control (Settings.token, Settings.token_read) -----------------------------------

TOKEN_NEEDED = "this server needs a token: send Authorization: Bearer <token>"
UNAUTHORIZED = {401: {"model": ErrorMessage, "description": "no token, or a wrong one "
                                                           "(CNN_LIVE_TOKEN)"}}


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _check(expected: str, given: str | None) -> None:
    # compare_digest on bytes: constant time for any characters (on str it wants ASCII).
    if given is None or not compare_digest(given.encode(), expected.encode()):
        raise HTTPException(401, TOKEN_NEEDED, headers={"WWW-Authenticate": "Bearer"})


async def require_write(request: Request) -> None:
    """On every route that changes state: the token, when the server has one."""
    token = request.app.state.settings.token
    if token:
        _check(token, _bearer(request))


async def require_read(request: Request) -> None:
    """On every /api/* route: the token, when the server has one and CNN_LIVE_TOKEN_READ."""
    settings = request.app.state.settings
    if settings.token and settings.token_read:
        _check(settings.token, _bearer(request))


async def require_read_stream(request: Request, token: str | None = Query(
        None, description="the server's token, for EventSource (which cannot send headers); "
                          "needed only with CNN_LIVE_TOKEN_READ")) -> None:
    """require_read for /api/events: the header, or `?token=`."""
    settings = request.app.state.settings
    if settings.token and settings.token_read:
        _check(settings.token, _bearer(request) or token)
