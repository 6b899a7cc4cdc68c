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
import statistics
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
# How long an epoch takes is worked out from the spec like its cost: each training step
# and each evaluation chunk is a sum of features of the network as the engine runs it
# (the layer calls, the images, the convolutions' multiply-adds and unfolded values,
# the dense layers' multiply-adds, the values that activations and pools touch), each
# times a number of seconds that calibrate() fits, once per machine, to real training
# steps and evaluations of a few small reference networks (about a second). The
# optimiser's update and the weights' average are timed on their own, augmentation by
# what it adds to a reference network's steps.
#
# Why real steps rather than each layer timed alone (the first version): a layer alone
# finds its data in the cache and runs a path the network does not (the engine fuses a
# stride-1 conv with its 2x2 pool from 16 images a batch, and runs an activation after
# a pool); summed, its parts came to 0.2-2x the real epochs of bench/bench_spec.py.

TRAIN_FEATURES = ("step", "call", "conv_call", "image", "conv_mac", "conv_value", "dense_mac",
                  "value", "curve_value")
FORWARD_FEATURES = TRAIN_FEATURES[1:]  # an evaluation chunk: no step of the trainer's
PER_CALL = ("call", "conv_call")  # counted once a batch; the others once an image


@dataclass(frozen=True)
class Calibration:
    """This machine's seconds per unit of each feature (see TRAIN_FEATURES): `train`
    for a training step (forward, loss, backward, the trainer's own work; a layer's
    work counted once forward and once or twice backward), `forward` for an evaluation
    chunk; `update` the seconds per parameter array ("<optimizer>_call") and per
    parameter of "adam", "sgd" and "average"; `augment` and `stroke` per image."""
    train: dict
    forward: dict
    update: dict
    augment: float = 0.0
    stroke: float = 0.0
    measured_seconds: float = 0.0  # how long the calibration itself took

    def to_dict(self) -> dict:
        return {"train": dict(self.train), "forward": dict(self.forward),
                "update": dict(self.update), "augment": self.augment, "stroke": self.stroke,
                "measured_seconds": self.measured_seconds}

    @classmethod
    def from_dict(cls, value: dict) -> "Calibration":
        """From to_dict()'s JSON (CNN_LIVE_CALIBRATION); ValueError if it is not one."""
        try:
            train = {name: float(value["train"][name]) for name in TRAIN_FEATURES}
            forward = {name: float(value["forward"][name]) for name in FORWARD_FEATURES}
            update = {f"{name}{suffix}": float(value["update"][f"{name}{suffix}"])
                      for name in UPDATES for suffix in ("", "_call")}
            augment, stroke = float(value["augment"]), float(value["stroke"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a calibration is {{\"train\": {{feature: seconds}}, "
                             f"\"forward\": ..., \"update\": ..., \"augment\": s, "
                             f"\"stroke\": s}} with the features {list(TRAIN_FEATURES)} "
                             f"(as Calibration.to_dict() writes it): missing or not a "
                             f"number: {exc}") from None
        numbers = [*train.values(), *forward.values(), *update.values(), augment, stroke]
        if not all(math.isfinite(x) and x >= 0 for x in numbers):
            raise ValueError("a calibration's seconds must be finite and not negative")
        return cls(train, forward, update, augment, stroke)


UPDATES = ("adam", "sgd", "average")


def _run_order(spec: dict, batch_size: int) -> list[tuple[int, str, tuple, tuple]]:
    """The layers as the engine runs them on a batch (model.py): an activation before
    a max-pool after it; from FUSE_FROM_BATCH images a stride-1 conv and the 2x2 pool
    after it as one ("conv+pool"). Each: (spec index, kind, input shape, output shape)."""
    from .model import FUSE_FROM_BATCH

    entries = spec["layers"]
    shapes = spec_shapes(spec)
    inputs = [tuple(spec["input"]), *shapes[:-1]]
    order = [(i, entries[i]["type"], inputs[i], shapes[i]) for i in range(len(entries))]
    for i in range(len(order) - 1):  # _pool_before_activation
        if order[i][1] in ("relu", "sigmoid", "tanh") and order[i + 1][1] == "maxpool":
            act, pool = order[i], order[i + 1]
            order[i] = (pool[0], "maxpool", act[2], pool[3])
            order[i + 1] = (act[0], act[1], pool[3], pool[3])
    if batch_size < FUSE_FROM_BATCH:
        return order
    fused, i = [], 0
    while i < len(order):
        index, kind, shape_in, shape_out = order[i]
        if (kind == "conv" and i + 1 < len(order) and order[i + 1][1] == "maxpool"
                and entries[index]["stride"] == 1 and entries[order[i + 1][0]]["size"] == 2
                and shape_out[1] % 2 == 0 and shape_out[2] % 2 == 0):
            fused.append((index, "conv+pool", shape_in, order[i + 1][3]))
            i += 2
            continue
        fused.append(order[i])
        i += 1
    return fused


def _layer_features(spec: dict, batch_size: int, training: bool) -> list[tuple[int, dict]]:
    """(spec index, features per image and calls) of each layer as the engine runs it
    on a batch. Training counts a layer's work once forward and twice backward (the
    gradients of its weights and of its input), once for the first layer with weights
    (no gradient of its input) and none for the layers before it (no backward)."""
    spec = normalize_spec(spec)
    order = _run_order(spec, batch_size)
    weighted = [i for i, (_, kind, _, _) in enumerate(order) if kind in ("conv", "conv+pool",
                                                                         "dense")]
    first = weighted[0] if weighted else len(order)
    features = []
    for position, (index, kind, shape_in, shape_out) in enumerate(order):
        passes = 1 if not training or position < first else (2 if position == first else 3)
        calls = 1 if not training or position < first else 2
        entry = spec["layers"][index]
        row = {"call": calls}
        if kind in ("conv", "conv+pool"):
            row["conv_call"] = calls  # unfolding and folding back: more calls than most
            c = shape_in[0]
            k = entry["kernel"]
            _, ho, wo = _conv_output(entry, shape_in)
            row["conv_mac"] = passes * entry["filters"] * ho * wo * c * k * k
            row["conv_value"] = passes * (c * k * k + entry["filters"]) * ho * wo
            if kind == "conv+pool":
                row["value"] = (2 if training else 1) * entry["filters"] * ho * wo
        elif kind == "dense":
            row["dense_mac"] = passes * shape_in[0] * shape_out[0]
        elif kind != "flatten":  # activations and pools touch their inputs
            name = "curve_value" if kind in ("sigmoid", "tanh") else "value"  # exp: dearer
            row[name] = (2 if training and position > first else 1) * math.prod(shape_in)
        features.append((index, row))
    return features


def _conv_output(entry: dict, shape_in: tuple) -> tuple[int, int, int]:
    _, h, w = shape_in
    k, s, p = entry["kernel"], entry["stride"], entry["padding"]
    return entry["filters"], (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1


def _batch_features(spec: dict, images: int, training: bool) -> dict:
    """The features of one training step (or one evaluation chunk) of `images`."""
    total = {"step": 1.0 if training else 0.0, "call": 0.0, "image": float(images)}
    for _, row in _layer_features(spec, images, training):
        for name, value in row.items():
            total[name] = total.get(name, 0.0) + (value if name in PER_CALL else value * images)
    return total


def _seconds(features: dict, coefficients: dict) -> float:
    return sum(coefficients.get(name, 0.0) * value for name, value in features.items())


def _update_seconds(spec: dict, calibration: Calibration, name: str) -> float:
    cost = spec_cost(spec)
    arrays = 2 * sum(entry["type"] in ("conv", "dense") for entry in spec["layers"])
    update = calibration.update
    return update[f"{name}_call"] * arrays + update[name] * cost.parameters


def step_seconds(spec: dict, calibration: Calibration, images: int, optimizer: str = "adam",
                 augment: bool = False, stroke: bool = False, average: bool = False) -> float:
    """Seconds of one training step on a batch of `images`: forward, loss, backward,
    the trainer's own work, the optimiser's update (and the average's), augmentation."""
    spec = normalize_spec(spec)
    seconds = (_seconds(_batch_features(spec, images, True), calibration.train)
               + _update_seconds(spec, calibration, optimizer if optimizer in UPDATES else "adam"))
    if average:
        seconds += _update_seconds(spec, calibration, "average")
    if augment:
        seconds += images * calibration.augment
    if stroke:
        seconds += images * calibration.stroke
    return seconds


def costliest_layer(spec: dict, calibration: Calibration, batch_size: int) -> tuple[int, str]:
    """(index, type) of the layer whose share of a training step is the largest."""
    spec = normalize_spec(spec)
    seconds: dict[int, float] = {}
    for index, row in _layer_features(spec, batch_size, True):
        work = {name: value * (1 if name in PER_CALL else batch_size)
                for name, value in row.items()}
        seconds[index] = seconds.get(index, 0.0) + _seconds(work, calibration.train)
    index = max(seconds, key=seconds.__getitem__)
    return index, spec["layers"][index]["type"]


def epoch_seconds(spec: dict, calibration: Calibration, *, batch_size: int,
                  train_images: int, test_images: int, optimizer: str = "adam",
                  augment: bool = False, stroke: bool = False, average: bool = False,
                  evaluation_batch: int = 1000) -> float:
    """Estimated seconds of one epoch: its training steps and its test evaluation."""
    spec = normalize_spec(spec)
    options = dict(optimizer=optimizer, augment=augment, stroke=stroke, average=average)
    full, rest = divmod(train_images, batch_size)
    seconds = full * step_seconds(spec, calibration, batch_size, **options)
    if rest:
        seconds += step_seconds(spec, calibration, rest, **options)
    chunks, last = divmod(test_images, evaluation_batch)
    for size, count in ((evaluation_batch, chunks), (last, 1 if last else 0)):
        if count:
            seconds += count * _seconds(_batch_features(spec, size, False), calibration.forward)
    return seconds


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
                         train_total: int = MNIST_TRAIN, test_total: int = MNIST_TEST) -> float:
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

_FLAT = [{"type": "flatten"}, {"type": "dense", "units": 10}]
# The reference networks and the batch sizes their steps are timed at: between them,
# each feature is large in some and small in others (calls: deep-narrow at one image;
# multiply-adds: conv-deep, dense-wide; unfolded values: conv-first; values: curves).
REFERENCES = (
    ({"layers": _FLAT}, (1, 64)),
    ({"layers": [{"type": "flatten"}, {"type": "dense", "units": 16}, {"type": "relu"},
                 {"type": "dense", "units": 16}, {"type": "sigmoid"},
                 {"type": "dense", "units": 16}, {"type": "tanh"},
                 {"type": "dense", "units": 10}]}, (1,)),
    ({"layers": [{"type": "flatten"}, {"type": "dense", "units": 256}, {"type": "relu"},
                 {"type": "dense", "units": 10}]}, (64,)),
    ({"layers": [{"type": "conv", "filters": 8, "kernel": 3, "padding": 1}, {"type": "relu"},
                 {"type": "maxpool", "size": 2}, *_FLAT]}, (1, 64)),
    ({"layers": [{"type": "conv", "filters": 4, "kernel": 3, "padding": 1}, {"type": "relu"},
                 {"type": "maxpool", "size": 2},
                 {"type": "conv", "filters": 32, "kernel": 3, "padding": 1}, {"type": "relu"},
                 {"type": "maxpool", "size": 2}, *_FLAT]}, (1, 64)),
    ({"layers": [{"type": "conv", "filters": 4, "kernel": 1}, {"type": "relu"},
                 {"type": "relu"}, {"type": "maxpool", "size": 2}, {"type": "relu"}, *_FLAT]},
     (64,)),
    ({"layers": [{"type": "conv", "filters": 4, "kernel": 1}, {"type": "tanh"},
                 {"type": "sigmoid"}, {"type": "tanh"}, *_FLAT]}, (1, 64)),
    ({"layers": [{"type": "conv", "filters": 8, "kernel": 3, "stride": 2}, {"type": "tanh"},
                 {"type": "conv", "filters": 16, "kernel": 3}, {"type": "relu"}, *_FLAT]},
     (1, 64)),
)
AUGMENTED = REFERENCES[3][0], (64,)  # augmentation's cost in a step: conv-first's
FORWARD_BATCH = 256   # test images of a timed evaluation (MNIST's are evaluated 1000 at once)
STEPS_TIMED = 6       # training steps timed per reference and batch size (after one)


def _typical_seconds(action, repeats: int = 5) -> float:
    """The median CPU seconds (this thread's) of a few runs of `action` after a
    warm-up: see calibrate() for why CPU and why the median."""
    action()
    timings = []
    for _ in range(repeats):
        started = time.thread_time()
        action()
        timings.append(time.thread_time() - started)
    return statistics.median(timings)


def _trainer_seconds(spec: dict, batch_size: int, pixels, labels,
                     **settings) -> tuple[float, float]:
    """CPU seconds of a training step of the real Trainer (SGD without momentum, no
    augmentation), all its work between steps included (the median of the times
    between its batch events, after the first step, which allocates work arrays),
    and of its evaluation of FORWARD_BATCH test images after them. An evaluation
    after training, not one alone: its chunk's work arrays are new memory again after
    the training steps (the first evaluation of 1000 images of `default` took 0.25 s,
    the next one straight after 0.06 s, one after 20 training steps 0.11 s)."""
    from .model import Model
    from .train import Dataset, TrainConfig, Trainer

    steps_timed = STEPS_TIMED * (6 if batch_size == 1 else 1)  # a step of one: ~0.2 ms
    size = batch_size * (steps_timed + 1)
    data = Dataset(pixels[:size], labels[:size], pixels[:FORWARD_BATCH],
                   labels[:FORWARD_BATCH])
    config = TrainConfig(epochs=1, batch_size=batch_size, optimizer="sgd",
                         learning_rate=1e-3, momentum=0.0, shuffle=False, **settings)
    marks, evaluated = [], []

    def record(event):
        if event["type"] == "batch":
            marks.append(time.thread_time())
        elif event["type"] == "epoch":
            evaluated.append(time.thread_time() - marks[-1])
    Trainer(Model(spec), config, data, record).run()
    return float(statistics.median(np.diff(marks))), evaluated[0]


def _fit(rows: list[dict], seconds: list[float], names: tuple[str, ...]) -> dict:
    """Non-negative seconds per feature that explain `seconds` from `rows` with the
    least relative error (a feature whose best fit is negative is left out)."""
    a = np.array([[row.get(name, 0.0) for name in names] for row in rows]) \
        / np.array(seconds)[:, None]
    b = np.ones(len(rows))
    free = [j for j in range(len(names)) if a[:, j].any()]
    while True:
        scale = np.abs(a[:, free]).max(axis=0)
        solution = np.linalg.lstsq(a[:, free] / scale, b, rcond=None)[0] / scale
        if (solution >= 0).all() or len(free) == 1:
            break
        free.pop(int(np.argmin(solution)))
    coefficients = dict.fromkeys(names, 0.0)
    for j, value in zip(free, solution):
        coefficients[names[j]] = max(float(value), 0.0)
    return coefficients


def _update_parts(rng) -> dict:
    """Seconds per parameter array and per parameter of each update (UPDATES)."""
    from .average import WeightAverage
    from .optim import OPTIMIZERS

    arrays, size = 8, 25_000
    parts = {}
    for name in UPDATES:
        def action_for(params, name=name):
            grads = [np.full_like(param, 1e-3) for param in params]
            if name == "average":
                average = WeightAverage(params, 0.99)
                return lambda: average.update(params)
            optimizer = OPTIMIZERS[name](learning_rate=1e-6)

            def step():
                for grad in grads:  # train_step checks that every gradient is finite
                    np.isfinite(grad).all()
                optimizer.step(params, grads)
            return step
        tiny = [np.zeros(4, np.float32) for _ in range(arrays)]
        big = [rng.standard_normal(size, dtype=np.float32) for _ in range(arrays)]
        small, large = _typical_seconds(action_for(tiny)), _typical_seconds(action_for(big))
        per_parameter = max(large - small, 0.0) / (arrays * (size - 4))
        parts[name] = per_parameter
        parts[f"{name}_call"] = max(small / arrays - 4 * per_parameter, 0.0)
    return parts


def calibrate() -> Calibration:
    """Time real training steps and forward passes of the REFERENCES, the updates and
    augmentation (about a second), and fit this machine's Calibration. Run it with the
    BLAS threads training uses (one: the calling thread does the BLAS work).

    Timings are of this thread's CPU seconds, each the median of a few: the estimates
    are of the work a run asks of this machine, whatever else it is doing at the
    moment. Wall-clock timings swung 2x between two calibrations a minute apart under
    load average 5-6 on 2 cores (others' bursts of work); the fastest wall-clock
    steps were a third of the typical ones. A run on a busy machine takes longer than
    its estimate, by about the machine's load over its cores."""
    from .augment import Augmentation, augment

    started = time.perf_counter()
    rng = np.random.default_rng(0)
    largest = max(max(sizes) for _, sizes in REFERENCES) * (STEPS_TIMED + 1)
    pixels = rng.integers(0, 256, (max(largest, 6 * STEPS_TIMED + 1, FORWARD_BATCH), 28, 28),
                          np.uint8)
    labels = rng.integers(0, 10, len(pixels))
    update = _update_parts(rng)
    sgd = Calibration({}, {}, update)

    train_rows, train_seconds, forward_rows, forward_seconds = [], [], [], []
    for spec, sizes in REFERENCES:
        spec = normalize_spec({"input": [1, 28, 28], **spec})
        for batch_size in sizes:
            step, forward = _trainer_seconds(spec, batch_size, pixels, labels)
            train_rows.append(_batch_features(spec, batch_size, True))
            train_seconds.append(max(step - _update_seconds(spec, sgd, "sgd"), 1e-7))
            forward_rows.append(_batch_features(spec, FORWARD_BATCH, False))
            forward_seconds.append(max(forward, 1e-7))
    train = _fit(train_rows, train_seconds, TRAIN_FEATURES)
    forward = _fit(forward_rows, forward_seconds, FORWARD_FEATURES)

    # Augmentation in a training step costs more than alone (1.5-2x: the step after it
    # finds less of its data in the cache): the difference it makes to the steps of a
    # reference network, or its time alone if noise made that smaller.
    batch = rng.random((64, 1, 28, 28), dtype=np.float32)
    plain = _typical_seconds(lambda: augment(batch, rng, Augmentation(2.0, 0.1, 10.0)))
    stroked = _typical_seconds(lambda: augment(batch, rng, Augmentation(2.0, 0.1, 10.0, 0.5)))
    spec, (batch_size, *_) = normalize_spec({"input": [1, 28, 28], **AUGMENTED[0]}), AUGMENTED[1]
    steps = [_trainer_seconds(spec, batch_size, pixels, labels, **settings)[0]
             for settings in ({}, {"augment_shift": 2.0, "augment_scale": 0.1,
                                   "augment_rotation": 10.0})]
    per_image = max(plain, steps[1] - steps[0]) / 64
    return Calibration(train, forward, update, per_image, max(stroked - plain, 0.0) / 64,
                       time.perf_counter() - started)


# The median of five calibrate()s on a 2-core AVX-512 machine (1 BLAS thread, under
# load average 8): estimates that do not depend on the machine (tests), and the
# fallback when a measurement fails.
REFERENCE_CALIBRATION = Calibration.from_dict({
    "train": {"step": 4.658e-05, "call": 4.009e-06, "conv_call": 2.766e-05,
        "image": 6.055e-07, "conv_mac": 3.861e-12, "conv_value": 1.062e-09,
        "dense_mac": 2.589e-11, "value": 6.402e-10, "curve_value": 7.556e-10},
    "forward": {"call": 0.0, "conv_call": 0.001304, "image": 1.505e-06,
        "conv_mac": 1.414e-10, "conv_value": 1.278e-10, "dense_mac": 1.887e-11,
        "value": 2.688e-09, "curve_value": 2.194e-09},
    "update": {"adam": 2.474e-09, "adam_call": 8.318e-06, "sgd": 3.988e-10,
        "sgd_call": 2.813e-06, "average": 6.732e-10, "average_call": 1.667e-06},
    "augment": 2.237e-05, "stroke": 5.653e-06})
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
