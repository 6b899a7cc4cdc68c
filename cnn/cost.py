"""What a network costs before it is built: parameters, layers, multiply-adds per
image and the values a batch keeps in memory, worked out from its spec alone (no
arrays are made), and the limits a server holds them to.

A server that builds whatever it is sent can be made to eat its memory and CPU by a
few hundred bytes of JSON (20 dense layers of 4096 units: 1.4 GB and 18 s to
initialise). Every way a network reaches the server (a run's settings, an uploaded
model) is checked here first, against one set of limits.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping

import numpy as np

from .model import SpecError, normalize_spec, spec_shapes

BYTES_PER_VALUE = 4  # float32 throughout
# Copies of the weights a training run holds: the weights, their gradients, the
# optimiser's state (Adam: two moments; SGD: one velocity), and the snapshots that
# answer predictions while it trains and after it ends.
WEIGHT_COPIES = {"adam": 6, "sgd": 5}
# Per image of a batch, each layer keeps its output and its gradient, and a
# convolution its unfolded input (im2col) and that input's gradient.
VALUES_KEPT_PER_OUTPUT = 2
VALUES_KEPT_PER_UNFOLDED_INPUT = 2
MNIST_PIXELS = 28 * 28


class LimitError(SpecError):
    """A network or run over one of the server's limits; the message names the limit
    (its environment variable) and by how much."""


@dataclass(frozen=True)
class ModelCost:
    layers: int
    parameters: int
    multiply_adds: int            # per image, forward
    values_per_image: int         # kept per image of a batch while training
    largest_output: int           # values of the largest layer output, per image

    def training_bytes(self, batch_size: int, optimizer: str, images: int) -> int:
        """An estimate of a training run's memory: its weights and their copies, one
        batch's activations, and its share of MNIST as float32 (training + test)."""
        weights = self.parameters * WEIGHT_COPIES.get(optimizer, max(WEIGHT_COPIES.values()))
        batch = batch_size * self.values_per_image
        data = images * MNIST_PIXELS
        return (weights + batch + data) * BYTES_PER_VALUE


@dataclass(frozen=True)
class LayerCost:
    """One layer's share of a network's cost (see ModelCost)."""
    type: str
    output_shape: tuple[int, ...]
    parameters: int
    multiply_adds: int
    values_per_image: int


def layer_costs(spec: dict) -> list[LayerCost]:
    """Each layer's output shape and cost, from a spec (normalised or not); SpecError
    if it cannot be built."""
    spec = normalize_spec(spec)
    shapes = spec_shapes(spec)
    inputs = [tuple(spec["input"]), *shapes[:-1]]
    costs = []
    for entry, shape_in, shape_out in zip(spec["layers"], inputs, shapes):
        outputs = math.prod(shape_out)
        parameters = multiply_adds = 0
        kept = VALUES_KEPT_PER_OUTPUT * outputs
        if entry["type"] == "conv":
            fan_in = shape_in[0] * entry["kernel"] ** 2
            parameters = shape_out[0] * (fan_in + 1)
            multiply_adds = outputs * fan_in
            kept += VALUES_KEPT_PER_UNFOLDED_INPUT * fan_in * shape_out[1] * shape_out[2]
        elif entry["type"] == "dense":
            parameters = (shape_in[0] + 1) * shape_out[0]
            multiply_adds = shape_in[0] * shape_out[0]
        costs.append(LayerCost(entry["type"], shape_out, parameters, multiply_adds, kept))
    return costs


def spec_cost(spec: dict) -> ModelCost:
    """The cost of a spec (normalised or not); SpecError if it cannot be built."""
    costs = layer_costs(spec)
    return ModelCost(len(costs), sum(c.parameters for c in costs),
                     sum(c.multiply_adds for c in costs), sum(c.values_per_image for c in costs),
                     max(math.prod(c.output_shape) for c in costs))


# Each limit's environment variable, and what its number is counted in.
LIMIT_VARIABLES = {"layers": ("CNN_LIVE_MAX_LAYERS", 1),
                   "parameters": ("CNN_LIVE_MAX_PARAMETERS", 1),
                   "multiply_adds": ("CNN_LIVE_MAX_MULTIPLY_ADDS", 1),
                   "values_per_image": ("CNN_LIVE_MAX_VALUES_PER_IMAGE", 1),
                   "run_memory_bytes": ("CNN_LIVE_MAX_RUN_MEMORY_MB", 2 ** 20),
                   "run_seconds": ("CNN_LIVE_MAX_RUN_MINUTES", 60)}


