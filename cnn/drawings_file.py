"""Files of labelled drawings (28x28 uint8 images, ink high, as the network sees them)
to exchange between servers and with the command line: a .npz (`images`, `labels`,
`ids`) or MNIST-style IDX files, zipped together. Reading checks a file before it is
unpacked (its members' sizes against a count), never unpickles, and checks shapes,
types and labels.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np

from .data import DataError, idx_bytes, parse_idx

SIDE = 28
# The fixed split of a person's drawings: ids divisible by this are held out, only ever
# measured and never taught, so that "your drawings" accuracy stays honest.
HELD_OUT_EVERY = 5
IDX_IMAGES = "drawings-images-idx3-ubyte"
IDX_LABELS = "drawings-labels-idx1-ubyte"


class DrawingsFileError(ValueError):
    """A file that is not one of drawings; the message says why."""


class TooManyDrawings(DrawingsFileError):
    """The file holds (or would unpack to) more drawings than allowed."""


def write_npz(ids: np.ndarray, images: np.ndarray, labels: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.savez_compressed(out, images=images, labels=labels.astype(np.uint8), ids=ids)
    return out.getvalue()


def write_idx_zip(images: np.ndarray, labels: np.ndarray) -> bytes:
    """The two files MNIST comes as (images idx3, labels idx1), zipped together."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(IDX_IMAGES, idx_bytes(images))
        archive.writestr(IDX_LABELS, idx_bytes(labels.astype(np.uint8)))
    return out.getvalue()


def read_drawings_file(content: bytes, max_count: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A file of drawings (either kind) -> (images (N, 28, 28) uint8, labels (N,) int64,
    ids (N,): the .npz's own, else 1..N), or DrawingsFileError (TooManyDrawings when it
    holds more than `max_count`). Both kinds are zip files: their members' sizes are
    checked against `max_count` drawings before anything is decompressed."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
        members = {info.filename: info for info in archive.infolist()}
    except (zipfile.BadZipFile, ValueError, OSError):
        raise DrawingsFileError("an import is a .npz file or a zip of MNIST-style IDX files "
                           f"({IDX_IMAGES}, {IDX_LABELS}), as the export gives") from None
    largest = max_count * SIDE * SIDE + 4096  # every drawing's pixels, and headers
    for info in members.values():
        if info.file_size > largest:
            raise TooManyDrawings(f"{info.filename} would unpack to {info.file_size:,} bytes, more "
                            f"than {max_count:,} drawings need")
    names = set(members)
    ids = None
    if {"images.npy", "labels.npy"} <= names:
        images, labels, ids = _npz_arrays(content)
    elif {IDX_IMAGES, IDX_LABELS} <= names:
        try:
            images = parse_idx(archive.read(IDX_IMAGES), IDX_IMAGES)
            labels = parse_idx(archive.read(IDX_LABELS), IDX_LABELS)
        except (DataError, zipfile.BadZipFile, OSError, ValueError) as exc:
            raise DrawingsFileError(f"the IDX files cannot be read: {exc}") from None
    else:
        raise DrawingsFileError(f"the zip holds {sorted(names)[:4]}, not images.npy + labels.npy "
                           f"(.npz) nor {IDX_IMAGES} + {IDX_LABELS}")
    images, labels = _checked_arrays(images, labels)
    if len(labels) > max_count:
        raise TooManyDrawings(f"the file holds {len(labels):,} drawings, more than "
                              f"{max_count:,}")
    if ids is None or ids.shape != labels.shape or ids.dtype.kind not in "ui" \
            or len(np.unique(ids)) != len(ids):
        ids = np.arange(1, len(labels) + 1)
    return images, labels, ids.astype(np.int64)


def _npz_arrays(content: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    try:
        with np.load(io.BytesIO(content), allow_pickle=False) as data:
            ids = data["ids"] if "ids" in data.files else None
            return data["images"], data["labels"], ids
    except (ValueError, OSError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise DrawingsFileError(f"the .npz cannot be read: {exc}") from None


def _checked_arrays(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if images.ndim != 3 or images.shape[1:] != (SIDE, SIDE) or images.dtype != np.uint8:
        raise DrawingsFileError(f"images must be N x 28 x 28 bytes, not {images.shape} "
                           f"{images.dtype}")
    if labels.ndim != 1 or len(labels) != len(images) or labels.dtype.kind not in "ui":
        raise DrawingsFileError(f"labels must be {len(images)} whole numbers, one an image, not "
                           f"{labels.shape} {labels.dtype}")
    if len(labels) == 0:
        raise DrawingsFileError("the file holds no drawings")
    if labels.min() < 0 or labels.max() > 9:
        raise DrawingsFileError(f"labels are digits 0..9; this file has {int(labels.min())}.."
                           f"{int(labels.max())}")
    return images, labels.astype(np.int64)
