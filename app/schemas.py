"""Pydantic models of every request and response body: /docs is the API's reference."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# "interrupted": the server stopped (was killed) while the run was active; a restarted
# server lists it so, and POST /api/runs/{id}/continue trains it on from its checkpoint.
# "queued": waiting for a free worker (CNN_LIVE_MAX_CONCURRENT_RUNS train at once).
State = Literal["idle", "queued", "running", "paused", "stopping", "finished", "failed",
                "interrupted"]
Outcome = Literal["finished", "stopped", "failed", "interrupted"]


MAX_KEY_SHOWN = 40  # characters of a stranger's key or value quoted back in an error


def _quoted(value) -> str:
    text = repr(value)
    return text if len(text) <= MAX_KEY_SHOWN else text[:MAX_KEY_SHOWN - 3] + "..."


class RequestBody(BaseModel):
    """A JSON request body: unknown keys refused, numbers finite.

    Unknown keys are refused here, in one error naming a few of them, before pydantic
    checks the fields: left to `extra="forbid"`, a 1.1 MB body of 100,000 unknown keys
    made 100,000 errors, 3.4 s of work on the event loop and a 10 MB answer."""
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data):
        if isinstance(data, dict):
            known = cls.model_fields
            unknown = [key for key in data if key not in known]
            if unknown:
                named = ", ".join(_quoted(key) for key in unknown[:5])
                more = f" and {len(unknown) - 5:,} more" if len(unknown) > 5 else ""
                raise ValueError(f"unknown keys {named}{more}; the keys are "
                                 f"{', '.join(known)}")
        return data


class DataStatus(BaseModel):
    available: bool = Field(description="whether the four MNIST files were found")
    directory: str = Field(description="the data directory searched")
    message: str | None = Field(None, description="what is wrong and how to fix it")


class RunStatus(BaseModel):
    """One run's state and progress."""
    state: State
    run_id: str | None
    preset: str | None
    config: dict | None
    queue_position: int | None = Field(None, description="1: the next queued run to start; "
                                                         "None when not queued")
    node: str | None = Field(None, description="where it trains: a worker's pid, a Ray node")
    epoch: int
    epochs: int
    step: int
    steps: int
    progress: float = Field(description="0..1 over the whole run")
    eta_seconds: float | None
    learning_rate: float | None = Field(description="the current learning rate (it may have "
                                                    "been changed live)")
    momentum: float | None = Field(description="SGD's momentum or Adam's beta1, now")
    elapsed_seconds: float
    message: str | None = Field(description="why the run failed, if it did")


class Status(RunStatus):
    """The current run (the newest active one; "idle" without any) as its own fields,
    as when one run trained at a time, and every queued or active run in `runs`."""
    runs: list[RunStatus] = Field([], description="every queued or active run, oldest first")
    max_concurrent_runs: int = Field(description="runs that train at once")
    queued: int = Field(description="runs waiting for a worker")
    max_queued_runs: int
    executor: Literal["process", "thread", "ray"]
    data: DataStatus


class AuthInfo(BaseModel):
    """Which requests need `Authorization: Bearer <token>` (CNN_LIVE_TOKEN), so that the
    page can ask for it up front. This route itself is always open."""
    write: bool = Field(description="starting and steering runs needs the token")
    read: bool = Field(description="every /api/* route needs it (CNN_LIVE_TOKEN_READ); "
                                   "/api/events also takes it as ?token=")


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class PresetInfo(BaseModel):
    name: str
    description: str
    spec: dict
    config: dict


