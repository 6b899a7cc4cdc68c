"""The answering model as a file: download its weights, or upload a model to answer.

An upload is a file from anyone, checked before it answers (cnn/model_file.py, then
check_answers in app/predict.py): its zip directory, its spec against this server's
model limits (before anything is built), each weight's header against the shape the
spec needs, each member decompressed with a hard cap, every weight finite, then the
model tried on probe images. The work runs in a worker thread, never on the event
loop: checking the largest model the default limits allow takes about 0.3 s of CPU,
during which health checks, predictions and event streams go on answering.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from cnn.cost import ModelLimits
from cnn.model import Model, ModelFileError

from ..dependencies import UNAUTHORIZED, get_manager, get_settings, require_read, require_write
from ..predict import Predictor, UnusableModel, check_answers
from ..schemas import ErrorMessage, ModelInfo, WeightsKind
from ..settings import Settings
from ..run_record import ACTIVE_STATES
from ..runs import RunManager
from .predict import answering, get_predictor

log = logging.getLogger("cnn_live.model")
router = APIRouter(prefix="/api/model", tags=["model"], responses=UNAUTHORIZED)

# A backstop only: every step of a check is bounded by the limits (the largest model
# they allow: ~0.3 s here), but a machine may be busy with a run and other requests.
UPLOAD_SECONDS = 20.0
# One upload is checked at a time (a second one meanwhile gets a 503 at once): each may
# hold a model of up to the parameter limit (20 MB of float32, twice while it loads).
_checking = threading.Lock()

UPLOAD_BODY = {"requestBody": {
    "required": True,
    "description": "the model file (.npz) itself, as GET /api/model or "
                   "`cnn-live train --save` writes it",
    "content": {"application/octet-stream": {"schema": {"type": "string",
                                                        "format": "binary"}}}}}


@router.get("", response_class=Response, dependencies=[Depends(require_read)],
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "the model's .npz (spec, weights, metadata)"}},
            summary="Download the weights of the model that answers predictions")
def download_model(predictor: Predictor = Depends(get_predictor),
                   weights: WeightsKind | None = None) -> Response:
    """The weights that answer drawings (a run's average, if it averages; `weights=raw`
    for its raw ones), with metadata that says which (`"weights"`)."""
    snapshot = answering(predictor)
    _, model = snapshot.choose(weights)
    with snapshot.lock:  # its buffers are not shared, but keep one reader at a time
        content = model.to_bytes(metadata=snapshot.info(weights))
    name = f"cnn-live-{snapshot.run_id or snapshot.source}.npz"
    return Response(content, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


class UploadBusy(RuntimeError):
    """Another upload is still being checked."""


@router.post("", response_model=ModelInfo, dependencies=[Depends(require_write)],
             openapi_extra=UPLOAD_BODY,
             responses={422: {"model": ErrorMessage, "description": "not a usable model file: "
                                                                    "the detail says why"},
                        409: {"model": ErrorMessage, "description": "a run is training: its "
                                                                    "snapshots answer drawings"},
                        413: {"model": ErrorMessage, "description": "the file is too large"},
                        503: {"model": ErrorMessage, "description": "the check did not finish "
                                                                    "in time; try again"}},
             summary="Upload a .npz (as the request body) to answer predictions")
async def upload_model(request: Request, predictor: Predictor = Depends(get_predictor),
                       manager: RunManager = Depends(get_manager),
                       settings: Settings = Depends(get_settings)) -> dict:
    """The body is the file itself (`Content-Type: application/octet-stream`). It is
    read without unpickling and checked part by part before it costs memory (members,
    compression, sizes, the spec against this server's limits, every array's shape and
    values); the network must read 1x28x28 images, give 10 scores, and answer probe
    images with finite values. A usable file is refused while a run trains (409): the
    run's snapshots answer drawings until it ends (a file that is not usable gets its
    422 whenever it comes, which says more)."""
    content = await request.body()  # the body-size middleware has already capped it
    try:
        model, metadata = await asyncio.wait_for(
            anyio.to_thread.run_sync(_checked_model, content, settings.model_limits,
                                     abandon_on_cancel=True),
            UPLOAD_SECONDS)
    except ModelFileError as exc:  # its message names the file: "uploaded model: ..."
        raise HTTPException(422, str(exc)) from None
    except UnusableModel as exc:
        raise HTTPException(422, f"uploaded model: {exc}") from None
    except UploadBusy:
        raise HTTPException(503, "another model upload is being checked; try again in a "
                                 "moment", headers={"Retry-After": "2"}) from None
    except TimeoutError:
        log.warning("an uploaded model was not checked within %.0f s", UPLOAD_SECONDS)
        raise HTTPException(503, f"the model could not be checked within {UPLOAD_SECONDS:.0f} "
                                 "s (the server is busy); try again",
                            headers={"Retry-After": "5"}) from None
    _refuse_during_a_run(manager)
    return predictor.accept_upload(model, metadata).info()


def _refuse_during_a_run(manager: RunManager) -> None:
    """While a run trains, its snapshots answer drawings and it answers from its own
    weights when it ends: an upload accepted then would never answer."""
    run = manager.current
    if run is not None and run.state in ACTIVE_STATES:
        raise HTTPException(409, f"a run is training (run {run.run_id}, {run.state}): its "
                                 "snapshots answer drawings, so an uploaded model would "
                                 "never answer; upload after the run ends, or stop it "
                                 "(POST /api/runs/current/stop)")


def _checked_model(content: bytes, limits: ModelLimits) -> tuple[Model, dict]:
    """In a worker thread: the model of an uploaded file, or why not."""
    if not _checking.acquire(blocking=False):  # waiting would keep a body and a thread
        raise UploadBusy()
    try:
        model, metadata = Model.load_with_metadata(content, limits)
        check_answers(model)
        return model, metadata
    except (ModelFileError, UnusableModel):
        raise
    except Exception as exc:  # a file no check foresaw: refused, and logged to be fixed
        log.exception("an uploaded model could not be read")
        raise ModelFileError(f"uploaded model: could not be read ({type(exc).__name__}); "
                             "upload a file written by GET /api/model or "
                             "`cnn-live train --save`") from None
    finally:
        _checking.release()
