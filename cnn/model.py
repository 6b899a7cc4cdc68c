"""A sequential network built from a plain, JSON-able spec, saved as one `.npz`.

A spec looks like this (every layer key but `type` has a default, except the sizes):

    {"input": [1, 28, 28],
     "layers": [{"type": "conv", "filters": 8, "kernel": 3, "stride": 1, "padding": 1},
                {"type": "relu"}, {"type": "maxpool", "size": 2}, {"type": "flatten"},
                {"type": "dense", "units": 10}],
     "loss": "softmax_cross_entropy",
     "init": "he"}
"""

from __future__ import annotations

import glob
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .layers import (DTYPE, Conv2D, ConvPool, Dense, Flatten, Layer, MaxPool2D, ReLU, Sigmoid,
                     Tanh, conv_output_shape)
from .losses import LOSSES

if TYPE_CHECKING:  # cost.py imports this module
    from .cost import ModelLimits

INITS = ("he", "glorot", "uniform")
MAX_UNITS = 4096
FUSE_FROM_BATCH = 16  # batches at least this big run conv+pool fused (see forward)  # a guard against specs that would eat the machine's memory
LAYER_KEYS = {
    "conv": {"filters": None, "kernel": 3, "stride": 1, "padding": 0},
    "maxpool": {"size": 2},
    "dense": {"units": None},
    "flatten": {}, "relu": {}, "sigmoid": {}, "tanh": {},
}


class SpecError(ValueError):
    """A model spec that cannot be built; the message says which part and why, and
    `layer` and `layer_type` name the layer at fault when one is (the page shows the
    message beside it)."""

    def __init__(self, message: str, layer: int | None = None,
                 layer_type: str | None = None) -> None:
        super().__init__(message)
        self.layer, self.layer_type = layer, layer_type


class TrainingDiverged(ArithmeticError):
    """The loss became NaN or infinite: the learning rate is too high for this network."""


