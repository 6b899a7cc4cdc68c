"""The FastAPI application: `create_app()` wires settings, the event hub, the
training manager and the routers; `app` is the instance uvicorn imports
(`uvicorn app.main:app`)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.middleware.gzip import GZipMiddleware

from .errors import validation_error
from .hub import EventHub
from .memory import limit_arenas
from .paths import web_dir
from .predict import Predictor
from .routers import specs
from .drawings import DrawingStore
from .routers import augment, drawings, events, model, pages, predict, runs, system
from .security import CrossSiteGuard, SecurityHeaders, redact_tokens_in_access_log
from .settings import Settings, drawings_dir
from .runs import RunManager

log = logging.getLogger("cnn_live")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    limit_arenas()  # see memory.py: flat memory from run to run
    hub = EventHub(settings.history_limit, settings.subscriber_backlog,
                   history_bytes_limit=settings.history_bytes_limit)
    predictor = Predictor()
    manager = RunManager(settings, hub, predictor)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        hub.attach(asyncio.get_running_loop())
        redact_tokens_in_access_log()  # ?token= (EventSource) never in the log
        # Here, not in create_app: importing app.main (app = create_app()) must not
        # touch the runs directory, nor take another server's active runs for dead ones.
        manager.restore_runs()
        manager.executor.prepare()
        data = manager.data_status()
        if not data["available"]:
            log.warning("%s", data["message"])
        # The objects of a started server (modules, routes, the bundled model) live as
        # long as it does: out of the collector's sight, a full collection no longer
        # walks them all while a request waits (a tail-latency cost under load).
        gc.freeze()
        yield
        manager.shutdown()  # a run in progress stops between batches
        app.state.drawings.close()

    app = FastAPI(title="cnn-live", lifespan=lifespan,
                  description="Train a NumPy-only CNN on MNIST and watch it learn, live.")
    app.state.settings, app.state.hub, app.state.manager = settings, hub, manager
    app.state.predictor = predictor
    app.state.drawings = manager.drawings = DrawingStore(drawings_dir(settings),
                                                         settings.max_drawings)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    # Other host names (DNS rebinding) and other sites' pages are turned away before any
    # body is read; outside it, SecurityHeaders puts its headers on those 403s/415s too.
    app.add_middleware(CrossSiteGuard, settings=settings)
    app.add_middleware(SecurityHeaders)  # added last: it wraps every answer, a 413 included
    for router in (system.router, runs.router, runs.comparisons, augment.router, events.router,
                   predict.router, model.router, drawings.router, pages.router):
        app.include_router(router)
    app.include_router(specs.router)  # POST /api/specs/check
    # The page's scripts and styles compressed (a phone on a slow line downloads a third);
    # only /static: answers to predictions and the event stream stay as they are.
    app.mount("/static", GZipMiddleware(StaticFiles(directory=str(web_dir("static"))),
                                        minimum_size=1024), name="static")
    return app


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """Pure ASGI middleware: a request body over `max_bytes` gets a 413 with a JSON
    detail, whether it declares its Content-Length or streams in chunks (counted as
    they arrive; reading stops at the limit)."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0  # the server (h11, httptools) rejects it before us
                if declared > self.max_bytes:
                    await self._reject(send)
                    return
        received, exceeded, app_started, rejected = 0, False, False, False

        async def limited_receive():
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message) -> None:
            nonlocal app_started, rejected
            if exceeded and not app_started:
                # The app's answer to the failed read (a 400 or 500) becomes our 413.
                if not rejected:
                    rejected = True
                    await self._reject(send)
                return
            if message["type"] == "http.response.start":
                app_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if not app_started and not rejected:
                await self._reject(send)

    async def _reject(self, send) -> None:
        body = json.dumps({"detail": f"the request body is larger than the server's limit of "
                                     f"{self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


app = create_app()
