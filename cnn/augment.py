"""Random distortions of training images, vectorised over the batch: each image gets
its own affine transform (shift, scale, rotation), sampled bilinearly, and its own
change of stroke width (a partial grey dilation or erosion).

People draw digits off-centre, large or small, slanted, with thin or fat pens; a
network that saw such variations while training recognises their drawings far
better, and MNIST's test accuracy does not suffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Augmentation:
    shift: float = 2.0       # pixels, uniform in [-shift, shift] along each axis
    scale: float = 0.1       # relative, uniform in [1 - scale, 1 + scale]
    rotation: float = 10.0   # degrees, uniform in [-rotation, rotation]
    stroke: float = 0.0      # pixels, uniform in [-stroke, stroke]: thinner or thicker

    @property
    def active(self) -> bool:
        return bool(self.shift or self.scale or self.rotation or self.stroke)

    def to_dict(self) -> dict:
        return {"shift": self.shift, "scale": self.scale, "rotation": self.rotation,
                "stroke": self.stroke}

    def scaled(self, strength: float) -> "Augmentation":
        """These distortions at `strength` (0..1) of their range: each range shrinks, the
        random draws stay the same in number (a run's random stream does not shift)."""
        if strength == 1.0:
            return self
        return Augmentation(self.shift * strength, self.scale * strength,
                            self.rotation * strength, self.stroke * strength)


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
    out = _sample_bilinear(images, src_y, src_x)
    if settings.stroke:  # drawn only when asked: runs without it keep their random stream
        out = change_strokes(out, rng.uniform(-settings.stroke, settings.stroke, n))
    return out


def change_strokes(images: np.ndarray, amounts: np.ndarray) -> np.ndarray:
    """Thicken (amount > 0) or thin (amount < 0) each image's strokes by up to one
    pixel on each side: a blend between the image and its 3x3-cross dilation or
    erosion, weighted by |amount| (N,) in [0, 1]."""
    out = images.copy()
    # Each image needs only one of the two: the dilation for some, the erosion for others.
    for chosen, combine in ((amounts > 0, np.maximum), (amounts < 0, np.minimum)):
        if chosen.any():
            part = images[chosen]
            weight = np.abs(amounts[chosen]).astype(images.dtype)[:, None, None, None]
            out[chosen] = part + weight * (_cross_neighbourhood(part, combine) - part)
    return out


def _cross_neighbourhood(images: np.ndarray, combine) -> np.ndarray:
    """Each pixel combined with its four neighbours (zeros outside the image)."""
    padded = np.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = images.copy()
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        combine(out, padded[:, :, dy:dy + images.shape[2], dx:dx + images.shape[3]], out=out)
    return out


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
