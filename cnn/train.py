"""Training: a configuration validated once at the edge, and a Trainer that runs
epochs over shuffled mini-batches and reports what happens to a callback.

Events are plain dicts with a "type":
- "batch":   epoch, step, steps, global_step, loss, accuracy, images_per_second,
             learning_rate, progress (0..1), eta_seconds
- "epoch":   epoch, epochs, train_loss, train_accuracy, test_loss, test_accuracy,
             test_correct, test_total, seconds, images_per_second, learning_rate
- "filters": epoch, step, layers: [{"layer": index, "weights": (F, C, K, K) array}]
- "state":   state ("paused" or "running"): the trainer paused or resumed between batches

The trainer can be paused, resumed and stopped from another thread; it acts on
it between batches. The same seed gives the same run.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .augment import Augmentation, augment
from .layers import Conv2D
from .model import Model, TrainingDiverged  # noqa: F401 (raised from train_step)
from .optim import OPTIMIZERS

Callback = Callable[[dict], None]


class ConfigError(ValueError):
    """A training setting out of range; the message names it."""


@dataclass
class TrainConfig:
    epochs: int = 1
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 0.001
    momentum: float = 0.9        # SGD's momentum, or Adam's beta1
    lr_decay: float = 1.0        # the learning rate is multiplied by this after each epoch
    seed: int = 0
    train_size: int | None = None  # the first N training images; None: all of them
    test_size: int | None = None   # the first N test images; None: all of them
    shuffle: bool = True
    filter_interval: float = 1.0   # seconds between filter snapshots (and one per epoch)
    # Random distortions of each training image (0 turns one off): see augment.py.
    augment_shift: float = 0.0     # pixels
    augment_scale: float = 0.0     # relative
    augment_rotation: float = 0.0  # degrees

    def validated(self) -> "TrainConfig":
        """This config, checked; raises ConfigError naming the first bad setting."""
        _check_int("epochs", self.epochs, 1, 10_000)
        _check_int("batch_size", self.batch_size, 1, 60_000)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}")
        _check_number("learning_rate", self.learning_rate, 0.0, 100.0, low_open=True)
        _check_number("momentum", self.momentum, 0.0, 1.0, high_open=True)
        _check_number("lr_decay", self.lr_decay, 0.0, 1.0, low_open=True)
        _check_int("seed", self.seed, 0, 2**32 - 1)
        for name in ("train_size", "test_size"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1, 10_000_000)
        if not isinstance(self.shuffle, bool):
            raise ConfigError(f"shuffle must be true or false, got {self.shuffle!r}")
        _check_number("filter_interval", self.filter_interval, 0.0, 3600.0)
        _check_number("augment_shift", self.augment_shift, 0.0, 8.0)
        _check_number("augment_scale", self.augment_scale, 0.0, 0.5)
        _check_number("augment_rotation", self.augment_rotation, 0.0, 45.0)
        return self

    def augmentation(self) -> Augmentation | None:
        if not (self.augment_shift or self.augment_scale or self.augment_rotation):
            return None
        return Augmentation(self.augment_shift, self.augment_scale, self.augment_rotation)

    def replace(self, **changes) -> "TrainConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown training settings: {sorted(unknown)}")
        return dataclasses.replace(self, **changes).validated()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_int(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer from {low} to {high}, got {value!r}")


def _check_number(name, value, low, high, low_open=False, high_open=False):
    ok = (not isinstance(value, bool) and isinstance(value, (int, float, np.floating))
          and np.isfinite(value)
          and (value > low if low_open else value >= low)
          and (value < high if high_open else value <= high))
    if not ok:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ConfigError(f"{name} must be a number in {left}{low}, {high}{right}, got {value!r}")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images as float32 (N, 1, 28, 28) in [0, 1], labels as int64 (N,)."""
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def scale_images(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) pixels -> float32 (N, 1, H, W) in [0, 1], as the blog's pixels / 255."""
    return (images.astype(np.float32) / 255.0)[:, None]


def make_dataset(mnist, config: TrainConfig) -> Dataset:
    """The slice of MNIST a config asks for (first train_size / test_size images)."""
    train_end, test_end = config.train_size, config.test_size
    return Dataset(
        train_images=scale_images(mnist.train_images[:train_end]),
        train_labels=mnist.train_labels[:train_end].astype(np.int64),
        test_images=scale_images(mnist.test_images[:test_end]),
        test_labels=mnist.test_labels[:test_end].astype(np.int64),
    )


def make_optimizer(config: TrainConfig):
    if config.optimizer == "adam":
        return OPTIMIZERS["adam"](learning_rate=config.learning_rate, beta1=config.momentum)
    return OPTIMIZERS["sgd"](learning_rate=config.learning_rate, momentum=config.momentum)


