"""Training: a configuration validated once at the edge, and a Trainer that runs
epochs over shuffled mini-batches and reports what happens to a callback.

Events are plain dicts with a "type":
- "batch":   epoch, step, steps, global_step, loss, accuracy, images_per_second,
             learning_rate (the scheduled one this batch used), progress (0..1),
             eta_seconds
- "epoch":   epoch, epochs, train_loss, train_accuracy, test_loss, test_accuracy,
             test_correct, test_total, seconds, images_per_second, learning_rate
             (the scheduled one of the epoch's last batch)
- "evaluation": epoch, evaluation (an insight.Evaluation of the test images), after
             each "epoch"
- "histograms": epoch, layers: [{"layer", "name", "shape", "weights", "gradients"}],
             at the start (epoch 0, gradients None) and after each epoch; each histogram
             has edges, counts and start_counts (see insight.histogram)
- "filters": epoch, step, layers: [{"layer": index, "weights": (F, C, K, K) array}]
- "state":   state ("paused" or "running"): the trainer paused or resumed between batches
- "hyperparameters": epoch, step, steps, global_step, progress, learning_rate, momentum,
             previous: a live change took effect before the next batch; step is the
             number of this epoch's batches done before it; learning_rate is the
             optimizer's own, which a schedule multiplies
- "checkpoint": epoch, optimizer: what a checkpoint needs to continue the run after this
             epoch (the optimizer's state(), the learning rate already decayed for the
             next epoch, and the schedule's position, SCHEDULE_BATCHES); the last
             event of each completed epoch, the model's weights
             as they are then; average: the trainer's WeightAverage, or None. The
             arrays are the optimizer's and the average's own: save or copy them in
             the callback.

The trainer can be paused, resumed, stopped, stepped (one epoch more, then pause)
and have its learning rate and momentum changed from another thread; it acts on it
between batches. After it finished, `extend()` trains more epochs. The same seed
gives the same run.

A run can be continued from a checkpoint: `restore(epochs_done, optimizer_state)` on a
trainer of the checkpoint's model, then `run()` trains epochs epochs_done + 1 on. Each
epoch's data order and augmentation come from the seed and the epoch's number alone, so
the continued run sees the same batches, and takes the same steps, as one that never
stopped.

The start of a run can be scheduled by batch (TrainConfig's lr_boost, lr_boost_batches,
augment_start, augment_warmup; off by default): the learning rate
the optimizer steps with is its own (steered live, decayed each epoch) times
`config.learning_rate_factor(b)`, and the augmentation's ranges are scaled by
`config.augment_strength(b)`, b the batches trained before in the whole run
(`Trainer.batches_done`). Pauses, steps and extend() go on counting; a checkpoint carries
b with the optimizer's state (SCHEDULE_BATCHES), so a continued run goes on where the
schedule stopped.

Images: a Dataset holds MNIST's images as they are loaded, uint8 (N, 28, 28) pixels
0..255 (make_dataset takes views of the loaded arrays, no copies: 47 MB for the
training set, where float32 copies took 188 MB). The rule is the dtype's: uint8 images
are pixels, scaled with scale_images (pixels / 255, float32 (n, 1, 28, 28)) a batch at
a time, the training batch just before augmentation and the test images one evaluation
chunk at a time (Model scales uint8 input the same way, model.scale_pixels). Images of
any other dtype, e.g. a Dataset built by hand from scale_images, are taken as they are:
float (N, 1, 28, 28) values, never scaled again.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .augment import Augmentation, augment
from .average import WeightAverage
from .cost import BYTES_PER_VALUE, spec_cost
from .insight import Evaluation, histogram
from .layers import Conv2D
from .model import Model, TrainingDiverged, scale_pixels  # noqa: F401 (raised from train_step)
from .optim import OPTIMIZERS

Callback = Callable[[dict], None]

# The test images are evaluated this many at a time at most, and fewer when a batch of
# them would keep more than EVALUATION_BYTES of values (cost.py's estimate). With 1000
# at a time, the evaluation of the widest network the default limits accept (conv
# 113 x 243, 1.05 M values an image) took the server to 2.3 GB, held after the run
# (its layers keep their work arrays); 95 at a time, about 250 MB. The default preset
# (86,516 values) still evaluates 1000 at a time.
EVALUATION_BATCH = 1000
EVALUATION_BYTES = 384 * 2**20


def evaluation_batch_size(spec: dict) -> int:
    """Test images to evaluate at once with a network of this spec."""
    per_image = spec_cost(spec).values_per_image * BYTES_PER_VALUE
    return max(1, min(EVALUATION_BATCH, EVALUATION_BYTES // per_image))


# The optimizer state of a checkpoint event also holds the schedule's position (the
# batches trained so far), beside the learning rate it scales: the checkpoint file keeps
# it with no change to its format, and restore() takes it back.
SCHEDULE_BATCHES = "schedule.batches"
# Batches counted by the schedule settings: up to 10,000 epochs of all of MNIST at
# batch size 1 would be more, but no schedule needs to last longer than this.
MAX_SCHEDULE_BATCHES = 10_000_000


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
    augment_stroke: float = 0.0    # pixels the strokes get thicker or thinner
    # An exponential moving average of the weights answers drawings (average.py);
    # 0: none, the raw weights answer. evaluate_averaged: the per-epoch test
    # evaluation measures the average too (else the raw weights).
    average_decay: float = 0.0
    evaluate_averaged: bool = False
    # The start of a run, scheduled by batch (see learning_rate_factor and
    # augment_strength; presets.py says why `default` uses them). The defaults are off.
    lr_boost: float = 1.0          # the learning rate's multiple at the first batch...
    lr_boost_batches: int = 0      # ...coming down linearly to 1x over this many batches
    augment_start: float = 1.0     # the augmentation's strength at the first batch...
    augment_warmup: int = 0        # ...rising linearly to full over this many batches
    # The share of the training images that are a person's own labelled drawings,
    # mixed in by make_dataset (teach.py) when it is given them; 0: MNIST alone.
    include_drawings: float = 0.0

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
        _check_number("augment_stroke", self.augment_stroke, 0.0, 1.0)
        _check_number("average_decay", self.average_decay, 0.0, 1.0, high_open=True)
        if not isinstance(self.evaluate_averaged, bool):
            raise ConfigError(f"evaluate_averaged must be true or false, "
                              f"got {self.evaluate_averaged!r}")
        if self.evaluate_averaged and not self.average_decay:
            raise ConfigError("evaluate_averaged needs an average: set average_decay")
        _check_number("lr_boost", self.lr_boost, 1.0, 10.0)
        _check_int("lr_boost_batches", self.lr_boost_batches, 0, MAX_SCHEDULE_BATCHES)
        if self.lr_boost != 1.0 and not self.lr_boost_batches:
            raise ConfigError("lr_boost needs lr_boost_batches: the batches over which the "
                              "boost comes down to 1x")
        _check_number("augment_start", self.augment_start, 0.0, 1.0)
        _check_int("augment_warmup", self.augment_warmup, 0, MAX_SCHEDULE_BATCHES)
        _check_number("include_drawings", self.include_drawings, 0.0, 0.9)
        if self.augment_start != 1.0 and not self.augment_warmup:
            raise ConfigError("augment_start needs augment_warmup: the batches over which "
                              "the augmentation rises to full strength")
        return self

    def learning_rate_factor(self, batch: int) -> float:
        """What the learning rate is multiplied by for the run's batch number `batch`
        (0 for the first): lr_boost at batch 0, coming down linearly to 1 at
        lr_boost_batches."""
        if not self.lr_boost_batches or batch >= self.lr_boost_batches:
            return 1.0
        return 1.0 + (self.lr_boost - 1.0) * (1.0 - batch / self.lr_boost_batches)

    def augment_strength(self, batch: int) -> float:
        """The augmentation's strength (0..1 of its ranges) for the run's batch number
        `batch`: augment_start at batch 0, rising linearly to 1 at augment_warmup."""
        if not self.augment_warmup or batch >= self.augment_warmup:
            return 1.0
        return self.augment_start + (1.0 - self.augment_start) * batch / self.augment_warmup

    def augmentation(self) -> Augmentation | None:
        settings = Augmentation(self.augment_shift, self.augment_scale, self.augment_rotation,
                                self.augment_stroke)
        return settings if settings.active else None

    def replace(self, **changes) -> "TrainConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown training settings: {sorted(unknown)}")
        return dataclasses.replace(self, **changes).validated()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _schedule_batches(optimizer_state: dict, otherwise: int) -> int:
    """The schedule's position saved with an optimizer state, or `otherwise`."""
    if SCHEDULE_BATCHES not in optimizer_state:
        return otherwise
    value = np.asarray(optimizer_state[SCHEDULE_BATCHES])
    if value.shape != () or not np.issubdtype(value.dtype, np.integer) or value < 0:
        raise ValueError(f"optimizer state: {SCHEDULE_BATCHES} must be a whole number of "
                         f"batches, got {value!r}")
    return int(value)


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
    """Images as uint8 (N, 28, 28) pixels 0..255, scaled a batch at a time, or as
    float (N, 1, 28, 28) values taken as they are (see the module doc); labels as
    int64 (N,)."""
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def scale_images(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) pixels -> float32 (N, 1, H, W) in [0, 1], as the blog's pixels / 255."""
    return scale_pixels(images)[:, None]


