"""A run's checkpoint: the model, its optimizer's state and the run's metadata in one
`.npz`, written atomically (Model.save) after each epoch, so that a run stopped any
time can be continued from its last whole epoch as if it had never stopped.

The optimizer's state (SGD's velocity, Adam's moments and step count, the learning rate
and momentum for the next epoch) goes in as the model file's extra arrays, named
`extra.optimizer.<name>`: the file is still an ordinary model file (Model.load reads its
weights and leaves the rest aside). Loading never unpickles.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cost import ModelLimits
from .model import EXTRA_PREFIX, Model, ModelFileError

OPTIMIZER = "optimizer."  # the optimizer state's arrays, among the file's extra arrays


@dataclass(frozen=True, eq=False)
class Checkpoint:
    model: Model
    metadata: dict
    optimizer_state: dict[str, np.ndarray]  # as Optimizer.state() gave it; {} if absent

    @property
    def epoch(self) -> int | None:
        """The last completed epoch the file holds, if it says."""
        return epoch_of(self.metadata)


def save_checkpoint(path: str | os.PathLike, model: Model,
                    optimizer_state: dict[str, np.ndarray], metadata: dict) -> Path:
    """Write model, optimizer state and metadata to `path` atomically; OSError when the
    folder cannot be written (full, read-only, not a folder)."""
    extras = {OPTIMIZER + name: value for name, value in optimizer_state.items()}
    return model.save(path, metadata, extras)


def load_checkpoint(path: str | os.PathLike, limits: ModelLimits | None = None) -> Checkpoint:
    """The checkpoint at `path`; ModelFileError naming the file when it cannot be used
    (or its network is over `limits`: a server passes its own, which may be raised)."""
    model, metadata = Model.load_with_metadata(path, limits)
    prefix = EXTRA_PREFIX + OPTIMIZER
    with _open(path) as archive:
        state = {name[len(prefix):]: archive[name] for name in archive.files
                 if name.startswith(prefix)}
    return Checkpoint(model, metadata, state)


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
