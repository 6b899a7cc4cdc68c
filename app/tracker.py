"""The server's side of one run in a worker: the worker's messages (reporter.py,
worker.py) applied to the run's record, the event hub, the predictor and the store,
in the order they come, from the executor's reader thread.

The record keeps what the API reports (its epochs, the published batch points, the
last evaluation, live changes, where its checkpoint is); ready-made events are
forwarded to the hub as they are.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from .executors import JobHandle
from .reporter import PROGRESS_FIELDS
from .run_record import BATCH_FIELDS, MAX_BATCH_RECORDS, Progress, RunRecord

if TYPE_CHECKING:
    from .runs import RunManager

log = logging.getLogger("cnn_live.training")


class RunTracker:
    def __init__(self, run: RunRecord, manager: "RunManager") -> None:
        self.run, self.manager = run, manager
        self.job: JobHandle | None = None  # once a worker has it
        self.reported_end = False  # the worker's "ended" came
        self.gone = threading.Event()  # the worker is gone (its executor said so)

    def receive(self, message: tuple) -> None:
        kind, *fields = message
        getattr(self, f"_on_{kind}")(*fields)

    def worker_gone(self, reason: str | None) -> None:
        """The executor's word that the worker is gone; `reason` if it died."""
        if not self.reported_end:
            self.reported_end = True
            self.manager.run_ended(self, "failed",
                                   reason or "the worker ended without saying how", "died")
        self.gone.set()
        self.manager.worker_released(self)

    # -- the worker's messages ------------------------------------------------------------

    def _on_event(self, name: str, text: str, info) -> None:
        run = self.run
        if name == "batch":
            run.progress = Progress(epochs=run.config["epochs"],
                                    **{key: info[key] for key in PROGRESS_FIELDS})
            if len(run.batches) < MAX_BATCH_RECORDS:
                run.batches.append({key: info[key] for key in BATCH_FIELDS})
        elif name == "epoch":
            run.epochs.append(info)
            log.info("run %s epoch %d/%d: test accuracy %.2f%%, %.1f s", run.run_id,
                     info["epoch"], info["epochs"], 100 * info["test_accuracy"], info["seconds"])
        elif name == "evaluation":
            run.evaluation_epoch, run.evaluation = info
        elif name == "hyperparameters":
            self._hyperparameters_changed(info)
        self.manager.hub.publish_text(name, text, run.run_id)
        if name == "batch":
            self.manager.status_changed(throttled=True)

    def _hyperparameters_changed(self, change: dict) -> None:
        run = self.run
        run.hyperparameter_changes.append(change)
        progress = run.progress
        progress.learning_rate, progress.momentum = change["learning_rate"], change["momentum"]
        self.manager.store_run(run)
        log.info("run %s: learning rate %g, momentum %g from epoch %d step %d", run.run_id,
                 change["learning_rate"], change["momentum"], change["epoch"],
                 change["step"] + 1)

    def _on_state(self, state: str) -> None:
        """The trainer paused (at the end of a step) or resumed by itself."""
        self.manager.worker_state(self.run, state)

    def _on_snapshot(self, epoch: int, step: int, weights: dict, averaged: dict | None) -> None:
        self.manager.predictor.offer_state(self.run.run_id, self.run.spec, weights, averaged,
                                           epoch, step)

    def _on_started(self, pid: int) -> None:
        log.debug("run %s: its data is loaded in pid %s, training", self.run.run_id, pid)

    def _on_checkpoint(self, epoch: int, path: str) -> None:
        run = self.run
        run.checkpoint, run.checkpoint_epoch, run.checkpoint_error = path, epoch, None
        self.manager.store_run(run)  # one transaction an epoch: its record and batch points

    def _on_checkpoint_error(self, epoch: int, error: str) -> None:
        run = self.run
        held = (f"the last one written holds epoch {run.checkpoint_epoch}"
                if run.checkpoint else "there is none")
        self.manager.storage_failed(run, "checkpoint", f"{error}; {held}")
        self.manager.store_run(run)

    def _on_ended(self, outcome: str, message: str | None, kind: str | None) -> None:
        self.reported_end = True
        self.manager.run_ended(self, outcome, message, kind)
