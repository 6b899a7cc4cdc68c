"""Health, status and presets."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from cnn.presets import PRESETS

from ..dependencies import get_manager
from ..schemas import Health, PresetInfo, Status
from ..training import TrainingManager

router = APIRouter(tags=["system"])


@router.get("/healthz", response_model=Health, summary="Liveness check")
def healthz() -> Health:
    return Health()


@router.get("/api/status", response_model=Status, summary="The current run's state and progress")
def status(manager: TrainingManager = Depends(get_manager)) -> dict:
    return manager.status()


@router.get("/api/presets", response_model=list[PresetInfo], summary="The presets")
def presets() -> list[dict]:
    return [preset.to_dict() for preset in PRESETS.values()]