@dataclass(frozen=True)
class ModelLimits:
    """What one network may cost on a server. The defaults are some 40 times the
    `default` preset's cost or more, and keep a run well inside a small machine."""
    layers: int = 64                      # CNN_LIVE_MAX_LAYERS
    parameters: int = 5_000_000           # CNN_LIVE_MAX_PARAMETERS (20 MB of float32)
    multiply_adds: int = 50_000_000       # CNN_LIVE_MAX_MULTIPLY_ADDS, per image
    # CNN_LIVE_MAX_VALUES_PER_IMAGE: what one image costs in memory, whatever the
    # multiply-adds (a 1x1 conv of 512 filters padded by 64, then relus: 12 M multiply-
    # adds, but 100 M values and 200 MB a layer for one drawing). 8 M: 32 MB of float32,
    # some 90 times the `default` preset's 86,516.
    values_per_image: int = 8_000_000
    run_memory_bytes: int = 1024 ** 3     # CNN_LIVE_MAX_RUN_MEMORY_MB
    # CNN_LIVE_MAX_RUN_MINUTES: the estimated time of a whole run (epochs x the estimate
    # of an epoch, see epoch_seconds) on this machine. 4 hours: the `default` preset's
    # 8 epochs take about 2 minutes on 2 cores; a run of a day would hold one of the
    # machine's two workers all that time.
    run_seconds: int = 4 * 3600

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "ModelLimits":
        """The limits, each default replaced by its environment variable when set: the
        server and `cnn-live evaluate` read them the same way. ValueError for junk."""
        values = {}
        for field in fields(cls):
            name, scale = LIMIT_VARIABLES[field.name]
            raw = environ.get(name, "").strip()
            if not raw:
                continue
            if not raw.isdigit() or int(raw) < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, got {raw!r}")
            values[field.name] = int(raw) * scale
        return cls(**values)

    def check_model(self, spec: dict) -> ModelCost:
        """The spec's cost, or LimitError naming the first limit it passes and the layer
        where it passes it (SpecError if it is not a spec at all)."""
        costs = layer_costs(spec)
        if len(costs) > self.layers:
            raise LimitError(f"layer {self.layers} ({costs[self.layers].type}): the network "
                             f"has {len(costs):,} layers, over the limit of {self.layers:,} "
                             f"(CNN_LIVE_MAX_LAYERS)", self.layers, costs[self.layers].type)
        for name, field, limit, variable in (
                ("parameters", "parameters", self.parameters, "CNN_LIVE_MAX_PARAMETERS"),
                ("multiply-adds per image", "multiply_adds", self.multiply_adds,
                 "CNN_LIVE_MAX_MULTIPLY_ADDS"),
                ("values kept per image (outputs and unfolded inputs, for training)",
                 "values_per_image", self.values_per_image, "CNN_LIVE_MAX_VALUES_PER_IMAGE")):
            total = sum(getattr(cost, field) for cost in costs)
            if total <= limit:
                continue
            reached, index = 0, 0
            for index, cost in enumerate(costs):  # the layer that takes it over
                reached += getattr(cost, field)
                if reached > limit:
                    break
            raise LimitError(f"layer {index} ({costs[index].type}): the network has "
                             f"{total:,} {name}, over the limit of {limit:,} ({variable}); "
                             f"it passes the limit at this layer", index, costs[index].type)
        return spec_cost(spec)

    def check_run(self, spec: dict, batch_size: int, optimizer: str, images: int,
                  config=None, calibration: "Calibration | None" = None) -> ModelCost:
        """check_model, the run's estimated memory against run_memory_bytes and, given
        its training config and this machine's calibration, its estimated time
        against run_seconds."""
        cost = self.check_model(spec)
        needed = cost.training_bytes(batch_size, optimizer, images)
        if needed > self.run_memory_bytes:
            mb = 1024 ** 2
            raise LimitError(f"this run would need about {needed // mb:,} MB of memory "
                             f"(weights, a batch of {batch_size} and {images:,} images), over "
                             f"the limit of {self.run_memory_bytes // mb:,} MB "
                             f"(CNN_LIVE_MAX_RUN_MEMORY_MB): use a smaller batch or network")
        if config is not None and calibration is not None:
            self.check_time(spec, config, calibration)
        return cost

    def check_time(self, spec: dict, config, calibration: "Calibration") -> float:
        """The run's estimated seconds per epoch, or LimitError if all its epochs
        would take longer than run_seconds, naming the layer that takes the most."""
        per_epoch = config_epoch_seconds(spec, config, calibration)
        total = per_epoch * config.epochs
        if total > self.run_seconds:
            index, kind = costliest_layer(spec, calibration, config.batch_size)
            raise LimitError(f"layer {index} ({kind}): this run would take about "
                             f"{_minutes(total)} ({config.epochs:,} epochs of "
                             f"{_minutes(per_epoch)}), over the limit of "
                             f"{self.run_seconds // 60:,} minutes (CNN_LIVE_MAX_RUN_MINUTES); "
                             f"this layer takes the most time: make it smaller, or train "
                             f"fewer epochs or images", index, kind)
        return per_epoch


    def check_training(self, spec: dict, config, calibration=None) -> ModelCost:
        """Everything a run of `spec` with a train.TrainConfig on MNIST is held to: the
        spec fits MNIST, check_run's limits and, given `calibration` (a Calibration or a
        function that returns one, called only for a run within every other limit),
        its estimated time. The server's runs and checks and `cnn-live train --spec`
        and `spec --check` all come here, so that they refuse with the same words."""
        check_fits_mnist(spec)
        images = (min(config.train_size or MNIST_TRAIN, MNIST_TRAIN)
                  + min(config.test_size or MNIST_TEST, MNIST_TEST))
        cost = self.check_run(spec, config.batch_size, config.optimizer, images)
        if callable(calibration):
            calibration = calibration()
        if calibration is not None:
            self.check_time(spec, config, calibration)
        return cost


