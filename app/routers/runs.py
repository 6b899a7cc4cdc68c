"""Starting, steering and listing training runs."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import PlainTextResponse

from ..dependencies import UNAUTHORIZED, get_manager, require_read, require_write
from ..schemas import (ConfusionCell, ContinueRequest, ErrorMessage, HyperparametersRequest,
                       RunInfo, RunMetrics, RunRequest, Status)
from ..training import NotFound, RunConflict, RunRecord, TrainingManager

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
                          ("stop", "Stop the current run between batches"),
                          ("step", "One epoch more: a paused run trains to the end of its "
                                   "epoch and pauses again; a finished run trains one more")):
    router.add_api_route(f"/current/{_action}", _control(_action), methods=["POST"],
                         dependencies=[Depends(require_write)], response_model=Status,
                         responses=CONFLICT, summary=_summary)


@router.post("/current/hyperparameters", response_model=Status,
             dependencies=[Depends(require_write)],
             responses={**CONFLICT, 422: {"model": ErrorMessage, "description": "invalid values"}},
             summary="Change the learning rate and/or momentum from the next batch on")
def set_hyperparameters(request: HyperparametersRequest,
                        manager: TrainingManager = Depends(get_manager)) -> dict:
    try:
        manager.set_hyperparameters(request.learning_rate, request.momentum)
    except RunConflict as exc:
        raise HTTPException(409, str(exc)) from None
    except ValueError as exc:  # ConfigError: out of the engine's range
        raise HTTPException(422, str(exc)) from None
    return manager.status()


@router.get("", response_model=list[RunInfo], summary="This server's runs, oldest first")
def list_runs(manager: TrainingManager = Depends(get_manager)) -> list[dict]:
    return [run.to_dict() for run in manager.runs.values()]


NOT_FOUND = {404: {"model": ErrorMessage, "description": "no such run"}}


def get_run(run_id: str, manager: TrainingManager = Depends(get_manager)) -> RunRecord:
    run = manager.runs.get(run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id[:64]!r} on this server")  # never echo much
    return run


def _attachment(run_id: str, extension: str) -> dict:
    return {"Content-Disposition": f'attachment; filename="cnn-live-{run_id}.{extension}"'}


@router.get("/{run_id}/metrics.csv", response_class=PlainTextResponse, responses=NOT_FOUND,
            summary="One run's epoch metrics as CSV")
def metrics_csv(run: RunRecord = Depends(get_run)) -> PlainTextResponse:
    return PlainTextResponse(run.metrics_csv(), media_type="text/csv",
                             headers=_attachment(run.run_id, "csv"))


@router.get("/{run_id}/metrics.json", response_model=RunMetrics, responses=NOT_FOUND,
            summary="One run's metrics as JSON: epochs, loss points, live changes")
def metrics_json(run: RunRecord = Depends(get_run),
                 manager: TrainingManager = Depends(get_manager)) -> dict:
    return manager.run_metrics(run)


@router.post("/{run_id}/continue", response_model=Status, dependencies=[Depends(require_write)],
             responses={**NOT_FOUND, **CONFLICT},
             summary="Continue an interrupted run from its last checkpoint",
             description="A run the server was killed in the middle of (state `interrupted`) "
                         "trains on from the checkpoint of its last whole epoch: the same "
                         "config, the optimizer's saved state, the same data order, appended "
                         "to its own epochs. 409 while another run is active, or when the run "
                         "is not interrupted or has no usable checkpoint.")
def continue_run(run_id: str, request: ContinueRequest | None = None,
                 manager: TrainingManager = Depends(get_manager)) -> dict:
    try:
        manager.continue_run(run_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except RunConflict as exc:
        raise HTTPException(409, str(exc)) from None
    return manager.status()


@router.get("/{run_id}/confusion", response_model=ConfusionCell,
            responses={404: {"model": ErrorMessage,
                             "description": "no such run, or no evaluation yet"}},
            summary="The test images of one cell of the run's latest confusion matrix")
def confusion_cell(run_id: str,
                   label: int = Query(ge=0, le=9, description="the true digit (the row)"),
                   predicted: int = Query(ge=0, le=9, description="the answer (the column)"),
                   limit: int = Query(48, ge=1, le=200),
                   manager: TrainingManager = Depends(get_manager)) -> dict:
    try:
        return manager.confusion_cell(run_id, label, predicted, limit)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
