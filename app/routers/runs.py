"""Starting, steering and listing training runs."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import PlainTextResponse

from ..dependencies import UNAUTHORIZED, get_manager, require_read, require_write
from ..schemas import ErrorMessage, RunInfo, RunRequest, Status
from ..training import RunConflict, TrainingManager

router = APIRouter(prefix="/api/runs", tags=["runs"], dependencies=[Depends(require_read)],
                   responses=UNAUTHORIZED)
CONFLICT = {409: {"model": ErrorMessage, "description": "not possible in the current state"}}


@router.post("", status_code=201, response_model=Status, dependencies=[Depends(require_write)],
             responses={**CONFLICT, 422: {"model": ErrorMessage, "description": "invalid settings"}},
             summary="Start a run from a preset, with optional overrides")
def start_run(request: RunRequest, manager: TrainingManager = Depends(get_manager)) -> dict:
    try:
        manager.start(request.preset, request.overrides(), request.filters)
    except RunConflict as exc:
        raise HTTPException(409, str(exc)) from None
    except ValueError as exc:  # unknown preset, SpecError, ConfigError
        raise HTTPException(422, str(exc)) from None
    return manager.status()


def _control(action: str):
    def endpoint(manager: TrainingManager = Depends(get_manager)) -> dict:
        try:
            getattr(manager, action)()
        except RunConflict as exc:
            raise HTTPException(409, str(exc)) from None
        return manager.status()
    endpoint.__name__ = f"{action}_run"
    return endpoint


for _action, _summary in (("pause", "Pause the current run between batches"),
                          ("resume", "Resume the paused run"),
                          ("stop", "Stop the current run between batches")):
    router.add_api_route(f"/current/{_action}", _control(_action), methods=["POST"],
                         dependencies=[Depends(require_write)], response_model=Status,
                         responses=CONFLICT, summary=_summary)


@router.get("", response_model=list[RunInfo], summary="This server's runs, oldest first")
def list_runs(manager: TrainingManager = Depends(get_manager)) -> list[dict]:
    return [run.to_dict() for run in manager.runs.values()]


@router.get("/{run_id}/metrics.csv", response_class=PlainTextResponse,
            responses={404: {"model": ErrorMessage}}, summary="One run's epoch metrics as CSV")
def metrics_csv(run_id: str, manager: TrainingManager = Depends(get_manager)) -> PlainTextResponse:
    run = manager.runs.get(run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id!r} on this server")
    return PlainTextResponse(run.metrics_csv(), media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="cnn-live-{run_id}.csv"'})
