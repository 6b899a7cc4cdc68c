"""Shared things the routers depend on, provided through FastAPI's Depends."""

from __future__ import annotations

from fastapi import Request

from .hub import EventHub
from .settings import Settings
from .training import TrainingManager


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_manager(request: Request) -> TrainingManager:
    return request.app.state.manager


def get_hub(request: Request) -> EventHub:
    return request.app.state.hub
