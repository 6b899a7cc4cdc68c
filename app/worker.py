"""A run's training, wherever an executor runs it (executors.py): in a worker
process, in a thread of the server (tests, embedding) or in a Ray actor.

A `Job` says everything the worker needs (it is pickled to a worker process or a Ray
actor); the `Worker` loads MNIST (once per process), builds the model and the
trainer, or takes them up from a checkpoint, trains, writes each epoch's checkpoint
and reports through `send` (reporter.py's messages, and these of its own):
- ("started", pid): the data is loaded and the first batch comes next.
- ("checkpoint", epoch, path) / ("checkpoint_error", message): each epoch's checkpoint
  written, or why not (the run goes on: see RunManager's storage errors).
- ("ended", outcome, message, kind): always the last message; outcome "finished",
  "stopped" or "failed", with a message and the kind of failure ("diverged", "data",
  "bug") for a failed run.
Commands (pause, resume, stop, step, hyperparameters) come from any thread through
`command()`; one that comes while the data is still loading is applied as soon as the
trainer exists.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import traceback
from dataclasses import dataclass

import numpy as np

from cnn.checkpoint import load_checkpoint, save_checkpoint
from cnn.cost import ModelLimits
from cnn.data import DataError, load_mnist, resolve_data_dir
from cnn.model import Model, TrainingDiverged
from cnn.teach import read
from cnn.train import Trainer, TrainConfig, make_dataset

from .reporter import Reporter, Send
from .run_record import EPOCH_FIELDS

log = logging.getLogger("cnn_live.worker")

COMMANDS = ("pause", "resume", "stop", "step", "hyperparameters")


@dataclass(frozen=True, eq=False)
class Drawings:
    """People's labelled drawings for a run (app/drawings.py's fixed split), 28x28
    uint8: the held-out ones every epoch's evaluation also reads ("your drawings"),
    and the teaching ones a run may learn from."""
    held_out_images: np.ndarray
    held_out_labels: np.ndarray
    teaching_images: np.ndarray
    teaching_labels: np.ndarray


@dataclass(frozen=True)
class Job:
    """One run to train: what it is, where its data and its checkpoint are."""
    run_id: str
    preset: str
    spec: dict
    config: dict                    # TrainConfig.to_dict(); epochs: the last one to train
    checkpoint_path: str            # each epoch's checkpoint is written here
    resume_from: str | None = None  # a checkpoint to train on from (continue, step)
    data_dir: str | None = None
    download: bool = True
    blas_threads: int = 1
    model_limits: ModelLimits = ModelLimits()
    snapshot_interval: float = 0.5
    drawings: Drawings | None = None
    start_weights: dict | None = None  # a trained model's weights to start from (teaching)


# Set by the process executor for its fork server (executors.py): the data directory
# whose MNIST it reads when it imports this module, before any worker is forked from it.
PRELOAD_VARIABLE = "CNN_LIVE_WORKER_PRELOAD"
_mnist_lock = threading.Lock()
_mnist_read: dict[str, object] = {}  # the data directory read -> its Mnist


def mnist(data_dir: str | None, download: bool):
    """MNIST, read once per process (uint8: the trainer scales each batch). A worker
    forked from the fork server finds it read already: its pages are shared, and the
    run starts without a second of decompression."""
    key = str(resolve_data_dir(data_dir))
    with _mnist_lock:
        if key not in _mnist_read:
            _mnist_read.clear()  # one data set at a time
            _mnist_read[key] = load_mnist(data_dir, download=download)
        return _mnist_read[key]


def _preload() -> None:
    if PRELOAD_VARIABLE not in os.environ:
        return
    try:
        mnist(os.environ[PRELOAD_VARIABLE] or None, download=False)
    except Exception:  # noqa: BLE001: each worker reads it (or says why it cannot) itself
        pass


def blas_threads(count: int):
    """Limit the BLAS threads while a run trains (0: no limit). For OpenBLAS the limit
    is process-wide."""
    if count <= 0:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        log.warning("CNN_LIVE_TRAINING_BLAS_THREADS is set but threadpoolctl is not installed")
        return contextlib.nullcontext()
    return threadpool_limits(limits=count, user_api="blas")


class Worker:
    def __init__(self, job: Job, send: Send) -> None:
        self.job, self.send = job, send
        self._lock = threading.Lock()
        self._trainer: Trainer | None = None
        self._pending: list[tuple] = []  # commands that came before the trainer
        self._reporter: Reporter | None = None
        # The held-out drawings' confusion matrix of the last epoch, sent with its
        # evaluation (which comes right after the epoch's record).
        self._drawings_confusion: list | None = None

    # -- commands (any thread) --------------------------------------------------------

    def command(self, name: str, *args) -> None:
        """Pause, resume, stop, step (to the end of this epoch, then pause) or
        hyperparameters(learning_rate, momentum); ConfigError (a ValueError) for
        values out of range, raised only when the trainer already exists (the server
        checks them before sending)."""
        if name not in COMMANDS:
            raise ValueError(f"unknown command {name!r}")
        with self._lock:
            if self._trainer is None:
                self._pending.append((name, *args))
                return
            self._apply(self._trainer, name, *args)

    @staticmethod
    def _apply(trainer: Trainer, name: str, *args) -> None:
        if name == "step":
            trainer.step_epoch()
        elif name == "hyperparameters":
            trainer.set_hyperparameters(*args)
        else:
            getattr(trainer, name)()

    # -- the training (one thread) ---------------------------------------------------------

    def run(self) -> None:
        """Train the job to its end; the last message is always "ended"."""
        try:
            with blas_threads(self.job.blas_threads):
                outcome = self._train()
        except TrainingDiverged as exc:
            self.send(("ended", "failed", f"training diverged: {exc}", "diverged"))
        except DataError as exc:
            self.send(("ended", "failed", str(exc), "data"))
        except Exception as exc:  # a bug: its traceback goes to the server's log
            detail = "".join(traceback.format_exception(exc))
            self.send(("ended", "failed", f"{type(exc).__name__}: {exc}\n{detail}", "bug"))
        else:
            self.send(("ended", outcome, None, None))
        finally:
            self._trainer = self._reporter = None  # its data and model go with the run

    def _train(self) -> str:
        job = self.job
        config = TrainConfig().replace(**job.config)
        data = mnist(job.data_dir, job.download)
        checkpoint = (load_checkpoint(job.resume_from, job.model_limits)
                      if job.resume_from else None)
        model = checkpoint.model if checkpoint else Model(job.spec, seed=config.seed)
        if job.start_weights is not None and checkpoint is None:
            model.load_state(job.start_weights)
        drawings = job.drawings
        teaching = (drawings.teaching_images, drawings.teaching_labels) if drawings else None
        trainer = Trainer(model, config, make_dataset(data, config, teaching), self._on_event)
        self._reporter = Reporter(job.run_id, self.send, model, lambda: trainer.average,
                                  data.test_images, job.snapshot_interval)
        if checkpoint is not None:  # on after its epoch, as if it had never stopped
            trainer.restore(checkpoint.epoch, checkpoint.optimizer_state,
                            initial=Model(job.spec, seed=config.seed),
                            average=checkpoint.average)
        with self._lock:
            self._trainer = trainer
            for name, *args in self._pending:
                with contextlib.suppress(ValueError):  # checked by the server already
                    self._apply(trainer, name, *args)
            self._pending = []
        self.send(("started", os.getpid()))
        trainer.run()
        self._reporter.flush()
        if trainer.stopped and self._reporter.latest[1]:  # as stopped: it answers drawings
            self._reporter.snapshot()
        return "stopped" if trainer.stopped else "finished"

    def _on_event(self, event: dict) -> None:
        if event["type"] == "checkpoint":
            self._save_checkpoint(event)
            return
        if event["type"] == "epoch" and self.job.drawings is not None:
            event.update(self._drawings_score())
        elif event["type"] == "evaluation" and self._drawings_confusion is not None:
            event = {**event, "drawings_confusion": self._drawings_confusion}
        self._reporter(event)

    def _drawings_score(self) -> dict:
        """The epoch's figures on the held-out drawings, read by the weights that
        answer drawings (the average's, if the run averages); their confusion matrix
        is kept for the epoch's evaluation event."""
        drawings = self.job.drawings
        evaluation = read(self._trainer.answering_model(), drawings.held_out_images,
                          drawings.held_out_labels)
        correct = int((evaluation.predicted == evaluation.labels).sum())
        total = len(evaluation.labels)
        self._drawings_confusion = evaluation.confusion().tolist() if total else None
        return {"drawings_correct": correct, "drawings_total": total,
                "drawings_accuracy": correct / total if total else None}

    def _save_checkpoint(self, event: dict) -> None:
        """Each completed epoch (weights consistent between batches): the run's
        checkpoint with its optimizer's state, written atomically. A failure (a full
        or read-only disk) does not end the run: the server reports it."""
        job, trainer = self.job, self._trainer
        record = next((r for r in reversed(trainer.history) if r["epoch"] == event["epoch"]), {})
        metadata = {"run_id": job.run_id, "preset": job.preset,
                    "config": {**job.config, "epochs": trainer.config.epochs},
                    **{key: record[key] for key in EPOCH_FIELDS if key in record},
                    "epoch": event["epoch"]}
        try:
            save_checkpoint(job.checkpoint_path, trainer.model, event["optimizer"], metadata,
                            event.get("average"))
        except OSError as exc:
            self.send(("checkpoint_error", event["epoch"], f"the checkpoint could not be "
                                                           f"written to {job.checkpoint_path} ({exc})"))
        else:
            self.send(("checkpoint", event["epoch"], job.checkpoint_path))


_preload()  # in the fork server only