class RunRequest(RequestBody):
    """A preset and, optionally, settings that replace the preset's own; with `spec`,
    a network of one's own trained with the preset's settings."""
    # strict: "64" is not a batch size and true is not a number of epochs.
    model_config = ConfigDict(strict=True)

    preset: str = Field("default", max_length=64, description="seed, seed-fc or default")
    epochs: int | None = Field(None, ge=1, le=1000)
    batch_size: int | None = Field(None, ge=1, le=60000)
    learning_rate: float | None = Field(None, gt=0, le=100)
    optimizer: Literal["sgd", "adam"] | None = None
    momentum: float | None = Field(None, ge=0, lt=1)
    lr_decay: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    filters: list[int] | None = Field(None, min_length=1, max_length=16,
                                      description="filters of each conv layer, in order")
    spec: dict | None = Field(None, description="a whole network instead of the preset's "
                                                "(see POST /api/specs/check); the preset "
                                                "still gives the training settings")
    train_size: int | None = Field(None, ge=1, le=60000)
    test_size: int | None = Field(None, ge=1, le=10000)
    augment_shift: float | None = Field(None, ge=0, le=8)
    augment_scale: float | None = Field(None, ge=0, le=0.5)
    augment_rotation: float | None = Field(None, ge=0, le=45)
    augment_stroke: float | None = Field(None, ge=0, le=1,
                                         description="pixels the strokes get randomly thicker "
                                                     "or thinner")
    # The start of a run, scheduled by batch (cnn/train.py; `default` uses them).
    lr_boost: float | None = Field(None, ge=1, le=10, description="the learning rate's "
                                   "multiple at the first batch, coming down to 1x over "
                                   "lr_boost_batches (1: none)")
    lr_boost_batches: int | None = Field(None, ge=0, le=10_000_000)
    augment_start: float | None = Field(None, ge=0, le=1, description="the augmentation's "
                                        "strength at the first batch, rising to full over "
                                        "augment_warmup batches")
    augment_warmup: int | None = Field(None, ge=0, le=10_000_000)
    include_drawings: float | None = Field(
        None, ge=0, le=0.9, description="the share of the training images that are people's "
                                        "own labelled drawings (POST /api/drawings; the "
                                        "teaching four fifths, each repeated evenly and "
                                        "augmented like MNIST); needs at least 10 drawings")

    def overrides(self) -> dict:
        return {key: value for key, value in self.model_dump().items()
                if value is not None and key not in ("preset", "filters", "spec")}


class SpecCheckRequest(RequestBody):
    """A network spec to check, and optionally the run it would train in (for the
    estimate of seconds per epoch: a preset's settings with overrides)."""
    model_config = ConfigDict(strict=True)

    spec: dict = Field(description='{"input": [1, 28, 28], "layers": [{"type": "conv", '
                                   '"filters": 8, "kernel": 3, "stride": 1, "padding": 1}, '
                                   '{"type": "relu"}, {"type": "maxpool", "size": 2}, '
                                   '{"type": "flatten"}, {"type": "dense", "units": 10}], '
                                   '"loss": "softmax_cross_entropy", "init": "he"}')
    preset: str = Field("default", max_length=64,
                        description="whose training settings the estimate assumes")
    epochs: int | None = Field(None, ge=1, le=1000)
    batch_size: int | None = Field(None, ge=1, le=60000)
    optimizer: Literal["sgd", "adam"] | None = None
    train_size: int | None = Field(None, ge=1, le=60000)
    test_size: int | None = Field(None, ge=1, le=10000)

    def overrides(self) -> dict:
        return {key: value for key, value in self.model_dump().items()
                if value is not None and key not in ("preset", "spec")}


class LayerCheck(BaseModel):
    type: str
    output_shape: list[int] = Field(description="[C, H, W] for images, [D] for vectors")
    parameters: int
    multiply_adds: int = Field(description="per image, forward")


class SpecLimits(BaseModel):
    """The server's limits on one network and one run (each an environment variable)."""
    layers: int = Field(description="CNN_LIVE_MAX_LAYERS")
    parameters: int = Field(description="CNN_LIVE_MAX_PARAMETERS")
    multiply_adds: int = Field(description="CNN_LIVE_MAX_MULTIPLY_ADDS, per image")
    values_per_image: int = Field(description="CNN_LIVE_MAX_VALUES_PER_IMAGE")
    run_memory_mb: int = Field(description="CNN_LIVE_MAX_RUN_MEMORY_MB")
    run_minutes: int = Field(description="CNN_LIVE_MAX_RUN_MINUTES: the estimated time "
                                         "of a whole run")


class SpecCheck(BaseModel):
    """A valid network: each layer's output shape and cost, the totals, and how long
    an epoch would take on this server."""
    spec: dict = Field(description="the spec with its defaults filled in")
    layers: list[LayerCheck]
    parameters: int
    multiply_adds: int = Field(description="per image, forward")
    seconds_per_epoch: float = Field(description="estimated on this server, from a "
                                                 "calibration it measured once")
    run_seconds: float = Field(description="seconds_per_epoch x epochs")
    epochs: int
    limits: SpecLimits