class Trainer:
    """Trains a model on a dataset, reporting events to `callback` (see module doc)."""

    def __init__(self, model: Model, config: TrainConfig, data: Dataset,
                 callback: Callback | None = None) -> None:
        self.model, self.config, self.data = model, config.validated(), data
        self.callback = callback or (lambda event: None)
        self.optimizer = make_optimizer(self.config)
        self.history: list[dict] = []
        self.stopped = False
        self._running = threading.Event()
        self._running.set()
        self._stop_requested = threading.Event()
        self._shuffle_rng = np.random.default_rng([self.config.seed, 1])
        self._augment_rng = np.random.default_rng([self.config.seed, 2])
        self._augmentation = self.config.augmentation()
        self._last_filters = 0.0

    # -- control (any thread) --------------------------------------------------------

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stop_requested.set()
        self._running.set()  # a paused trainer wakes up to stop

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> list[dict]:
        """Train for config.epochs epochs (or until stopped); returns the epoch history."""
        self._emit_filters(epoch=0, step=0)
        for epoch in range(1, self.config.epochs + 1):
            if not self.run_epoch(epoch):
                break
        return self.history

    def run_epoch(self, epoch: int) -> bool:
        """One epoch and its evaluation; False if a stop came in the middle."""
        config, data = self.config, self.data
        n = len(data.train_labels)
        order = self._shuffle_rng.permutation(n) if config.shuffle else np.arange(n)
        steps = -(-n // config.batch_size)
        started = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        for step in range(1, steps + 1):
            if not self._wait_if_paused():
                self.stopped = True
                return False
            batch = order[(step - 1) * config.batch_size: step * config.batch_size]
            batch_started = time.perf_counter()
            labels, images = data.train_labels[batch], data.train_images[batch]
            if self._augmentation:
                images = augment(images, self._augment_rng, self._augmentation)
            loss, outputs = self.model.train_step(images, labels, self.optimizer)
            batch_correct = int((outputs.argmax(axis=1) == labels).sum())
            loss_sum += loss * len(batch)
            correct += batch_correct
            seen += len(batch)
            now = time.perf_counter()
            self._emit_batch(epoch, step, steps, loss, batch_correct / len(batch),
                             len(batch) / max(now - batch_started, 1e-9), now - started, seen, n)
            if now - self._last_filters >= config.filter_interval:
                self._emit_filters(epoch, step)
        train_seconds = time.perf_counter() - started
        test_loss, test_correct = self.model.evaluate(data.test_images, data.test_labels)
        test_total = len(data.test_labels)
        record = {
            "type": "epoch", "epoch": epoch, "epochs": config.epochs,
            "train_loss": loss_sum / n, "train_accuracy": correct / n,
            "test_loss": test_loss, "test_accuracy": test_correct / max(test_total, 1),
            "test_correct": test_correct, "test_total": test_total,
            "seconds": time.perf_counter() - started,
            "images_per_second": n / max(train_seconds, 1e-9),
            "learning_rate": self.optimizer.learning_rate,
        }
        self.history.append(record)
        self.callback(record)
        self._emit_filters(epoch, steps)
        self.optimizer.learning_rate *= config.lr_decay
        return True

    def _wait_if_paused(self) -> bool:
        """Block while paused; False when a stop was asked for."""
        if not self._running.is_set():
            self.callback({"type": "state", "state": "paused"})
            self._running.wait()
            if not self._stop_requested.is_set():
                self.callback({"type": "state", "state": "running"})
        return not self._stop_requested.is_set()

    def _emit_batch(self, epoch, step, steps, loss, accuracy, images_per_second,
                    epoch_elapsed, seen, epoch_size) -> None:
        done_epochs = epoch - 1 + step / steps
        # ETA from this epoch's pace, plus a test evaluation per epoch left.
        seconds_per_epoch = epoch_elapsed * epoch_size / max(seen, 1)
        self.callback({
            "type": "batch", "epoch": epoch, "step": step, "steps": steps,
            "global_step": (epoch - 1) * steps + step, "loss": loss, "accuracy": accuracy,
            "images_per_second": images_per_second,
            "learning_rate": self.optimizer.learning_rate,
            "progress": done_epochs / self.config.epochs,
            "eta_seconds": (self.config.epochs - done_epochs) * seconds_per_epoch,
        })

    def _emit_filters(self, epoch: int, step: int) -> None:
        self._last_filters = time.perf_counter()
        layers = [{"layer": index, "weights": layer.params["weight"].copy()}
                  for index, layer in enumerate(self.model.layers) if isinstance(layer, Conv2D)]
        if layers:
            self.callback({"type": "filters", "epoch": epoch, "step": step, "layers": layers})
