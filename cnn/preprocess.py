"""Turn a drawing of any size into a 28x28 image like MNIST's own.

MNIST's digits were made this way: each scanned digit was scaled, keeping its aspect
ratio, to fit a 20x20 box (anti-aliased, so grey edges), then placed in a 28x28 field
with its centre of mass at the centre. A network trained on MNIST expects exactly
that; a plain resize of a whole canvas gives it a tiny, off-centre digit instead.
"""

from __future__ import annotations

import numpy as np

SIZE = 28
BOX = 20
INK_THRESHOLD = 0.1  # a fraction of the strongest ink: fainter pixels do not count as ink


class EmptyDrawing(ValueError):
    """The drawing has no ink to recognise."""


def preprocess_drawing(drawing: np.ndarray) -> np.ndarray:
    """drawing: (H, W) numbers, ink high (any scale, e.g. 0..255) -> (28, 28) float32 in
    [0, 1], the digit fitted into 20x20 and centred by its centre of mass."""
    image = np.asarray(drawing, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"a drawing is a 2D array, got {image.ndim} dimensions")
    if not np.isfinite(image).all():
        raise ValueError("a drawing holds only finite numbers")
    image = np.clip(image, 0.0, None)
    strongest = image.max(initial=0.0)
    if strongest <= 0:
        raise EmptyDrawing("the drawing is empty: draw a digit first")
    image = image / strongest
    cropped = _crop_to_ink(image)
    fitted = _fit_in_box(cropped)
    return _place_by_centre_of_mass(fitted)


def _crop_to_ink(image: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero((image >= INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((image >= INK_THRESHOLD).any(axis=0))
    return image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _fit_in_box(image: np.ndarray) -> np.ndarray:
    """Scale so the longer side is 20 pixels, keeping the aspect ratio."""
    h, w = image.shape
    scale = BOX / max(h, w)
    out_h, out_w = max(1, round(h * scale)), max(1, round(w * scale))
    fitted = _resample_matrix(out_h, h) @ image @ _resample_matrix(out_w, w).T
    # A thin pen on a big canvas averages out to faint grey; MNIST's strokes are dark.
    return fitted / fitted.max()


def _resample_matrix(out_size: int, in_size: int) -> np.ndarray:
    """(out, in) weights: each output pixel is the average of the input it covers
    (area resampling: anti-aliased when shrinking, smooth blocks when enlarging)."""
    edges = np.linspace(0.0, in_size, out_size + 1)
    starts, ends = edges[:-1, None], edges[1:, None]
    pixel = np.arange(in_size)[None, :]
    overlap = np.clip(np.minimum(ends, pixel + 1) - np.maximum(starts, pixel), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def _place_by_centre_of_mass(fitted: np.ndarray) -> np.ndarray:
    h, w = fitted.shape
    total = fitted.sum()
    centre_y = (fitted.sum(axis=1) @ np.arange(h)) / total
    centre_x = (fitted.sum(axis=0) @ np.arange(w)) / total
    # The whole box must stay inside the field, so the shift is clipped to fit.
    top = int(np.clip(round((SIZE - 1) / 2 - centre_y), 0, SIZE - h))
    left = int(np.clip(round((SIZE - 1) / 2 - centre_x), 0, SIZE - w))
    out = np.zeros((SIZE, SIZE), np.float32)
    out[top:top + h, left:left + w] = fitted
    return out
