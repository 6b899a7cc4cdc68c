"""A preview of the data augmentation: what training would do to a few images."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query

from cnn.augment import Augmentation
from cnn.data import DataError

from ..dependencies import UNAUTHORIZED, get_manager, require_read
from ..schemas import AugmentPreview, ErrorMessage
from ..runs import RunManager

router = APIRouter(prefix="/api/augment", tags=["runs"], dependencies=[Depends(require_read)],
                   responses=UNAUTHORIZED)


@router.get("/preview", response_model=AugmentPreview,
            responses={503: {"model": ErrorMessage, "description": "MNIST is not available"}},
            summary="The first training images beside a random distortion of each")
def preview(shift: float = Query(2.0, ge=0, le=8, description="pixels"),
            scale: float = Query(0.1, ge=0, le=0.5, description="relative"),
            rotation: float = Query(10.0, ge=0, le=45, description="degrees"),
            stroke: float = Query(0.0, ge=0, le=1, description="pixels thicker or thinner"),
            count: int = Query(12, ge=1, le=32),
            seed: int = Query(0, ge=0, le=2**32 - 1),
            manager: RunManager = Depends(get_manager)) -> dict:
    try:
        return manager.augment_preview(Augmentation(shift, scale, rotation, stroke), count, seed)
    except DataError as exc:
        raise HTTPException(503, str(exc)) from None