class SpecProblem(BaseModel):
    """Why a spec was refused (422)."""
    detail: str = Field(description="the problem and how to fix it")
    layer: int | None = Field(None, description="the index of the layer at fault, if one is")
    layer_type: str | None = Field(None, description="its type, as the spec gave it")


class EpochRecord(BaseModel):
    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    test_correct: int
    test_total: int
    seconds: float
    images_per_second: float
    learning_rate: float
    momentum: float | None = None
    drawings_correct: int | None = Field(None, description="of the person's held-out "
                                         "drawings (POST /api/drawings), read right by the "
                                         "weights that answer; present when the server had "
                                         "at least 10 labelled drawings as the run started")
    drawings_total: int | None = None
    drawings_accuracy: float | None = None


class RunInfo(BaseModel):
    run_id: str
    preset: str
    config: dict
    spec: dict = Field(description="the network it trains: its preset's, or the spec it was "
                                   "started with (see POST /api/specs/check)")
    state: State
    started_at: float
    finished_at: float | None
    epochs: list[EpochRecord]
    final_test_accuracy: float | None
    message: str | None
    outcome: Outcome | None = Field(
        None, description="how the run ended (a stopped run's state is finished)")
    checkpoint: str | None = Field(None, description="the .npz of its last completed epoch "
                                                     "written (see checkpoint_epoch)")
    checkpoint_epoch: int | None = Field(None, description="the epoch that file holds: never "
                                                           "more than it really holds")
    node: str | None = Field(None, description="where it trains or trained (this server's "
                                               "runs): a worker's pid, a Ray node")
    checkpoint_error: str | None = Field(None, description="why the latest epoch's checkpoint "
                                                           "could not be written (training "
                                                           "goes on)")
    store_error: str | None = Field(None, description="why the run's records could not be "
                                                      "kept in the runs directory (training "
                                                      "goes on)")


class ErrorMessage(BaseModel):
    detail: str


class ComparisonRequest(RequestBody):
    """Several runs started together, to compare them side by side."""
    runs: list[RunRequest] = Field(min_length=2, max_length=8,
                                   description="one run request each, e.g. seed against "
                                               "seed-fc, or one preset at four learning rates")


class Comparison(BaseModel):
    run_ids: list[str] = Field(description="the runs started, in the order asked")
    runs: list[RunStatus]


class ContinueRequest(BaseModel):
    """Nothing to set: a run continues with its own config (the body may be {})."""
    model_config = ConfigDict(extra="forbid")


# -- steering and insight -------------------------------------------------------------------


class HyperparametersRequest(RequestBody):
    """New values for the run in training; they take effect at its next batch."""
    model_config = ConfigDict(strict=True)

    learning_rate: float | None = Field(None, gt=0, le=100)
    momentum: float | None = Field(None, ge=0, lt=1,
                                   description="SGD's momentum, or Adam's beta1")

    @model_validator(mode="after")
    def _something_to_change(self) -> "HyperparametersRequest":
        if self.learning_rate is None and self.momentum is None:
            raise ValueError("give a learning_rate, a momentum or both")
        return self


class ScoredImage(BaseModel):
    index: int = Field(description="its index in the MNIST test set")
    label: int = Field(description="the true digit")
    predicted: int = Field(description="the network's answer")
    probability: float = Field(description="the probability the network gave its answer")
    pixels: str = Field(description="base64 of 28x28 uint8, row-major, 0 = background")


class ConfusionCell(BaseModel):
    run_id: str
    epoch: int = Field(description="the epoch whose evaluation this is (the latest)")
    label: int
    predicted: int
    count: int = Field(description="how many test images are in this cell")
    images: list[ScoredImage] = Field(description="the first `limit` of them, the network's "
                                                "most confident answers first")


class BatchRecord(BaseModel):
    epoch: int
    step: int
    steps: int
    global_step: int
    loss: float = Field(description="mean loss of the batches since the previous point")
    accuracy: float
    learning_rate: float
    momentum: float


class RunMetrics(BaseModel):
    run_id: str
    preset: str
    config: dict
    spec: dict
    state: State
    outcome: Outcome | None
    started_at: float
    finished_at: float | None
    epochs: list[EpochRecord]
    batches: list[BatchRecord] = Field(description="the loss points the page was sent")
    hyperparameter_changes: list[dict] = Field(description="live changes, where they took "
                                                           "effect, with the values before")


