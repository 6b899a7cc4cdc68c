"""People's own drawings: save one with its label, list, relabel, delete, export and
import them, measure any run's model on them, and teach a model them ("Teach now").
app/drawings.py keeps them."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from cnn.data import DataError
from cnn.drawings_file import (DrawingsFileError, TooManyDrawings, read_drawings_file,
                               write_idx_zip, write_npz)
from cnn.teach import Teaching

from ..dependencies import UNAUTHORIZED, get_manager, require_read, require_write
from ..drawings import HELD_OUT_EVERY, MIN_DRAWINGS, DrawingStore, StoreFull, to_bytes
from ..predict import DrawingError as UnreadableDrawing
from ..predict import Predictor, Snapshot, prepare, read_drawing
from ..schemas import (DrawingAccuracy, DrawingList, DrawingsImported, ErrorMessage,
                       RelabelRequest, SavedDrawing, SaveDrawingRequest, TeachRequest,
                       TeachStarted, WeightsKind)
from ..runs import QueueFull, RunManager
from .predict import NO_MODEL, answering, get_predictor

router = APIRouter(prefix="/api/drawings", tags=["drawings"], dependencies=[Depends(require_read)],
                   responses=UNAUTHORIZED)
NOT_FOUND = {404: {"model": ErrorMessage, "description": "no drawing with that id"}}
FULL = {413: {"model": ErrorMessage, "description": "the store is full "
                                                    "(CNN_LIVE_MAX_DRAWINGS), or the file too "
                                                    "large"}}
MAX_ID = 2**63 - 1  # SQLite's largest integer: a larger id is no drawing's (422, not 500)
DrawingId = Annotated[int, Path(ge=1, le=MAX_ID, description="the drawing's id")]
EXPORT_TYPES = {"npz": ("application/octet-stream", "drawings.npz"),
                "idx": ("application/zip", "drawings-idx.zip")}


async def get_drawings(request: Request) -> DrawingStore:
    return request.app.state.drawings


@router.post("", status_code=201, response_model=SavedDrawing,
             dependencies=[Depends(require_write)],
             responses={422: {"model": ErrorMessage, "description": "not a drawing the server "
                                                                    "can read, or a bad label"},
                        **FULL, **NO_MODEL},
             summary="Save a drawing with the digit it is")
async def save_drawing(body: SaveDrawingRequest, store: DrawingStore = Depends(get_drawings),
                       predictor: Predictor = Depends(get_predictor)) -> dict:
    """The drawing is prepared as for /api/predict; the 28x28 image the network sees is
    kept with the drawing itself, its label, and the answer (with its probability) that
    the answering model gives it now."""
    try:
        drawing = read_drawing(body.image, body.pixels, body.width)
        image = prepare(drawing)
    except UnreadableDrawing as exc:
        raise HTTPException(422, str(exc)) from None
    snapshot = answering(predictor, body.run_id)
    probabilities, _ = snapshot.predict(image, weights=body.weights)
    answer = int(probabilities.argmax())
    try:
        saved = store.add(to_bytes(image), body.label, drawing.astype(np.uint8), answer,
                          float(probabilities[answer]), _answered_by(snapshot, body.weights))
    except StoreFull as exc:
        raise HTTPException(413, str(exc)) from None
    return saved.summary()


@router.get("", response_model=DrawingList, summary="The saved drawings, by id")
def list_drawings(label: int | None = Query(None, ge=0, le=9, description="only this digit"),
                  after: int = Query(0, ge=0, le=MAX_ID,
                                     description="those with a larger id (paging)"),
                  limit: int = Query(100, ge=1, le=1000),
                  store: DrawingStore = Depends(get_drawings)) -> dict:
    counts = store.counts()
    return {"drawings": [drawing.summary() for drawing in store.list(label, limit, after)],
            "total": sum(counts.values()), "counts": counts, "max_count": store.max_count,
            "held_out_every": HELD_OUT_EVERY, "min_drawings": MIN_DRAWINGS}


@router.get("/export", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {},
                                         "application/zip": {}},
                             "description": "the drawings as a file"}},
            summary="Every drawing as a .npz, or as MNIST-style IDX files in a zip")
def export_drawings(format: str = Query("npz", pattern="^(npz|idx)$",
                                        description="npz: images (N, 28, 28) uint8, labels, "
                                                    "ids; idx: a zip of " "drawings-images-"
                                                    "idx3-ubyte and drawings-labels-idx1-ubyte"),
                    store: DrawingStore = Depends(get_drawings)) -> Response:
    ids, images, labels = store.arrays()
    content = write_npz(ids, images, labels) if format == "npz" else \
        write_idx_zip(images, labels)
    media_type, name = EXPORT_TYPES[format]
    return Response(content, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.post("/import", status_code=201, response_model=DrawingsImported,
             dependencies=[Depends(require_write)],
             responses={422: {"model": ErrorMessage, "description": "not an exported file"},
                        **FULL},
             summary="Add the drawings of an exported file (the body, as sent by export)")
async def import_drawings(request: Request, store: DrawingStore = Depends(get_drawings),
                          predictor: Predictor = Depends(get_predictor)) -> dict:
    """The body is a file that GET /api/drawings/export gives (either format), sent as
    `application/octet-stream`: all its drawings are added, or none. They are answered
    by the answering model now, as a saved drawing is."""
    content = await request.body()  # capped by CNN_LIVE_MAX_BODY_BYTES: larger gets 413
    try:
        images, labels, _ = await run_in_threadpool(read_drawings_file, content,
                                                    store.max_count)
    except TooManyDrawings as exc:  # more than the store could ever hold
        raise HTTPException(413, f"imported file: {exc}, the store's maximum "
                                 "(CNN_LIVE_MAX_DRAWINGS)") from None
    except DrawingsFileError as exc:
        raise HTTPException(422, f"imported file: {exc}") from None
    snapshot = answering(predictor)
    probabilities = await run_in_threadpool(_probabilities, snapshot, images, None)
    answers = probabilities.argmax(axis=1)
    try:
        ids = store.add_many(images, labels, answers,
                             probabilities[np.arange(len(answers)), answers],
                             _answered_by(snapshot, None))
    except StoreFull as exc:
        raise HTTPException(413, str(exc)) from None
    return {"imported": len(ids), "ids": ids}


@router.get("/accuracy", response_model=DrawingAccuracy,
            responses={404: {"model": ErrorMessage, "description": "no such run"}, **NO_MODEL},
            summary="How well a run's model reads the saved drawings")
async def drawings_accuracy(run: str | None = Query(None, max_length=64,
                                                    description="the run whose model is "
                                                                "measured; by default the "
                                                                "answering model"),
                            weights: WeightsKind = Query("averaged"),
                            store: DrawingStore = Depends(get_drawings),
                            predictor: Predictor = Depends(get_predictor)) -> dict:
    """Measured on the held-out fifth (never taught: the honest figure) and on all."""
    snapshot = answering(predictor, run)
    ids, images, labels = await run_in_threadpool(store.arrays)
    answers = (await run_in_threadpool(_probabilities, snapshot, images, weights)).argmax(axis=1)
    held_out = ids % HELD_OUT_EVERY == 0
    confusion = np.zeros((10, 10), np.int64)
    np.add.at(confusion, (labels[held_out], answers[held_out]), 1)
    return {"model": snapshot.info(weights),
            "held_out": _score(answers[held_out], labels[held_out]),
            "all": _score(answers, labels), "confusion": confusion.tolist()}


@router.post("/teach", status_code=201, response_model=TeachStarted,
             dependencies=[Depends(require_write)],
             responses={422: {"model": ErrorMessage, "description": "fewer than 10 drawings"},
                        429: {"model": ErrorMessage, "description": "the queue is full"},
                        404: {"model": ErrorMessage, "description": "no such run"}, **NO_MODEL},
             summary="Teach now: fine-tune the answering model on the drawings")
async def teach_now(body: TeachRequest, store: DrawingStore = Depends(get_drawings),
                    predictor: Predictor = Depends(get_predictor),
                    manager: RunManager = Depends(get_manager)) -> dict:
    """A short run from the model that answers (or the run's): the teaching four fifths
    of the drawings mixed into a replay of MNIST images (so that it does not forget),
    live on the charts like any run; when it ends, it answers drawings. Its epoch
    records give the held-out drawings' and MNIST's figures after; this answer gives
    them before."""
    snapshot = answering(predictor, body.run_id)
    kind, model = snapshot.choose(body.weights)
    source = manager.runs.get(snapshot.run_id) if snapshot.run_id else None
    ids, images, labels = await run_in_threadpool(store.arrays, "held_out")
    answers = (await run_in_threadpool(_probabilities, snapshot, images, kind)).argmax(axis=1)
    try:
        correct, total = await run_in_threadpool(manager.test_correct, model)
        before_test = correct / total
    except DataError:
        before_test = None
    try:
        run = await run_in_threadpool(manager.teach, source.preset if source else "default",
                                      model.spec, model.state(), Teaching(passes=body.passes))
    except QueueFull as exc:
        raise HTTPException(429, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"run_id": run.run_id, "state": run.state, "taught_from": snapshot.info(kind),
            "before": _score(answers, labels), "before_test_accuracy": before_test}


@router.get("/{drawing_id}", response_model=SavedDrawing, responses=NOT_FOUND,
            summary="One saved drawing")
def get_drawing(drawing_id: DrawingId, store: DrawingStore = Depends(get_drawings)) -> dict:
    return _found(store.get(drawing_id), drawing_id).summary()


@router.patch("/{drawing_id}", response_model=SavedDrawing,
              dependencies=[Depends(require_write)], responses=NOT_FOUND,
              summary="Change a drawing's label")
def relabel_drawing(drawing_id: DrawingId, body: RelabelRequest,
                    store: DrawingStore = Depends(get_drawings)) -> dict:
    return _found(store.relabel(drawing_id, body.label), drawing_id).summary()


@router.delete("/{drawing_id}", dependencies=[Depends(require_write)], responses=NOT_FOUND,
               summary="Delete a drawing")
def delete_drawing(drawing_id: DrawingId, store: DrawingStore = Depends(get_drawings)) -> dict:
    if not store.delete(drawing_id):
        raise HTTPException(404, f"no drawing {drawing_id}")
    return {"deleted": drawing_id}


def _found(drawing, drawing_id: int):
    if drawing is None:
        raise HTTPException(404, f"no drawing {drawing_id}")
    return drawing


def _answered_by(snapshot: Snapshot, weights: str | None) -> str:
    kind, _ = snapshot.choose(weights)
    return f"{snapshot.description} ({kind} weights)"


def _probabilities(snapshot: Snapshot, images: np.ndarray, weights: str | None) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 10) probabilities from the snapshot's chosen weights."""
    _, model = snapshot.choose(weights)
    if len(images) == 0:
        return np.zeros((0, 10))
    batch = (images[:, None] / 255.0).astype(model.dtype)
    with snapshot.lock:
        return model.predict_proba(batch)


def _score(answers: np.ndarray, labels: np.ndarray) -> dict:
    correct, total = int((answers == labels).sum()), len(labels)
    return {"correct": correct, "total": total,
            "accuracy": correct / total if total else None}
