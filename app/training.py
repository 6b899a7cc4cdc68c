"""The training manager: one run at a time, in a background thread, reported to the
event hub.

The engine's trainer calls back after every batch; this module throttles what it
passes on (batch events at most ~10 a second, status about once a second, filters
as the trainer sends them: about once a second and at every epoch end; evaluation
and histograms once an epoch), keeps a record of each run for the API, and maps the
trainer's life onto the states the page shows: idle, running, paused, stopping,
finished, failed.

Steering: the learning rate and momentum can be changed while a run is active, and
a paused or finished run can be stepped one epoch on (the last run's trainer is kept
in memory for that).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import dataclasses
import io
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from cnn.cost import ModelLimits
from cnn.data import DataError, find_mnist, load_mnist, resolve_data_dir
from cnn.insight import Evaluation
from cnn.model import Model, TrainingDiverged
from cnn.presets import PRESETS, Preset
from cnn.augment import Augmentation, augment
from cnn.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from cnn.train import Trainer, TrainConfig, make_dataset, make_optimizer, scale_images

from .filter_images import filters_event
from .hub import EventHub
from .memory import return_freed_memory
from .predict import Predictor
from .run_store import RunStore, StoreError, interrupted_message, verified_checkpoint
from .settings import Settings, checkpoint_dir

log = logging.getLogger("cnn_live.training")

BATCH_EVENT_INTERVAL = 0.1   # seconds: at most ~10 batch events a second
STATUS_EVENT_INTERVAL = 1.0
ACTIVE_STATES = ("running", "paused", "stopping")
EPOCH_FIELDS = ("epoch", "epochs", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                "test_correct", "test_total", "seconds", "images_per_second", "learning_rate",
                "momentum")
BATCH_FIELDS = ("epoch", "step", "steps", "global_step", "loss", "accuracy", "learning_rate",
                "momentum")
MAX_BATCH_RECORDS = 50_000  # published batch points kept per run for the JSON export
MNIST_TRAIN, MNIST_TEST = 60_000, 10_000  # images in MNIST's two sets
GALLERY_SIZE = 36           # misclassified test images sent with each evaluation event


def blas_threads(count: int):
    """Limit the BLAS threads while a run trains (0: no limit). For OpenBLAS the limit
    is process-wide: predictions on request threads run single-threaded meanwhile,
    which suits their small matrices."""
    if count <= 0:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        log.warning("CNN_LIVE_TRAINING_BLAS_THREADS is set but threadpoolctl is not installed")
        return contextlib.nullcontext()
    return threadpool_limits(limits=count, user_api="blas")


class RunConflict(RuntimeError):
    """The request does not fit the current state (a run is active, or none is)."""


class NotFound(LookupError):
    """No such run, or nothing of the kind asked for yet; the message says which."""


@dataclass
class RunRecord:
    """What the API reports about one run of this server."""
    run_id: str
    preset: str
    config: dict
    spec: dict
    state: str = "running"
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    epochs: list[dict] = field(default_factory=list)
    message: str | None = None
    outcome: str | None = None  # "finished", "stopped", "failed" or "interrupted" once ended
    checkpoint: str | None = None  # the .npz of the last completed epoch written
    checkpoint_epoch: int | None = None  # the epoch that file holds (never a later one)
    checkpoint_error: str | None = None  # why the last epoch's checkpoint was not written
    store_error: str | None = None  # why the run's records could not be kept (run_store)
    batches: list[dict] = field(default_factory=list)  # the published (throttled) batch points
    hyperparameter_changes: list[dict] = field(default_factory=list)
    evaluation: Evaluation | None = None  # the last epoch's answers on the test images
    evaluation_epoch: int | None = None

    @property
    def final_test_accuracy(self) -> float | None:
        return self.epochs[-1]["test_accuracy"] if self.epochs else None

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "preset": self.preset, "config": self.config,
                "state": self.state, "started_at": self.started_at,
                "finished_at": self.finished_at, "epochs": self.epochs,
                "final_test_accuracy": self.final_test_accuracy, "message": self.message,
                "outcome": self.outcome, "checkpoint": self.checkpoint,
                "checkpoint_epoch": self.checkpoint_epoch,
                "checkpoint_error": self.checkpoint_error, "store_error": self.store_error}

    def metrics(self) -> dict:
        """Everything measured during the run, for the JSON export."""
        return {"run_id": self.run_id, "preset": self.preset, "config": self.config,
                "spec": self.spec, "state": self.state, "outcome": self.outcome,
                "started_at": self.started_at, "finished_at": self.finished_at,
                "epochs": self.epochs, "batches": self.batches,
                "hyperparameter_changes": self.hyperparameter_changes}

    def metrics_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=EPOCH_FIELDS, extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.epochs)
        return out.getvalue()


@dataclass
class Progress:
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    progress: float = 0.0
    eta_seconds: float | None = None
    learning_rate: float | None = None
    momentum: float | None = None


def build_run(preset_name: str, overrides: dict, filters: list[int] | None,
              limits: ModelLimits) -> tuple[Preset, dict, TrainConfig]:
    """The spec and config a run request asks for; ValueError (SpecError, LimitError,
    ConfigError) with a clear message when they cannot be built or are over `limits`
    (checked from the spec alone, before anything is allocated)."""
    if preset_name not in PRESETS:
        raise ValueError(f"unknown preset {preset_name!r}; choose one of {sorted(PRESETS)}")
    preset = PRESETS[preset_name]
    spec = _with_filters(preset.spec, filters) if filters else preset.spec
    config = preset.config.replace(**overrides)
    images = (min(config.train_size or MNIST_TRAIN, MNIST_TRAIN)
              + min(config.test_size or MNIST_TEST, MNIST_TEST))
    limits.check_run(spec, config.batch_size, config.optimizer, images)
    return preset, spec, config


def _with_filters(spec: dict, filters: list[int]) -> dict:
    convs = [i for i, layer in enumerate(spec["layers"]) if layer["type"] == "conv"]
    if len(filters) != len(convs):
        raise ValueError(f"'filters' needs one count per conv layer: this preset has "
                         f"{len(convs)}, got {len(filters)}")
    layers = [dict(layer) for layer in spec["layers"]]
    for index, count in zip(convs, filters):
        layers[index]["filters"] = count
    return {**spec, "layers": layers}


class TrainingManager:
    def __init__(self, settings: Settings, hub: EventHub, predictor: Predictor | None = None) -> None:
        self.settings, self.hub = settings, hub
        self.predictor = predictor or Predictor()  # answers /api/predict (snapshots of runs)
        self.runs: dict[str, RunRecord] = {}
        self._lock = threading.Lock()
        self._current: RunRecord | None = None
        self._trainer: Trainer | None = None
        self._thread: threading.Thread | None = None
        self._progress = Progress()
        self._pending_action = None  # a pause or stop asked for while data was loading
        self._steppable: Trainer | None = None  # the ended current run's trainer, for a step
        self._mnist = None
        self._data_message: str | None = None
        # Run records outlive the process (run_store.py); opened on first use.
        self.store = RunStore(checkpoint_dir(settings))
        self._batches_in_store: set[str] = set()  # earlier servers' runs: read on demand

    # -- what the API reads ------------------------------------------------------------

    @property
    def current(self) -> RunRecord | None:
        return self._current

    def data_status(self) -> dict:
        directory = resolve_data_dir(self.settings.data_dir)
        available = self._mnist is not None or find_mnist(directory) is not None
        message = None
        if not available:
            message = self._data_message or (
                f"MNIST was not found in {directory}. Set CNN_LIVE_DATA_DIR (or --data-dir) "
                "to a folder holding the four MNIST files"
                + (", or let the server download it when a run starts." if self.settings.download
                   else ", or run `cnn-live download` on a machine that is online."))
        return {"available": available, "directory": str(directory), "message": message}

    def status(self) -> dict:
        run, progress = self._current, self._progress
        elapsed = ((run.finished_at or time.time()) - run.started_at) if run else 0.0
        return {
            "state": run.state if run else "idle",
            "run_id": run.run_id if run else None,
            "preset": run.preset if run else None,
            "config": run.config if run else None,
            "epoch": progress.epoch, "epochs": progress.epochs,
            "step": progress.step, "steps": progress.steps,
            "progress": progress.progress, "eta_seconds": progress.eta_seconds,
            "learning_rate": progress.learning_rate, "momentum": progress.momentum,
            "elapsed_seconds": elapsed,
            "message": run.message if run else None,
            "data": self.data_status(),
        }

    # -- controls ------------------------------------------------------------------------

    def start(self, preset_name: str, overrides: dict, filters: list[int] | None = None) -> RunRecord:
        preset, spec, config = build_run(preset_name, overrides, filters,
                                         self.settings.model_limits)
        with self._lock:
            if self._current and self._current.state in ACTIVE_STATES:
                raise RunConflict(f"a run is already active ({self._current.run_id}, "
                                  f"{self._current.state}); stop it first")
            run = RunRecord(uuid.uuid4().hex[:12], preset.name, config.to_dict(), spec)
            self.runs[run.run_id] = run
            self._current = run
            if self._steppable is not None:  # the last run's trainer, data and buffers
                self._steppable = None
                return_freed_memory()
            self._progress = Progress(epochs=config.epochs, learning_rate=config.learning_rate,
                                      momentum=config.momentum)
            self.hub.start_run()
            self.hub.publish("run", {"run_id": run.run_id, "preset": run.preset,
                                     "config": run.config, "spec": spec})
            self._publish_status()
            self._store(run)
            self._thread = threading.Thread(target=self._train, args=(run, spec, config),
                                            name=f"training-{run.run_id}", daemon=True)
            self._thread.start()
        log.info("run %s started: preset %s, %s", run.run_id, run.preset, run.config)
        return run

    def pause(self) -> None:
        self._change_state("pause", ("running",), "paused", lambda t: t.pause())

    def resume(self) -> None:
        self._change_state("resume", ("paused",), "running", lambda t: t.resume())

    def stop(self) -> None:
        self._change_state("stop", ("running", "paused"), "stopping", lambda t: t.stop())

    def set_hyperparameters(self, learning_rate: float | None = None,
                            momentum: float | None = None) -> None:
        """Change the active run's learning rate and/or momentum from its next batch;
        RunConflict without an active run, ValueError (ConfigError) for bad values."""
        with self._lock:
            run, trainer = self._current, self._trainer
            if run is None or run.state not in ("running", "paused"):
                raise RunConflict(f"cannot change the learning rate: the run is "
                                  f"{run.state if run else 'idle'}")
            if trainer is None:
                raise RunConflict("the run is still loading its data; try again in a moment")
            trainer.set_hyperparameters(learning_rate, momentum)
        log.info("run %s: learning rate %s, momentum %s asked for", run.run_id, learning_rate,
                 momentum)

    def step(self) -> None:
        """One epoch more: a paused run trains to the end of its current epoch and
        pauses again; a finished (or stopped) run trains one more whole epoch."""
        with self._lock:
            run = self._current
            state = run.state if run else "idle"
            if state == "paused" and self._trainer is not None:
                self._trainer.step_epoch()
                run.state = "running"
            elif state == "finished" and self._steppable is not None:
                self._continue(run, self._steppable)
            elif state == "finished":
                raise RunConflict("cannot step: this run's training state is no longer in "
                                  "memory; start a new run")
            elif state == "paused":  # paused while its data loads: no trainer to step yet
                raise RunConflict("cannot step yet: the run is still loading its data; "
                                  "try again in a moment")
            else:
                raise RunConflict(f"cannot step: the run is {state}; "
                                  + ("pause it first" if state == "running"
                                     else "step works on a paused or finished run"))
            self._publish_status()
        log.info("run %s: one epoch more", run.run_id)

    def _continue(self, run: RunRecord, trainer: Trainer) -> None:
        """(Holding the lock.) Train a finished run's trainer one more epoch."""
        self._steppable = None
        self._trainer = trainer
        run.state, run.finished_at, run.outcome = "running", None, None
        run.config = {**run.config, "epochs": len(run.epochs) + 1}
        self._progress = Progress(len(run.epochs), len(run.epochs) + 1,
                                  learning_rate=self._progress.learning_rate,
                                  momentum=self._progress.momentum)
        self._store(run)
        self._thread = threading.Thread(target=self._drive,
                                        args=(run, trainer, lambda: self._extend(trainer)),
                                        name=f"training-{run.run_id}", daemon=True)
        self._thread.start()

    def _extend(self, trainer: Trainer) -> None:
        """(The training thread.) A kept trainer's data back, then one epoch more."""
        trainer.data = make_dataset(self._load_data(), trainer.config)
        trainer.extend()

    @staticmethod
    def _release_training_memory(trainer: Trainer) -> None:
        """An ended run's trainer is kept for a step, without what only training needs:
        its data (float32 images, 220 MB for all of MNIST; made again for a step) and
        its layers' work arrays of the last batch. Kept whole, a stopped run of conv
        113 x 243 held 220 MB, and one that ended after an evaluation 2.1 GB."""
        trainer.data = None
        trainer.model.release_work_memory()

    def _change_state(self, action: str, allowed: tuple[str, ...], new_state: str, apply) -> None:
        with self._lock:
            run = self._current
            if run is None or run.state not in allowed:
                state = run.state if run else "idle"
                raise RunConflict(f"cannot {action}: the run is {state}")
            if self._trainer is not None:
                apply(self._trainer)
            else:  # still loading data: the trainer picks the state up when it starts
                self._pending_action = apply
            run.state = new_state
            self._publish_status()
        log.info("run %s: %s", run.run_id, new_state)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the active run (the server is going down) and wait for its thread."""
        with self._lock:
            run, trainer, thread = self._current, self._trainer, self._thread
            if run and run.state in ("running", "paused"):
                run.state = "stopping"
                if trainer:
                    trainer.stop()
        if thread is not None:
            thread.join(timeout)
        self.store.close()  # reopened if a run's thread outlived the wait and writes

    # -- runs that outlive the server (run_store.py) -----------------------------------------

    def restore_runs(self) -> None:
        """At startup: list the runs earlier servers recorded in the runs directory. A
        run that was active when its server died is "interrupted", its checkpoint
        checked on disk (continue_run takes it on from there)."""
        try:
            stored = self.store.load()
        except StoreError as exc:
            log.error("%s; earlier runs are not listed", exc)
            return
        interrupted = 0
        for fields in stored:
            run = RunRecord(**fields)
            if run.run_id in self.runs:
                continue
            # The file is the truth: the record may lag behind it by one epoch (killed
            # between the two writes), or name a file since removed.
            run.checkpoint, run.checkpoint_epoch = verified_checkpoint(
                self._checkpoint_path(run.run_id), run.run_id)
            if run.state in ACTIVE_STATES:
                interrupted += 1
                run.state = run.outcome = "interrupted"
                done = max(len(run.epochs), run.checkpoint_epoch or 0)
                run.message = interrupted_message(done, run.config.get("epochs", 0),
                                                  run.checkpoint_epoch)
                self._store(run)
            self.runs[run.run_id] = run
            self._batches_in_store.add(run.run_id)
        if stored:
            log.info("%d earlier runs listed from %s (%d interrupted)", len(stored),
                     self.store.path, interrupted)

    def continue_run(self, run_id: str) -> RunRecord:
        """Train an interrupted run on from its checkpoint after epoch k: the same config,
        the optimizer's saved state, epochs k+1 on, appended to the run's own records.
        NotFound for an unknown run; RunConflict when a run is active or this one cannot
        be continued (the message says why)."""
        run = self.runs.get(run_id)
        if run is None:
            raise NotFound(f"no run {run_id[:64]!r} on this server")  # never echo much
        self._check_continuable(run)
        checkpoint, config = self._checkpoint_to_continue(run)
        epoch = checkpoint.epoch
        batches = [point for point in self._stored_batches(run) if point["epoch"] <= epoch]
        with self._lock:
            self._check_continuable(run)  # again: another request may have come meanwhile
            # The epoch the server died in is trained again: what it left is forgotten.
            run.epochs = [record for record in run.epochs if record["epoch"] <= epoch]
            run.batches = batches[:MAX_BATCH_RECORDS]
            run.hyperparameter_changes = [change for change in run.hyperparameter_changes
                                          if change["epoch"] <= epoch]
            self._batches_in_store.discard(run_id)
            run.state, run.outcome, run.message, run.finished_at = "running", None, None, None
            self._current, self._trainer, self._pending_action = run, None, None
            if self._steppable is not None:
                self._steppable = None
                return_freed_memory()
            state = checkpoint.optimizer_state
            self._progress = Progress(epoch, config.epochs,
                                      learning_rate=float(state["learning_rate"]),
                                      momentum=float(state["momentum"]))
            self.hub.start_run()
            self.hub.publish("run", {"run_id": run.run_id, "preset": run.preset,
                                     "config": run.config, "spec": run.spec,
                                     "continued_from": epoch})
            for record in run.epochs:  # the page's charts show the whole run
                self.hub.publish("epoch", {**record, "run_id": run.run_id, "replayed": True})
            self._publish_status()
            try:
                self.store.truncate(run)
            except StoreError as exc:
                self._storage_failed(run, "records", str(exc))
            self._thread = threading.Thread(target=self._train,
                                            args=(run, run.spec, config, checkpoint),
                                            name=f"training-{run.run_id}", daemon=True)
            self._thread.start()
        log.info("run %s continued from its checkpoint of epoch %d", run.run_id, epoch)
        return run

    def _check_continuable(self, run: RunRecord) -> None:
        current = self._current
        if current is not None and current.state in ACTIVE_STATES:
            raise RunConflict(f"a run is already active ({current.run_id}, {current.state}); "
                              "stop it first")
        if run.state != "interrupted":
            raise RunConflict(f"run {run.run_id} is {run.state}: only an interrupted run "
                              "can be continued")
        if run.checkpoint is None:
            raise RunConflict(f"run {run.run_id} has no checkpoint to continue from; "
                              "start a new run")

    def _checkpoint_to_continue(self, run: RunRecord) -> tuple[Checkpoint, TrainConfig]:
        """The run's checkpoint and config, checked to fit each other before anything
        changes; RunConflict saying why not."""
        try:
            checkpoint = load_checkpoint(run.checkpoint, self.settings.model_limits)
            config = TrainConfig().replace(**run.config)
            if checkpoint.metadata.get("run_id") != run.run_id or checkpoint.epoch is None:
                raise ValueError("it is not this run's checkpoint")
            make_optimizer(config).load_state(checkpoint.optimizer_state,
                                              checkpoint.model.parameters())
        except ValueError as exc:  # ModelFileError, ConfigError, a state that does not fit
            raise RunConflict(f"run {run.run_id} cannot be continued: its checkpoint "
                              f"{run.checkpoint} cannot be used ({exc})") from None
        return checkpoint, config

    def run_metrics(self, run: RunRecord) -> dict:
        """The run's metrics for the JSON export (an earlier server's batch points are
        read from the store now, not kept in memory)."""
        return {**run.metrics(), "batches": self._stored_batches(run)}

    def _stored_batches(self, run: RunRecord) -> list[dict]:
        if run.run_id not in self._batches_in_store:
            return run.batches
        try:
            return self.store.batches(run.run_id)
        except StoreError as exc:
            log.warning("run %s: %s", run.run_id, exc)
            return []

    # -- the training thread ---------------------------------------------------------------

    def _train(self, run: RunRecord, spec: dict, config: TrainConfig,
               checkpoint: Checkpoint | None = None) -> None:
        try:
            data = make_dataset(self._load_data(), config)
            model = checkpoint.model if checkpoint else Model(spec, seed=config.seed)
            trainer = Trainer(model, config, data,
                              self._reporter(run, model, lambda: trainer.average))
            if checkpoint is not None:  # on after its epoch, as if it had never stopped
                trainer.restore(checkpoint.epoch, checkpoint.optimizer_state,
                                initial=Model(spec, seed=config.seed),
                                average=checkpoint.average)
        except Exception as exc:
            self._handle_failure(run, exc)
            return
        with self._lock:
            self._trainer = trainer
            pending, self._pending_action = self._pending_action, None
            if run.state == "stopping":
                trainer.stop()
            elif pending is not None:
                pending(trainer)
        del data  # the trainer's alone, so that it goes when the run ends
        self._drive(run, trainer, trainer.run)

    def _drive(self, run: RunRecord, trainer: Trainer, work) -> None:
        """Run `work` (trainer.run or trainer.extend) to its end in this thread, and
        record how the run ended. The trainer is let go in the same locked step as the
        state changes (_finish, _fail), never after: a step may already be using it."""
        try:
            with blas_threads(self.settings.training_blas_threads):
                work()
            if trainer.stopped and self._progress.step:  # as stopped: they answer predictions
                self.predictor.offer(run.run_id, trainer.model, self._progress.epoch,
                                     self._progress.step, trainer.average)
        except Exception as exc:
            self._handle_failure(run, exc)
        else:
            self._finish(run, trainer)
        return_freed_memory()

    def _handle_failure(self, run: RunRecord, exc: Exception) -> None:
        """Any failure ends the run as failed with a message: the server outlives it."""
        if isinstance(exc, TrainingDiverged):
            self._fail(run, f"training diverged: {exc}")
        elif isinstance(exc, DataError):
            self._data_message = str(exc)
            self._fail(run, str(exc))
        else:  # a bug: its traceback goes to the log
            self._fail(run, f"{type(exc).__name__}: {exc}", traceback_of=exc)

    def augment_preview(self, settings: Augmentation, count: int, seed: int) -> dict:
        """The first `count` training images and one random distortion of each, as
        training would make it with these settings; DataError without MNIST."""
        images = self._load_data().train_images[:count]
        labels = self._mnist.train_labels[:count]
        distorted = augment(scale_images(images), np.random.default_rng(seed), settings)
        distorted = np.rint(np.clip(distorted[:, 0], 0, 1) * 255).astype(np.uint8)
        return {"originals": [_sample(image, label) for image, label in zip(images, labels)],
                "augmented": [_sample(image, label) for image, label in zip(distorted, labels)]}

    def _load_data(self):
        if self._mnist is None:
            self._mnist = load_mnist(self.settings.data_dir, download=self.settings.download)
            self._data_message = None
        return self._mnist

    def _finish(self, run: RunRecord, trainer: Trainer) -> None:
        outcome = "stopped" if trainer.stopped else "finished"
        self.predictor.run_ended(run.run_id, outcome)
        self._release_training_memory(trainer)  # given back at the end of _drive
        with self._lock:
            # A stopped run is "finished" as a state; the done event says it was stopped.
            run.state, run.finished_at, run.outcome = "finished", time.time(), outcome
            # In the same step: a control that sees "running" still finds the trainer,
            # and a step that sees "finished" finds it to step on.
            self._trainer, self._steppable = None, trainer
        self._store(run)
        self.hub.publish("done", {"run_id": run.run_id, "state": outcome,
                                  "epochs_completed": len(run.epochs),
                                  "test_accuracy": run.final_test_accuracy,
                                  "seconds": run.finished_at - run.started_at})
        self._publish_status()
        log.info("run %s %s after %d epochs", run.run_id, outcome, len(run.epochs))

    def _fail(self, run: RunRecord, message: str, traceback_of: Exception | None = None) -> None:
        self.predictor.run_ended(run.run_id, "failed")
        with self._lock:
            run.state, run.finished_at, run.message = "failed", time.time(), message
            self._trainer = None
            run.outcome = "failed"
        self._store(run)
        self.hub.publish("error", {"run_id": run.run_id, "message": message})
        self._publish_status()
        log.log(logging.ERROR if traceback_of else logging.WARNING, "run %s failed: %s",
                run.run_id, message, exc_info=traceback_of)

    def _checkpoint_path(self, run_id: str):
        return checkpoint_dir(self.settings) / f"run-{run_id}.npz"

    def _save_checkpoint(self, run: RunRecord, model: Model, event: dict) -> None:
        """Each completed epoch, in the training thread (weights consistent): the run's
        checkpoint with its optimizer's state, written atomically, so a server stopped
        any time keeps it and the run can be continued from it. A failure (a full or
        read-only disk) does not end the run: it is reported, and the run's checkpoint
        fields go on naming the last file written, with the epoch it really holds."""
        path = self._checkpoint_path(run.run_id)
        record = next((r for r in reversed(run.epochs) if r["epoch"] == event["epoch"]), {})
        try:
            save_checkpoint(path, model, event["optimizer"],
                            {"run_id": run.run_id, "preset": run.preset, "config": run.config,
                             **record, "epoch": event["epoch"]}, event.get("average"))
        except OSError as exc:
            held = (f"the last one written holds epoch {run.checkpoint_epoch}"
                    if run.checkpoint else "there is none")
            self._storage_failed(run, "checkpoint", f"the checkpoint could not be written to "
                                                    f"{path} ({exc}); {held}")
            return
        run.checkpoint, run.checkpoint_epoch, run.checkpoint_error = str(path), event["epoch"], None

    def _store(self, run: RunRecord) -> None:
        """Keep the run's record in the runs directory. A failure is reported like a
        checkpoint's, never raised: the run goes on."""
        try:
            self.store.save(run)
        except StoreError as exc:
            self._storage_failed(run, "records", str(exc))
        else:
            run.store_error = None

    def _storage_failed(self, run: RunRecord, kind: str, message: str) -> None:
        """A checkpoint or the run's records not written: on the run (checkpoint_error,
        store_error), in the log and on the stream as a "storage_error" event at level
        error, once per distinct message (not again every epoch). Not an "error" event:
        the page takes that one for a failed run."""
        attribute = "checkpoint_error" if kind == "checkpoint" else "store_error"
        if getattr(run, attribute) == message:
            return
        setattr(run, attribute, message)
        log.warning("run %s: %s", run.run_id, message)
        self.hub.publish("storage_error", {"run_id": run.run_id, "level": "error",
                                           "kind": kind, "message": message})

    def _publish_status(self) -> None:
        self.hub.publish("status", self.status())

    def _reporter(self, run: RunRecord, model: Model | None = None, average_of=lambda: None):
        """The trainer's callback for this run: throttles and forwards its events, and
        hands the predictor a snapshot of `model` and of its average (`average_of()`,
        the trainer's WeightAverage or None) (this thread, between batches, after
        a successful step) at most every predictor.snapshot_interval s and at each
        epoch end."""
        last_batch = last_status = 0.0
        last_snapshot = -float("inf")
        loss_sum, loss_count = 0.0, 0
        latest = (0, 0)  # (epoch, step) of the last batch

        def report(event: dict) -> None:
            nonlocal last_batch, last_status, loss_sum, loss_count, last_snapshot, latest
            kind = event["type"]
            now = time.monotonic()
            if model is not None and kind in ("batch", "epoch"):
                if kind == "batch":
                    latest = (event["epoch"], event["step"])
                if kind == "epoch" or now - last_snapshot >= self.predictor.snapshot_interval:
                    self.predictor.offer(run.run_id, model, *latest, average_of())
                    last_snapshot = now
            if kind == "batch":
                loss_sum += event["loss"]
                loss_count += 1
                self._progress = Progress(event["epoch"], self._progress.epochs, event["step"],
                                          event["steps"], event["progress"], event["eta_seconds"],
                                          event["learning_rate"], event["momentum"])
                if now - last_batch >= BATCH_EVENT_INTERVAL or event["step"] == event["steps"]:
                    payload = {**event, "loss": loss_sum / loss_count, "run_id": run.run_id}
                    del payload["type"]
                    self.hub.publish("batch", payload)
                    if len(run.batches) < MAX_BATCH_RECORDS:
                        run.batches.append({key: payload[key] for key in BATCH_FIELDS})
                    last_batch, loss_sum, loss_count = now, 0.0, 0
                if now - last_status >= STATUS_EVENT_INTERVAL:
                    self._publish_status()
                    last_status = now
            elif kind == "epoch":
                record = {key: event[key] for key in EPOCH_FIELDS}
                run.epochs.append(record)
                self.hub.publish("epoch", {**record, "run_id": run.run_id})
                log.info("run %s epoch %d/%d: test accuracy %.2f%%, %.1f s", run.run_id,
                         record["epoch"], record["epochs"], 100 * record["test_accuracy"],
                         record["seconds"])
            elif kind == "checkpoint":  # the epoch's last event: its checkpoint, then its records
                if model is not None:
                    self._save_checkpoint(run, model, event)
                self._store(run)  # one transaction an epoch: its record and batch points
            elif kind == "evaluation":
                run.evaluation, run.evaluation_epoch = event["evaluation"], event["epoch"]
                self.hub.publish("evaluation", self._evaluation_event(run))
            elif kind == "histograms":
                self.hub.publish("histograms", {"run_id": run.run_id, "epoch": event["epoch"],
                                                "layers": event["layers"]})
            elif kind == "hyperparameters":
                self._hyperparameters_changed(run, event)
            elif kind == "state":  # the trainer paused by itself at the end of a step
                with self._lock:
                    if run.state in ("running", "paused"):
                        run.state = event["state"]
                self._publish_status()
            elif kind == "filters":  # bounded in bytes: see filter_images.py
                self.hub.publish("filters", filters_event(run.run_id, event["epoch"],
                                                          event["step"], event["layers"]))
        return report

    def _hyperparameters_changed(self, run: RunRecord, event: dict) -> None:
        change = {key: value for key, value in event.items() if key != "type"}
        change["run_id"] = run.run_id
        run.hyperparameter_changes.append(change)
        self._progress = dataclasses.replace(self._progress, learning_rate=event["learning_rate"],
                                             momentum=event["momentum"])
        self.hub.publish("hyperparameters", change)
        self._store(run)
        log.info("run %s: learning rate %g, momentum %g from epoch %d step %d", run.run_id,
                 event["learning_rate"], event["momentum"], event["epoch"], event["step"] + 1)

    # -- the test images behind the evaluation -------------------------------------------------

    def _evaluation_event(self, run: RunRecord) -> dict:
        evaluation = run.evaluation
        mistakes = evaluation.mistakes()
        return {"run_id": run.run_id, "epoch": run.evaluation_epoch,
                "confusion": evaluation.confusion().tolist(),
                "test_total": len(evaluation.labels), "misclassified_total": len(mistakes),
                "misclassified": [self._test_image(evaluation, index)
                                  for index in mistakes[:GALLERY_SIZE]]}

    def confusion_cell(self, run_id: str, label: int, predicted: int, limit: int) -> dict:
        """The test images of one cell of a run's latest confusion matrix; NotFound
        when there is no such run or it has not been evaluated yet."""
        run = self.runs.get(run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r} on this server")
        evaluation = run.evaluation
        if evaluation is None:
            raise NotFound(f"run {run_id} has no evaluation yet: it comes after the first epoch")
        indices = evaluation.cell(label, predicted)
        return {"run_id": run_id, "epoch": run.evaluation_epoch, "label": label,
                "predicted": predicted, "count": len(indices),
                "images": [self._test_image(evaluation, index) for index in indices[:limit]]}

    def _test_image(self, evaluation: Evaluation, index) -> dict:
        """One test image (MNIST's own uint8 pixels, base64) with the network's answer."""
        index = int(index)
        return {"index": index, "label": int(evaluation.labels[index]),
                "predicted": int(evaluation.predicted[index]),
                "probability": round(float(evaluation.confidence[index]), 4),
                "pixels": encode_pixels(self._mnist.test_images[index])}


def encode_pixels(image: np.ndarray) -> str:
    """A 28x28 uint8 image as base64 of its bytes, row-major: 1 KB, not 3 KB of JSON."""
    return base64.b64encode(np.ascontiguousarray(image, dtype=np.uint8).tobytes()).decode("ascii")


def _sample(image: np.ndarray, label) -> dict:
    return {"label": int(label), "pixels": encode_pixels(image)}
