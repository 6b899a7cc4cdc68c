"""Tests for cnn.train: settings, reproducibility, events, pause/resume/stop,
divergence, learning-rate decay, the schedule of a run's start, and learning on the
real MNIST."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from cnn.checkpoint import load_checkpoint, save_checkpoint
from cnn.model import Model, TrainingDiverged
from cnn.optim import OPTIMIZERS
from cnn.presets import PRESETS
from cnn.train import (SCHEDULE_BATCHES, ConfigError, Dataset, TrainConfig, Trainer,
                       make_dataset, scale_images)

SMALL_CONV = {"input": [1, 28, 28],
              "layers": [{"type": "conv", "filters": 4, "kernel": 3}, {"type": "relu"},
                         {"type": "maxpool", "size": 2}, {"type": "flatten"},
                         {"type": "dense", "units": 10}]}
TWO_CONVS = {"input": [1, 28, 28],
             "layers": [{"type": "conv", "filters": 4, "kernel": 3}, {"type": "relu"},
                        {"type": "conv", "filters": 6, "kernel": 5, "stride": 2},
                        {"type": "relu"}, {"type": "flatten"}, {"type": "dense", "units": 10}]}
EPOCH_KEYS = {"type", "epoch", "epochs", "train_loss", "train_accuracy", "test_loss",
              "test_accuracy", "test_correct", "test_total", "seconds", "images_per_second",
              "learning_rate", "momentum"}
BATCH_KEYS = {"type", "epoch", "step", "steps", "global_step", "loss", "accuracy",
              "images_per_second", "learning_rate", "momentum", "progress", "eta_seconds"}
TIMING_KEYS = {"seconds", "images_per_second"}


def train(mnist, spec=SMALL_CONV, seed=0, **settings):
    """Train a fresh model; returns (model, trainer, events)."""
    config = TrainConfig(**{"epochs": 1, "batch_size": 32, "learning_rate": 0.01,
                            "train_size": 256, "test_size": 100, "seed": seed, **settings})
    events: list[dict] = []
    model = Model(spec, seed=seed)
    trainer = Trainer(model, config, make_dataset(mnist, config), events.append)
    trainer.run()
    return model, trainer, events


def of_type(events, kind):
    return [event for event in events if event["type"] == kind]


def without_timing(history):
    return [{k: v for k, v in record.items() if k not in TIMING_KEYS} for record in history]


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 0, "epochs must be an integer from 1 to 10000, got 0"),
    ("epochs", 2.0, "epochs must be an integer from 1 to 10000, got 2.0"),
    ("epochs", True, "epochs must be an integer from 1 to 10000, got True"),
    ("batch_size", 0, "batch_size must be an integer from 1 to 60000, got 0"),
    ("optimizer", "rmsprop", "optimizer must be one of ['adam', 'sgd'], got 'rmsprop'"),
    ("learning_rate", 0.0, "learning_rate must be a number in (0.0, 100.0], got 0.0"),
    ("learning_rate", -0.1, "learning_rate must be a number in (0.0, 100.0], got -0.1"),
    ("learning_rate", math.nan, "learning_rate must be a number in (0.0, 100.0], got nan"),
    ("learning_rate", "0.1", "learning_rate must be a number in (0.0, 100.0], got '0.1'"),
    ("momentum", 1.0, "momentum must be a number in [0.0, 1.0), got 1.0"),
    ("momentum", -0.5, "momentum must be a number in [0.0, 1.0), got -0.5"),
    ("lr_decay", 0.0, "lr_decay must be a number in (0.0, 1.0], got 0.0"),
    ("lr_decay", 1.5, "lr_decay must be a number in (0.0, 1.0], got 1.5"),
    ("seed", -1, "seed must be an integer from 0 to 4294967295, got -1"),
    ("seed", 2**32, "seed must be an integer from 0 to 4294967295, got 4294967296"),
    ("train_size", 0, "train_size must be an integer from 1 to 10000000, got 0"),
    ("test_size", 1.5, "test_size must be an integer from 1 to 10000000, got 1.5"),
    ("shuffle", "yes", "shuffle must be true or false, got 'yes'"),
    ("filter_interval", -1.0, "filter_interval must be a number in [0.0, 3600.0], got -1.0"),
    ("lr_boost", 0.5, "lr_boost must be a number in [1.0, 10.0], got 0.5"),
    ("lr_boost", 11, "lr_boost must be a number in [1.0, 10.0], got 11"),
    ("lr_boost", 2.0, "lr_boost needs lr_boost_batches: the batches over which the boost "
                      "comes down to 1x"),
    ("lr_boost_batches", -5, "lr_boost_batches must be an integer from 0 to 10000000, got -5"),
    ("lr_boost_batches", 93.8, "lr_boost_batches must be an integer from 0 to 10000000, "
                               "got 93.8"),
    ("augment_start", 1.5, "augment_start must be a number in [0.0, 1.0], got 1.5"),
    ("augment_start", -0.1, "augment_start must be a number in [0.0, 1.0], got -0.1"),
    ("augment_start", 0.5, "augment_start needs augment_warmup: the batches over which the "
                           "augmentation rises to full strength"),
    ("augment_warmup", "938", "augment_warmup must be an integer from 0 to 10000000, "
                              "got '938'"),
])
def test_a_bad_setting_is_refused_with_a_message_naming_it(field, value, message):
    with pytest.raises(ConfigError) as caught:
        TrainConfig().replace(**{field: value})
    assert str(caught.value) == message


def test_an_unknown_setting_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"unknown training settings: \['epoch'\]"):
        TrainConfig().replace(epoch=3)


def test_replace_returns_a_checked_copy_and_leaves_the_original_alone():
    config = TrainConfig()
    changed = config.replace(epochs=5, train_size=None)
    assert (changed.epochs, config.epochs) == (5, 1)
    assert changed.to_dict()["train_size"] is None


def test_a_trainer_refuses_a_bad_config_before_training(mnist):
    config = TrainConfig(epochs=1, train_size=10, test_size=10)
    data = make_dataset(mnist, config)
    with pytest.raises(ConfigError, match="batch_size"):
        Trainer(Model(SMALL_CONV), TrainConfig(batch_size=-4), data)


def test_make_dataset_takes_the_first_images_as_uint8_views_of_mnist(mnist):
    data = make_dataset(mnist, TrainConfig(train_size=30, test_size=20))
    assert data.train_images.shape == (30, 28, 28) and data.test_images.shape == (20, 28, 28)
    assert data.train_images.dtype == np.uint8 and data.test_images.dtype == np.uint8
    assert data.train_labels.dtype == np.int64 and data.test_labels.dtype == np.int64
    # Views of the loaded arrays, not copies: MNIST is held once per process.
    assert np.shares_memory(data.train_images, mnist.train_images)
    assert np.shares_memory(data.test_images, mnist.test_images)
    assert data.train_images.base is not None and data.test_images.base is not None
    np.testing.assert_array_equal(data.train_images, mnist.train_images[:30])
    np.testing.assert_array_equal(data.test_labels, mnist.test_labels[:20])
    whole = make_dataset(mnist, TrainConfig())
    assert len(whole.train_images) == len(mnist.train_images)
    assert np.shares_memory(whole.train_images, mnist.train_images)
    assert np.shares_memory(whole.test_images, mnist.test_images)


def test_scale_images_maps_pixels_to_the_unit_interval(mnist):
    scaled = scale_images(mnist.train_images[:30])
    assert scaled.shape == (30, 1, 28, 28) and scaled.dtype == np.float32
    assert 0.0 <= scaled.min() and scaled.max() == 1.0
    np.testing.assert_array_equal(scaled[:, 0], mnist.train_images[:30].astype(np.float32) / 255)


def scaled_copy(data: Dataset) -> Dataset:
    """The same data set with its images scaled to float32 up front (the old layout)."""
    return Dataset(scale_images(data.train_images), data.train_labels,
                   scale_images(data.test_images), data.test_labels)


@pytest.mark.parametrize("preset_or_spec, settings", [
    ("seed", {"epochs": 2, "train_size": 300, "test_size": 100}),
    (SMALL_CONV, {"epochs": 2, "batch_size": 32, "train_size": 320, "test_size": 150,
                  "seed": 5}),
    (SMALL_CONV, {"epochs": 2, "batch_size": 32, "train_size": 320, "test_size": 150,
                  "seed": 5, "augment_shift": 2.0, "augment_scale": 0.1,
                  "augment_rotation": 10.0, "augment_stroke": 0.5}),
    ("default", {"epochs": 2, "train_size": 300, "test_size": 200}),  # augmented, averaged
], ids=["seed-preset", "small-conv", "small-conv-augmented", "default-preset"])
def test_a_uint8_dataset_trains_exactly_as_the_same_images_scaled_up_front(
        mnist, preset_or_spec, settings):
    if isinstance(preset_or_spec, str):
        preset = PRESETS[preset_or_spec]
        spec, config = preset.spec, preset.config.replace(**settings)
    else:
        spec, config = preset_or_spec, TrainConfig(**settings)
    runs = []
    for data in (make_dataset(mnist, config), scaled_copy(make_dataset(mnist, config))):
        events: list[dict] = []
        model = Model(spec, seed=config.seed)
        trainer = Trainer(model, config, data, events.append)
        trainer._evaluation_batch = 64  # the test images in several chunks, each scaled
        trainer.run()
        runs.append((model, trainer, events))
    (uint8_model, uint8_trainer, uint8_events), (float_model, float_trainer, float_events) = runs
    assert make_dataset(mnist, config).train_images.dtype == np.uint8
    assert len(uint8_trainer.history) == config.epochs
    assert without_timing(uint8_trainer.history) == without_timing(float_trainer.history)
    for name, value in uint8_model.state().items():
        np.testing.assert_array_equal(value, float_model.state()[name])
    if uint8_trainer.average is not None:
        for a, b in zip(uint8_trainer.average.params, float_trainer.average.params):
            np.testing.assert_array_equal(a, b)
    batches = [[{k: v for k, v in e.items() if k not in ("images_per_second", "eta_seconds")}
                for e in of_type(events, "batch")] for events in (uint8_events, float_events)]
    assert batches[0] == batches[1]
    for field in ("predicted", "confidence"):
        np.testing.assert_array_equal(getattr(uint8_trainer.last_evaluation, field),
                                      getattr(float_trainer.last_evaluation, field))


def test_a_uint8_batch_is_scaled_just_before_the_step_and_the_model_scales_uint8_input(mnist):
    config = TrainConfig(epochs=1, batch_size=32, train_size=64, test_size=10, shuffle=False)
    data = make_dataset(mnist, config)
    model = Model(SMALL_CONV, seed=0)
    inputs = []
    real_train_step = model.train_step
    model.train_step = lambda x, labels, optimizer: (inputs.append(np.array(x)),
                                                     real_train_step(x, labels, optimizer))[1]
    Trainer(model, config, data).run()
    assert [x.dtype for x in inputs] == [np.float32, np.float32]
    np.testing.assert_array_equal(inputs[1], scale_images(mnist.train_images[32:64]))
    # uint8 given to the model is pixels, scaled the same way; float is taken as it is.
    pixels = mnist.test_images[:10]
    np.testing.assert_array_equal(model.predict_proba(pixels, batch_size=3),
                                  model.predict_proba(scale_images(pixels), batch_size=3))


# --- reproducibility -----------------------------------------------------------------------


def test_the_same_seed_gives_the_same_history_and_weights_bit_for_bit(mnist):
    runs = [train(mnist, seed=7, epochs=2, train_size=500, optimizer="adam") for _ in range(2)]
    (model_a, trainer_a, events_a), (model_b, trainer_b, events_b) = runs
    assert without_timing(trainer_a.history) == without_timing(trainer_b.history)
    assert [e["loss"] for e in of_type(events_a, "batch")] == \
        [e["loss"] for e in of_type(events_b, "batch")]
    state_a, state_b = model_a.state(), model_b.state()
    for name in state_a:
        assert state_a[name].tobytes() == state_b[name].tobytes(), name


def test_different_seeds_give_different_runs(mnist):
    model_a, trainer_a, _ = train(mnist, seed=1, train_size=500)
    model_b, trainer_b, _ = train(mnist, seed=2, train_size=500)
    assert trainer_a.history[0]["train_loss"] != trainer_b.history[0]["train_loss"]
    assert not np.array_equal(model_a.state()["0.weight"], model_b.state()["0.weight"])


# --- events --------------------------------------------------------------------------------


def test_every_step_reports_a_batch_event_with_loss_progress_and_eta(mnist):
    _, _, events = train(mnist, epochs=2, batch_size=50, train_size=200)
    batches = of_type(events, "batch")
    assert [(e["epoch"], e["step"]) for e in batches] == [(1, 1), (1, 2), (1, 3), (1, 4),
                                                          (2, 1), (2, 2), (2, 3), (2, 4)]
    assert [e["global_step"] for e in batches] == list(range(1, 9))
    for event in batches:
        assert set(event) == BATCH_KEYS
        assert event["steps"] == 4 and event["learning_rate"] == 0.01
        assert event["progress"] == pytest.approx(event["global_step"] / 8)
        assert math.isfinite(event["loss"]) and event["loss"] > 0
        assert 0.0 <= event["accuracy"] <= 1.0 and event["images_per_second"] > 0
        assert math.isfinite(event["eta_seconds"]) and event["eta_seconds"] >= 0
    assert batches[-1]["eta_seconds"] == pytest.approx(0.0)
    assert batches[0]["eta_seconds"] > batches[-2]["eta_seconds"]


def test_every_epoch_reports_an_epoch_event_with_all_keys_in_sensible_ranges(mnist):
    _, trainer, events = train(mnist, epochs=2, train_size=200, test_size=64)
    epochs = of_type(events, "epoch")
    assert epochs == trainer.history
    assert [e["epoch"] for e in epochs] == [1, 2]
    for event in epochs:
        assert set(event) == EPOCH_KEYS
        assert event["epochs"] == 2 and event["test_total"] == 64
        assert 0 <= event["test_correct"] <= 64
        assert event["test_accuracy"] == event["test_correct"] / 64
        assert 0.0 <= event["train_accuracy"] <= 1.0
        assert event["train_loss"] > 0 and event["test_loss"] > 0
        assert event["seconds"] > 0 and event["images_per_second"] > 0
    assert epochs[1]["train_loss"] < epochs[0]["train_loss"]


def test_filters_are_reported_at_the_start_and_after_every_epoch_per_conv_layer(mnist):
    model, _, events = train(mnist, spec=TWO_CONVS, epochs=2, batch_size=50, train_size=100,
                             filter_interval=3600.0)
    assert events[0]["type"] == "filters" and (events[0]["epoch"], events[0]["step"]) == (0, 0)
    filters = of_type(events, "filters")
    assert [(e["epoch"], e["step"]) for e in filters] == [(0, 0), (1, 2), (2, 2)]
    kinds = [event["type"] for event in events]
    assert kinds.count("epoch") == 2
    for index, kind in enumerate(kinds):
        if kind == "epoch":  # then its evaluation, histograms and filters
            assert kinds[index + 1:index + 4] == ["evaluation", "histograms", "filters"]
    for event in filters:
        assert [layer["layer"] for layer in event["layers"]] == [0, 2]
        assert [layer["weights"].shape for layer in event["layers"]] == [(4, 1, 3, 3),
                                                                         (6, 4, 5, 5)]
    assert not np.array_equal(filters[0]["layers"][0]["weights"], model.filters()[0])
    np.testing.assert_array_equal(filters[-1]["layers"][1]["weights"], model.filters()[1])


def test_a_zero_filter_interval_reports_filters_after_every_batch(mnist):
    _, _, events = train(mnist, batch_size=50, train_size=150, filter_interval=0.0)
    kinds = [event["type"] for event in events if event["type"] in ("filters", "batch", "epoch")]
    assert kinds == ["filters", "batch", "filters", "batch", "filters", "batch", "filters",
                     "epoch", "filters"]


def test_a_network_without_conv_layers_reports_no_filters(mnist):
    _, _, events = train(mnist, spec=PRESETS["seed-fc"].spec, train_size=50)
    assert of_type(events, "filters") == []


# --- pause, resume, stop ---------------------------------------------------------------------


class Controlled:
    """A trainer whose callback records events with their time and can act on them."""

    def __init__(self, mnist, epochs=1, on_event=None):
        config = TrainConfig(epochs=epochs, batch_size=20, train_size=200, test_size=20)
        self.model = Model(SMALL_CONV)
        self.events: list[tuple[float, dict]] = []
        self.on_event = on_event or (lambda trainer, event: None)
        self.trainer = Trainer(self.model, config, make_dataset(mnist, config), self.record)
        self.paused_during_step: list[bool] = []
        real_step = self.model.train_step

        def step(*args):
            self.paused_during_step.append(self.trainer.paused)
            self.events.append((time.monotonic(), {"type": "train_step"}))
            return real_step(*args)

        self.model.train_step = step

    def record(self, event):
        self.events.append((time.monotonic(), event))
        self.on_event(self.trainer, event)

    def kinds(self):
        return [event.get("state", event["type"]) for _, event in self.events
                if event["type"] not in ("filters", "train_step", "evaluation", "histograms",
                                          "checkpoint")]

    def between(self, first, last):
        """Event kinds after the first `first` and before the next `last`, steps included."""
        kinds = [event.get("state", event["type"]) for _, event in self.events]
        start = kinds.index(first)
        return kinds[start + 1:kinds.index(last, start)]

    def time_of(self, state):
        return next(t for t, e in self.events if e.get("state") == state)


def after_delay(seconds, action):
    thread = threading.Thread(target=lambda: (time.sleep(seconds), action()))
    thread.start()
    return thread


def test_a_pause_after_step_3_holds_the_run_until_another_thread_resumes_it(mnist):
    helpers = []

    def pause_after_step_3(trainer, event):
        if event["type"] == "batch" and event["step"] == 3:
            trainer.pause()
            helpers.append(after_delay(0.3, trainer.resume))

    run = Controlled(mnist, on_event=pause_after_step_3)
    run.trainer.run()
    helpers[0].join()
    assert run.kinds() == ["batch"] * 3 + ["paused", "running"] + ["batch"] * 7 + ["epoch"]
    assert run.time_of("running") - run.time_of("paused") >= 0.25
    assert run.paused_during_step == [False] * 10  # no batch ran while paused
    assert not run.trainer.stopped and len(run.trainer.history) == 1


def test_stop_while_paused_ends_the_run_early_and_marks_it_stopped(mnist):
    helpers = []

    def pause_after_step_3(trainer, event):
        if event["type"] == "batch" and event["step"] == 3:
            trainer.pause()
            helpers.append(after_delay(0.1, trainer.stop))

    run = Controlled(mnist, epochs=3, on_event=pause_after_step_3)
    history = run.trainer.run()
    helpers[0].join()
    assert run.trainer.stopped
    assert history == [] and len(history) < 3
    assert run.kinds() == ["batch"] * 3 + ["paused"]
    assert run.paused_during_step == [False] * 3


def test_stop_between_batches_keeps_the_finished_epochs(mnist):
    def stop_in_epoch_2(trainer, event):
        if event["type"] == "batch" and (event["epoch"], event["step"]) == (2, 1):
            trainer.stop()

    run = Controlled(mnist, epochs=3, on_event=stop_in_epoch_2)
    history = run.trainer.run()
    assert run.trainer.stopped and [record["epoch"] for record in history] == [1]
    assert run.kinds()[-2:] == ["epoch", "batch"]


def test_pause_and_resume_from_the_main_thread_while_training_runs_in_another(mnist):
    first_batch, pause_sent, paused = threading.Event(), threading.Event(), threading.Event()

    def signal(trainer, event):
        if event["type"] == "batch" and event["global_step"] == 1:
            first_batch.set()
            pause_sent.wait(30)  # so that the run cannot finish before the pause comes
        if event.get("state") == "paused":
            paused.set()

    run = Controlled(mnist, epochs=2, on_event=signal)
    worker = threading.Thread(target=run.trainer.run)
    worker.start()
    assert first_batch.wait(30)
    run.trainer.pause()
    pause_sent.set()
    assert paused.wait(30) and run.trainer.paused
    steps_when_paused = len(run.paused_during_step)
    time.sleep(0.2)
    assert len(run.paused_during_step) == steps_when_paused
    run.trainer.resume()
    worker.join(60)
    assert not worker.is_alive() and len(run.trainer.history) == 2
    assert run.between("paused", "running") == []
    assert run.kinds()[:3] == ["batch", "paused", "running"]
    assert run.kinds().count("batch") == 20


# --- divergence and learning rate -----------------------------------------------------------


LINEAR_SQUARED = {"input": [1, 28, 28], "loss": "squared_error",
                  "layers": [{"type": "flatten"}, {"type": "dense", "units": 10}]}
RELU_SQUARED = {"input": [1, 28, 28], "loss": "squared_error",
                "layers": [{"type": "flatten"}, {"type": "dense", "units": 32},
                           {"type": "relu"}, {"type": "dense", "units": 10}]}


@pytest.mark.parametrize("spec", [
    LINEAR_SQUARED,
    RELU_SQUARED,
], ids=["linear", "relu"])
def test_a_huge_learning_rate_raises_training_diverged_and_keeps_the_weights_finite(mnist, spec):
    config = TrainConfig(epochs=3, batch_size=32, optimizer="sgd", learning_rate=90.0,
                         momentum=0.9, train_size=256, test_size=32, shuffle=False)
    scaled = make_dataset(mnist, config)
    # Unnormalised pixels as float32: taken as they are (only uint8 is scaled).
    raw = Dataset(scale_images(scaled.train_images) * 255, scaled.train_labels,
                  scale_images(scaled.test_images) * 255, scaled.test_labels)
    model = Model(spec, seed=0)
    snapshots = []
    trainer = Trainer(model, config, raw,
                      lambda event: snapshots.append(model.state()) if event["type"] == "batch"
                      else None)
    with np.errstate(over="ignore", invalid="ignore"), \
            pytest.raises(TrainingDiverged, match="training diverged; try a smaller learning rate"):
        trainer.run()
    assert 0 < len(snapshots) < 24 and trainer.history == []
    assert all(np.isfinite(p).all() for p in model.parameters())
    for name, value in model.state().items():  # the diverging step changed no weight
        np.testing.assert_array_equal(value, snapshots[-1][name])


def test_lr_decay_multiplies_the_learning_rate_after_each_epoch(mnist):
    _, trainer, events = train(mnist, epochs=3, optimizer="sgd", learning_rate=0.1,
                               lr_decay=0.5, batch_size=50, train_size=100)
    assert [e["learning_rate"] for e in of_type(events, "epoch")] == \
        pytest.approx([0.1, 0.05, 0.025])
    assert [e["learning_rate"] for e in of_type(events, "batch")] == \
        pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert trainer.optimizer.learning_rate == pytest.approx(0.0125)


# --- the schedule of a run's start -------------------------------------------------------------

DEFAULT_SCHEDULE = {"lr_boost": 2.0, "lr_boost_batches": 938, "augment_start": 0.5,
                    "augment_warmup": 938}


@pytest.mark.parametrize("batch, factor", [
    (0, 2.0),                  # the boost at the first batch
    (100, 2.0 - 100 / 938),    # 1.8934
    (469, 1.5),                # half way down
    (937, 1.0 + 1 / 938),      # the last boosted batch
    (938, 1.0), (100_000, 1.0),
])
def test_the_learning_rate_factor_comes_down_from_the_boost_by_hand_computed_values(
        batch, factor):
    config = TrainConfig(**DEFAULT_SCHEDULE)
    assert config.learning_rate_factor(batch) == pytest.approx(factor, rel=1e-12)


@pytest.mark.parametrize("batch, strength", [(0, 0.5), (469, 0.75), (703.5, 0.875),
                                             (938, 1.0), (50_000, 1.0)])
def test_the_augmentation_strength_rises_linearly_from_its_start_to_full(batch, strength):
    assert TrainConfig(**DEFAULT_SCHEDULE).augment_strength(batch) == pytest.approx(strength)


@pytest.mark.parametrize("name", ["seed", "seed-fc"])
def test_without_schedule_settings_every_batch_has_the_full_rate_and_augmentation(name):
    config = PRESETS[name].config
    assert [config.learning_rate_factor(b) for b in (0, 1, 99, 10_000)] == [1.0] * 4
    assert [config.augment_strength(b) for b in (0, 1, 99, 10_000)] == [1.0] * 4


def test_the_default_preset_schedules_its_start():
    config = PRESETS["default"].config
    assert {name: getattr(config, name) for name in DEFAULT_SCHEDULE} == DEFAULT_SCHEDULE


SCHEDULED_SGD = {"optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.0, "lr_decay": 0.5,
                 "batch_size": 50, "train_size": 100, "lr_boost": 3.0, "lr_boost_batches": 4}
# Factors of batches 0-5: 3, 2.5, 2, 1.5, 1, 1; the optimizer's own rate 0.1, 0.1, then
# halved each epoch.
SCHEDULED_RATES = [0.3, 0.25, 0.1, 0.075, 0.025, 0.025]


def test_batch_and_epoch_events_report_the_scheduled_learning_rate_with_the_decay(mnist):
    _, trainer, events = train(mnist, epochs=3, **SCHEDULED_SGD)
    assert [e["learning_rate"] for e in of_type(events, "batch")] == \
        pytest.approx(SCHEDULED_RATES)
    assert [e["learning_rate"] for e in of_type(events, "epoch")] == \
        pytest.approx([0.25, 0.075, 0.025])  # each epoch's last batch
    assert trainer.optimizer.learning_rate == pytest.approx(0.0125)  # its own, decayed
    assert trainer.batches_done == 6


def test_a_scheduled_step_moves_the_weights_by_the_scheduled_learning_rate(mnist):
    config = TrainConfig(epochs=1, batch_size=50, train_size=50, test_size=10, shuffle=False,
                         optimizer="sgd", learning_rate=0.1, momentum=0.0, lr_boost=3.0,
                         lr_boost_batches=10)
    data = make_dataset(mnist, config)
    trainer = Trainer(Model(SMALL_CONV, seed=1), config, data)
    trainer.run()
    by_hand = Model(SMALL_CONV, seed=1)
    by_hand.train_step(scale_images(data.train_images), data.train_labels,
                       OPTIMIZERS["sgd"](learning_rate=0.1 * 3.0))
    for ours, theirs in zip(trainer.model.parameters(), by_hand.parameters()):
        np.testing.assert_array_equal(ours, theirs)
    assert trainer.optimizer.learning_rate == 0.1


def test_a_steered_learning_rate_is_scheduled_too(mnist):
    def steer_after_batch_1(event):
        if event["type"] == "batch" and event["global_step"] == 1:
            trainer.set_hyperparameters(learning_rate=0.2)

    config = TrainConfig(epochs=3, test_size=10, **SCHEDULED_SGD)
    events = []
    trainer = Trainer(Model(SMALL_CONV), config, make_dataset(mnist, config),
                      lambda e: (events.append(e), steer_after_batch_1(e)))
    trainer.run()
    assert [e["learning_rate"] for e in of_type(events, "batch")] == \
        pytest.approx([0.3, 0.5, 0.2, 0.15, 0.05, 0.05])
    assert of_type(events, "hyperparameters")[0]["learning_rate"] == 0.2  # the own rate


def test_a_paused_and_stepped_run_goes_on_with_the_schedule_where_it_stopped(mnist):
    config = TrainConfig(epochs=1, test_size=10, **SCHEDULED_SGD)
    events = []

    def pause_after_batch_1(event):
        events.append(event)
        if event["type"] == "batch" and event["global_step"] == 1:
            trainer.pause()
            threading.Thread(target=lambda: (time.sleep(0.1), trainer.resume())).start()

    trainer = Trainer(Model(SMALL_CONV), config, make_dataset(mnist, config),
                      pause_after_batch_1)
    trainer.run()
    trainer.extend(2)  # as a step of a finished run does
    assert [e["learning_rate"] for e in of_type(events, "batch")] == \
        pytest.approx(SCHEDULED_RATES)


@pytest.mark.parametrize("saved", [True, False], ids=["saved-position", "older-checkpoint"])
def test_a_run_continued_from_a_checkpoint_goes_on_with_the_schedule_where_it_stopped(
        mnist, tmp_path, saved):
    config = TrainConfig(epochs=3, batch_size=32, train_size=96, test_size=20,
                         learning_rate=0.003, lr_decay=0.7, lr_boost=2.0,
                         lr_boost_batches=7, augment_start=0.25, augment_warmup=8,
                         augment_shift=2.0, augment_rotation=10.0, average_decay=0.99)
    data = make_dataset(mnist, config)
    whole_events = []
    whole = Trainer(Model(SMALL_CONV, seed=2), config, data, whole_events.append)
    whole.run()

    path = tmp_path / "run.npz"
    first = Trainer(Model(SMALL_CONV, seed=2), config.replace(epochs=1), data,
                    lambda event: event["type"] == "checkpoint" and save_checkpoint(
                        path, first.model, event["optimizer"], {"epoch": event["epoch"]},
                        event["average"]))
    first.run()
    checkpoint = load_checkpoint(path)
    assert checkpoint.optimizer_state[SCHEDULE_BATCHES] == 3
    state = dict(checkpoint.optimizer_state)
    if not saved:  # a checkpoint from before the schedule: its position is worked out
        del state[SCHEDULE_BATCHES]
    events = []
    continued = Trainer(checkpoint.model, config, data, events.append)
    continued.restore(checkpoint.epoch, state, average=checkpoint.average)
    assert continued.batches_done == 3
    continued.run()
    rates = [e["learning_rate"] for e in of_type(events, "batch")]
    assert rates == [e["learning_rate"] for e in of_type(whole_events, "batch")][3:]
    for ours, theirs in zip(checkpoint.model.parameters(), whole.model.parameters()):
        np.testing.assert_array_equal(ours, theirs)


def test_a_schedule_position_that_is_not_a_whole_number_is_refused(mnist):
    config = TrainConfig(epochs=2, train_size=64, test_size=10, **DEFAULT_SCHEDULE)
    trainer = Trainer(Model(SMALL_CONV), config, make_dataset(mnist, config))
    state = {**trainer.optimizer.state(), SCHEDULE_BATCHES: np.array(2.5)}
    with pytest.raises(ValueError, match="schedule.batches must be a whole number"):
        trainer.restore(1, state)


def test_the_learning_rate_can_be_steered_between_batches(mnist):
    def halve_after_step_1(event):
        if event["type"] == "batch" and event["step"] == 1:
            trainer.optimizer.learning_rate = 0.005

    config = TrainConfig(epochs=1, batch_size=50, train_size=150, test_size=10, learning_rate=0.01)
    lrs = []
    trainer = Trainer(Model(SMALL_CONV), config, make_dataset(mnist, config),
                      lambda e: (lrs.append(e.get("learning_rate")), halve_after_step_1(e)))
    trainer.run()
    assert [lr for lr in lrs if lr is not None][:3] == [0.01, 0.005, 0.005]


# --- learning --------------------------------------------------------------------------------


def test_the_seed_preset_learns_well_above_chance_in_ten_epochs_on_1000_images(mnist):
    # Sigmoids with weights uniform in [-1, 1] sit on a plateau for the first few epochs
    # (about 10-15% correct), then learn quickly.
    preset = PRESETS["seed"]
    config = preset.config.replace(epochs=10, test_size=500)
    trainer = Trainer(Model(preset.spec, seed=config.seed), config, make_dataset(mnist, config))
    history = trainer.run()
    assert history[-1]["test_accuracy"] > 0.6  # chance is 0.1
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_a_small_conv_net_reaches_85_percent_after_one_epoch_on_5000_images(mnist):
    _, trainer, _ = train(mnist, epochs=1, batch_size=32, optimizer="adam", learning_rate=0.005,
                          train_size=5000, test_size=1000,
                          spec={**SMALL_CONV, "layers": [{"type": "conv", "filters": 8,
                                                          "kernel": 3}] + SMALL_CONV["layers"][1:]})
    final = trainer.history[-1]
    assert final["test_total"] == 1000
    assert final["test_accuracy"] > 0.85
