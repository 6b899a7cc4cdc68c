"""Which model answers "what digit is this drawing?", and how a drawing is checked.

A request may name the run whose model answers (`run_id`); by default it is, in
order of preference:
1. the newest run in training: a snapshot of its weights, taken by its worker between
   batches (at most every SNAPSHOT_INTERVAL seconds and at every epoch end), sent to
   the server and swapped in by one assignment: never half-updated, and never waiting
   on a worker to answer;
2. else the last run that finished (or was stopped), or the last uploaded model;
3. else the small pretrained model bundled in app/assets/default-model.npz, loaded
   on first use.
Several runs train at once: each keeps its own latest snapshot, and the models of the
last KEEP_ENDED ended runs stay to be asked.
A run that averages its weights (cnn/average.py, the `default` preset does) answers
with the average by default; its snapshots keep the raw weights beside it, and a
request may ask for those (`"weights": "raw"`) to see the difference. A model file
says in its metadata which weights it holds (`"weights"`).
A snapshot is only taken after a successful step, and weights that are not finite are
refused; a run that fails (diverges) is dropped and the answers come
from (2) or (3) again.

Models keep work buffers between calls and are not thread-safe: each snapshot has
its own lock, held for the ~1 ms of a prediction. Nothing changes a snapshot after
it is published.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnn.average import WeightAverage
from cnn.cost import spec_cost
from cnn.model import Model, ModelFileError, spec_shapes
from cnn.preprocess import preprocess_drawing

log = logging.getLogger("cnn_live.predict")

BUNDLED_MODEL = Path(__file__).resolve().parent / "assets" / "default-model.npz"
SNAPSHOT_INTERVAL = 0.5  # seconds between snapshots of a run in training
# Models of ended runs (and uploads) kept to answer, the newest: at most this many, and
# at most ENDED_BYTES of weights together (the newest one whatever its size): the
# `default` preset's are 0.9 MB (raw and averaged), the largest the limits allow 40 MB.
KEEP_ENDED = 8
ENDED_BYTES = 64 * 2**20
MIN_SIDE, MAX_SIDE = 8, 512
MAX_VALUE = 255.0
IMAGE_LAYERS = ("conv", "relu", "sigmoid", "tanh", "maxpool")

# What one explained prediction sends at most, whatever the model: a large accepted
# model once made one take 95 s, answer 289 MB of JSON and reach 7.5 GB. The page
# shows 32 maps a layer, 16 input channels of a filter, and a strip of 256 px for a
# vector; a map finer than the 28x28 input shows nothing more on it.
MAX_MAPS = 32
MAX_MAP_SIDE = 28
MAX_FILTER_CHANNELS = 16
MAX_KERNEL_SIDE = 7
MAX_VECTOR_VALUES = 256
# Map and filter values of one answer together, a filter's float weighing twice a map's
# 0..255 level (as JSON: ~8 bytes against ~4): about 250 KB. Once a deep network has
# used it up, each later layer shows one map of at most SPENT_MAP_SIDE a side and no
# filter (the largest models the default limits allow: 120-250 KB an answer).
EXPLAIN_BUDGET = 60_000
FILTER_VALUE_COST = 2
SPENT_MAP_SIDE = 14
# Models that cost more than this per image predict in a worker thread: the `default`
# preset (333 K multiply-adds) answers in ~1 ms on the event loop, but the largest the
# limits allow (50 M) took 50-300 ms with explain, time in which nothing else answers.
HEAVY_MULTIPLY_ADDS = 5_000_000

class DrawingError(ValueError):
    """A drawing the server cannot read; the message says what is wrong."""


class NoModel(RuntimeError):
    """No run has trained a model and the bundled one cannot be loaded."""


class UnusableModel(ValueError):
    """A model that loads but cannot answer drawings; the message says why."""


# -- checking a drawing ----------------------------------------------------------------------

def _where(row: int, col: int | None = None) -> str:
    return f"row {row}" if col is None else f"row {row}, column {col}"


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_drawing(image) -> np.ndarray:
    """A request's `image` (parsed JSON) -> (H, W) float64 array, or DrawingError.

    One pass over the rows in C loops (`map(type, row)`), one conversion by NumPy:
    a 512x512 drawing takes a few milliseconds, and a bad one is reported by the
    first place it goes wrong, not with one error per pixel."""
    if not isinstance(image, list) or not image:
        raise DrawingError("'image' must be a non-empty list of rows, each a list of numbers "
                           "0..255 (ink high)")
    height = len(image)
    first = image[0]
    if not isinstance(first, list):
        raise DrawingError(f"'image' must be a list of rows, each a list of numbers: "
                           f"{_where(0)} is {type(first).__name__}")
    width = len(first)
    _check_sides(height, width)
    types: set[type] = set()
    for index, row in enumerate(image):
        if not isinstance(row, list):
            raise DrawingError(f"'image' must be a list of rows, each a list of numbers: "
                               f"{_where(index)} is {type(row).__name__}")
        if len(row) != width:
            raise DrawingError(f"all rows must have the same length: row 0 has {width} "
                               f"values, {_where(index)} has {len(row)}")
        types.update(map(type, row))
    if not types <= {int, float}:  # bool is a subclass of int, not int itself
        for index, row in enumerate(image):
            for col, value in enumerate(row):
                if type(value) not in (int, float):
                    kind = "null" if value is None else type(value).__name__
                    raise DrawingError(f"every pixel must be a number 0..255: {_where(index, col)}"
                                       f" is {kind} {_short(value)}")
    try:
        pixels = np.array(image, dtype=np.float64)
    except OverflowError:  # a whole number too big for a float
        raise DrawingError(f"every pixel must be a number 0..{MAX_VALUE:g}; some are far "
                           "larger") from None
    if not np.isfinite(pixels).all():
        row, col = np.argwhere(~np.isfinite(pixels))[0]
        raise DrawingError(f"every pixel must be a finite number 0..255: {_where(row, col)} is "
                           f"{pixels[row, col]}")
    outside = (pixels < 0) | (pixels > MAX_VALUE)
    if outside.any():
        row, col = np.argwhere(outside)[0]
        raise DrawingError(f"every pixel must be from 0 to 255: {_where(row, col)} is "
                           f"{pixels[row, col]:g}")
    return _require_ink(pixels)


def read_drawing(image, pixels: str | None, width: int | None) -> np.ndarray:
    """A request's drawing, given as rows (`image`) or as base64 bytes (`pixels` with
    `width`) -> (H, W) float64 array, or DrawingError."""
    if (image is None) == (pixels is None):
        raise DrawingError("give the drawing either as 'image' (rows of numbers) or as "
                           "'pixels' (base64 bytes) with 'width'")
    if image is not None:
        if width is not None:
            raise DrawingError("'width' goes with 'pixels', not with 'image'")
        return parse_drawing(image)
    return parse_pixels(pixels, width)


def parse_pixels(pixels: str, width: int | None) -> np.ndarray:
    """`pixels`, base64 of H x W bytes row by row, -> (H, W) float64, or DrawingError."""
    if width is None:
        raise DrawingError("'pixels' needs 'width', the number of pixels in a row")
    try:
        raw = base64.b64decode(pixels, validate=True)
    except (binascii.Error, ValueError):
        raise DrawingError("'pixels' must be base64 (A-Z, a-z, 0-9, +, /, = padding)") from None
    if len(raw) % width:
        raise DrawingError(f"'pixels' holds {len(raw)} bytes, not whole rows of "
                           f"width {width}")
    height = len(raw) // width
    _check_sides(height, width)
    return _require_ink(np.frombuffer(raw, np.uint8).reshape(height, width).astype(np.float64))


def _check_sides(height: int, width: int) -> None:
    if not (MIN_SIDE <= height <= MAX_SIDE and MIN_SIDE <= width <= MAX_SIDE):
        raise DrawingError(f"the drawing is {height} rows x {width} columns; each side must be "
                           f"from {MIN_SIDE} to {MAX_SIDE} pixels")


def _require_ink(drawing: np.ndarray) -> np.ndarray:
    if not drawing.any():
        raise DrawingError("the drawing is empty (no ink): draw a digit first")
    return drawing


def prepare(pixels: np.ndarray) -> np.ndarray:
    """(H, W) drawing -> the network's (28, 28) float32 input, 0..1."""
    try:
        return preprocess_drawing(pixels)
    except ValueError as exc:  # EmptyDrawing, or anything else preprocessing refuses
        message = str(exc) or "the drawing could not be read"
        raise DrawingError(message) from None


