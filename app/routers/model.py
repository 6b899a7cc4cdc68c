"""The answering model as a file: download its weights, or upload a model to answer."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from cnn.model import Model, ModelFileError

from ..dependencies import UNAUTHORIZED, require_read, require_write
from ..predict import Predictor
from ..schemas import ErrorMessage, ModelInfo
from .predict import answering, get_predictor

router = APIRouter(prefix="/api/model", tags=["model"], responses=UNAUTHORIZED)
MNIST_INPUT, CLASSES = [1, 28, 28], 10


@router.get("", response_class=Response, dependencies=[Depends(require_read)],
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "the model's .npz (spec, weights, metadata)"}},
            summary="Download the weights of the model that answers predictions")
def download_model(predictor: Predictor = Depends(get_predictor)) -> Response:
    snapshot = answering(predictor)
    with snapshot.lock:  # its buffers are not shared, but keep one reader at a time
        content = snapshot.model.to_bytes(metadata=snapshot.info())
    name = f"cnn-live-{snapshot.run_id or snapshot.source}.npz"
    return Response(content, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.post("", response_model=ModelInfo, dependencies=[Depends(require_write)],
             responses={422: {"model": ErrorMessage, "description": "not a usable model file"},
                        413: {"model": ErrorMessage, "description": "the file is too large"}},
             summary="Upload a .npz (as the request body) to answer predictions")
async def upload_model(request: Request, predictor: Predictor = Depends(get_predictor)) -> dict:
    """The body is the file itself (`Content-Type: application/octet-stream`). It is
    read without unpickling, every array is checked against the spec inside, and the
    network must read 1x28x28 images and give 10 scores."""
    content = await request.body()  # the body-size middleware has already capped it
    try:
        model, metadata = Model.load_with_metadata(content)
    except ModelFileError as exc:
        raise HTTPException(422, str(exc)) from None
    scores = model.forward(np.zeros((1, *MNIST_INPUT), np.float32)) \
        if model.spec["input"] == MNIST_INPUT else None
    if scores is None or scores.shape != (1, CLASSES):
        raise HTTPException(422, "the model must read 1x28x28 images and give 10 scores")
    return predictor.accept_upload(model, metadata).info()
