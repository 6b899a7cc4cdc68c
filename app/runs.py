"""Runs as jobs: each run's life (queued, running, paused, stopping, then finished,
failed or interrupted) and the queue of runs waiting for a worker.

Up to `max_concurrent_runs` runs train at once, each in a worker of the executor
(executors.py); more wait in a FIFO queue of at most `max_queued_runs` (past it,
QueueFull: a 429). A run leaves the queue when a worker is free. What a worker
reports is applied by the run's tracker (tracker.py); this module decides what a
control may do in each state, and keeps the records (run_store.py) that outlive the
server.

"Current" is the newest active run (else the newest queued one, else the last run
started): /api/runs/current/* and the one-run fields of /api/status speak of it.
Steering: a paused run can be stepped to the end of its epoch; a finished (or
stopped) run trains one more epoch from its last checkpoint, in a new job; an
interrupted run (its server died) is continued from its checkpoint the same way.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections import deque

import numpy as np

from cnn.augment import Augmentation, augment
from cnn.checkpoint import Checkpoint, load_checkpoint
from cnn.data import find_mnist, load_mnist, resolve_data_dir
from cnn.presets import PRESETS
from cnn.teach import Teaching
from cnn.train import ConfigError, TrainConfig, make_optimizer, scale_images

from .drawings import HELD_OUT_EVERY, MIN_DRAWINGS, DrawingStore
from .executors import Executor, make_executor
from .gallery import sample, test_image
from .hub import EventHub
from .predict import Predictor
from .run_record import (ACTIVE_STATES, MAX_BATCH_RECORDS, MachineCalibration, Progress,
                         RunRecord, build_run)
from .run_store import RunStore, StoreError, interrupted_message, verified_checkpoint
from .settings import Settings, checkpoint_dir
from .tracker import RunTracker
from .worker import Drawings, Job

log = logging.getLogger("cnn_live.training")

STATUS_EVENT_INTERVAL = 1.0  # seconds between status events while runs train
LIVE_STATES = ("queued", *ACTIVE_STATES)


class RunConflict(RuntimeError):
    """The request does not fit the run's state; the message says why."""


class NotFound(LookupError):
    """No such run, or nothing of the kind asked for yet; the message says which."""


class QueueFull(RuntimeError):
    """Every worker is busy and the queue is full."""