# -- checking a model before it answers --------------------------------------------------------

MNIST_INPUT, CLASSES = [1, 28, 28], 10
# Layer outputs beyond this, for an input of 0..1, are out of range: a factor 1e8 from
# float32's overflow (3.4e38), so another drawing would overflow them. A trained
# network's values stay under a few hundred; an untrained one of 64 wide layers with
# the 2017 blog's uniform weights under 1e20.
MAX_PROBE_VALUE = 1e30


def probe_images() -> np.ndarray:
    """What an accepted model is tried on: no ink, ink everywhere (the largest sums
    any input makes), and a ring like a drawn 0 (a digit shaped like MNIST's)."""
    rows, cols = np.mgrid[0:28, 0:28]
    radius = np.hypot((rows - 13.5) / 1.25, cols - 13.5)
    ring = np.clip(2.0 - np.abs(radius - 6.5), 0.0, 1.0)
    return np.stack([np.zeros((28, 28)), np.ones((28, 28)), ring]).astype(np.float32)


def check_answers(model: Model) -> None:
    """UnusableModel unless `model` reads 1x28x28 images, gives 10 scores, and answers
    the probe images with finite values in range at every layer."""
    if model.spec["input"] != MNIST_INPUT or spec_shapes(model.spec)[-1] != (CLASSES,):
        raise UnusableModel("the model must read 1x28x28 images and give 10 scores")
    images = probe_images()[:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        for name, value in model.layer_outputs(images):
            if not np.isfinite(value).all():
                raise UnusableModel(f"layer {name} gives values that are not finite (its "
                                    "sums overflow float32): weights far too large for a "
                                    "trained network")
            largest = float(np.abs(value).max())
            if largest > MAX_PROBE_VALUE:
                raise UnusableModel(f"layer {name} gives values up to {largest:.3g} for an "
                                    f"image of 0..1, over {MAX_PROBE_VALUE:.0e}: another "
                                    "drawing could overflow float32; weights this large "
                                    "are not a trained network's")
        probabilities = model.predict_proba(images)
    if not np.isfinite(probabilities).all():
        raise UnusableModel("the model's probabilities are not finite numbers")


# -- the answering models ---------------------------------------------------------------------

@dataclass
class Snapshot:
    """A model that answers predictions, with what it is."""
    model: Model
    source: str                   # "training", "finished" or "bundled"
    description: str
    run_id: str | None = None
    epoch: int | None = None
    step: int | None = None
    taken_at: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    weights: str = "raw"          # what `model` holds: "averaged" or "raw" weights
    raw: Model | None = None      # the raw weights too, when `model` holds the average

    @functools.cached_property
    def weight_bytes(self) -> int:
        models = [self.model] + ([self.raw] if self.raw is not None else [])
        return sum(param.nbytes for model in models for param in model.parameters())

    @functools.cached_property
    def heavy(self) -> bool:
        """Whether a prediction costs enough to be run off the event loop."""
        return spec_cost(self.model.spec).multiply_adds > HEAVY_MULTIPLY_ADDS

    def choose(self, weights: str | None) -> tuple[str, Model]:
        """The weights that answer a request asking for `weights` ("averaged", "raw"
        or None: the default), and their model: what was asked for if this snapshot
        has it, else the weights it has."""
        if weights == "raw" and self.raw is not None:
            return "raw", self.raw
        return self.weights, self.model

    def info(self, weights: str | None = None) -> dict:
        answering, _ = self.choose(weights)
        available = [self.weights] + (["raw"] if self.raw is not None else [])
        return {"source": self.source, "run_id": self.run_id, "epoch": self.epoch,
                "step": self.step, "description": self.description,
                "weights": answering, "weights_available": available}

    def predict(self, image: np.ndarray, explain: bool = False,
                weights: str | None = None) -> tuple[np.ndarray, dict | None]:
        """(28, 28) image -> (10 probabilities as float64, and with `explain` every
        layer's output: {"feature_maps": [...], "vectors": [...]}, else None), from
        the weights `choose(weights)` picks."""
        _, model = self.choose(weights)
        batch = image[None, None].astype(model.dtype, copy=False)
        with self.lock:
            probabilities = model.predict_proba(batch)[0].astype(np.float64)
            layers = self._layer_outputs(model, batch) if explain else None
        return probabilities, layers

    def _layer_outputs(self, model: Model, batch: np.ndarray) -> dict:
        """Image layers' feature maps (with a conv's filters) and, after the flatten,
        each layer's vector: the input turning into the prediction, layer by layer.
        Each layer is summarised as it comes (never all of them held at once), within
        the limits above; what is left out is said in the answer."""
        maps, vectors, budget = [], [], EXPLAIN_BUDGET
        for index, (name, value) in enumerate(model.layer_outputs(batch)):
            layer = model.layers[index]
            if value.ndim == 4 and layer.kind in IMAGE_LAYERS:
                entry = _feature_map(index, name, layer, value[0], budget)
                budget -= entry.pop("cost")
                maps.append(entry)
            elif value.ndim == 2 and layer.kind != "flatten":
                vectors.append(_vector(index, name, layer.kind, value[0]))
        return {"feature_maps": maps, "vectors": vectors}


def _feature_map(index: int, name: str, layer, maps: np.ndarray, budget: int) -> dict:
    """One layer's maps (C, H, W): its first maps (at most MAX_MAPS, fewer as the
    answer's budget runs low), each averaged down to MAX_MAP_SIDE a side, as whole
    numbers 0..255 over the layer's range low..high: what a picture needs, and three
    times cheaper to send as JSON than floats (this runs on the event loop, which
    shares the CPU with the training). A conv's filters come with the maps shown."""
    channels = maps.shape[0]
    filters = layer.params.get("weight") if layer.kind == "conv" else None
    side, per_map = MAX_MAP_SIDE, _map_cost(maps.shape, MAX_MAP_SIDE, filters)
    shown = min(channels, MAX_MAPS, max(0, budget) // per_map)
    if shown == 0:  # the budget is spent: one small map keeps the layer in view
        shown, side, filters = 1, SPENT_MAP_SIDE, None
        per_map = _map_cost(maps.shape, side, None)
    low, high = float(maps.min()), float(maps.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    small = _average_down(maps[:shown].astype(np.float64), side)
    levels = np.rint((small - low) * scale).clip(0, 255).astype(np.uint8)
    shown_filters = None
    if filters is not None:
        chosen = filters[:shown, :MAX_FILTER_CHANNELS].astype(np.float64)
        shown_filters = np.round(_average_down(chosen, MAX_KERNEL_SIDE), 5).tolist()
    downsampled = small.shape[1:] != maps.shape[1:] or (
        filters is not None and filters.shape[2] > MAX_KERNEL_SIDE)
    return {"layer": index, "name": name, "kind": layer.kind,
            "shape": list(maps.shape), "maps": levels.tolist(), "low": low, "high": high,
            "filters": shown_filters, "shown_maps": shown, "total_maps": channels,
            "downsampled": downsampled, "cost": shown * per_map}


def _map_cost(shape: tuple[int, ...], side: int, filters: np.ndarray | None) -> int:
    """What one map (averaged down to `side`) and its filter cost of the budget."""
    cost = math.prod(-(-n // _shrink_factor(n, side)) for n in shape[1:])
    if filters is not None:
        kernel = -(-filters.shape[2] // _shrink_factor(filters.shape[2], MAX_KERNEL_SIDE))
        cost += FILTER_VALUE_COST * min(filters.shape[1], MAX_FILTER_CHANNELS) * kernel ** 2
    return cost


def _vector(index: int, name: str, kind: str, values: np.ndarray) -> dict:
    shown = values[:MAX_VECTOR_VALUES].astype(np.float64)
    return {"layer": index, "name": name, "kind": kind, "values": np.round(shown, 4).tolist(),
            "total_values": int(values.shape[0])}


def _shrink_factor(side: int, most: int) -> int:
    return -(-side // most)  # ceil: the smallest whole factor that fits `most`


def _average_down(images: np.ndarray, most: int) -> np.ndarray:
    """(..., H, W) -> each side at most `most`, by averaging blocks of f x f values
    (the edge repeated to fill the last block). Unchanged when it already fits."""
    height, width = images.shape[-2:]
    fh, fw = _shrink_factor(height, most), _shrink_factor(width, most)
    if fh == 1 and fw == 1:
        return images
    pad = [(0, 0)] * (images.ndim - 2) + [(0, -height % fh), (0, -width % fw)]
    padded = np.pad(images, pad, mode="edge")
    blocks = padded.reshape(*images.shape[:-2], padded.shape[-2] // fh, fh,
                            padded.shape[-1] // fw, fw)
    return blocks.mean(axis=(-3, -1))


class UnknownRun(LookupError):
    """A prediction asked for a run that has no model here."""


class Predictor:
    """Holds the snapshots and picks the one that answers (see the module doc)."""

    def __init__(self, bundled_path: str | Path | None = None,
                 snapshot_interval: float = SNAPSHOT_INTERVAL) -> None:
        self.bundled_path = Path(bundled_path) if bundled_path else BUNDLED_MODEL
        self.snapshot_interval = snapshot_interval
        self._lock = threading.Lock()  # for the dicts; a snapshot itself is never changed
        self._live: dict[str, Snapshot] = {}  # runs in training, by their first snapshot
        # Runs that ended well and uploaded models, newest last, at most KEEP_ENDED.
        self._ended: dict[str, Snapshot] = {}
        self._uploads = 0
        self._bundled: Snapshot | None = None
        self._bundled_lock = threading.Lock()
        self._bundled_error: str | None = None

    # -- from the runs -------------------------------------------------------------------------

    def offer(self, run_id: str, model: Model, epoch: int, step: int,
              average: WeightAverage | None = None) -> bool:
        """A consistent copy of `model` and of its `average` if the run averages (call
        between batches, from the thread that trains it); see offer_state."""
        averaged = average.named(model) if average is not None else None
        return self.offer_state(run_id, model.spec, model.state(), averaged, epoch, step)

    def offer_state(self, run_id: str, spec: dict, weights: dict, averaged: dict | None,
                    epoch: int, step: int) -> bool:
        """A run's weights (and their average, if it averages) become its answering
        model, the average answering by default. False if the weights are not finite."""
        try:
            raw = Model(spec)
            raw.load_state(weights)  # refuses weights that are not finite
            model = None
            if averaged is not None:
                model = Model(spec)
                model.load_state(averaged)
        except ValueError as exc:
            log.warning("run %s: no snapshot at epoch %s step %s: %s", run_id, epoch, step, exc)
            return False
        description = f"run {run_id} in training: epoch {epoch}, step {step}"
        if model is None:
            snapshot = Snapshot(raw, "training", description, run_id, epoch, step)
        else:
            snapshot = Snapshot(model, "training", description, run_id, epoch, step,
                                weights="averaged", raw=raw)
        with self._lock:
            self._live[run_id] = snapshot  # one assignment: never half-updated
        return True

    def run_ended(self, run_id: str, outcome: str) -> None:
        """The run is over: finished or stopped -> its last snapshot answers for it from
        now on; failed -> its snapshots are dropped (another model answers)."""
        with self._lock:
            live = self._live.pop(run_id, None)
            if live is not None and outcome in ("finished", "stopped"):
                verb = "finished" if outcome == "finished" else "stopped"
                # Same model, same lock: a request may still be using it as `live`.
                self._keep_ended(run_id, dataclasses.replace(
                    live, source="finished",
                    description=f"run {run_id}, {verb} (epoch {live.epoch}, step {live.step})"))

    def _keep_ended(self, key: str, snapshot: Snapshot) -> None:
        self._ended.pop(key, None)
        self._ended[key] = snapshot
        while len(self._ended) > 1 and (
                len(self._ended) > KEEP_ENDED
                or sum(kept.weight_bytes for kept in self._ended.values()) > ENDED_BYTES):
            del self._ended[next(iter(self._ended))]

    def accept_upload(self, model: Model, metadata: dict) -> Snapshot:
        """An uploaded model answers from now on, until a run trains or finishes."""
        preset = metadata.get("preset")
        described = f"uploaded model{f' ({preset})' if isinstance(preset, str) else ''}"
        snapshot = Snapshot(model, "uploaded", described, weights=weights_of(metadata))
        with self._lock:
            self._uploads += 1
            self._keep_ended(f"upload {self._uploads}", snapshot)
        return snapshot

    # -- from the request threads -----------------------------------------------------------

    def current(self, run_id: str | None = None) -> Snapshot:
        """The snapshot that answers: `run_id`'s (UnknownRun if it has none here), or by
        default the newest run in training, else the model of the last run that ended
        (or was uploaded), else the bundled one."""
        with self._lock:
            if run_id is not None:
                snapshot = self._live.get(run_id) or self._ended.get(run_id)
                if snapshot is None:
                    raise UnknownRun(f"run {run_id[:64]!r} has no model here: it has not "
                                     "trained a batch yet, it failed, or it ended too long ago")
                return snapshot
            newest = (next(reversed(self._live.values()), None)
                      or next(reversed(self._ended.values()), None))
        return newest or self.bundled()

    def choices(self) -> list[dict]:
        """The models a drawing can be asked of, newest first: runs in training, runs
        that ended and uploads (the bundled model answers when none is chosen)."""
        with self._lock:
            snapshots = [*self._ended.values(), *self._live.values()]
        return [snapshot.info() for snapshot in reversed(snapshots)]

    def bundled(self) -> Snapshot:
        if self._bundled is None:
            with self._bundled_lock:
                if self._bundled is None:
                    self._bundled = self._load_bundled()
        return self._bundled

    def _load_bundled(self) -> Snapshot:
        try:
            model, metadata = Model.load_with_metadata(self.bundled_path)
        except (ModelFileError, OSError) as exc:
            log.error("cannot load the bundled model: %s", exc)
            raise NoModel(f"no model to answer yet: start a run, or restore the bundled "
                          f"model ({exc}; `make bundled-model` makes it)") from None
        accuracy = metadata.get("test_accuracy")  # written by `cnn-live train --save`
        described = f"bundled {metadata.get('preset', 'pretrained')} model"
        if isinstance(accuracy, (int, float)) and math.isfinite(accuracy):
            described += f" ({100 * accuracy:.2f}% on the MNIST test images)"
        log.info("loaded the bundled model from %s", self.bundled_path)
        return Snapshot(model, "bundled", described, weights=weights_of(metadata))


def weights_of(metadata: dict) -> str:
    """Which weights a model file holds, as its metadata says ("raw" if it does not)."""
    return "averaged" if metadata.get("weights") == "averaged" else "raw"