def _remove_orphaned_temporaries(path: Path) -> None:
    """Remove the temporary files of earlier saves to `path` whose writer died (killed
    mid-write, it had no chance to): their names carry its pid, and no such process
    is left. A live writer's file is never touched."""
    if os.name != "posix":
        return  # os.kill(pid, 0) only asks whether a process exists on POSIX
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].partition(".")[0]
        if pid.isdigit() and not _process_exists(int(pid)):
            tmp.unlink(missing_ok=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class ModelFileError(ValueError):
    """A model file that cannot be loaded; the message names the file and the problem."""


# Arrays a file carries besides the model's own (a checkpoint's optimizer state, see
# checkpoint.py) are named with this prefix: loading a model leaves them aside.
EXTRA_PREFIX = "extra."


def _positive_int(value, where: str, name: str, minimum: int = 1, maximum: int = MAX_UNITS) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise SpecError(f"{where}: '{name}' must be an integer from {minimum} to {maximum}, "
                        f"got {_brief(value)}")
    return value


def _brief(value, limit: int = 60) -> str:
    """A value in a message, cut short: a spec comes from anyone (a file), and a
    4,000-digit number or a big list echoed back would make a message of any size."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10 ** 30 \
        else f"a {len(str(abs(value)))}-digit number"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def normalize_spec(spec: dict) -> dict:
    """Check a spec and fill in its defaults; raises SpecError with a clear message."""
    if not isinstance(spec, dict):
        raise SpecError(f"a spec is a JSON object, got {type(spec).__name__}")
    unknown = set(spec) - {"input", "layers", "loss", "init"}
    if unknown:
        raise SpecError(f"unknown spec keys: {_brief(sorted(unknown))}")
    shape = spec.get("input", [1, 28, 28])
    if not isinstance(shape, (list, tuple)) or len(shape) != 3:
        raise SpecError(f"'input' must be [channels, height, width], got {_brief(shape)}")
    shape = [_positive_int(v, "input", "size") for v in shape]
    loss = spec.get("loss", "softmax_cross_entropy")
    if not isinstance(loss, str) or loss not in LOSSES:
        raise SpecError(f"unknown loss {_brief(loss)}; choose one of {sorted(LOSSES)}")
    init = spec.get("init", "he")
    if not isinstance(init, str) or init not in INITS:
        raise SpecError(f"unknown init {_brief(init)}; choose one of {list(INITS)}")
    layers = spec.get("layers")
    if not isinstance(layers, list) or not layers:
        raise SpecError("'layers' must be a non-empty list")
    normalized = [_normalize_layer(entry, i) for i, entry in enumerate(layers)]
    out = {"input": shape, "layers": normalized, "loss": loss, "init": init}
    spec_shapes(out)  # proves every shape fits
    return out


def _normalize_layer(entry, index: int) -> dict:
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str) \
            or entry["type"] not in LAYER_KEYS:
        given = entry.get("type") if isinstance(entry, dict) else None
        raise SpecError(f"layer {index}: 'type' must be one of {sorted(LAYER_KEYS)}, "
                        f"got {_brief(entry)}", index,
                        given[:40] if isinstance(given, str) else None)
    kind = entry["type"]
    where = f"layer {index} ({kind})"
    defaults = LAYER_KEYS[kind]
    unknown = set(entry) - set(defaults) - {"type"}
    if unknown:
        raise SpecError(f"{where}: unknown keys {_brief(sorted(unknown))}", index, kind)
    layer = {"type": kind}
    for key, default in defaults.items():
        value = entry.get(key, default)
        if value is None:
            raise SpecError(f"{where}: '{key}' is required", index, kind)
        minimum = 0 if key == "padding" else 1
        maximum = 64 if key in ("kernel", "stride", "padding", "size") else MAX_UNITS
        try:
            layer[key] = _positive_int(value, where, key, minimum, maximum)
        except SpecError as exc:
            raise SpecError(str(exc), index, kind) from None
    return layer


def spec_shapes(spec: dict) -> list[tuple[int, ...]]:
    """The output shape of each layer of a normalised spec, worked out without building
    anything (no arrays: a spec can be checked against limits before it costs memory);
    SpecError when a layer does not fit its input."""
    shape: tuple[int, ...] = tuple(spec["input"])
    shapes = []
    for index, entry in enumerate(spec["layers"]):
        where = f"layer {index} ({entry['type']})"
        try:
            shape_in, shape = shape, _output_shape(entry, shape, where)
        except SpecError as exc:
            raise SpecError(str(exc), index, entry["type"]) from None
        if min(shape) < 1:
            raise SpecError(f"{where}: its output would be empty (input "
                            f"{_shape_text(shape_in)}, output {_shape_text(shape)})",
                            index, entry["type"])
        shapes.append(shape)
    if len(shape) != 1:
        last = len(spec["layers"]) - 1
        raise SpecError(f"layer {last} ({spec['layers'][last]['type']}): the last layer must "
                        "give a flat vector of class scores (end with flatten and dense), got "
                        f"shape {_shape_text(shape)}", last, spec["layers"][last]["type"])
    return shapes


def _output_shape(entry: dict, shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    kind = entry["type"]
    if kind in ("conv", "maxpool") and len(shape) != 3:
        raise SpecError(f"{where}: needs an image input, but gets a flat vector; "
                        "put it before flatten")
    if kind == "dense" and len(shape) != 1:
        raise SpecError(f"{where}: needs a flat input; add {{\"type\": \"flatten\"}} before it")
    if kind == "conv":
        _, h, w = shape
        if entry["kernel"] > min(h, w) + 2 * entry["padding"]:
            raise SpecError(f"{where}: kernel {entry['kernel']} is larger than its padded "
                            f"input {h}x{w}")
        return conv_output_shape(shape, entry["filters"], entry["kernel"], entry["stride"],
                                 entry["padding"])
    if kind == "maxpool":
        if entry["size"] > min(shape[1:]):
            raise SpecError(f"{where}: size {entry['size']} is larger than its input "
                            f"{shape[1]}x{shape[2]}")
        return MaxPool2D(entry["size"]).output_shape(shape)
    if kind == "dense":
        return (entry["units"],)
    if kind == "flatten":
        return (math.prod(shape),)
    return shape


def build_layers(spec: dict) -> list[Layer]:
    """Layers for a normalised spec, with zero parameters."""
    inputs = [tuple(spec["input"]), *spec_shapes(spec)[:-1]]
    layers = [_make_layer(entry, shape) for entry, shape in zip(spec["layers"], inputs)]
    for layer in layers:  # the first layer with weights needs no gradient for its input
        if layer.params:
            layer.needs_input_grad = False
            break
    return layers


def _make_layer(entry: dict, shape: tuple[int, ...]) -> Layer:
    kind = entry["type"]
    if kind == "conv":
        return Conv2D(shape[0], entry["filters"], entry["kernel"], entry["stride"],
                      entry["padding"])
    if kind == "maxpool":
        return MaxPool2D(entry["size"])
    if kind == "dense":
        return Dense(shape[0], entry["units"])
    return {"flatten": Flatten, "relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}[kind]()


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _init_parameters(layers: list[Layer], init: str, rng: np.random.Generator) -> None:
    for layer in layers:
        if not layer.params:
            continue
        weight = layer.params["weight"]
        fan_in = weight[0].size if isinstance(layer, Conv2D) else weight.shape[0]
        fan_out = weight.shape[0] * weight[0, 0].size if isinstance(layer, Conv2D) else weight.shape[1]
        if init == "uniform":  # the 2017 blog: every weight and bias uniform in [-1, 1]
            weight[...] = rng.uniform(-1.0, 1.0, weight.shape)
            layer.params["bias"][...] = rng.uniform(-1.0, 1.0, layer.params["bias"].shape)
        elif init == "glorot":
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            weight[...] = rng.uniform(-limit, limit, weight.shape)
        else:
            weight[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), weight.shape)


def _pool_before_activation(layers: list[Layer]) -> list[Layer]:
    """The order to run the layers in: an activation followed by a max-pool runs after
    it instead. The result is the same (max commutes with an increasing function; the
    2017 blog's backward pass did just this), and the activation then works on a
    quarter of the values."""
    order = list(layers)
    for i in range(len(order) - 1):
        if isinstance(order[i], (ReLU, Sigmoid, Tanh)) and isinstance(order[i + 1], MaxPool2D):
            order[i], order[i + 1] = order[i + 1], order[i]
    return order


def _fuse_conv_and_pool(order: list[Layer], input_shape: tuple[int, ...]) -> list[Layer]:
    """A stride-1 conv followed by a 2x2 max-pool runs as one ConvPool (see layers.py):
    the same result, with the pool's passes over contiguous blocks."""
    fused: list[Layer] = []
    shape, i = input_shape, 0
    while i < len(order):
        layer = order[i]
        if i + 1 < len(order) and ConvPool.fits(layer, order[i + 1], shape):
            layer = ConvPool(layer)
            i += 1
        fused.append(layer)
        shape = layer.output_shape(shape)
        i += 1
    return fused


def scale_pixels(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels 0..255 -> float32 in [0, 1], the same shape: the 2017 blog's
    pixels / 255. The one place MNIST's pixels become the network's values (the
    trainer's batches and the model's uint8 input alike), so they are bit-identical."""
    return pixels.astype(np.float32) / 255.0


class Model:
    """A sequential network. Inputs are (N, C, H, W) arrays (or (N, H, W) for one
    channel); outputs are (N, classes) scores. uint8 input is pixels 0..255 and is
    scaled to [0, 1] (scale_pixels) as it comes in, so that evaluate() and
    predict_proba() scale MNIST's own arrays one chunk at a time; input of any other
    dtype is taken as the values it holds."""

    def __init__(self, spec: dict, seed: int = 0) -> None:
        self.spec = normalize_spec(spec)
        self.layers = build_layers(self.spec)
        unfused = _pool_before_activation(self.layers)
        self._run_orders = (unfused, _fuse_conv_and_pool(unfused, tuple(self.spec["input"])))
        self._run_order = unfused  # the order of the last forward, for its backward
        self.loss = LOSSES[self.spec["loss"]]()
        _init_parameters(self.layers, self.spec["init"], np.random.default_rng(seed))

    # -- running ---------------------------------------------------------------------

    def _to_network_layout(self, x: np.ndarray) -> np.ndarray:
        c, h, w = self.spec["input"]
        if isinstance(x, np.ndarray) and x.dtype == np.uint8:
            x = scale_pixels(x)
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim == 3 and c == 1:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1:] != (c, h, w):
            raise ValueError(f"expected input of shape (N, {c}, {h}, {w}), got {x.shape}")
        return x.transpose(1, 0, 2, 3)  # (C, N, H, W): see layers.py

    def forward(self, x: np.ndarray) -> np.ndarray:
        out = self._to_network_layout(x)
        # Fusing a conv with its pool saves passes over big arrays but costs more
        # Python calls: it pays from a few dozen images up, not for one at a time.
        self._run_order = self._run_orders[out.shape[1] >= FUSE_FROM_BATCH]
        for layer in self._run_order:
            out = layer.forward(out)
        return out

    def release_work_memory(self) -> None:
        """Let go of the last batch's work arrays in every layer (fused ones included):
        a model kept after its run holds its weights and gradients alone. After an
        evaluation of 95 test images, conv 113 x 243's layers held ~250 MB."""
        for layer in {id(layer): layer for order in self._run_orders for layer in order}.values():
            layer.release()

    def backward(self, grad: np.ndarray) -> None:
        for layer in reversed(self._run_order):
            grad = layer.backward(grad)
            if grad is None:  # the first layer with weights: nothing before it learns
                break

    def train_step(self, x: np.ndarray, labels: np.ndarray, optimizer) -> tuple[float, np.ndarray]:
        """One update on a batch; returns the batch's mean loss and its outputs.
        A loss that is not finite raises TrainingDiverged before any weight changes."""
        outputs = self.forward(x)
        loss, grad = self.loss(outputs, labels)
        if not np.isfinite(loss) or not np.isfinite(outputs).all():
            raise TrainingDiverged(f"the loss became {loss}: training diverged; "
                                   "try a smaller learning rate")
        self.backward(grad)
        grads = self.gradients()
        # A finite loss can still hide infinite gradients (inf * 0 in a ReLU's backward).
        if not all(np.isfinite(g).all() for g in grads):
            raise TrainingDiverged("the gradients became infinite or NaN: training diverged; "
                                   "try a smaller learning rate")
        optimizer.step(self.parameters(), grads)
        return loss, outputs

    def predict_proba(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        chunks = [self.loss.probabilities(self.forward(x[i:i + batch_size]))
                  for i in range(0, len(x), batch_size)]
        return np.concatenate(chunks)

    def evaluate(self, x: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> tuple[float, int]:
        """Mean loss and number correct over a data set, in batches."""
        loss, probabilities = self.evaluate_probabilities(x, labels, batch_size)
        return loss, int((probabilities.argmax(axis=1) == labels).sum())

    def evaluate_probabilities(self, x: np.ndarray, labels: np.ndarray,
                               batch_size: int = 1000) -> tuple[float, np.ndarray]:
        """Mean loss over a data set, and each image's class probabilities (N, classes)."""
        total_loss, chunks = 0.0, []
        for i in range(0, len(x), batch_size):
            outputs = self.forward(x[i:i + batch_size])
            batch_labels = labels[i:i + batch_size]
            chunks.append(self.loss.probabilities(outputs))  # before the loss reuses outputs
            loss, _ = self.loss(outputs, batch_labels)
            total_loss += loss * len(batch_labels)
        probabilities = np.concatenate(chunks) if chunks else np.zeros((0, 0), self.dtype)
        return total_loss / max(len(x), 1), probabilities

    def feature_maps(self, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """Every layer's output for a batch, images as (N, C, H, W), vectors as (N, D)."""
        return [(name, np.array(out)) for name, out in self.layer_outputs(x)]

    def layer_outputs(self, x: np.ndarray):
        """Each layer's output for a batch in turn, images as (N, C, H, W), vectors as
        (N, D): views of the layers' own buffers, valid until the next forward. One
        layer at a time, so that a caller keeping only a summary of each never holds
        them all (an explained prediction: see app/predict.py)."""
        out = self._to_network_layout(x)
        for index, layer in enumerate(self.layers):
            out = layer.forward(out)
            yield f"{index}.{layer.kind}", (out.transpose(1, 0, 2, 3) if out.ndim == 4 else out)

    # -- parameters ------------------------------------------------------------------

    @property
    def dtype(self):
        return DTYPE

    def parameters(self) -> list[np.ndarray]:
        return [p for layer in self.layers for p in layer.params.values()]

    def gradients(self) -> list[np.ndarray]:
        return [layer.grads[name] for layer in self.layers for name in layer.params]

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the weights, named `<layer index>.<name>` (e.g. `0.weight`)."""
        return {f"{i}.{name}": value.copy()
                for i, layer in enumerate(self.layers) for name, value in layer.params.items()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Copy weights in place (an optimiser keeps holding the same arrays)."""
        expected = {f"{i}.{name}": value
                    for i, layer in enumerate(self.layers) for name, value in layer.params.items()}
        missing, extra = set(expected) - set(state), set(state) - set(expected)
        if missing or extra:
            raise ValueError(f"weights do not fit the spec: missing {sorted(missing)}, "
                             f"unexpected {sorted(extra)}")
        for name, target in expected.items():
            value = np.asarray(state[name])
            if value.shape != target.shape:
                raise ValueError(f"weight {name} has shape {value.shape}, the spec needs "
                                 f"{target.shape}")
            if not np.issubdtype(value.dtype, np.floating) or not np.isfinite(value).all():
                raise ValueError(f"weight {name} must hold finite floating-point numbers")
        for name, target in expected.items():
            np.copyto(target, state[name], casting="same_kind")

    def filters(self) -> list[np.ndarray]:
        """The weights of each conv layer, (F, C, K, K), copied."""
        return [layer.params["weight"].copy() for layer in self.layers if isinstance(layer, Conv2D)]

    def copy(self) -> "Model":
        """An independent model with the same weights (for another thread)."""
        twin = Model(self.spec)
        twin.load_state(self.state())
        return twin

    def parameter_count(self) -> int:
        return int(sum(p.size for p in self.parameters()))

    def __repr__(self):
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Model([{inner}], loss={self.spec['loss']})"

    # -- files -----------------------------------------------------------------------

    def to_bytes(self, metadata: dict | None = None,
                 extra_arrays: dict[str, np.ndarray] | None = None) -> bytes:
        """The `.npz` file's content: spec, weights and metadata (JSON), no pickles;
        `extra_arrays` go in as `extra.<name>` (numbers only, no objects)."""
        arrays = dict(self.state())
        arrays["spec"] = np.array(json.dumps(self.spec))
        arrays["metadata"] = np.array(json.dumps(metadata or {}))
        for name, value in (extra_arrays or {}).items():
            arrays[EXTRA_PREFIX + name] = np.asarray(value)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    def save(self, path: str | os.PathLike, metadata: dict | None = None,
             extra_arrays: dict[str, np.ndarray] | None = None) -> Path:
        """Write `to_bytes()` to a file atomically: a temporary file in the same folder,
        then a rename, so a crash never leaves half a model. The temporary file's name
        carries the writer's pid, so that a later save can remove one left by a writer
        that was killed mid-write."""
        path = Path(path)
        content = self.to_bytes(metadata, extra_arrays)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                                   dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; a model is an ordinary file
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _remove_orphaned_temporaries(path)
        return path

    @classmethod
    def load(cls, source: str | os.PathLike | bytes,
             limits: ModelLimits | None = None) -> "Model":
        """Load a `.npz` written by `save` (a path, or its bytes). Never unpickles."""
        model, _ = cls.load_with_metadata(source, limits)
        return model

    @classmethod
    def load_with_metadata(cls, source: str | os.PathLike | bytes,
                           limits: ModelLimits | None = None) -> tuple["Model", dict]:
        """The model and metadata of a file, every part checked before it costs memory
        (model_file.py), against `limits` (a cost.ModelLimits; its defaults if None).
        ModelFileError naming the file and what is wrong."""
        from .model_file import load_model_file  # it builds Models: imported when used
        loaded = load_model_file(source, limits)
        return loaded.model, loaded.metadata
