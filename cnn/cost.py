"""What a network costs before it is built: parameters, layers, multiply-adds per
image and the values a batch keeps in memory, worked out from its spec alone (no
arrays are made), and the limits a server holds them to.

A server that builds whatever it is sent can be made to eat its memory and CPU by a
few hundred bytes of JSON (20 dense layers of 4096 units: 1.4 GB and 18 s to
initialise). Every way a network reaches the server (a run's settings, an uploaded
model) is checked here first, against one set of limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Mapping

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


def spec_cost(spec: dict) -> ModelCost:
    """The cost of a spec (normalised or not); SpecError if it cannot be built."""
    spec = normalize_spec(spec)
    shapes = spec_shapes(spec)
    inputs = [tuple(spec["input"]), *shapes[:-1]]
    parameters = multiply_adds = kept = 0
    for entry, shape_in, shape_out in zip(spec["layers"], inputs, shapes):
        outputs = math.prod(shape_out)
        kept += VALUES_KEPT_PER_OUTPUT * outputs
        if entry["type"] == "conv":
            fan_in = shape_in[0] * entry["kernel"] ** 2
            parameters += shape_out[0] * (fan_in + 1)
            multiply_adds += outputs * fan_in
            kept += VALUES_KEPT_PER_UNFOLDED_INPUT * fan_in * shape_out[1] * shape_out[2]
        elif entry["type"] == "dense":
            parameters += (shape_in[0] + 1) * shape_out[0]
            multiply_adds += shape_in[0] * shape_out[0]
    return ModelCost(len(spec["layers"]), parameters, multiply_adds, kept,
                     max(math.prod(shape) for shape in shapes))


# Each limit's environment variable, and what its number is counted in.
LIMIT_VARIABLES = {"layers": ("CNN_LIVE_MAX_LAYERS", 1),
                   "parameters": ("CNN_LIVE_MAX_PARAMETERS", 1),
                   "multiply_adds": ("CNN_LIVE_MAX_MULTIPLY_ADDS", 1),
                   "values_per_image": ("CNN_LIVE_MAX_VALUES_PER_IMAGE", 1),
                   "run_memory_bytes": ("CNN_LIVE_MAX_RUN_MEMORY_MB", 2 ** 20)}


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
        """The spec's cost, or LimitError naming the first limit it passes (SpecError
        if it is not a spec at all)."""
        cost = spec_cost(spec)
        for name, value, limit, variable in (
                ("layers", cost.layers, self.layers, "CNN_LIVE_MAX_LAYERS"),
                ("parameters", cost.parameters, self.parameters, "CNN_LIVE_MAX_PARAMETERS"),
                ("multiply-adds per image", cost.multiply_adds, self.multiply_adds,
                 "CNN_LIVE_MAX_MULTIPLY_ADDS"),
                ("values kept per image (outputs and unfolded inputs, for training)",
                 cost.values_per_image, self.values_per_image, "CNN_LIVE_MAX_VALUES_PER_IMAGE")):
            if value > limit:
                raise LimitError(f"the network has {value:,} {name}, over the "
                                 f"limit of {limit:,} ({variable})")
        return cost

    def check_run(self, spec: dict, batch_size: int, optimizer: str, images: int) -> ModelCost:
        """check_model, and the run's estimated memory against run_memory_bytes."""
        cost = self.check_model(spec)
        needed = cost.training_bytes(batch_size, optimizer, images)
        if needed > self.run_memory_bytes:
            mb = 1024 ** 2
            raise LimitError(f"this run would need about {needed // mb:,} MB of memory "
                             f"(weights, a batch of {batch_size} and {images:,} images), over "
                             f"the limit of {self.run_memory_bytes // mb:,} MB "
                             f"(CNN_LIVE_MAX_RUN_MEMORY_MB): use a smaller batch or network")
        return cost
