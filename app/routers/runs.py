"""Starting, steering and listing training runs, each by its id (`current`: the
newest active run, as when one run trained at a time)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi.responses import PlainTextResponse

from ..dependencies import UNAUTHORIZED, get_manager, require_read, require_write
from ..run_record import RunRecord
from ..runs import NotFound, QueueFull, RunConflict, RunManager
from ..schemas import (Comparison, ComparisonRequest, ConfusionCell, ContinueRequest,
                       ErrorMessage, HyperparametersRequest, RunInfo, RunMetrics, RunRequest,
                       Status)

router = APIRouter(prefix="/api/runs", tags=["runs"], dependencies=[Depends(require_read)],
                   responses=UNAUTHORIZED)
comparisons = APIRouter(prefix="/api/comparisons", tags=["runs"],
                        dependencies=[Depends(require_read)], responses=UNAUTHORIZED)
CONFLICT = {409: {"model": ErrorMessage, "description": "not possible in the run's state"}}
NOT_FOUND = {404: {"model": ErrorMessage, "description": "no such run"}}
QUEUE_FULL = {429: {"model": ErrorMessage, "description": "every worker is busy and the queue "
                                                          "is full (CNN_LIVE_MAX_QUEUED_RUNS)"}}
INVALID = {422: {"model": ErrorMessage, "description": "invalid settings"}}


def _status(manager: RunManager, run: RunRecord) -> dict:
    """The server's status, with `run` as the one run it speaks of."""
    return {**manager.status(), **manager.run_status(run)}


def _answer(action):
    """The manager's exceptions as HTTP answers."""
    try:
        return action()
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except RunConflict as exc:
        raise HTTPException(409, str(exc)) from None
    except QueueFull as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": "10"}) from None
    except ValueError as exc:  # unknown preset, SpecError, LimitError, ConfigError
        raise HTTPException(422, str(exc)) from None


@router.post("", status_code=201, response_model=Status, dependencies=[Depends(require_write)],
             responses={**INVALID, **QUEUE_FULL},
             summary="Start a run from a preset or a whole network spec, with optional "
                     "overrides",
             description="It trains at once if a worker is free (`state` running), else it "
                         "waits in the queue (`state` queued, with its `queue_position`). "
                         "With `spec`, the network is that spec (checked as POST "
                         "/api/specs/check checks it) and the preset gives the training "
                         "settings.")
def start_run(request: RunRequest, manager: RunManager = Depends(get_manager)) -> dict:
    run = _answer(lambda: manager.start(request.preset, request.overrides(), request.filters,
                                        request.spec))
    return _status(manager, run)


@comparisons.post("", status_code=201, response_model=Comparison,
                  dependencies=[Depends(require_write)], responses={**INVALID, **QUEUE_FULL},
                  summary="Start several runs at once, to compare them side by side",
                  description="For example `seed` against `seed-fc` (the 2017 experiment), or "
                              "one preset at several learning rates. Every request is checked "
                              "first: one invalid run starts none.")
def start_comparison(request: ComparisonRequest,
                     manager: RunManager = Depends(get_manager)) -> dict:
    runs = _answer(lambda: manager.start_many(
        [(run.preset, run.overrides(), run.filters, run.spec) for run in request.runs]))
    return {"run_ids": [run.run_id for run in runs],
            "runs": [manager.run_status(run) for run in runs]}


def _control(action: str):
    def endpoint(run_id: str, manager: RunManager = Depends(get_manager)) -> dict:
        return _status(manager, _answer(lambda: getattr(manager, action)(run_id)))
    endpoint.__name__ = f"{action}_run"
    return endpoint


for _action, _summary in (("pause", "Pause a run between batches"),
                          ("resume", "Resume a paused run"),
                          ("stop", "Stop a run between batches (its worker is killed if it "
                                   "does not stop within CNN_LIVE_STOP_GRACE s)"),
                          ("step", "One epoch more: a paused run trains to the end of its "
                                   "epoch and pauses again; a finished run trains one more "
                                   "from its last checkpoint")):
    router.add_api_route(f"/{{run_id}}/{_action}", _control(_action), methods=["POST"],
                         dependencies=[Depends(require_write)], response_model=Status,
                         responses={**NOT_FOUND, **CONFLICT, **QUEUE_FULL}, summary=_summary,
                         description="`current` for the run id: the newest active run.")


@router.post("/{run_id}/hyperparameters", response_model=Status,
             dependencies=[Depends(require_write)],
             responses={**NOT_FOUND, **CONFLICT, **INVALID},
             summary="Change a run's learning rate and/or momentum from its next batch")
def set_hyperparameters(run_id: str, request: HyperparametersRequest,
                        manager: RunManager = Depends(get_manager)) -> dict:
    run = _answer(lambda: manager.set_hyperparameters(run_id, request.learning_rate,
                                                      request.momentum))
    return _status(manager, run)


@router.delete("/{run_id}", status_code=204, dependencies=[Depends(require_write)],
               responses={**NOT_FOUND, **CONFLICT},
               summary="Take a queued run out of the queue (it is forgotten)")
def cancel_run(run_id: str, manager: RunManager = Depends(get_manager)) -> Response:
    _answer(lambda: manager.cancel(run_id))
    return Response(status_code=204)


@router.get("", response_model=list[RunInfo], summary="This server's runs, oldest first")
def list_runs(manager: RunManager = Depends(get_manager)) -> list[dict]:
    return [run.to_dict() for run in list(manager.runs.values())]


def get_run(run_id: str, manager: RunManager = Depends(get_manager)) -> RunRecord:
    return _answer(lambda: manager.get(run_id))


@router.get("/{run_id}", response_model=RunInfo, responses=NOT_FOUND, summary="One run")
def run_info(run: RunRecord = Depends(get_run)) -> dict:
    return run.to_dict()


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
                 manager: RunManager = Depends(get_manager)) -> dict:
    return manager.run_metrics(run)


@router.post("/{run_id}/continue", response_model=Status, dependencies=[Depends(require_write)],
             responses={**NOT_FOUND, **CONFLICT, **QUEUE_FULL},
             summary="Continue an interrupted run from its last checkpoint",
             description="A run the server was stopped or killed in the middle of (state "
                         "`interrupted`) trains on from the checkpoint of its last whole "
                         "epoch: the same config, the optimizer's saved state, the same data "
                         "order, appended to its own epochs; queued if no worker is free. "
                         "409 when the run is not interrupted or has no usable checkpoint.")
def continue_run(run_id: str, request: ContinueRequest | None = None,
                 manager: RunManager = Depends(get_manager)) -> dict:
    return _status(manager, _answer(lambda: manager.continue_run(run_id)))


@router.get("/{run_id}/confusion", response_model=ConfusionCell,
            responses={404: {"model": ErrorMessage,
                             "description": "no such run, or no evaluation yet"}},
            summary="The test images of one cell of the run's latest confusion matrix")
def confusion_cell(run_id: str,
                   label: int = Query(ge=0, le=9, description="the true digit (the row)"),
                   predicted: int = Query(ge=0, le=9, description="the answer (the column)"),
                   limit: int = Query(48, ge=1, le=200),
                   manager: RunManager = Depends(get_manager)) -> dict:
    return _answer(lambda: manager.confusion_cell(run_id, label, predicted, limit))
