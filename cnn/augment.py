"""Random affine distortions of training images (shift, scale, rotation), vectorised
over the batch: each image gets its own transform, sampled bilinearly.

People draw digits off-centre, large or small and slanted; a network that saw such
variations while training recognises their drawings far better, and MNIST's test
accuracy does not suffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Augmentation:
    shift: float = 2.0       # pixels, uniform in [-shift, shift] along each axis
    scale: float = 0.1       # relative, uniform in [1 - scale, 1 + scale]
    rotation: float = 10.0   # degrees, uniform in [-rotation, rotation]

    def to_dict(self) -> dict:
        return {"shift": self.shift, "scale": self.scale, "rotation": self.rotation}


def augment(images: np.ndarray, rng: np.random.Generator, settings: Augmentation) -> np.ndarray:
    """images: (N, C, H, W) float -> the same shape, each image randomly transformed."""
    n, c, h, w = images.shape
    angle = np.deg2rad(rng.uniform(-settings.rotation, settings.rotation, n)).astype(np.float32)
    zoom = rng.uniform(1 - settings.scale, 1 + settings.scale, n).astype(np.float32)
    shift = rng.uniform(-settings.shift, settings.shift, (n, 2)).astype(np.float32)
    # For each output pixel, where it comes from: rotate and scale about the centre.
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float32) - (h - 1) / 2,
                         np.arange(w, dtype=np.float32) - (w - 1) / 2, indexing="ij")
    cos, sin = (np.cos(angle) / zoom)[:, None, None], (np.sin(angle) / zoom)[:, None, None]
    src_y = cos * ys - sin * xs + (h - 1) / 2 - shift[:, 0, None, None]
    src_x = sin * ys + cos * xs + (w - 1) / 2 - shift[:, 1, None, None]
    return _sample_bilinear(images, src_y, src_x)


def _sample_bilinear(images, src_y, src_x):
    """Bilinear sampling with zeros outside the image; src_*: (N, H, W) coordinates."""
    n, c, h, w = images.shape
    padded = np.zeros((n, c, h + 2, w + 2), images.dtype)  # a ring of zeros for outside
    padded[:, :, 1:-1, 1:-1] = images
    # Outside the picture means on the ring; the corner stops one short of the far ring
    # so that its neighbour is the ring itself, with all the weight.
    src_y = np.clip(src_y + 1, 0, h + 1, dtype=np.float32)
    src_x = np.clip(src_x + 1, 0, w + 1, dtype=np.float32)
    y0 = np.minimum(np.floor(src_y), h).astype(np.intp)
    x0 = np.minimum(np.floor(src_x), w).astype(np.intp)
    fy, fx = (src_y - y0).astype(images.dtype), (src_x - x0).astype(images.dtype)
    # One flat index per output pixel: np.take is much faster than indexing with
    # three arrays.
    row = w + 2
    corner = (np.arange(n)[:, None, None] * (h + 2) + y0) * row + x0
    out = np.empty_like(images)
    for channel in range(c):  # a handful of channels at most; each step is the whole batch
        plane = padded[:, channel].reshape(-1)
        top = plane.take(corner) * (1 - fx) + plane.take(corner + 1) * fx
        bottom = plane.take(corner + row) * (1 - fx) + plane.take(corner + row + 1) * fx
        out[:, channel] = top * (1 - fy) + bottom * fy
    return out
