"""Canvas-like drawings made from MNIST digits: a test set for preprocess_drawing.

People draw on a canvas of any size, anywhere on it, as large or small as they like,
with a round pen of some width. To see how well a model recognises such drawings
without collecting them, each MNIST digit is redrawn that way:

1. its stroke centre-line is recovered: the digit is enlarged 4x (bilinear, so the
   outline is smooth rather than a staircase of 28x28 pixels), thresholded and thinned
   to a one-pixel skeleton (Zhang-Suen, vectorised over a batch with array shifts);
2. neighbouring skeleton pixels become line segments (a diagonal link only where no
   pair of straight links already joins the two pixels, so a corner is not drawn as
   a small triangle);
3. the segments are scaled so the ink is the chosen height on a canvas of random
   size, at a random position, and redrawn with a round pen of the chosen width:
   points every half pixel along each segment, each stamped as an anti-aliased disc
   (coverage = pen radius + 0.5 - distance, clipped to 0..1), the canvas keeping the
   strongest stamp per pixel. Ink is 255 on 0, like a canvas's alpha channel.

Everything is seeded: the same seed gives the same drawings.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

CANVAS_RANGE = (160, 320)      # canvas side, pixels (square canvas)
HEIGHT_RANGE = (0.35, 0.85)    # ink height as a fraction of the canvas side
PEN_RANGE = (1, 7)             # pen width, pixels (integers, inclusive)
UPSAMPLE = 4                   # skeletons are found on a 112x112 enlargement
THRESHOLD = 0.4                # of 255: where the enlarged digit counts as stroke
STEP = 0.5                     # canvas pixels between stamped points along a stroke
MARGIN = 2                     # pixels of canvas kept free around the ink


@dataclass(frozen=True, eq=False)
class DrawnSet:
    """Drawings with what they show and how they were drawn."""

    canvases: list[np.ndarray]  # each (S, S) uint8, ink 255 on 0
    labels: np.ndarray          # (N,) int64 digit
    sources: np.ndarray         # (N,) int64 index of the source image
    canvas_sizes: np.ndarray    # (N,) int64 side S of each canvas
    heights: np.ndarray         # (N,) float64 target ink height / canvas side
    pens: np.ndarray            # (N,) int64 pen width, pixels

    def __len__(self) -> int:
        return len(self.canvases)


def make_drawn_set(images: np.ndarray, labels: np.ndarray, count: int | None = None,
                   seed: int = 0, pens: tuple[int, int] = PEN_RANGE) -> DrawnSet:
    """Redraw `count` randomly chosen digits of `images` ((N, 28, 28) uint8, e.g.
    MNIST's test images) as canvas drawings; all of them, in order, if count is None."""
    rng = np.random.default_rng(seed)
    n = len(images)
    if count is None:
        sources = np.arange(n)
    else:
        sources = np.sort(rng.choice(n, size=min(count, n), replace=False))
    k = len(sources)
    canvas_sizes = rng.integers(CANVAS_RANGE[0], CANVAS_RANGE[1] + 1, k)
    heights = rng.uniform(*HEIGHT_RANGE, k)
    pen_widths = rng.integers(pens[0], pens[1] + 1, k)
    skeletons = skeletonize(enlarge(images[sources]))
    canvases = [
        draw_skeleton(skeleton, int(size), float(height), int(pen), rng)
        for skeleton, size, height, pen in zip(skeletons, canvas_sizes, heights, pen_widths)
    ]
    return DrawnSet(canvases, np.asarray(labels)[sources].astype(np.int64),
                    sources.astype(np.int64), canvas_sizes.astype(np.int64), heights,
                    pen_widths.astype(np.int64))


def slant(canvas: np.ndarray, shear: float) -> np.ndarray:
    """A drawing slanted as a hand that leans writes: row y moves shear * (y - middle)
    pixels to the right (positive shear: the tops lean right), sampled linearly, on a
    canvas widened to keep all its ink. For a stand-in of one person's handwriting."""
    height, width = canvas.shape
    pad = int(abs(shear) * height / 2) + 2
    ys, xs = np.mgrid[0:height, 0:width + 2 * pad]
    source = xs - pad + shear * (ys - height / 2)
    left = np.floor(source).astype(np.int64)
    weight = source - left
    padded = np.pad(canvas.astype(np.float64), ((0, 0), (1, 1)))  # column -1 and width: 0

    def at(x: np.ndarray) -> np.ndarray:
        return padded[ys, np.clip(x, -1, width) + 1]

    return at(left) * (1 - weight) + at(left + 1) * weight


# --- Centre-lines ------------------------------------------------------------------


def enlarge(images: np.ndarray, factor: int = UPSAMPLE) -> np.ndarray:
    """(N, H, W) -> (N, H*factor, W*factor) float32 in [0, 1], bilinear."""
    images = np.asarray(images, dtype=np.float32) / 255.0
    rows = _linear_matrix(images.shape[1] * factor, images.shape[1])
    cols = _linear_matrix(images.shape[2] * factor, images.shape[2])
    return rows @ images @ cols.T


def _linear_matrix(out_size: int, in_size: int) -> np.ndarray:
    """(out, in) weights of linear interpolation, pixel centres aligned."""
    source = (np.arange(out_size) + 0.5) * in_size / out_size - 0.5
    source = np.clip(source, 0, in_size - 1)
    low = np.minimum(np.floor(source).astype(int), in_size - 2)
    frac = source - low
    matrix = np.zeros((out_size, in_size), np.float32)
    matrix[np.arange(out_size), low] = 1 - frac
    matrix[np.arange(out_size), low + 1] = frac
    return matrix


def skeletonize(images: np.ndarray, threshold: float = THRESHOLD,
                chunk: int = 256) -> np.ndarray:
    """(N, H, W) grey in [0, 1] -> (N, H, W) bool one-pixel-wide centre-lines."""
    out = np.empty(images.shape, bool)
    for start in range(0, len(images), chunk):
        out[start:start + chunk] = zhang_suen(images[start:start + chunk] >= threshold)
    return out


def zhang_suen(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of (N, H, W) bool masks, all at once with array shifts.

    Each pass removes boundary pixels whose removal keeps the shape connected
    (exactly one 0->1 change around them) and that are not line ends (2 to 6
    neighbours); two sub-passes alternate sides so the line stays centred.
    """
    image = np.pad(mask, ((0, 0), (1, 1), (1, 1))).astype(np.uint8)
    h, w = mask.shape[1:]
    while True:
        changed = False
        for first in (True, False):
            # P2..P9: north, then clockwise.
            p = [image[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in
                 ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))]
            neighbours = sum(q.astype(np.int8) for q in p)
            changes = sum(((p[i] == 0) & (p[(i + 1) % 8] == 1)).astype(np.int8)
                          for i in range(8))
            p2, p4, p6, p8 = p[0], p[2], p[4], p[6]
            if first:
                side = (p2 & p4 & p6) == 0
                side &= (p4 & p6 & p8) == 0
            else:
                side = (p2 & p4 & p8) == 0
                side &= (p2 & p6 & p8) == 0
            centre = image[:, 1:-1, 1:-1]
            remove = ((centre == 1) & (neighbours >= 2) & (neighbours <= 6)
                      & (changes == 1) & side)
            if remove.any():
                centre[remove] = 0
                changed = True
        if not changed:
            return image[:, 1:-1, 1:-1].astype(bool)


def skeleton_segments(skeleton: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (S, 4) float (y0, x0, y1, x1) linking neighbouring pixels;
    a lone pixel becomes a segment of length zero (a dot)."""
    s = np.pad(skeleton, 1)
    h, w = skeleton.shape
    core = s[1:-1, 1:-1]

    def at(dy, dx):
        return s[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    segments = []
    right, down = core & at(0, 1), core & at(1, 0)
    # A diagonal link only when the two pixels are not already joined through a
    # pixel beside both of them.
    down_right = core & at(1, 1) & ~at(0, 1) & ~at(1, 0)
    down_left = core & at(1, -1) & ~at(0, -1) & ~at(1, 0)
    for links, (dy, dx) in ((right, (0, 1)), (down, (1, 0)),
                            (down_right, (1, 1)), (down_left, (1, -1))):
        ys, xs = np.nonzero(links)
        segments.append(np.stack([ys, xs, ys + dy, xs + dx], axis=1))
    alone = core & ~(at(-1, -1) | at(-1, 0) | at(-1, 1) | at(0, -1) | at(0, 1)
                     | at(1, -1) | at(1, 0) | at(1, 1))
    ys, xs = np.nonzero(alone)
    segments.append(np.stack([ys, xs, ys, xs], axis=1))
    return np.concatenate(segments).astype(np.float64)


# --- Drawing ------------------------------------------------------------------------


def draw_skeleton(skeleton: np.ndarray, canvas: int, height: float, pen: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Draw a centre-line on a (canvas, canvas) uint8 canvas: ink `height` * canvas
    pixels high (outer edge to outer edge) at a random place, with a round pen `pen`
    pixels wide."""
    segments = skeleton_segments(skeleton)
    if len(segments) == 0:
        return np.zeros((canvas, canvas), np.uint8)
    ys, xs = segments[:, [0, 2]], segments[:, [1, 3]]
    span_y, span_x = np.ptp(ys), np.ptp(xs)
    # The pen adds its width to the centre-line's extent.
    room = canvas - 1 - 2 * MARGIN - pen
    target = height * canvas - pen
    scale = target / max(span_y, 1.0)
    if span_x * scale > room:  # a wide digit must still fit on the canvas
        scale = room / max(span_x, 1.0)
    ys = (ys - ys.min()) * scale
    xs = (xs - xs.min()) * scale
    radius = pen / 2
    reach = MARGIN + radius
    free_y = max(canvas - 1 - 2 * reach - span_y * scale, 0.0)  # rounding may give -1e-14
    free_x = max(canvas - 1 - 2 * reach - span_x * scale, 0.0)
    top = reach + rng.uniform(0.0, free_y)
    left = reach + rng.uniform(0.0, free_x)
    points = _points_along(ys + top, xs + left)
    return (stamp_discs(points, radius, canvas) * 255).round().astype(np.uint8)


def _points_along(ys: np.ndarray, xs: np.ndarray, step: float = STEP) -> np.ndarray:
    """(S, 2) segment ends -> (P, 2) points at most `step` apart along every segment."""
    length = np.hypot(ys[:, 1] - ys[:, 0], xs[:, 1] - xs[:, 0])
    counts = np.ceil(length / step).astype(int) + 1
    which = np.repeat(np.arange(len(ys)), counts)
    # The position of each point within its own segment, 0 .. 1.
    first = np.cumsum(counts) - counts
    t = (np.arange(counts.sum()) - first[which]) / np.maximum(counts[which] - 1, 1)
    y = ys[which, 0] + t * (ys[which, 1] - ys[which, 0])
    x = xs[which, 0] + t * (xs[which, 1] - xs[which, 0])
    return np.stack([y, x], axis=1)


def stamp_discs(points: np.ndarray, radius: float, size: int) -> np.ndarray:
    """(size, size) coverage in [0, 1] of discs of `radius` around each point
    (pixel centres at integer coordinates), anti-aliased over one pixel."""
    reach = int(np.ceil(radius + 0.5))
    offsets = np.arange(-reach, reach + 1)
    base = np.round(points).astype(int)
    py = base[:, 0, None, None] + offsets[None, :, None]
    px = base[:, 1, None, None] + offsets[None, None, :]
    distance = np.hypot(py - points[:, 0, None, None], px - points[:, 1, None, None])
    coverage = np.clip(radius + 0.5 - distance, 0.0, 1.0)
    inside = (coverage > 0) & (py >= 0) & (py < size) & (px >= 0) & (px < size)
    py, px = np.broadcast_arrays(py, px)
    canvas = np.zeros(size * size)
    np.maximum.at(canvas, py[inside] * size + px[inside], coverage[inside])
    return canvas.reshape(size, size)


# --- Looking at them ------------------------------------------------------------------


def write_png(path, image: np.ndarray) -> None:
    """Write a (H, W) uint8 grey image as a PNG (zlib, no other library)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = image.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), image], axis=1).tobytes()  # filter 0

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit greyscale
    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                  + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def grid(images: list[np.ndarray], columns: int, cell: int, gap: int = 4) -> np.ndarray:
    """Tile images (each at most cell x cell, top-left aligned) on a grey background."""
    rows = -(-len(images) // columns)
    out = np.full((rows * (cell + gap) + gap, columns * (cell + gap) + gap), 96, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        h, w = image.shape
        y, x = gap + r * (cell + gap), gap + c * (cell + gap)
        out[y:y + h, x:x + w] = image
    return out
