"""The reporter: what a run tells the server, made in the worker that trains it.

The engine's trainer calls back after every batch; the reporter throttles what it
passes on (batch events at most ~10 a second, the last batch of an epoch always;
filters as the trainer sends them, about once a second and at every epoch end;
evaluation and histograms once an epoch) and serialises each event's JSON here, so
that the server only numbers and forwards ready-made events (one serialisation per
event, in the worker's process, not on the server's event loop or under its GIL).

What it sends, through `send`, is a message: a tuple whose first item says its kind.
- ("event", name, json_text, info): an event for the stream; `info` is what the
  server keeps of it for the API (the batch point, the epoch record, the
  Evaluation behind the confusion matrix, a learning-rate change), or None.
- ("state", "paused" | "running"): the trainer paused or resumed by itself (a step).
- ("snapshot", epoch, step, weights, averaged): the model between two batches, at
  most every `snapshot_interval` s and at each epoch end, for predictions: its
  weights (Model.state()) and, for a run that averages them, the average's (else None).
The worker adds its own (worker.py): "started", "checkpoint", "checkpoint_error",
"ended".
"""

from __future__ import annotations

import json
import time
from typing import Callable

import numpy as np

from cnn.model import Model

from .filter_images import filters_event
from .gallery import evaluation_event
from .run_record import BATCH_FIELDS, DRAWINGS_FIELDS, EPOCH_FIELDS

BATCH_EVENT_INTERVAL = 0.1   # seconds: at most ~10 batch events a second
PROGRESS_FIELDS = ("epoch", "step", "steps", "progress", "eta_seconds", "learning_rate",
                   "momentum")

Send = Callable[[tuple], None]


def to_json(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False)


class Reporter:
    """The trainer's callback for one run (see the module doc)."""

    def __init__(self, run_id: str, send: Send, model: Model, average_of: Callable,
                 test_images: np.ndarray, snapshot_interval: float) -> None:
        self.run_id, self.send, self.model = run_id, send, model
        self.average_of = average_of  # the trainer's WeightAverage, or None
        self.test_images = test_images  # MNIST's, uint8: the gallery's pixels
        self.snapshot_interval = snapshot_interval
        self._last_batch = 0.0
        self._last_snapshot = -float("inf")
        self._loss_sum, self._loss_count = 0.0, 0
        self._unpublished: dict | None = None  # the last batch, if not sent yet
        self.latest = (0, 0)  # (epoch, step) of the last batch

    def __call__(self, event: dict) -> None:
        kind = event["type"]
        handler = getattr(self, f"_{kind}", None)
        if handler is not None:
            handler(event)

    def event(self, name: str, payload: dict, info=None) -> None:
        self.send(("event", name, to_json(payload), info))

    def snapshot(self) -> None:
        """The model as it is now (call between batches, in the training thread)."""
        average = self.average_of()
        averaged = average.named(self.model) if average is not None else None
        if averaged is not None:
            averaged = {name: value.copy() for name, value in averaged.items()}
        self.send(("snapshot", *self.latest, self.model.state(), averaged))
        self._last_snapshot = time.monotonic()

    def _batch(self, event: dict) -> None:
        self.latest = (event["epoch"], event["step"])
        now = time.monotonic()
        if now - self._last_snapshot >= self.snapshot_interval:
            self.snapshot()
        self._loss_sum += event["loss"]
        self._loss_count += 1
        self._unpublished = event
        if now - self._last_batch >= BATCH_EVENT_INTERVAL or event["step"] == event["steps"]:
            self.flush()

    def flush(self) -> None:
        """Send the last batch now if it was held back (a run that stops: its last
        point on the chart and its progress are where it stopped)."""
        event = self._unpublished
        if event is None:
            return
        payload = {**event, "loss": self._loss_sum / self._loss_count, "run_id": self.run_id}
        del payload["type"]
        info = {key: payload[key] for key in {*BATCH_FIELDS, *PROGRESS_FIELDS}}
        self.event("batch", payload, info)
        self._last_batch, self._loss_sum, self._loss_count = time.monotonic(), 0.0, 0
        self._unpublished = None

    def _epoch(self, event: dict) -> None:
        self.snapshot()
        record = {key: event[key] for key in EPOCH_FIELDS}
        record.update({key: event[key] for key in DRAWINGS_FIELDS if key in event})
        self.event("epoch", {**record, "run_id": self.run_id}, record)

    def _evaluation(self, event: dict) -> None:
        evaluation = event["evaluation"]
        payload = evaluation_event(self.run_id, event["epoch"], evaluation, self.test_images)
        if "drawings_confusion" in event:  # the held-out drawings' (worker.py)
            payload["drawings_confusion"] = event["drawings_confusion"]
        self.event("evaluation", payload, (event["epoch"], evaluation))

    def _histograms(self, event: dict) -> None:
        self.event("histograms", {"run_id": self.run_id, "epoch": event["epoch"],
                                  "layers": event["layers"]})

    def _filters(self, event: dict) -> None:  # bounded in bytes: see filter_images.py
        self.event("filters", filters_event(self.run_id, event["epoch"], event["step"],
                                            event["layers"]))

    def _hyperparameters(self, event: dict) -> None:
        change = {key: value for key, value in event.items() if key != "type"}
        change["run_id"] = self.run_id
        self.event("hyperparameters", change, change)

    def _state(self, event: dict) -> None:
        self.send(("state", event["state"]))