MNIST_TRAIN, MNIST_TEST = 60_000, 10_000  # images in MNIST's two sets
MNIST_INPUT, MNIST_CLASSES = [1, 28, 28], 10


def check_fits_mnist(spec: dict) -> None:
    """SpecError unless the spec takes MNIST's images and scores at least its 10 classes
    (naming the last layer for too few)."""
    spec = normalize_spec(spec)
    if list(spec["input"]) != MNIST_INPUT:
        raise SpecError(f"'input' must be {MNIST_INPUT} to train on MNIST's 28x28 grey "
                        f"images, got {spec['input']}")
    classes = spec_shapes(spec)[-1][0]
    if classes < MNIST_CLASSES:
        index = len(spec["layers"]) - 1
        kind = spec["layers"][index]["type"]
        raise SpecError(f"layer {index} ({kind}): the network ends in {classes} class "
                        f"scores; MNIST has {MNIST_CLASSES} classes (make the last dense "
                        f"layer {MNIST_CLASSES} units)", index, kind)


def _minutes(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:,.0f} minutes"
    return f"{seconds / 3600:,.1f} hours"


# -- time ------------------------------------------------------------------------------
#
# How long an epoch takes is worked out from the spec like its cost, with seconds per
# unit of work that calibrate() measures once on this machine by timing the engine's
# own layers, optimiser, average and augmentation on small batches (about half a
# second). Each part costs a fixed time per batch (Python and NumPy calls) plus a
# time per image proportional to its work: multiply-adds and values moved for a
# convolution, multiply-adds for a dense layer, values for the others. A batch of one
# image (the `seed` preset) is all fixed cost; a batch of 64 nearly all work.

CALIBRATION_BATCH = 32  # images per timed batch (the per-image part); 1 gives the fixed part


@dataclass(frozen=True)
class PartTime:
    """Seconds one part of the work takes on a batch: `call` per batch, plus per image
    `per_unit` times its units of work (and for a convolution `per_value` times the
    values its unfolding moves)."""
    call: float = 0.0
    per_unit: float = 0.0
    per_value: float = 0.0
    per_batch_unit: float = 0.0  # a dense layer's weight gradient: once a batch, whatever its size

    def seconds(self, images: int, units: float = 1.0, values: float = 0.0) -> float:
        return (self.call + self.per_batch_unit * units
                + images * (self.per_unit * units + self.per_value * values))


CALIBRATED_PARTS = ("conv", "conv_backward", "dense", "dense_backward", "relu",
                    "relu_backward", "curve", "curve_backward", "maxpool", "maxpool_backward",
                    "flatten", "flatten_backward", "loss", "step", "epoch", "adam", "sgd",
                    "average", "augment",
                    "stroke")


