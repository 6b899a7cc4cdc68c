"""Health, status and presets."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from cnn.presets import PRESETS

from ..dependencies import UNAUTHORIZED, get_manager, get_settings, require_read
from ..schemas import AuthInfo, Health, PresetInfo, Status
from ..settings import Settings
from ..runs import RunManager

router = APIRouter(tags=["system"])


@router.get("/healthz", response_model=Health, summary="Liveness check")
def healthz() -> Health:
    return Health()


@router.get("/api/auth", response_model=AuthInfo, summary="Which requests need the token")
def auth(settings: Settings = Depends(get_settings)) -> AuthInfo:
    return AuthInfo(write=bool(settings.token), read=bool(settings.token and settings.token_read))


@router.get("/api/status", response_model=Status, dependencies=[Depends(require_read)],
            responses=UNAUTHORIZED, summary="The current run's state and progress, and every live run's")
def status(manager: RunManager = Depends(get_manager)) -> dict:
    return manager.status()


@router.get("/api/presets", response_model=list[PresetInfo], dependencies=[Depends(require_read)],
            responses=UNAUTHORIZED, summary="The presets")
def presets() -> list[dict]:
    return [preset.to_dict() for preset in PRESETS.values()]
