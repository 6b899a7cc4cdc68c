"""The FastAPI application: `create_app()` wires settings, the event hub, the
training manager and the routers; `app` is the instance uvicorn imports
(`uvicorn app.main:app`)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .hub import EventHub
from .paths import web_dir
from .routers import events, pages, runs, system
from .settings import Settings
from .training import TrainingManager

log = logging.getLogger("cnn_live")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    hub = EventHub(settings.history_limit, settings.subscriber_backlog)
    manager = TrainingManager(settings, hub)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        hub.attach(asyncio.get_running_loop())
        data = manager.data_status()
        if not data["available"]:
            log.warning("%s", data["message"])
        yield
        manager.shutdown()  # a run in progress stops between batches

    app = FastAPI(title="cnn-live", lifespan=lifespan,
                  description="Train a NumPy-only CNN on MNIST and watch it learn, live.")
    app.state.settings, app.state.hub, app.state.manager = settings, hub, manager
    for router in (system.router, runs.router, events.router, pages.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(web_dir("static"))), name="static")
    return app


app = create_app()