@dataclass(frozen=True)
class Calibration:
    """This machine's seconds for each part of a training step (see PartTime): a layer
    kind's forward ("conv") and backward ("conv_backward"), "curve" for sigmoid and
    tanh; "loss" per batch and image; "step", the trainer's own work per batch (slicing,
    scaling, checks, events) and per image, "epoch" its fixed work per epoch; "adam",
    "sgd" and "average" per parameter array (call) and per parameter (per_unit); "augment" per batch and image, "stroke" its
    extra per image. `first_backward`: the share of a backward left for the first layer
    with weights, which computes no gradient for its input."""
    parts: dict
    first_backward: float = 0.6
    # What real training epochs of two reference networks took, against the sum of
    # their parts: the fixed (per call) and the per-image seconds are multiplied by
    # these (a layer timed alone finds its data in the cache; in a network it does not).
    fixed_scale: float = 1.0
    work_scale: float = 1.0
    measured_seconds: float = 0.0  # how long the calibration itself took

    def part(self, name: str) -> PartTime:
        return self.parts[name]

    def split(self) -> tuple["Calibration", "Calibration"]:
        """This calibration's fixed parts alone, and its per-image parts alone."""
        fixed = {name: PartTime(p.call) for name, p in self.parts.items()}
        work = {name: PartTime(0.0, p.per_unit, p.per_value, p.per_batch_unit)
                for name, p in self.parts.items()}
        return Calibration(fixed, self.first_backward), Calibration(work, self.first_backward)

    def to_dict(self) -> dict:
        return {"parts": {name: [p.call, p.per_unit, p.per_value, p.per_batch_unit]
                          for name, p in self.parts.items()},
                "first_backward": self.first_backward, "fixed_scale": self.fixed_scale,
                "work_scale": self.work_scale, "measured_seconds": self.measured_seconds}

    @classmethod
    def from_dict(cls, value: dict) -> "Calibration":
        """From to_dict()'s JSON (CNN_LIVE_CALIBRATION); ValueError if it is not one."""
        try:
            parts = {name: PartTime(*(float(x) for x in value["parts"][name]))
                     for name in CALIBRATED_PARTS}
            first = float(value.get("first_backward", 0.6))
            scales = [float(value.get(name, 1.0)) for name in ("fixed_scale", "work_scale")]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a calibration is {{\"parts\": {{name: [call, per_unit, "
                             f"per_value, per_batch_unit]}}}} with every part of {list(CALIBRATED_PARTS)}: "
                             f"{exc}") from None
        if not all(math.isfinite(x) and x >= 0 for p in parts.values()
                   for x in (p.call, p.per_unit, p.per_value, p.per_batch_unit)) \
                or not all(math.isfinite(x) and x > 0 for x in (first, *scales)):
            raise ValueError("a calibration's seconds must be finite and not negative")
        return cls(parts, first, *scales)


@dataclass(frozen=True)
class LayerWork:
    """One layer's share of a step, as the engine runs it: its kind (the calibrated
    part), units and values of work per image, whether it runs backward and whether
    that backward skips the gradient of its input (the first layer with weights)."""
    part: str
    units: float
    values: float = 0.0
    call_scale: float = 1.0
    backward: bool = True
    first_weighted: bool = False


def layer_work(spec: dict) -> list[LayerWork]:
    """What each layer of a spec costs per image, in the engine's run order: an
    activation just before a max-pool runs after it, on the pooled values (model.py);
    layers before the first with weights run no backward."""
    spec = normalize_spec(spec)
    shapes = spec_shapes(spec)
    inputs = [tuple(spec["input"]), *shapes[:-1]]
    entries = spec["layers"]
    work, weighted_seen = [], False
    for index, (entry, shape_in, shape_out) in enumerate(zip(entries, inputs, shapes)):
        kind = entry["type"]
        before_pool = (kind in ("relu", "sigmoid", "tanh") and index + 1 < len(entries)
                       and entries[index + 1]["type"] == "maxpool")
        values_in = math.prod(shapes[index + 1] if before_pool else shape_in)
        first = kind in ("conv", "dense") and not weighted_seen
        backward = weighted_seen or first
        if kind == "conv":
            c, h, w = shape_in
            f, ho, wo = shape_out
            k, stride, pad = entry["kernel"], entry["stride"], entry["padding"]
            row = w + 2 * pad if stride == 1 else wo  # stride 1 computes whole padded rows
            moved = (c * k * k + f) * ho * row
            work.append(LayerWork("conv", f * ho * wo * c * k * k, moved, k * k / 9,
                                  backward, first))
        elif kind == "dense":
            work.append(LayerWork("dense", shape_in[0] * shape_out[0], 0.0, 1.0, backward, first))
        elif kind == "maxpool":
            work.append(LayerWork("maxpool", math.prod(shape_in), backward=backward))
        elif kind == "flatten":
            work.append(LayerWork("flatten", 0.0, backward=backward))
        else:
            work.append(LayerWork("relu" if kind == "relu" else "curve", values_in,
                                  backward=backward))
        weighted_seen = weighted_seen or first
    return work


def costliest_layer(spec: dict, calibration: Calibration, batch_size: int) -> tuple[int, str]:
    """(index, type) of the layer whose training step takes the longest."""
    spec = normalize_spec(spec)
    work = layer_work(spec)
    seconds = [_forward_seconds([w], calibration, batch_size)
               + _backward_seconds([w], calibration, batch_size) for w in work]
    index = max(range(len(work)), key=seconds.__getitem__)
    return index, spec["layers"][index]["type"]


def _forward_seconds(work: list[LayerWork], calibration: Calibration, images: int) -> float:
    total = 0.0
    for layer in work:
        part = calibration.part(layer.part)
        total += (part.seconds(images, layer.units, layer.values)
                  + part.call * (layer.call_scale - 1))
    return total


def _backward_seconds(work: list[LayerWork], calibration: Calibration, images: int) -> float:
    total = 0.0
    for layer in work:
        if not layer.backward:
            continue
        part = calibration.part(layer.part + "_backward")
        seconds = (part.seconds(images, layer.units, layer.values)
                   + part.call * (layer.call_scale - 1))
        total += seconds * (calibration.first_backward if layer.first_weighted else 1.0)
    return total


def step_seconds(spec: dict, calibration: Calibration, images: int, optimizer: str = "adam",
                 augment: bool = False, stroke: bool = False, average: bool = False) -> float:
    """Seconds of one training step on a batch of `images`: forward, loss, backward,
    the optimiser's update (and the average's), augmentation, the trainer's own work."""
    spec = normalize_spec(spec)
    work = layer_work(spec)
    cost = spec_cost(spec)
    arrays = 2 * sum(layer.part in ("conv", "dense") for layer in work)
    classes = spec_shapes(spec)[-1][0]
    seconds = (_forward_seconds(work, calibration, images)
               + _backward_seconds(work, calibration, images)
               + calibration.part("loss").seconds(images, classes)
               + calibration.part("step").seconds(images)
               + calibration.part(optimizer if optimizer in ("adam", "sgd") else "adam")
               .seconds(1, cost.parameters) + (arrays - 1) * calibration.part("adam").call)
    if average:
        seconds += calibration.part("average").seconds(1, cost.parameters) \
            + (arrays - 1) * calibration.part("average").call
    if augment:
        seconds += calibration.part("augment").seconds(images)
    if stroke:
        seconds += images * calibration.part("stroke").per_unit
    return seconds


def epoch_seconds(spec: dict, calibration: Calibration, **options) -> float:
    """Estimated seconds of one epoch: its training steps and its test evaluation
    (options: those of _parts_seconds), the fixed and per-image parts each scaled as
    the calibration's reference epochs said."""
    fixed, work = calibration.split()
    return (calibration.fixed_scale * _parts_seconds(spec, fixed, **options)
            + calibration.work_scale * _parts_seconds(spec, work, **options))


def _parts_seconds(spec: dict, calibration: Calibration, *, batch_size: int,
                   train_images: int, test_images: int, optimizer: str = "adam",
                   augment: bool = False, stroke: bool = False, average: bool = False,
                   evaluation_batch: int = 1000) -> float:
    """The sum of the parts of one epoch, as the calibration times them."""
    options = dict(optimizer=optimizer, augment=augment, stroke=stroke, average=average)
    full, rest = divmod(train_images, batch_size)
    seconds = full * step_seconds(spec, calibration, batch_size, **options)
    if rest:
        seconds += step_seconds(spec, calibration, rest, **options)
    spec = normalize_spec(spec)
    work = layer_work(spec)
    classes = spec_shapes(spec)[-1][0]
    chunks, last = divmod(test_images, evaluation_batch)
    for size, count in ((evaluation_batch, chunks), (last, 1 if last else 0)):
        if count:
            seconds += count * (_forward_seconds(work, calibration, size)
                                + calibration.part("loss").seconds(size, classes))
    return seconds + calibration.part("epoch").call


def spec_report(spec: dict, config, calibration: Calibration) -> dict:
    """What POST /api/specs/check and `cnn-live spec --check` answer for a spec that
    passed the checks: each layer's type, output shape, parameters and multiply-adds
    per image, the totals, and the estimated seconds of an epoch and of the run with
    the training config (a train.TrainConfig)."""
    spec = normalize_spec(spec)
    costs = layer_costs(spec)
    per_epoch = config_epoch_seconds(spec, config, calibration)
    return {"spec": spec,
            "layers": [{"type": c.type, "output_shape": list(c.output_shape),
                        "parameters": c.parameters, "multiply_adds": c.multiply_adds}
                       for c in costs],
            "parameters": sum(c.parameters for c in costs),
            "multiply_adds": sum(c.multiply_adds for c in costs),
            "seconds_per_epoch": per_epoch, "run_seconds": per_epoch * config.epochs,
            "epochs": config.epochs}


def config_epoch_seconds(spec: dict, config, calibration: Calibration,
                         train_total: int = 60_000, test_total: int = 10_000) -> float:
    """epoch_seconds for a training config (a train.TrainConfig) on MNIST."""
    from .train import evaluation_batch_size  # train.py imports this module
    return epoch_seconds(
        spec, calibration, batch_size=config.batch_size,
        train_images=min(config.train_size or train_total, train_total),
        test_images=min(config.test_size or test_total, test_total),
        optimizer=config.optimizer,
        augment=bool(config.augment_shift or config.augment_scale or config.augment_rotation
                     or config.augment_stroke),
        stroke=bool(config.augment_stroke), average=bool(config.average_decay),
        evaluation_batch=evaluation_batch_size(spec))


# -- measuring -------------------------------------------------------------------------


def _best_seconds(action, repeats: int = 5) -> float:
    """The fastest of a few timings of `action` after a warm-up: the machine's speed,
    not its other work's interruptions."""
    action()
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def _linear(small: float, large: float, images: int) -> tuple[float, float]:
    """(call, per image) from the seconds of a batch of 1 and of `images`."""
    per_image = max(large - small, 0.0) / (images - 1)
    return max(small - per_image, 0.0), per_image


def _layer_seconds(layer, x) -> tuple[float, float]:
    """Forward and backward seconds of an engine layer on input x."""
    grad = np.ones_like(layer.forward(x))
    forward = _best_seconds(lambda: layer.forward(x))
    layer.forward(x)
    return forward, _best_seconds(lambda: layer.backward(grad))


def _layer_parts(make_layer, make_input) -> tuple[PartTime, PartTime]:
    """Forward and backward PartTime (call, per image) of a layer, from a batch of 1
    and one of CALIBRATION_BATCH."""
    f1, b1 = _layer_seconds(make_layer(), make_input(1))
    fn, bn = _layer_seconds(make_layer(), make_input(CALIBRATION_BATCH))
    return (PartTime(*_linear(f1, fn, CALIBRATION_BATCH)),
            PartTime(*_linear(b1, bn, CALIBRATION_BATCH)))


def calibrate() -> Calibration:
    """Time the engine's parts on small batches (well under a second in all) and
    return this machine's Calibration. Run it with the BLAS threads training uses."""
    from .augment import Augmentation, augment
    from .average import WeightAverage
    from .layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Sigmoid, Tanh
    from .losses import SoftmaxCrossEntropy
    from .optim import OPTIMIZERS

    started = time.perf_counter()
    rng = np.random.default_rng(0)
    n = CALIBRATION_BATCH
    parts: dict[str, PartTime] = {}

    def images(shape):  # the engine's layout: (C, N, H, W)
        return lambda count: rng.standard_normal((shape[0], count, *shape[1:]),
                                                 dtype=np.float32)

    def conv(channels, filters, needs_input_grad=True):
        def make():
            layer = Conv2D(channels, filters, 3, 1, 1)
            layer.params["weight"][...] = rng.standard_normal(layer.params["weight"].shape)
            layer.needs_input_grad = needs_input_grad
            return layer
        return make

    # Convolutions in two shapes, one copy-heavy (one channel in, as a first layer),
    # one arithmetic-heavy: their per-image seconds give the seconds per multiply-add
    # and per value moved (see layer_work).
    measured = []
    for (c, h, w), filters in (((1, 28, 28), 8), ((8, 14, 14), 16)):
        macs, moved = filters * h * w * c * 9, (c * 9 + filters) * h * (w + 2)
        measured.append((macs, moved, _layer_parts(conv(c, filters), images((c, h, w)))))
    for position, name in ((0, "conv"), (1, "conv_backward")):
        (m1, v1, t1), (m2, v2, t2) = measured
        per_mac, per_value = _solve_two(m1, v1, t1[position].per_unit,
                                        m2, v2, t2[position].per_unit)
        parts[name] = PartTime((t1[position].call + t2[position].call) / 2, per_mac, per_value)
    batch = images((8, 14, 14))(n)
    without_input = _layer_seconds(conv(8, 16, needs_input_grad=False)(), batch)[1]
    with_input = _layer_seconds(conv(8, 16)(), batch)[1]
    first_backward = min(max(without_input / max(with_input, 1e-12), 0.2), 1.0)

    # Dense layers in two sizes: a small one's batch of 1 is the fixed cost; a large
    # one's, less that, the weight gradient's cost per weight (written once a batch).
    def dense(fan_in, units):
        def make():
            layer = Dense(fan_in, units)
            layer.params["weight"][...] = rng.standard_normal((fan_in, units)) * 0.01
            return layer
        return make
    vectors = lambda fan_in: lambda count: rng.standard_normal((count, fan_in), dtype=np.float32)
    small = _layer_parts(dense(16, 10), vectors(16))
    large = _layer_parts(dense(784, 128), vectors(784))
    weights = 784 * 128
    for position, name in ((0, "dense"), (1, "dense_backward")):
        call = small[position].call
        per_batch = max(large[position].call - call, 0.0) / weights
        parts[name] = PartTime(call, large[position].per_unit / weights,
                               per_batch_unit=per_batch)

    shape = (8, 28, 28)
    for name, makers in (("relu", (ReLU,)), ("curve", (Sigmoid, Tanh)),
                         ("maxpool", (MaxPool2D,))):
        times = [_layer_parts(make, images(shape)) for make in makers]
        for position, suffix in ((0, ""), (1, "_backward")):
            call = sum(t[position].call for t in times) / len(times)
            unit = sum(t[position].per_unit for t in times) / len(times) / math.prod(shape)
            parts[name + suffix] = PartTime(call, unit)
    forward, backward = _layer_parts(Flatten, images((16, 7, 7)))
    parts["flatten"], parts["flatten_backward"] = PartTime(forward.call), PartTime(backward.call)

    loss = SoftmaxCrossEntropy()
    labels = rng.integers(0, 10, n)
    small = _best_seconds(lambda: loss(np.ones((1, 10), np.float32), labels[:1]))
    large = _best_seconds(lambda: loss(np.ones((n, 10), np.float32), labels))
    call, per_image = _linear(small, large, n)
    parts["loss"] = PartTime(call, per_image / 10)

    for name in ("adam", "sgd"):
        parts[name] = _per_parameter(rng, lambda params, name=name:
                                     _update_action(OPTIMIZERS[name](learning_rate=1e-6),
                                                    params))
    parts["average"] = _per_parameter(
        rng, lambda params: (lambda average=WeightAverage(params, 0.99): average.update(params)))

    pictures = rng.random((n, 1, 28, 28), dtype=np.float32)
    settings = Augmentation(2.0, 0.1, 10.0)
    small = _best_seconds(lambda: augment(pictures[:1], rng, settings))
    large = _best_seconds(lambda: augment(pictures, rng, settings))
    parts["augment"] = PartTime(*_linear(small, large, n))
    stroked = _best_seconds(lambda: augment(pictures, rng, Augmentation(2.0, 0.1, 10.0, 0.5)))
    parts["stroke"] = PartTime(0.0, max(stroked - large, 0.0) / n)

    partial = Calibration({**parts, "step": PartTime(), "epoch": PartTime()}, first_backward)
    parts["step"], parts["epoch"] = _trainer_parts(partial, rng)
    fixed_scale, work_scale = _reference_scales(Calibration(parts, first_backward), rng)
    return Calibration(parts, first_backward, fixed_scale, work_scale,
                       time.perf_counter() - started)


def _solve_two(a1, b1, s1, a2, b2, s2) -> tuple[float, float]:
    """x, y >= 0 with a1 x + b1 y = s1 and a2 x + b2 y = s2 (as near as they allow)."""
    det = a1 * b2 - a2 * b1
    if det:
        x, y = (s1 * b2 - s2 * b1) / det, (a1 * s2 - a2 * s1) / det
        if x >= 0 and y >= 0:
            return x, y
    # Noise made one negative: the one-term fit that explains both best.
    only_x = (a1 * s1 + a2 * s2) / (a1 * a1 + a2 * a2)
    only_y = (b1 * s1 + b2 * s2) / (b1 * b1 + b2 * b2)
    error_x = (a1 * only_x - s1) ** 2 + (a2 * only_x - s2) ** 2
    error_y = (b1 * only_y - s1) ** 2 + (b2 * only_y - s2) ** 2
    return (only_x, 0.0) if error_x <= error_y else (0.0, only_y)


def _update_action(optimizer, params):
    grads = [np.full_like(param, 1e-3) for param in params]

    def action():
        for grad in grads:  # train_step checks that every gradient is finite
            np.isfinite(grad).all()
        optimizer.step(params, grads)
    return action


def _per_parameter(rng, make_action) -> PartTime:
    """(call per array, per parameter) of an update of 8 parameter arrays."""
    arrays, size = 8, 25_000
    tiny = [np.zeros(4, np.float32) for _ in range(arrays)]
    big = [rng.standard_normal(size, dtype=np.float32) for _ in range(arrays)]
    small, large = _best_seconds(make_action(tiny)), _best_seconds(make_action(big))
    per_parameter = max(large - small, 0.0) / (arrays * (size - 4))
    return PartTime(max(small / arrays - 4 * per_parameter, 0.0), per_parameter)


# The reference epochs: a convolutional network like `default`'s on batches of 32 (the
# per-image work decides), and `seed`'s on single images (the fixed costs decide).
REFERENCE_EPOCHS = (
    ({"input": [1, 28, 28],
      "layers": [{"type": "conv", "filters": 8, "kernel": 3, "padding": 1}, {"type": "relu"},
                 {"type": "maxpool", "size": 2},
                 {"type": "conv", "filters": 16, "kernel": 3, "padding": 1}, {"type": "relu"},
                 {"type": "maxpool", "size": 2}, {"type": "flatten"},
                 {"type": "dense", "units": 64}, {"type": "relu"},
                 {"type": "dense", "units": 10}]}, "adam", CALIBRATION_BATCH, 8),
    ({"input": [1, 28, 28],
      "layers": [{"type": "conv", "filters": 5, "kernel": 3}, {"type": "sigmoid"},
                 {"type": "maxpool", "size": 2}, {"type": "flatten"},
                 {"type": "dense", "units": 25}, {"type": "sigmoid"},
                 {"type": "dense", "units": 10}, {"type": "sigmoid"}]}, "sgd", 1, 100),
)


def _trainer_epoch_seconds(spec, optimizer: str, batch_size: int, size: int, rng) -> float:
    """The fastest of three real epochs of `size` random images (10 to test)."""
    from .model import Model
    from .train import Dataset, TrainConfig, Trainer

    pixels = rng.integers(0, 256, (size, 28, 28), np.uint8)
    labels = rng.integers(0, 10, size)
    data = Dataset(pixels, labels, pixels[:10], labels[:10])
    config = TrainConfig(epochs=1, batch_size=batch_size, optimizer=optimizer,
                         learning_rate=1e-3, momentum=0.0)
    seconds = []
    for _ in range(3):
        Trainer(Model(spec), config, data, lambda event: seconds.append(event["seconds"])
                if event["type"] == "epoch" else None).run()
    return min(seconds)


def _reference_scales(calibration: Calibration, rng) -> tuple[float, float]:
    """(fixed_scale, work_scale): what makes the estimates of the REFERENCE_EPOCHS
    match their real epochs (each scale kept within 0.5..4)."""
    fixed, work = calibration.split()
    rows = []
    for spec, optimizer, batch_size, steps in REFERENCE_EPOCHS:
        size = steps * batch_size
        options = dict(batch_size=batch_size, train_images=size, test_images=10,
                       optimizer=optimizer)
        rows.append((_parts_seconds(spec, fixed, **options),
                     _parts_seconds(spec, work, **options),
                     _trainer_epoch_seconds(spec, optimizer, batch_size, size, rng)))
    (f1, w1, t1), (f2, w2, t2) = rows
    x, y = _solve_two(f1, w1, t1, f2, w2, t2)
    clamp = lambda value: min(max(value, 0.5), 4.0)  # noqa: E731
    return clamp(x or 1.0), clamp(y or 1.0)


TRAINER_RUNS = ((1, 200), (1, 50), (CALIBRATION_BATCH, 20 * CALIBRATION_BATCH))


def _trainer_parts(partial: Calibration, rng) -> tuple[PartTime, PartTime]:
    """The trainer's own seconds per step and image ("step") and per epoch ("epoch"):
    real epochs of a tiny network (flatten, dense 10) on random images, less what
    `partial` (every other part) says its layers, loss and update took."""
    from .model import Model
    from .train import Dataset, TrainConfig, Trainer

    spec = {"input": [1, 28, 28], "layers": [{"type": "flatten"}, {"type": "dense", "units": 10}]}
    pixels = rng.integers(0, 256, (max(size for _, size in TRAINER_RUNS), 28, 28), np.uint8)
    labels = rng.integers(0, 10, len(pixels))
    residuals = []
    for batch_size, size in TRAINER_RUNS:
        config = TrainConfig(epochs=1, batch_size=batch_size, optimizer="sgd",
                             learning_rate=1e-3, momentum=0.0)
        data = Dataset(pixels[:size], labels[:size], pixels[:10], labels[:10])
        seconds = []

        def one_epoch():
            trainer = Trainer(Model(spec), config, data,
                              lambda event: seconds.append(event["seconds"])
                              if event["type"] == "epoch" else None)
            trainer.run()
        _best_seconds(one_epoch, repeats=3)
        estimate = _parts_seconds(spec, partial, batch_size=batch_size, train_images=size,
                                 test_images=10, optimizer="sgd")
        residuals.append(min(seconds[1:]) - estimate)
    (b1, n1), (_, n2), (b3, n3) = TRAINER_RUNS
    r1, r2, r3 = residuals
    per_step = max((r1 - r2) / (n1 - n2), 0.0)  # call + one image, at batch size 1
    epoch = max(r2 - n2 * per_step, 0.0)
    steps3 = n3 // b3
    per_image = max((r3 - epoch - steps3 * per_step) / (n3 - steps3), 0.0)
    return PartTime(max(per_step - per_image, 0.0), per_image), PartTime(epoch)


# Figures calibrate() measured on a 2-core AVX-512 machine (1 BLAS thread, under load
# average 5): estimates that do not depend on the machine (tests), and the fallback
# when a measurement fails.
REFERENCE_CALIBRATION = Calibration.from_dict({
    "parts": {
        "conv": [1.965e-05, 2.979e-12, 6.723e-10, 0.0],
        "conv_backward": [1.565e-05, 8.758e-11, 1.462e-09, 0.0],
        "dense": [2.397e-06, 2.754e-11, 0.0, 2.129e-11],
        "dense_backward": [4.299e-06, 1.894e-11, 0.0, 1.673e-09],
        "relu": [2.608e-06, 4.256e-10, 0.0, 0.0],
        "relu_backward": [3.743e-06, 8.606e-10, 0.0, 0.0],
        "curve": [7.687e-06, 8.177e-10, 0.0, 0.0],
        "curve_backward": [2.246e-06, 1.21e-09, 0.0, 0.0],
        "maxpool": [5.644e-06, 7.197e-10, 0.0, 0.0],
        "maxpool_backward": [2.392e-05, 1.974e-09, 0.0, 0.0],
        "flatten": [8.85e-07, 0.0, 0.0, 0.0],
        "flatten_backward": [1.053e-06, 0.0, 0.0, 0.0],
        "loss": [3.796e-05, 1.831e-08, 0.0, 0.0],
        "adam": [8.324e-06, 2.401e-09, 0.0, 0.0],
        "sgd": [2.652e-06, 4.003e-10, 0.0, 0.0],
        "average": [1.559e-06, 6.601e-10, 0.0, 0.0],
        "augment": [0.0001557, 2.35e-05, 0.0, 0.0],
        "stroke": [0.0, 1.87e-06, 0.0, 0.0],
        "step": [0.0001215, 3.874e-06, 0.0, 0.0],
        "epoch": [0.0, 0.0, 0.0, 0.0]},
    "first_backward": 0.313, "fixed_scale": 1.133, "work_scale": 2.603})


CALIBRATION_ENV = "CNN_LIVE_CALIBRATION"


def fixed_calibration(setting: str) -> Calibration | None:
    """What CNN_LIVE_CALIBRATION says: None for "measure" (measure this machine),
    REFERENCE_CALIBRATION for "reference", else the JSON file of a
    Calibration.to_dict() it names; ValueError that says so for anything else."""
    setting = setting.strip() or "measure"
    if setting == "measure":
        return None
    if setting == "reference":
        return REFERENCE_CALIBRATION
    try:
        return Calibration.from_dict(json.loads(Path(setting).read_text()))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{CALIBRATION_ENV} must be measure, reference or a JSON file of "
                         f"a calibration: {exc}") from None
