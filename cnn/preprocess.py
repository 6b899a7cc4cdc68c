"""Turn a drawing of any size into a 28x28 image like MNIST's own.

MNIST's digits were made this way: each scanned digit was scaled, keeping its aspect
ratio, to fit a 20x20 box (anti-aliased, so grey edges), then placed in a 28x28 field
with its centre of mass at the centre. A network trained on MNIST expects exactly
that; a plain resize of a whole canvas gives it a tiny, off-centre digit instead.

Fitting fixes the size and place but not the stroke width. MNIST's strokes are about
2.2 pixels wide in the 20x20 box (median; 1.7-3.0 for 80% of the test digits and
never below 1.3), the width of a pen on paper scanned at MNIST's resolution. On a
canvas the pen is a fixed 1-7 pixels whatever the digit's size, so after fitting a
270-pixel-high digit into 20 pixels a 1-pixel pen is 0.07 pixels wide: area
resampling turns it into a faint one-pixel line, and scaling the grey up to black
still leaves a hairline (fitted canvas drawings measured 1.0-1.3 pixels wide for
every pen from 1 to 7 pixels, against MNIST's 2.2). Such hairlines cost the default
model about 2% of drawn digits, so strokes thinner than any MNIST digit's (HAIRLINE)
are widened to MNIST's median before fitting (see _widen_strokes). Strokes within
MNIST's range are left as drawn: MNIST's own digits pass through unchanged, and a
deliberately thin bar (a dash) keeps its shape.
"""

from __future__ import annotations

import numpy as np

SIZE = 28
BOX = 20
INK_THRESHOLD = 0.1  # a fraction of the strongest ink: fainter pixels do not count as ink
# MNIST's median stroke width in the 20x20 box, measured with _stroke_width on the test
# digits (10th-90th percentile 1.7-3.0, 0.1th percentile 1.3).
STROKE_WIDTH = 2.2
# Strokes thinner than this (in box pixels) after fitting are thinner than any MNIST
# digit's: a canvas pen much finer than the drawing is large. Only they are widened.
HAIRLINE = 1.0
# Widening works on at most this many pixels per pixel of the 20x20 box: fine enough
# for smooth anti-aliased edges after fitting, coarse enough to stay fast on big canvases.
WORK_DETAIL = 4

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
    cropped = _widen_strokes(_crop_to_ink(image))
    fitted = _fit_in_box(cropped)
    return _place_by_centre_of_mass(fitted)


def _crop_to_ink(image: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero((image >= INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((image >= INK_THRESHOLD).any(axis=0))
    return image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _stroke_width(image: np.ndarray) -> float:
    """The mean stroke width, in pixels, of ink in [0, 1]: a stroke of width w and
    length L has ink area w * L and outline 2 * L, so w = 2 * area / outline. The
    outline is the total gradient magnitude, exact for anti-aliased and for
    staircase edges alike (a 45-degree staircase has one sqrt(2) step per sqrt(2)
    of length)."""
    padded = np.pad(image, 1)
    gy = np.diff(padded, axis=0)[:, :-1]
    gx = np.diff(padded, axis=1)[:-1, :]
    outline = np.hypot(gx, gy).sum()
    return 2.0 * image.sum() / outline if outline > 0 else 0.0


def _widen_strokes(image: np.ndarray) -> np.ndarray:
    """Hairline strokes (thinner than HAIRLINE at the 20x20 box's scale) widened to
    STROKE_WIDTH with a round pen, and the image cropped again to its (larger) ink;
    other drawings are returned as they are."""
    original, side = image, max(image.shape)
    # Big drawings are first shrunk to WORK_DETAIL pixels per box pixel, taking each
    # block's strongest ink so that a hairline stays black instead of fading to grey
    # (a faint stroke widened would stay faint).
    block = max(1, -(-side // (WORK_DETAIL * BOX)))
    if block > 1:
        image = _block_max(image, block)
        side = max(image.shape)
    width = _stroke_width(image)
    if width * BOX / side >= HAIRLINE:
        return original
    # Widening by `grow` pixels also enlarges the ink's box by `grow`, which the fit
    # then shrinks; solve (width + grow) / (side + grow) = STROKE_WIDTH / BOX.
    ratio = STROKE_WIDTH / BOX
    grow = (ratio * side - width) / (1.0 - ratio)
    return _crop_to_ink(_dilate(image, grow / 2))


def _block_max(image: np.ndarray, block: int) -> np.ndarray:
    h, w = image.shape
    padded = np.zeros((-(-h // block) * block, -(-w // block) * block))
    padded[:h, :w] = image
    return padded.reshape(padded.shape[0] // block, block, -1, block).max(axis=(1, 3))


def _dilate(image: np.ndarray, radius: float) -> np.ndarray:
    """Grey dilation by a disc of `radius` pixels with an anti-aliased rim: each output
    pixel is the strongest ink within reach, weighted by radius + 1 - distance
    (clipped to 0..1), so that a straight stroke grows by exactly 2 * radius, also
    for a radius below one pixel. The image grows by the reach on every side."""
    reach = int(np.ceil(radius))
    h, w = image.shape
    padded = np.zeros((h + 4 * reach, w + 4 * reach))
    padded[2 * reach:2 * reach + h, 2 * reach:2 * reach + w] = image
    out = np.zeros((h + 2 * reach, w + 2 * reach))
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):  # whole-image shifts: (2 * reach + 1)^2 of them
            weight = min(1.0, radius + 1.0 - float(np.hypot(dy, dx)))
            if weight > 0:
                shifted = padded[reach + dy:reach + dy + h + 2 * reach,
                                 reach + dx:reach + dx + w + 2 * reach]
                np.maximum(out, shifted * weight, out=out)
    return out


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
