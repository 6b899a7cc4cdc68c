"""What the server knows of one run (RunRecord), and how a run request becomes a
network spec and a training config (build_run), checked against the limits before
anything is allocated."""

from __future__ import annotations

import csv
import io
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from cnn.cost import (REFERENCE_CALIBRATION, Calibration, ModelLimits, calibrate,
                      fixed_calibration)
from cnn.insight import Evaluation
from cnn.model import normalize_spec
from cnn.presets import PRESETS, Preset
from cnn.train import TrainConfig

# queued: waiting for a free worker; running/paused/stopping: in a worker;
# finished (a stopped run too: see outcome), failed, interrupted: over.
ACTIVE_STATES = ("running", "paused", "stopping")
EPOCH_FIELDS = ("epoch", "epochs", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                "test_correct", "test_total", "seconds", "images_per_second", "learning_rate",
                "momentum")
# An epoch's figures on the person's own held-out drawings (app/drawings.py), present
# when the server had at least MIN_DRAWINGS labelled drawings as the run started.
DRAWINGS_FIELDS = ("drawings_correct", "drawings_total", "drawings_accuracy")
BATCH_FIELDS = ("epoch", "step", "steps", "global_step", "loss", "accuracy", "learning_rate",
                "momentum")
MAX_BATCH_RECORDS = 50_000  # published batch points kept per run for the JSON export


@dataclass
class Progress:
    """Where a run is, from its latest batch event."""
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    progress: float = 0.0
    eta_seconds: float | None = None
    learning_rate: float | None = None
    momentum: float | None = None


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
    node: str | None = None  # where it trains: "pid 1234" or a Ray node id
    progress: Progress = field(default_factory=Progress)

    @property
    def final_test_accuracy(self) -> float | None:
        return self.epochs[-1]["test_accuracy"] if self.epochs else None

    @property
    def elapsed_seconds(self) -> float:
        return (self.finished_at or time.time()) - self.started_at

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "preset": self.preset, "config": self.config,
                "spec": self.spec, "state": self.state, "started_at": self.started_at,
                "finished_at": self.finished_at, "epochs": self.epochs,
                "final_test_accuracy": self.final_test_accuracy, "message": self.message,
                "outcome": self.outcome, "checkpoint": self.checkpoint,
                "checkpoint_epoch": self.checkpoint_epoch,
                "checkpoint_error": self.checkpoint_error, "store_error": self.store_error,
                "node": self.node}

    def metrics(self) -> dict:
        """Everything measured during the run, for the JSON export."""
        return {"run_id": self.run_id, "preset": self.preset, "config": self.config,
                "spec": self.spec, "state": self.state, "outcome": self.outcome,
                "started_at": self.started_at, "finished_at": self.finished_at,
                "epochs": self.epochs, "batches": self.batches,
                "hyperparameter_changes": self.hyperparameter_changes}

    def metrics_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=EPOCH_FIELDS + DRAWINGS_FIELDS,
                                extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.epochs)
        return out.getvalue()


def build_run(preset_name: str, overrides: dict, filters: list[int] | None,
              limits: ModelLimits, spec: dict | None = None,
              calibration: Calibration | Callable[[], Calibration] | None = None
              ) -> tuple[Preset, dict, TrainConfig]:
    """The spec and config a run request asks for: the preset's network (its conv
    layers' `filters` changed) or a whole `spec` of the caller's, trained with the
    preset's settings and `overrides`. ValueError (SpecError, LimitError, ConfigError)
    with a clear message when they cannot be built or are over `limits` (checked from
    the spec alone, before anything is allocated; the run's estimated time too, given
    this machine's `calibration`, or a function that returns it, called only for a
    run within the other limits)."""
    if preset_name not in PRESETS:
        raise ValueError(f"unknown preset {preset_name!r}; choose one of {sorted(PRESETS)}")
    preset = PRESETS[preset_name]
    if spec is not None and filters:
        raise ValueError("'filters' changes a preset's conv layers; with a 'spec', set each "
                         "conv layer's filters in the spec itself")
    if spec is not None:
        spec = normalize_spec(spec)
    else:
        spec = _with_filters(preset.spec, filters) if filters else preset.spec
    config = preset.config.replace(**overrides)
    # A calibration function is called only for a run within every other limit: a
    # refused run neither waits for it nor makes the server measure it (~20 MB).
    limits.check_training(spec, config, calibration)
    return preset, spec, config


log = logging.getLogger("cnn_live")


class MachineCalibration:
    """This server's cnn.cost.Calibration (how fast its engine trains, for estimates of
    seconds per epoch and the run-time limit): measured once, on first use, in a
    thread of its own with the BLAS threads training uses, and kept for the process's
    life (the machine does not change; every app in the process shares it).
    CNN_LIVE_CALIBRATION: "measure" (the default), "reference" (fixed figures: tests)
    or the path of a JSON file of Calibration.to_dict()."""

    _measured: dict[int, Calibration] = {}
    _lock = threading.Lock()
    _threads: dict[int, threading.Thread] = {}

    def __init__(self, setting: str = "measure", blas_threads: int = 1) -> None:
        self.setting, self.blas_threads = setting, blas_threads
        self._fixed = self._read(setting)

    @staticmethod
    def _read(setting: str) -> Calibration | None:
        return fixed_calibration(setting)

    def start(self) -> None:
        """Begin measuring in the background (if not done or under way)."""
        if self._fixed is not None:
            return
        with self._lock:
            if self.blas_threads in self._measured or self.blas_threads in self._threads:
                return
            thread = threading.Thread(target=self._measure, name="calibration", daemon=True)
            self._threads[self.blas_threads] = thread
            thread.start()

    def _measure(self) -> None:
        from .worker import blas_threads  # worker.py imports this module
        started = time.perf_counter()
        try:
            with blas_threads(self.blas_threads):
                calibration = calibrate()
        except Exception:  # noqa: BLE001: estimates fall back on the reference figures
            log.exception("measuring this machine's speed failed; estimates use the "
                          "reference calibration")
            calibration = REFERENCE_CALIBRATION
        with self._lock:
            self._measured[self.blas_threads] = calibration
        log.info("calibrated this machine's training speed in %.2f s",
                 time.perf_counter() - started)

    def get(self, timeout: float = 60.0) -> Calibration:
        """The calibration, waiting for its measurement if it is under way (about a
        second, once per process)."""
        if self._fixed is not None:
            return self._fixed
        self.start()
        thread = self._threads.get(self.blas_threads)
        if thread is not None:
            thread.join(timeout)
        return self._measured.get(self.blas_threads, REFERENCE_CALIBRATION)



def _with_filters(spec: dict, filters: list[int]) -> dict:
    convs = [i for i, layer in enumerate(spec["layers"]) if layer["type"] == "conv"]
    if len(filters) != len(convs):
        raise ValueError(f"'filters' needs one count per conv layer: this preset has "
                         f"{len(convs)}, got {len(filters)}")
    layers = [dict(layer) for layer in spec["layers"]]
    for index, count in zip(convs, filters):
        layers[index]["filters"] = count
    return {**spec, "layers": layers}