class RunManager:
    def __init__(self, settings: Settings, hub: EventHub, predictor: Predictor | None = None,
                 executor: Executor | None = None) -> None:
        self.settings, self.hub = settings, hub
        self.predictor = predictor or Predictor()  # answers /api/predict (snapshots of runs)
        self.executor = executor or make_executor(settings.executor, settings.stop_grace,
                                                  settings.ray_address, settings.data_dir)
        self.runs: dict[str, RunRecord] = {}
        # People's labelled drawings (app/drawings.py): each run is measured on them.
        self.drawings: DrawingStore | None = None
        self._drawings_read: tuple[int, Drawings | None] | None = None  # (store version, them)
        self._lock = threading.RLock()
        self._training: dict[str, RunTracker] = {}  # runs with a worker, oldest first
        self._queue: deque[tuple[RunTracker, Job]] = deque()
        self._last_started: RunRecord | None = None  # by this server
        self._last_status = 0.0
        self._closing = False  # the server is going down: stopped runs are interrupted
        self._data_message: str | None = None  # why the last run could not read MNIST
        self._mnist = None  # the server's own MNIST, for images on the page (uint8)
        self.store = RunStore(checkpoint_dir(settings))  # opened on first use
        self._batches_in_store: set[str] = set()  # earlier servers' runs: read on demand
        # This machine's speed: estimates of seconds per epoch, the run-time limit.
        self.calibration = MachineCalibration(settings.calibration,
                                              settings.training_blas_threads)

    # -- what the API reads ------------------------------------------------------------

    @property
    def current(self) -> RunRecord | None:
        with self._lock:
            active = [tracker.run for tracker in self._training.values()
                      if tracker.run.state in ACTIVE_STATES]
            if active:
                return active[-1]
            if self._queue:
                return self._queue[-1][0].run
            return self._last_started

    def get(self, run_id: str | None, action: str | None = None) -> RunRecord:
        """A run by id (None or "current": the current one); NotFound if none, or for
        an `action` on the current run of an idle server, RunConflict."""
        if run_id in (None, "current"):
            run = self.current
            if run is None and action:
                raise RunConflict(f"cannot {action}: the run is idle")
            if run is None:
                raise NotFound("no run yet: start one")
            return run
        run = self.runs.get(run_id)
        if run is None:
            raise NotFound(f"no run {run_id[:64]!r} on this server")  # never echo much
        return run

    def queue_position(self, run: RunRecord) -> int | None:
        """1 for the next run to start, None for a run not in the queue."""
        with self._lock:
            for position, (tracker, _) in enumerate(self._queue, 1):
                if tracker.run is run:
                    return position
        return None

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

    def run_status(self, run: RunRecord) -> dict:
        progress = run.progress
        return {"state": run.state, "run_id": run.run_id, "preset": run.preset,
                "config": run.config, "queue_position": self.queue_position(run),
                "node": run.node,
                "epoch": progress.epoch, "epochs": progress.epochs,
                "step": progress.step, "steps": progress.steps,
                "progress": progress.progress, "eta_seconds": progress.eta_seconds,
                "learning_rate": progress.learning_rate, "momentum": progress.momentum,
                "elapsed_seconds": run.elapsed_seconds if run.state != "queued" else 0.0,
                "message": run.message}

    def status(self) -> dict:
        """The current run's fields (as when one run trained at a time: "idle" without
        any), every live run's (`runs`), the queue and the data."""
        with self._lock:
            current = self.current
            live = [run for run in self.runs.values() if run.state in LIVE_STATES]
            one = (self.run_status(current) if current else
                   {**self.run_status(RunRecord("", "", {}, {})), "state": "idle",
                    "run_id": None, "preset": None, "config": None})
            return {**one, "runs": [self.run_status(run) for run in live],
                    "max_concurrent_runs": self.settings.max_concurrent_runs,
                    "queued": len(self._queue), "max_queued_runs": self.settings.max_queued_runs,
                    "executor": self.executor.name, "data": self.data_status()}

    def status_changed(self, throttled: bool = False) -> None:
        """Publish the status now, or (`throttled`, as batches come) at most once every
        STATUS_EVENT_INTERVAL s."""
        now = time.monotonic()
        if throttled and now - self._last_status < STATUS_EVENT_INTERVAL:
            return
        self._last_status = now
        self.hub.publish("status", self.status())

    # -- starting runs -------------------------------------------------------------------

    def start(self, preset_name: str, overrides: dict,
              filters: list[int] | None = None, spec: dict | None = None) -> RunRecord:
        """A new run from a preset (or a whole spec trained with a preset's settings):
        training at once if a worker is free, else queued; ValueError for settings that
        cannot be built or are over the limits, QueueFull past the queue."""
        preset, spec, config = build_run(preset_name, overrides, filters,
                                         self.settings.model_limits, spec,
                                         self.calibration.get)
        self._check_drawings(config)
        return self._start_built(preset.name, spec, config)

    def _start_built(self, preset_name: str, spec: dict, config: TrainConfig) -> RunRecord:
        run = self._add_run(preset_name, spec, config)
        log.info("run %s %s: preset %s, %s%s", run.run_id,
                 "started" if run.state == "running" else "queued", run.preset, run.config,
                 f", in {run.node}" if run.node else "")
        return run

    def start_many(self, requests: list[tuple[str, dict, list[int] | None, dict | None]]
                   ) -> list[RunRecord]:
        """Several runs in one go (a comparison): every one checked first, so that a bad
        one starts none; the queue must have room for all that cannot start now.
        Each request: (preset, overrides, filters, spec or None)."""
        built = [build_run(name, overrides, filters, self.settings.model_limits, spec,
                           self.calibration.get)
                 for name, overrides, filters, spec in requests]
        for _, _, config in built:
            self._check_drawings(config)
        with self._lock:
            free = self.settings.max_concurrent_runs - len(self._training)
            waiting = max(0, len(built) - free)
            if len(self._queue) + waiting > self.settings.max_queued_runs:
                raise QueueFull(f"{len(built)} runs need {waiting} places in the queue; it has "
                                f"{self.settings.max_queued_runs - len(self._queue)} free of "
                                f"{self.settings.max_queued_runs}: try again when runs end")
            return [self._start_built(preset.name, spec, config)
                    for preset, spec, config in built]

    def _check_room(self) -> None:
        if (len(self._training) >= self.settings.max_concurrent_runs
                and len(self._queue) >= self.settings.max_queued_runs):
            raise QueueFull(f"{len(self._training)} runs are training and the queue is full "
                            f"({self.settings.max_queued_runs} waiting): try again when one ends")

    def _job(self, run: RunRecord, resume_from: str | None = None,
             start_weights: dict | None = None) -> Job:
        settings = self.settings
        return Job(run.run_id, run.preset, run.spec, run.config,
                   str(checkpoint_dir(settings) / f"run-{run.run_id}.npz"), resume_from,
                   settings.data_dir, settings.download, settings.training_blas_threads,
                   settings.model_limits, self.predictor.snapshot_interval,
                   start_weights=start_weights)

    def _add_run(self, preset_name: str, spec: dict, config: TrainConfig,
                 start_weights: dict | None = None) -> RunRecord:
        """A new run, training at once if a worker is free, else queued (QueueFull past
        the queue)."""
        run = RunRecord(uuid.uuid4().hex[:12], preset_name, config.to_dict(), spec,
                        state="queued")
        run.progress = Progress(epochs=config.epochs, learning_rate=config.learning_rate,
                                momentum=config.momentum)
        self._latest_drawings()  # read now, outside the lock, if they changed
        with self._lock:
            self._check_room()
            self.runs[run.run_id] = run
            self._admit(RunTracker(run, self), self._job(run, start_weights=start_weights))
        return run

    def teach(self, preset_name: str, spec: dict, weights: dict,
              teaching: Teaching) -> RunRecord:
        """A run that teaches a trained model (`weights` of `spec`) people's drawings:
        the preset's settings as `teaching` changes them, from those weights; when it
        ends, it answers drawings. ValueError without enough drawings; QueueFull."""
        preset = PRESETS.get(preset_name, PRESETS["default"])
        config = teaching.config(preset.config)
        self._check_drawings(config)
        self.settings.model_limits.check_training(spec, config, self.calibration.get)
        run = self._add_run(preset.name, spec, config, start_weights=weights)
        log.info("run %s teaches a %s model people's drawings: %s", run.run_id, preset.name,
                 run.config)
        return run

    def _check_drawings(self, config: TrainConfig) -> None:
        """A run that learns from people's drawings needs enough of them to teach."""
        if not config.include_drawings:
            return
        drawings = self._latest_drawings()
        taught = 0 if drawings is None else len(drawings.teaching_labels)
        if taught == 0:
            counted = 0 if self.drawings is None else sum(self.drawings.counts().values())
            raise ValueError(f"include_drawings needs at least {MIN_DRAWINGS} labelled "
                             f"drawings (POST /api/drawings); this server has {counted}")

    def _drawings(self) -> Drawings | None:
        """The labelled drawings as a run starts (with at least MIN_DRAWINGS of them),
        for it to be measured on; None without a store, or when it cannot be read (a
        run never fails for want of them)."""
        if self.drawings is None:
            return None
        try:
            ids, images, labels = self.drawings.arrays()
        except (OSError, sqlite3.Error) as exc:
            log.warning("the drawings could not be read for a run: %s", exc)
            return None
        if len(ids) < MIN_DRAWINGS:
            return None
        held_out = ids % HELD_OUT_EVERY == 0
        return Drawings(images[held_out], labels[held_out], images[~held_out],
                        labels[~held_out])

    def _latest_drawings(self) -> Drawings | None:
        """The drawings as they are now, read from the store only when it changed since
        the last read (a run that starts costs no read of them otherwise). Called before
        the manager's lock is taken, so that a read happens outside it; under the lock
        the same call finds the store unchanged and reads nothing."""
        if self.drawings is None:
            return None
        version = self.drawings.version  # before reading: what is read is at least this new
        read = self._drawings_read
        if read is None or read[0] != version:
            read = self._drawings_read = (version, self._drawings())
        return read[1]

    def _admit(self, tracker: RunTracker, job: Job) -> None:
        """(Holding the lock.) Train now if a worker is free, else wait in the queue."""
        if self._closing:
            raise RunConflict("the server is shutting down")
        if len(self._training) < self.settings.max_concurrent_runs:
            self._launch(tracker, job)
        else:
            tracker.run.state = "queued"
            self._queue.append((tracker, job))
            self.store_run(tracker.run)
            self.status_changed()

    def _launch(self, tracker: RunTracker, job: Job) -> None:
        """(Holding the lock.) Hand the run to a worker, with the drawings as they are
        now (a queued run holds none of them while it waits)."""
        run = tracker.run
        job = dataclasses.replace(job, drawings=self._latest_drawings())
        run.state, run.started_at, run.finished_at = "running", time.time(), None
        run.outcome = run.message = None
        self._training[run.run_id] = tracker
        self._last_started = run
        # A late browser is replayed the active runs (not one that ended but whose worker
        # is still on its way out).
        self.hub.keep_runs(run_id for run_id, other in self._training.items()
                           if other is tracker or other.run.state in ACTIVE_STATES)
        self.hub.publish("run", {"run_id": run.run_id, "preset": run.preset,
                                 "config": run.config, "spec": run.spec,
                                 **({"continued_from": run.checkpoint_epoch}
                                    if job.resume_from else {})})
        # A continued or stepped run: the page's charts show all of it (the epochs the
        # history no longer holds are sent again, marked as replayed).
        shown = {json.loads(event.data)["epoch"] for event in self.hub.history(run_id=run.run_id)
                 if event.name == "epoch"}
        for record in run.epochs:
            if record["epoch"] not in shown:
                self.hub.publish("epoch", {**record, "run_id": run.run_id, "replayed": True})
        self.store_run(run)
        try:
            tracker.job = self.executor.start(job, tracker.receive, tracker.worker_gone)
        except Exception as exc:  # no worker could be made (a cluster out of reach)
            log.exception("run %s: no worker", run.run_id)
            tracker.reported_end = True
            self.run_ended(tracker, "failed", f"no worker could start it: {exc}", "executor")
            self._training.pop(run.run_id, None)
            return
        run.node = tracker.job.node
        self.status_changed()

    def worker_released(self, tracker: RunTracker) -> None:
        """A worker is gone: the next queued run takes its place."""
        if self._queue:
            self._latest_drawings()  # read now, outside the lock, if they changed
        with self._lock:
            self._training.pop(tracker.run.run_id, None)
            while self._queue and not self._closing and \
                    len(self._training) < self.settings.max_concurrent_runs:
                self._launch(*self._queue.popleft())
            self.status_changed()

    # -- controls ------------------------------------------------------------------------

    def pause(self, run_id: str | None = None) -> RunRecord:
        return self._control(run_id, "pause", ("running",), "paused")

    def resume(self, run_id: str | None = None) -> RunRecord:
        return self._control(run_id, "resume", ("paused",), "running")

    def stop(self, run_id: str | None = None) -> RunRecord:
        return self._control(run_id, "stop", ("running", "paused"), "stopping")

    def _control(self, run_id: str | None, action: str, allowed: tuple[str, ...],
                 new_state: str) -> RunRecord:
        with self._lock:
            run = self.get(run_id, action)
            if run.state not in allowed:
                raise RunConflict(self._refusal(run, action))
            tracker = self._training[run.run_id]
            if action == "stop":
                tracker.job.stop()  # killed if it does not stop within the grace period
            else:
                tracker.job.command(action)
            run.state = new_state
            self.status_changed()
        log.info("run %s: %s", run.run_id, new_state)
        return run

    def _refusal(self, run: RunRecord, action: str) -> str:
        if run.state == "queued":
            return (f"cannot {action} run {run.run_id}: it is queued (position "
                    f"{self.queue_position(run)}) and has not started; DELETE "
                    f"/api/runs/{run.run_id} takes it out of the queue")
        return f"cannot {action}: the run is {run.state}"

    def set_hyperparameters(self, run_id: str | None = None, learning_rate: float | None = None,
                            momentum: float | None = None) -> RunRecord:
        """Change an active run's learning rate and/or momentum from its next batch;
        RunConflict if it is not training, ValueError (ConfigError) for bad values."""
        changes = {"learning_rate": learning_rate, "momentum": momentum}
        changes = {name: value for name, value in changes.items() if value is not None}
        with self._lock:
            run = self.get(run_id, "change the learning rate")
            if run.state not in ("running", "paused"):
                raise RunConflict(f"cannot change the learning rate: the run is {run.state}")
            if not changes:
                raise ConfigError("give a learning_rate, a momentum or both")
            TrainConfig().replace(**run.config).replace(**changes)  # the engine's own ranges
            self._training[run.run_id].job.command("hyperparameters", learning_rate, momentum)
        log.info("run %s: learning rate %s, momentum %s asked for", run.run_id, learning_rate,
                 momentum)
        return run

    def step(self, run_id: str | None = None) -> RunRecord:
        """One epoch more: a paused run trains to the end of its current epoch and
        pauses again; a finished (or stopped) run trains one more whole epoch from its
        last checkpoint (a stopped run's unfinished epoch is trained again)."""
        self._latest_drawings()  # read now, outside the lock, if they changed
        with self._lock:
            run = self.get(run_id, "step")
            if run.state == "paused":
                self._training[run.run_id].job.command("step")
                run.state = "running"
                self.status_changed()
            elif run.state == "finished":
                if run.checkpoint is None:
                    raise RunConflict(f"cannot step: run {run.run_id} has no checkpoint to "
                                      "train on from; start a new run")
                checkpoint, config = self._checkpoint_to_resume(run)
                self._resume(run, checkpoint, config.replace(epochs=checkpoint.epoch + 1))
            else:
                raise RunConflict(f"cannot step: the run is {run.state}; "
                                  + ("pause it first" if run.state == "running"
                                     else "step works on a paused or finished run"))
        log.info("run %s: one epoch more", run.run_id)
        return run

    def cancel(self, run_id: str) -> RunRecord:
        """Take a queued run out of the queue: it is forgotten."""
        with self._lock:
            run = self.get(run_id)
            entry = next((entry for entry in self._queue if entry[0].run is run), None)
            if entry is None:
                raise RunConflict(f"run {run.run_id} is {run.state}: only a queued run can be "
                                  "deleted" + ("; stop it instead" if run.state in ACTIVE_STATES
                                               else ""))
            self._queue.remove(entry)
            del self.runs[run.run_id]
            try:
                self.store.delete(run.run_id)
            except StoreError as exc:
                log.warning("run %s: %s", run.run_id, exc)
            self.hub.publish("cancelled", {"run_id": run.run_id})
            self.status_changed()
        log.info("run %s taken out of the queue", run.run_id)
        return run

    # -- what workers report (tracker.py) -----------------------------------------------------

    def worker_state(self, run: RunRecord, state: str) -> None:
        with self._lock:
            if run.state in ("running", "paused"):
                run.state = state
        self.status_changed()

    def run_ended(self, tracker: RunTracker, outcome: str, message: str | None,
                  kind: str | None) -> None:
        run = tracker.run
        self.predictor.run_ended(run.run_id, outcome)
        detail = None
        if message and "\n" in message:  # a bug's traceback: for the log, not the page
            message, detail = message.split("\n", 1)
        with self._lock:
            run.finished_at = time.time()
            if outcome == "failed":
                run.state = run.outcome = "failed"
                run.message = message
                if kind == "data":
                    self._data_message = message
            elif outcome == "stopped" and self._closing:  # continued when the server is back
                run.state = run.outcome = "interrupted"
                run.message = interrupted_message(len(run.epochs), run.config["epochs"],
                                                  run.checkpoint_epoch)
            else:  # a stopped run's state is "finished"; the done event says it was stopped
                run.state, run.outcome = "finished", outcome
        self.store_run(run)
        if outcome == "failed":
            self.hub.publish("error", {"run_id": run.run_id, "message": message})
            log.log(logging.ERROR if kind == "bug" else logging.WARNING, "run %s failed: %s%s",
                    run.run_id, message, f"\n{detail}" if detail else "")
        else:
            self.hub.publish("done", {"run_id": run.run_id, "state": run.outcome,
                                      "epochs_completed": len(run.epochs),
                                      "test_accuracy": run.final_test_accuracy,
                                      "seconds": run.finished_at - run.started_at})
            log.info("run %s %s after %d epochs", run.run_id, run.outcome, len(run.epochs))
        self.status_changed()

    # -- storage -------------------------------------------------------------------------

    def store_run(self, run: RunRecord) -> None:
        """Keep the run's record in the runs directory. A failure is reported like a
        checkpoint's, never raised: the run goes on."""
        try:
            self.store.save(run)
        except StoreError as exc:
            self.storage_failed(run, "records", str(exc))
        else:
            run.store_error = None

    def storage_failed(self, run: RunRecord, kind: str, message: str) -> None:
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

    # -- the server's life -----------------------------------------------------------------

    def shutdown(self, timeout: float = 5.0) -> None:
        """The server is going down: every run in a worker stops between batches (and is
        recorded as interrupted, to be continued); one that does not within `timeout`
        seconds is killed. Queued runs stay recorded as queued: the next server lists
        them as interrupted."""
        with self._lock:
            self._closing = True
            trackers = list(self._training.values())
            for tracker in trackers:
                if tracker.job is not None:
                    tracker.job.command("stop")
        deadline = time.monotonic() + timeout
        for tracker in trackers:
            if not tracker.gone.wait(max(0.0, deadline - time.monotonic())):
                log.warning("run %s did not stop within %g s: its worker is killed",
                            tracker.run.run_id, timeout)
                tracker.job.kill()
                tracker.gone.wait(2.0)
        self.executor.shutdown()
        self.store.close()  # reopened if a late message still writes

    def restore_runs(self) -> None:
        """At startup: list the runs earlier servers recorded in the runs directory. A
        run that was active (or queued) when its server died is "interrupted", its
        checkpoint checked on disk (continue_run takes it on from there)."""
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
            if run.state in LIVE_STATES:
                interrupted += 1
                run.state = run.outcome = "interrupted"
                done = max(len(run.epochs), run.checkpoint_epoch or 0)
                run.message = interrupted_message(done, run.config.get("epochs", 0),
                                                  run.checkpoint_epoch)
                self.store_run(run)
            self.runs[run.run_id] = run
            self._batches_in_store.add(run.run_id)
        if stored:
            log.info("%d earlier runs listed from %s (%d interrupted)", len(stored),
                     self.store.path, interrupted)

    def _checkpoint_path(self, run_id: str):
        return checkpoint_dir(self.settings) / f"run-{run_id}.npz"

    def continue_run(self, run_id: str) -> RunRecord:
        """Train an interrupted run on from its checkpoint after epoch k: the same config,
        the optimizer's saved state, epochs k+1 on, appended to the run's own records.
        NotFound for an unknown run; RunConflict when it cannot be continued (the
        message says why); QueueFull when no worker is free and the queue is full."""
        run = self.get(run_id)
        self._check_continuable(run)
        checkpoint, config = self._checkpoint_to_resume(run)
        self._latest_drawings()  # read now, outside the lock, if they changed
        with self._lock:
            self._check_continuable(run)  # again: another request may have come meanwhile
            self._resume(run, checkpoint, config)
        log.info("run %s continued from its checkpoint of epoch %d", run.run_id, checkpoint.epoch)
        return run

    def _resume(self, run: RunRecord, checkpoint: Checkpoint, config: TrainConfig) -> None:
        """(Holding the lock.) A new job for `run` from its checkpoint, to config.epochs:
        what it recorded after the checkpoint's epoch is forgotten (trained again)."""
        self._check_room()
        epoch = checkpoint.epoch
        batches = [point for point in self._stored_batches(run) if point["epoch"] <= epoch]
        run.epochs = [record for record in run.epochs if record["epoch"] <= epoch]
        run.batches = batches[:MAX_BATCH_RECORDS]
        run.hyperparameter_changes = [change for change in run.hyperparameter_changes
                                      if change["epoch"] <= epoch]
        self._batches_in_store.discard(run.run_id)
        run.config = config.to_dict()
        run.message = run.outcome = None
        state = checkpoint.optimizer_state
        run.progress = Progress(epoch, config.epochs, learning_rate=float(state["learning_rate"]),
                                momentum=float(state["momentum"]))
        try:
            self.store.truncate(run)
        except StoreError as exc:
            self.storage_failed(run, "records", str(exc))
        self._admit(RunTracker(run, self), self._job(run, resume_from=run.checkpoint))

    def _check_continuable(self, run: RunRecord) -> None:
        if run.state != "interrupted":
            raise RunConflict(f"run {run.run_id} is {run.state}: only an interrupted run "
                              "can be continued")
        if run.checkpoint is None:
            raise RunConflict(f"run {run.run_id} has no checkpoint to continue from; "
                              "start a new run")

    def _checkpoint_to_resume(self, run: RunRecord) -> tuple[Checkpoint, TrainConfig]:
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

    # -- records and images for the API ------------------------------------------------------

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

    def _load_data(self):
        """MNIST for the images the page shows (the server's own copy, uint8)."""
        if self._mnist is None:
            self._mnist = load_mnist(self.settings.data_dir, download=self.settings.download)
            self._data_message = None
        return self._mnist

    def test_correct(self, model) -> tuple[int, int]:
        """(correct, total) of `model` on MNIST's test images (the server's copy);
        DataError when the server has no MNIST."""
        data = self._load_data()
        _, correct = model.evaluate(data.test_images, data.test_labels.astype(np.int64))
        return correct, len(data.test_labels)

    def confusion_cell(self, run_id: str, label: int, predicted: int, limit: int) -> dict:
        """The test images of one cell of a run's latest confusion matrix; NotFound
        when there is no such run or it has not been evaluated yet."""
        run = self.get(run_id)
        evaluation = run.evaluation
        if evaluation is None:
            raise NotFound(f"run {run_id} has no evaluation yet: it comes after the first epoch")
        indices = evaluation.cell(label, predicted)
        test_images = self._load_data().test_images
        return {"run_id": run_id, "epoch": run.evaluation_epoch, "label": label,
                "predicted": predicted, "count": len(indices),
                "images": [test_image(evaluation, index, test_images)
                           for index in indices[:limit]]}

    def augment_preview(self, settings: Augmentation, count: int, seed: int) -> dict:
        """The first `count` training images and one random distortion of each, as
        training would make it with these settings; DataError without MNIST."""
        data = self._load_data()
        images, labels = data.train_images[:count], data.train_labels[:count]
        distorted = augment(scale_images(images), np.random.default_rng(seed), settings)
        distorted = np.rint(np.clip(distorted[:, 0], 0, 1) * 255).astype(np.uint8)
        return {"originals": [sample(image, label) for image, label in zip(images, labels)],
                "augmented": [sample(image, label) for image, label in zip(distorted, labels)]}