def batch_images(images: np.ndarray) -> np.ndarray:
    """A batch of a Dataset's images as the network takes them: uint8 pixels scaled
    (scale_images), any other dtype as it is."""
    return scale_images(images) if images.dtype == np.uint8 else images


def make_dataset(mnist, config: TrainConfig,
                 drawings: tuple[np.ndarray, np.ndarray] | None = None) -> Dataset:
    """The slice of MNIST a config asks for (first train_size / test_size images): the
    images are views of MNIST's uint8 arrays, not copies; the labels int64 copies.
    With `drawings` ((K, 28, 28) uint8 images, labels) and a config.include_drawings,
    they are mixed into the training images at that share (teach.mix_in)."""
    train_end, test_end = config.train_size, config.test_size
    data = Dataset(
        train_images=mnist.train_images[:train_end],
        train_labels=mnist.train_labels[:train_end].astype(np.int64),
        test_images=mnist.test_images[:test_end],
        test_labels=mnist.test_labels[:test_end].astype(np.int64),
    )
    if config.include_drawings and drawings is not None and len(drawings[1]):
        from .teach import mix_in  # teach.py builds on this module
        data = mix_in(data, *drawings, config.include_drawings)
    return data


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
        self._epochs_before = 0  # completed before this trainer (a continued run)
        self.batches_done = 0  # in the whole run: the schedule's position
        self._augmentation = self.config.augmentation()
        self._last_filters = 0.0
        self._pause_after_epoch = False
        self._hyperparameter_lock = threading.Lock()
        self._pending_hyperparameters: dict[str, float] = {}
        self.last_evaluation: Evaluation | None = None
        self._evaluation_batch = evaluation_batch_size(model.spec)
        self._start_weights = self._weights()  # what the histograms compare with
        self._first_gradients: list[np.ndarray] | None = None
        # The weights that answer drawings, if the config averages (see average.py).
        self.average = (WeightAverage(model.parameters(), self.config.average_decay)
                        if self.config.average_decay else None)

    # -- control (any thread) --------------------------------------------------------

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stop_requested.set()
        self._running.set()  # a paused trainer wakes up to stop

    def step_epoch(self) -> None:
        """Train to the end of the current epoch (a whole one if paused between
        epochs), then pause again."""
        self._pause_after_epoch = True
        self._running.set()

    def set_hyperparameters(self, learning_rate: float | None = None,
                            momentum: float | None = None) -> None:
        """Change the learning rate and/or momentum (Adam's beta1) from the next batch
        on; ConfigError for values out of range, and nothing changes then."""
        changes = {"learning_rate": learning_rate, "momentum": momentum}
        changes = {name: value for name, value in changes.items() if value is not None}
        if not changes:
            raise ConfigError("give a learning_rate, a momentum or both")
        self.config.replace(**changes)  # validates, with the same ranges as at the start
        with self._hyperparameter_lock:
            self._pending_hyperparameters.update(changes)

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def epochs_done(self) -> int:
        """Completed epochs of the run, those before a restore included."""
        return self._epochs_before + len(self.history)

    def restore(self, epochs_done: int, optimizer_state: dict[str, np.ndarray],
                initial: Model | None = None,
                average: tuple[dict[str, np.ndarray], int] | None = None) -> None:
        """Before run(): continue a run from its checkpoint after epoch `epochs_done`
        (the trainer's model holds its weights): the optimizer takes up its state, and
        run() trains epochs epochs_done + 1 to config.epochs. `initial`, the run's
        model as it started (Model(spec, seed) again), is what the weight histograms
        compare with; without it, the checkpoint's weights. `average`, the checkpoint's
        averaged weights and their step count (checkpoint.Checkpoint.average), goes on
        averaging; without it a new average starts from the weights. The schedule goes
        on from the state's SCHEDULE_BATCHES (a checkpoint without it, from before the
        schedule: epochs_done whole epochs of this config's batches). ValueError if the
        state does not fit the model or the optimizer."""
        if self.history or self._epochs_before:
            raise RuntimeError("restore() comes before the trainer has trained")
        if not 0 <= epochs_done <= self.config.epochs:
            raise ValueError(f"cannot continue after epoch {epochs_done} of a run of "
                             f"{self.config.epochs}")
        batches = _schedule_batches(optimizer_state, epochs_done * self._steps_per_epoch())
        self.optimizer.load_state(optimizer_state, self.model.parameters())
        self.batches_done = batches
        if self.average is not None:
            if average is not None:
                self.average.load(average[0], self.model, average[1])
            else:
                self.average = WeightAverage(self.model.parameters(), self.average.decay)
        self._epochs_before = epochs_done
        if initial is not None:
            self._start_weights = [layer.params["weight"].copy() for layer in initial.layers
                                   if "weight" in layer.params]

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> list[dict]:
        """Train up to config.epochs epochs (or until stopped); returns the history of
        this trainer's epochs."""
        self._emit_filters(epoch=self.epochs_done, step=0)
        self._emit_histograms(epoch=self.epochs_done)
        return self._train_until(self.config.epochs)

    def extend(self, epochs: int = 1) -> list[dict]:
        """After run() ended (finished or stopped): train `epochs` more whole epochs,
        numbered on from the last completed one."""
        target = self.epochs_done + epochs
        self.config = self.config.replace(epochs=max(self.config.epochs, target))
        self.stopped = False
        self._stop_requested.clear()
        self._running.set()
        return self._train_until(target)

    def _train_until(self, last_epoch: int) -> list[dict]:
        while self.epochs_done < last_epoch:
            if not self.run_epoch(self.epochs_done + 1):
                break
        return self.history

    def _steps_per_epoch(self) -> int:
        return -(-len(self.data.train_labels) // self.config.batch_size)

    def run_epoch(self, epoch: int) -> bool:
        """One epoch and its evaluation; False if a stop came in the middle."""
        config, data = self.config, self.data
        n = len(data.train_labels)
        # Seeded by the epoch's number, not drawn on from one stream: a run continued
        # from a checkpoint gets the very batches an uninterrupted one gets.
        order = (np.random.default_rng([config.seed, 1, epoch]).permutation(n)
                 if config.shuffle else np.arange(n))
        augment_rng = np.random.default_rng([config.seed, 2, epoch])
        steps = self._steps_per_epoch()
        started = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        for step in range(1, steps + 1):
            if not self._wait_if_paused():
                self.stopped = True
                return False
            self._apply_hyperparameters(epoch, step - 1, steps)
            batch = order[(step - 1) * config.batch_size: step * config.batch_size]
            batch_started = time.perf_counter()
            labels, images = data.train_labels[batch], batch_images(data.train_images[batch])
            if self._augmentation:
                images = augment(images, augment_rng,
                                 self._augmentation.scaled(config.augment_strength(
                                     self.batches_done)))
            learning_rate = self.optimizer.learning_rate * config.learning_rate_factor(
                self.batches_done)
            loss, outputs = self._train_step(images, labels, learning_rate)
            self.batches_done += 1
            if self.average is not None:
                self.average.update(self.model.parameters())
            batch_correct = int((outputs.argmax(axis=1) == labels).sum())
            loss_sum += loss * len(batch)
            correct += batch_correct
            seen += len(batch)
            now = time.perf_counter()
            self._emit_batch(epoch, step, steps, loss, batch_correct / len(batch),
                             len(batch) / max(now - batch_started, 1e-9), now - started, seen, n,
                             learning_rate)
            if now - self._last_filters >= config.filter_interval:
                self._emit_filters(epoch, step)
        train_seconds = time.perf_counter() - started
        test_loss, probabilities = self._evaluate(data)
        evaluation = Evaluation.from_probabilities(data.test_labels, probabilities)
        test_correct = int((evaluation.predicted == evaluation.labels).sum())
        test_total = len(data.test_labels)
        record = {
            "type": "epoch", "epoch": epoch, "epochs": config.epochs,
            "train_loss": loss_sum / n, "train_accuracy": correct / n,
            "test_loss": test_loss, "test_accuracy": test_correct / max(test_total, 1),
            "test_correct": test_correct, "test_total": test_total,
            "seconds": time.perf_counter() - started,
            "images_per_second": n / max(train_seconds, 1e-9),
            "learning_rate": learning_rate,
            "momentum": self.optimizer.momentum,
        }
        self.history.append(record)
        self.last_evaluation = evaluation
        self.callback(record)
        self.callback({"type": "evaluation", "epoch": epoch, "evaluation": evaluation})
        if self._first_gradients is None:
            self._first_gradients = self._weight_gradients()
        self._emit_histograms(epoch)
        self._emit_filters(epoch, steps)
        self.optimizer.learning_rate *= config.lr_decay
        self.callback({"type": "checkpoint", "epoch": epoch,
                       "optimizer": {**self.optimizer.state(),
                                     SCHEDULE_BATCHES: np.array(self.batches_done, np.int64)},
                       "average": self.average})
        if self._pause_after_epoch:  # a step: the next batch waits for a resume
            self._pause_after_epoch = False
            self._running.clear()
        return True

    def _train_step(self, images: np.ndarray, labels: np.ndarray,
                    learning_rate: float) -> tuple[float, np.ndarray]:
        """One step at the scheduled `learning_rate`; the optimizer's own rate (the one
        steered, decayed and saved) is back in place after it."""
        own = self.optimizer.learning_rate
        self.optimizer.learning_rate = learning_rate
        try:
            return self.model.train_step(images, labels, self.optimizer)
        finally:
            self.optimizer.learning_rate = own

    def _evaluate(self, data: Dataset) -> tuple[float, np.ndarray]:
        """The test images' loss and probabilities, with the raw weights or (with
        evaluate_averaged) the average's. The average is copied into the model for it
        and the raw weights back after: a second model would hold a second set of
        evaluation buffers (hundreds of MB for 1000 images of `default`). uint8 test
        images are scaled one evaluation chunk at a time, by the model."""
        if not self.config.evaluate_averaged or self.average is None:
            return self.model.evaluate_probabilities(data.test_images, data.test_labels,
                                                     self._evaluation_batch)
        params = self.model.parameters()
        raw = [param.copy() for param in params]
        try:
            for param, average in zip(params, self.average.params):
                np.copyto(param, average)
            return self.model.evaluate_probabilities(data.test_images, data.test_labels,
                                                     self._evaluation_batch)
        finally:
            for param, value in zip(params, raw):
                np.copyto(param, value)

    def answering_model(self) -> Model:
        """A copy of the model with the weights that answer drawings: the average's if
        the config averages, else the raw ones. Call between batches (the training
        thread); ValueError if the weights are not finite."""
        if self.average is None:
            return self.model.copy()
        twin = Model(self.model.spec)
        twin.load_state(self.average.named(self.model))
        return twin

    def _wait_if_paused(self) -> bool:
        """Block while paused; False when a stop was asked for. The stop is checked
        first: a step's pause at its epoch end may have come after the stop woke us."""
        if self._stop_requested.is_set():
            return False
        if not self._running.is_set():
            self.callback({"type": "state", "state": "paused"})
            self._running.wait()
            if not self._stop_requested.is_set():
                self.callback({"type": "state", "state": "running"})
        return not self._stop_requested.is_set()

    def _emit_batch(self, epoch, step, steps, loss, accuracy, images_per_second,
                    epoch_elapsed, seen, epoch_size, learning_rate) -> None:
        done_epochs = epoch - 1 + step / steps
        # ETA from this epoch's pace, plus a test evaluation per epoch left.
        seconds_per_epoch = epoch_elapsed * epoch_size / max(seen, 1)
        self.callback({
            "type": "batch", "epoch": epoch, "step": step, "steps": steps,
            "global_step": (epoch - 1) * steps + step, "loss": loss, "accuracy": accuracy,
            "images_per_second": images_per_second,
            "learning_rate": learning_rate,
            "momentum": self.optimizer.momentum,
            "progress": done_epochs / self.config.epochs,
            "eta_seconds": (self.config.epochs - done_epochs) * seconds_per_epoch,
        })

    def _emit_filters(self, epoch: int, step: int) -> None:
        self._last_filters = time.perf_counter()
        layers = [{"layer": index, "weights": layer.params["weight"].copy()}
                  for index, layer in enumerate(self.model.layers) if isinstance(layer, Conv2D)]
        if layers:
            self.callback({"type": "filters", "epoch": epoch, "step": step, "layers": layers})

    def _apply_hyperparameters(self, epoch: int, done_steps: int, steps: int) -> None:
        """Live changes asked for since the last batch take effect now."""
        with self._hyperparameter_lock:
            changes, self._pending_hyperparameters = self._pending_hyperparameters, {}
        if not changes:
            return
        previous = {"learning_rate": self.optimizer.learning_rate,
                    "momentum": self.optimizer.momentum}
        for name, value in changes.items():
            setattr(self.optimizer, name, value)
        done_epochs = epoch - 1 + done_steps / steps
        self.callback({
            "type": "hyperparameters", "epoch": epoch, "step": done_steps, "steps": steps,
            "global_step": (epoch - 1) * steps + done_steps,
            "progress": done_epochs / self.config.epochs,
            "learning_rate": self.optimizer.learning_rate, "momentum": self.optimizer.momentum,
            "previous": previous,
        })

    # -- histograms ----------------------------------------------------------------------

    def _weighted_layers(self) -> list[tuple[int, object]]:
        return [(index, layer) for index, layer in enumerate(self.model.layers)
                if "weight" in layer.params]

    def _weights(self) -> list[np.ndarray]:
        return [layer.params["weight"].copy() for _, layer in self._weighted_layers()]

    def _weight_gradients(self) -> list[np.ndarray]:
        return [layer.grads["weight"].copy() for _, layer in self._weighted_layers()]

    def _emit_histograms(self, epoch: int) -> None:
        """Each weighted layer's weights against the start of the run, and (after an
        epoch) its last batch's weight gradients against those of the first epoch (of
        this trainer: a continued run's start has no gradients yet)."""
        gradients = self._weight_gradients() if self._first_gradients is not None else None
        layers = []
        for position, (index, layer) in enumerate(self._weighted_layers()):
            weights = layer.params["weight"]
            layers.append({
                "layer": index, "name": f"{index}.{layer.kind}", "shape": list(weights.shape),
                "weights": histogram(weights, self._start_weights[position]),
                "gradients": (histogram(gradients[position], self._first_gradients[position])
                              if gradients is not None else None),
            })
        self.callback({"type": "histograms", "epoch": epoch, "layers": layers})
