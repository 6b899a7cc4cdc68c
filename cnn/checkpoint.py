"""A run's checkpoint: the model, its optimizer's state and the run's metadata in one
`.npz`, written atomically (Model.save) after each epoch, so that a run stopped any
time can be continued from its last whole epoch as if it had never stopped.

The optimizer's state (SGD's velocity, Adam's moments and step count, the learning rate
and momentum for the next epoch) goes in as the model file's extra arrays, named
`extra.optimizer.<name>`: the file is still an ordinary model file (Model.load reads its
weights and leaves the rest aside). Loading never unpickles.

A run that averages its weights (average.py) answers drawings with the average: its
checkpoint's weights are the average's, and its metadata says so (`"weights":
"averaged"`, else `"raw"`), so that a checkpoint loaded as a model answers as the run
did. The raw weights the run goes on training from go in as `extra.raw.<name>`, with
the average's step count as `extra.average.steps`.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cost import ModelLimits
from .average import WeightAverage
from .model import EXTRA_PREFIX, Model, ModelFileError

OPTIMIZER = "optimizer."  # the optimizer state's arrays, among the file's extra arrays
RAW = "raw."  # the raw weights of a run whose file holds its averaged ones
AVERAGE_STEPS = "average.steps"


@dataclass(frozen=True, eq=False)
class Checkpoint:
    model: Model
    metadata: dict
    optimizer_state: dict[str, np.ndarray]  # as Optimizer.state() gave it; {} if absent
    # The file's averaged weights (named as Model.state() names them) and their step
    # count, when it holds a run's average; `model` then has the raw weights.
    average: tuple[dict[str, np.ndarray], int] | None = None

    @property
    def epoch(self) -> int | None:
        """The last completed epoch the file holds, if it says."""
        return epoch_of(self.metadata)


def save_checkpoint(path: str | os.PathLike, model: Model,
                    optimizer_state: dict[str, np.ndarray], metadata: dict,
                    average: WeightAverage | None = None) -> Path:
    """Write model, optimizer state and metadata to `path` atomically, with the
    averaged weights as the file's own when there is an `average`; OSError when the
    folder cannot be written (full, read-only, not a folder)."""
    extras = {OPTIMIZER + name: value for name, value in optimizer_state.items()}
    if average is None:
        return model.save(path, {**metadata, "weights": "raw"}, extras)
    answering = Model(model.spec)
    answering.load_state(average.named(model))
    extras.update({RAW + name: value for name, value in model.state().items()})
    extras[AVERAGE_STEPS] = np.array(average.steps, dtype=np.int64)
    return answering.save(path, {**metadata, "weights": "averaged"}, extras)


def load_checkpoint(path: str | os.PathLike, limits: ModelLimits | None = None) -> Checkpoint:
    """The checkpoint at `path`; ModelFileError naming the file when it cannot be used
    (or its network is over `limits`: a server passes its own, which may be raised)."""
    model, metadata = Model.load_with_metadata(path, limits)
    prefix, raw_prefix = EXTRA_PREFIX + OPTIMIZER, EXTRA_PREFIX + RAW
    with _open(path) as archive:
        state = {name[len(prefix):]: archive[name] for name in archive.files
                 if name.startswith(prefix)}
        raw = {name[len(raw_prefix):]: archive[name] for name in archive.files
               if name.startswith(raw_prefix)}
        steps = (archive[EXTRA_PREFIX + AVERAGE_STEPS]
                 if EXTRA_PREFIX + AVERAGE_STEPS in archive.files else None)
    if not raw:
        return Checkpoint(model, metadata, state)
    if steps is None or steps.shape != () or not np.issubdtype(steps.dtype, np.integer) \
            or steps < 0:
        raise ModelFileError(f"{path}: its averaged weights have no valid step count")
    average = model.state()
    try:
        model.load_state(raw)  # checks names, shapes and values
    except ValueError as exc:
        raise ModelFileError(f"{path}: its raw weights do not fit its model ({exc})") from None
    return Checkpoint(model, metadata, state, (average, int(steps)))


def read_metadata(path: str | os.PathLike) -> dict:
    """Only the metadata of a checkpoint (the weights are not read): cheap enough to
    check each run's checkpoint when the server starts."""
    with _open(path) as archive:
        if "metadata" not in archive.files:
            raise ModelFileError(f"{path}: no metadata inside")
        try:
            metadata = json.loads(str(archive["metadata"]))
        except (json.JSONDecodeError, ValueError, zipfile.BadZipFile) as exc:
            raise ModelFileError(f"{path}: its metadata cannot be read ({exc})") from None
    return metadata if isinstance(metadata, dict) else {}


def epoch_of(metadata: dict) -> int | None:
    epoch = metadata.get("epoch")
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0 \
        else None


def _open(path: str | os.PathLike):
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFileError(f"{path}: not a checkpoint saved by cnn-live ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ModelFileError(f"{path}: a single array, not a checkpoint")
    return archive