class SampleImage(BaseModel):
    label: int
    pixels: str = Field(description="base64 of 28x28 uint8, row-major, 0 = background")


class AugmentPreview(BaseModel):
    originals: list[SampleImage] = Field(description="the first training images")
    augmented: list[SampleImage] = Field(description="augmented[i] is a random distortion "
                                                     "of originals[i]")


# -- predictions ----------------------------------------------------------------------------

MAX_PIXELS_BASE64 = 4 * (512 * 512 + 2) // 3  # a 512 x 512 drawing, in base64

ModelSource = Literal["training", "finished", "uploaded", "bundled"]
WeightsKind = Literal["averaged", "raw"]


class DrawingBody(RequestBody):
    """A drawing, 0..255 with ink high, 8 <= H, W <= 512, given one of two ways:
    `image`, H rows of W numbers (easy to write by hand), or `pixels` with `width`, its
    H x W bytes in base64 (what the page sends: a fifth of the JSON, and the server
    reads it some thirty times faster, which matters to a training sharing its CPU)."""
    model_config = ConfigDict(json_schema_extra={
        "examples": [{"image": [[0] * 8] * 3 + [[0, 0, 0, 255, 255, 0, 0, 0]] * 2
                      + [[0] * 8] * 3, "explain": False}]})

    # Checked by app.predict.read_drawing in the endpoint, not here: one error for
    # the first bad pixel, not one per pixel, and quickly (a 512x512 drawing).
    image: list | None = Field(None, description="H rows of W numbers 0..255 (ink high), "
                                                 "8 <= H, W <= 512",
                               json_schema_extra={"items": {"type": "array",
                                                            "items": {"type": "number",
                                                                      "minimum": 0,
                                                                      "maximum": 255}},
                                                  "minItems": 8, "maxItems": 512})
    pixels: str | None = Field(None, max_length=MAX_PIXELS_BASE64,
                               description="instead of image: base64 of the H x W "
                                           "bytes, row by row (needs width)")
    width: int | None = Field(None, strict=True, ge=8, le=512,
                              description="W, the width of `pixels`")
    run_id: str | None = Field(None, max_length=64,
                               description="the run whose model answers (GET "
                                           "/api/model/choices lists them); by default the "
                                           "newest run in training, else the last that ended, "
                                           "else the bundled model")
    weights: WeightsKind = Field("averaged", description="averaged: the run's moving average "
                                 "of its weights answers (steadier; the default); raw: the "
                                 "weights as the last step left them. A model that holds only "
                                 "one kind answers with it (the answer's model.weights says)")


class PredictRequest(DrawingBody):
    __doc__ = DrawingBody.__doc__
    explain: bool = Field(False, strict=True,
                          description="also return every image layer's output (feature maps)")


# -- people's own drawings ------------------------------------------------------------------

class SaveDrawingRequest(DrawingBody):
    """A drawing (as for /api/predict) and the digit it is, as its author says."""
    model_config = ConfigDict(json_schema_extra={
        "examples": [{"image": [[0] * 8] * 3 + [[0, 0, 0, 255, 255, 0, 0, 0]] * 2
                      + [[0] * 8] * 3, "label": 1}]})
    label: int = Field(strict=True, ge=0, le=9, description="the digit the drawing is")


class RelabelRequest(RequestBody):
    label: int = Field(strict=True, ge=0, le=9, description="the digit the drawing is")


class SavedDrawing(BaseModel):
    id: int
    created: float = Field(description="when it was saved, seconds since 1970")
    label: int
    answer: int | None = Field(description="the server's answer when it was saved")
    probability: float | None = Field(description="that answer's probability")
    answered_by: str | None = Field(description="the model that gave it")
    held_out: bool = Field(description="every fifth drawing is only ever measured, never "
                                       "taught: its accuracy stays honest")
    image: list[list[int]] = Field(description="the 28x28 image the network saw, 0..255")


class DrawingList(BaseModel):
    drawings: list[SavedDrawing]
    total: int
    counts: dict[int, int] = Field(description="drawings per label")
    max_count: int
    held_out_every: int
    min_drawings: int = Field(description="runs are measured on the drawings, and can "
                                          "learn from them (Teach now), from this many on")


