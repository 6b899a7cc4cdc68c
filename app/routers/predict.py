"""Draw a digit, get the network's answer: POST /api/predict, GET /api/model/info."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ..dependencies import UNAUTHORIZED, require_read
from ..predict import (DrawingError, NoModel, Predictor, Snapshot, UnknownRun, prepare,
                       read_drawing)
from ..schemas import ErrorMessage, ModelInfo, Prediction, PredictRequest

router = APIRouter(prefix="/api", tags=["predict"], dependencies=[Depends(require_read)],
                   responses=UNAUTHORIZED)
NO_MODEL = {503: {"model": ErrorMessage, "description": "no model to answer: no run yet and "
                                                         "the bundled model is missing"}}


async def get_predictor(request: Request) -> Predictor:
    return request.app.state.predictor


@router.post("/predict", response_model=Prediction,
             responses={422: {"model": ErrorMessage, "description": "not a drawing the server "
                                                                    "can read, or an empty one"},
                        413: {"model": ErrorMessage, "description": "the request body is too "
                                                                    "large"},
                        404: {"model": ErrorMessage, "description": "the run asked for has "
                                                                    "no model here"},
                        **NO_MODEL},
             summary="Recognise a drawn digit")
async def predict(body: PredictRequest,
                  predictor: Predictor = Depends(get_predictor)) -> JSONResponse:
    """The drawing is cropped to its ink, fitted into 20x20 and centred by its centre
    of mass in 28x28, as MNIST's digits were; then the answering model (the run asked
    for; by default the newest run in training, else the last that ended, else the
    bundled model) classifies it, from its latest snapshot: never waiting on a worker.

    `async` on purpose: the work is ~2 ms of CPU for a 200x200 drawing (about 20 ms
    at 512x512), and running it on the event loop saves two thread hand-offs, each of
    which can wait for the GIL behind the training thread (see bench/bench_predict.py)."""
    try:
        image = prepare(read_drawing(body.image, body.pixels, body.width))
    except DrawingError as exc:
        raise HTTPException(422, str(exc)) from None
    snapshot = answering(predictor, body.run_id)
    if snapshot.heavy:  # a large uploaded or trained model: keep the loop answering
        probabilities, layers = await run_in_threadpool(snapshot.predict, image, body.explain,
                                                        body.weights)
    else:
        probabilities, layers = snapshot.predict(image, body.explain, body.weights)
    if not np.isfinite(probabilities).all():  # never happens with finite weights
        raise HTTPException(503, "the answering model gave no usable answer")
    # Serialized here, not validated again against Prediction (which documents it):
    # a few hundred microseconds fewer per answer.
    return JSONResponse({"digit": int(probabilities.argmax()),
                         "probabilities": probabilities.tolist(),
                         "input": np.round(image.astype(np.float64), 4).tolist(),
                         "model": snapshot.info(body.weights),
                         "feature_maps": layers["feature_maps"] if layers else None,
                         "vectors": layers["vectors"] if layers else None})


@router.get("/model/info", response_model=ModelInfo,
            responses={**NO_MODEL, 404: {"model": ErrorMessage,
                                         "description": "the run has no model here"}},
            summary="The model that answers predictions now (or a run's)")
def model_info(run_id: str | None = Query(None, max_length=64),
               predictor: Predictor = Depends(get_predictor)) -> dict:
    return answering(predictor, run_id).info()


@router.get("/model/choices", response_model=list[ModelInfo],
            summary="The runs' models a drawing can be asked of, newest first")
def model_choices(predictor: Predictor = Depends(get_predictor)) -> list[dict]:
    return predictor.choices()


def answering(predictor: Predictor, run_id: str | None = None) -> Snapshot:
    try:
        return predictor.current(run_id)
    except UnknownRun as exc:
        raise HTTPException(404, str(exc)) from None
    except NoModel as exc:
        raise HTTPException(503, str(exc)) from None