class DrawingsImported(BaseModel):
    imported: int
    ids: list[int]


class DrawingScore(BaseModel):
    correct: int
    total: int
    accuracy: float | None = Field(description="correct / total; null without drawings")


class TeachRequest(RequestBody):
    """Which model to teach (as for /api/predict) and how long."""
    model_config = ConfigDict(strict=True)
    run_id: str | None = Field(None, max_length=64, description="the run whose model is "
                               "taught; by default the model that answers drawings now")
    weights: WeightsKind = Field("averaged", description="which of its weights")
    passes: int = Field(1, ge=1, le=5, description="passes over the drawings mixed into "
                                                   "the replayed MNIST images")


class TeachStarted(BaseModel):
    run_id: str = Field(description="the teaching run: its events come like any run's, "
                                    "and its model answers drawings when it ends")
    state: str
    taught_from: "ModelInfo"
    before: "DrawingScore" = Field(description="the model before teaching, on the "
                                               "held-out drawings (its epoch records give "
                                               "the figures after)")
    before_test_accuracy: float | None = Field(description="and on MNIST's test set")


class DrawingAccuracy(BaseModel):
    model: ModelInfo
    held_out: DrawingScore = Field(description="the fifth of the drawings never taught: "
                                               "the honest figure")
    all: DrawingScore
    confusion: list[list[int]] = Field(description="held-out drawings: confusion[label]"
                                                   "[answer]")


class ModelInfo(BaseModel):
    source: ModelSource = Field(description="training: a snapshot of the run in training; "
                                            "finished: the last run's final weights; uploaded: "
                                            "a model sent to POST /api/model; bundled: "
                                            "the pretrained model shipped with the server")
    run_id: str | None
    epoch: int | None = Field(description="the epoch the snapshot was taken in")
    step: int | None = Field(description="the step within that epoch")
    description: str
    weights: WeightsKind = Field("raw", description="which weights answered: the run's moving "
                                 "average of its weights, or the raw weights of its last step")
    weights_available: list[WeightsKind] = Field(
        ["raw"], description="the kinds of weights this model can answer with (a run that "
                             "averages has both; a model file holds one)")


class FeatureMap(BaseModel):
    layer: int = Field(description="the layer's index in the spec")
    name: str = Field(description="e.g. 0.conv")
    kind: str
    shape: list[int] = Field(description="[C, H, W]: the layer's whole output")
    maps: list[list[list[int]]] = Field(description="shown_maps x H' x W', 0..255: the "
                                                    "first maps of the layer, scaled from "
                                                    "low..high, i.e. value = low + "
                                                    "(high - low) * m / 255; averaged down "
                                                    "to at most 28x28 when `downsampled`")
    low: float = Field(description="the layer's smallest value (all its maps)")
    high: float = Field(description="the layer's largest value")
    filters: list[list[list[list[float]]]] | None = Field(
        description="a conv layer's weights for the maps shown: shown_maps x C' x K' x K', "
                    "at most the first 16 input channels, kernels averaged down to at most "
                    "7x7 (then `downsampled`); null for other layers, and for a conv "
                    "shown after the answer's size budget ran out")
    shown_maps: int = Field(description="maps sent: at most 32 a layer, fewer once the "
                                        "answer's size budget runs out (then one small map)")
    total_maps: int = Field(description="maps the layer has (C)")
    downsampled: bool = Field(description="maps (or kernels) were averaged down to fit")


class LayerVector(BaseModel):
    layer: int
    name: str = Field(description="e.g. 5.dense")
    kind: str
    values: list[float] = Field(description="the layer's first values (at most 256)")
    total_values: int = Field(description="values the layer has")


class Prediction(BaseModel):
    digit: int = Field(ge=0, le=9)
    probabilities: list[float] = Field(min_length=10, max_length=10)
    input: list[list[float]] = Field(description="the 28x28 image the network saw, 0..1")
    model: ModelInfo
    feature_maps: list[FeatureMap] | None = Field(
        description="with explain: one entry per layer whose output is images, in spec order")
    vectors: list[LayerVector] | None = Field(
        None, description="with explain: the output of every layer after the flatten "
                          "(dense layers and their activations), in spec order")
