"""Tests for the engine's side of issue 6 (cnn.insight, cnn.train, cnn.augment): the
per-epoch evaluation (confusion matrix, most confident mistakes), the weight and
gradient histograms against the start, live learning-rate and momentum changes,
stepping one epoch, extending a finished run, and the stroke-width augmentation."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from cnn.augment import Augmentation, augment, change_strokes
from cnn.insight import Evaluation, histogram
from cnn.model import Model
from cnn.train import ConfigError, TrainConfig, Trainer, make_dataset

SMALL_CONV = {"input": [1, 28, 28],
              "layers": [{"type": "conv", "filters": 4, "kernel": 3}, {"type": "relu"},
                         {"type": "maxpool", "size": 2}, {"type": "flatten"},
                         {"type": "dense", "units": 16}, {"type": "relu"},
                         {"type": "dense", "units": 10}]}


def make_trainer(mnist, on_event=None, **settings):
    """A small trainer whose events are recorded; on_event(trainer, event) may act."""
    config = TrainConfig(**{"epochs": 2, "batch_size": 32, "learning_rate": 0.01,
                            "optimizer": "sgd", "momentum": 0.0, "train_size": 160,
                            "test_size": 200, **settings})
    events: list[dict] = []
    holder = {}

    def record(event):
        events.append(event)
        if on_event:
            on_event(holder["trainer"], event)

    trainer = Trainer(Model(SMALL_CONV), config, make_dataset(mnist, config), record)
    holder["trainer"] = trainer
    return trainer, events


def of_type(events, kind):
    return [event for event in events if event["type"] == kind]


# -- the evaluation ----------------------------------------------------------------------------

def test_the_confusion_matrix_counts_each_true_and_predicted_pair():
    rng = np.random.default_rng(0)
    labels, predicted = rng.integers(0, 10, 500), rng.integers(0, 10, 500)
    probabilities = np.full((500, 10), 0.01)
    probabilities[np.arange(500), predicted] = 0.91
    evaluation = Evaluation.from_probabilities(labels, probabilities)
    expected = np.zeros((10, 10), int)
    for label, answer in zip(labels, predicted):
        expected[label, answer] += 1
    np.testing.assert_array_equal(evaluation.confusion(), expected)
    assert evaluation.confusion().sum() == 500
    np.testing.assert_allclose(evaluation.confidence, 0.91)


def test_a_cell_and_the_mistakes_list_the_most_confident_answers_first():
    labels = np.array([3, 3, 3, 5, 3, 5])
    probabilities = np.zeros((6, 10))
    for row, (answer, confidence) in enumerate([(5, 0.6), (5, 0.9), (3, 0.8), (5, 0.7),
                                                (5, 0.95), (3, 0.5)]):
        probabilities[row, answer] = confidence
        probabilities[row, (answer + 1) % 10] = 1 - confidence
    evaluation = Evaluation.from_probabilities(labels, probabilities)
    assert evaluation.cell(3, 5).tolist() == [4, 1, 0]
    assert evaluation.cell(5, 5).tolist() == [3]
    assert evaluation.cell(7, 1).tolist() == []
    assert evaluation.mistakes().tolist() == [4, 1, 0, 5]  # wrong ones only, surest first


def test_histograms_share_edges_that_span_the_values_and_the_reference():
    values, reference = np.array([0.5, 1.0, 1.5, 2.0]), np.array([-1.0, 0.0, 0.0])
    result = histogram(values, reference, bins=6)
    assert result["edges"][0] == -1.0 and result["edges"][-1] == 2.0
    assert len(result["edges"]) == 7
    assert sum(result["counts"]) == 4 and sum(result["start_counts"]) == 3
    assert result["start_counts"][0] == 1  # -1.0 in the first bin
    constant = histogram(np.zeros(5), np.zeros(5), bins=4)
    assert constant["edges"][0] < 0 < constant["edges"][-1]
    assert sum(constant["counts"]) == 5


def test_every_epoch_is_followed_by_its_evaluation_of_the_test_images(mnist):
    trainer, events = make_trainer(mnist)
    trainer.run()
    epochs, evaluations = of_type(events, "epoch"), of_type(events, "evaluation")
    assert [e["epoch"] for e in evaluations] == [e["epoch"] for e in epochs] == [1, 2]
    for epoch, event in zip(epochs, evaluations):
        confusion = event["evaluation"].confusion()
        assert confusion.sum() == epoch["test_total"] == 200
        assert np.trace(confusion) == epoch["test_correct"]
        np.testing.assert_array_equal(confusion.sum(axis=1),
                                      np.bincount(mnist.test_labels[:200], minlength=10))
    assert trainer.last_evaluation is evaluations[-1]["evaluation"]


# -- histograms ---------------------------------------------------------------------------------

def test_histograms_come_at_the_start_and_after_each_epoch_for_every_weighted_layer(mnist):
    trainer, events = make_trainer(mnist, learning_rate=0.05)
    trainer.run()
    histograms = of_type(events, "histograms")
    assert [e["epoch"] for e in histograms] == [0, 1, 2]
    for event in histograms:
        assert [layer["name"] for layer in event["layers"]] == ["0.conv", "4.dense", "6.dense"]
        for layer in event["layers"]:
            size = int(np.prod(layer["shape"]))
            assert sum(layer["weights"]["counts"]) == sum(layer["weights"]["start_counts"]) == size
    start = histograms[0]["layers"]
    assert all(layer["gradients"] is None for layer in start)
    assert all(layer["weights"]["counts"] == layer["weights"]["start_counts"] for layer in start)
    first = histograms[1]["layers"]
    assert all(layer["gradients"]["counts"] == layer["gradients"]["start_counts"]
               for layer in first)  # epoch 1's gradients are the gradients' reference
    last = histograms[2]["layers"]
    assert any(layer["weights"]["counts"] != layer["weights"]["start_counts"] for layer in last)
    assert any(layer["gradients"]["counts"] != layer["gradients"]["start_counts"]
               for layer in last)


def test_histogram_shapes_are_the_weight_shapes(mnist):
    trainer, events = make_trainer(mnist, epochs=1)
    trainer.run()
    layers = of_type(events, "histograms")[0]["layers"]
    weights = [layer.params["weight"].shape for layer in trainer.model.layers
               if "weight" in layer.params]
    assert [tuple(layer["shape"]) for layer in layers] == weights


# -- live hyperparameters ----------------------------------------------------------------------

def test_a_learning_rate_change_takes_effect_at_the_next_batch_and_is_reported(mnist):
    def change_after_step_2(trainer, event):
        if event["type"] == "batch" and (event["epoch"], event["step"]) == (1, 2):
            trainer.set_hyperparameters(learning_rate=0.002)

    trainer, events = make_trainer(mnist, on_event=change_after_step_2)
    trainer.run()
    (change,) = of_type(events, "hyperparameters")
    assert (change["epoch"], change["step"], change["steps"], change["global_step"]) == (1, 2, 5, 2)
    assert change["progress"] == pytest.approx(2 / 10)
    assert change["learning_rate"] == 0.002 and change["momentum"] == 0.0
    assert change["previous"] == {"learning_rate": 0.01, "momentum": 0.0}
    rates = [(e["global_step"], e["learning_rate"]) for e in of_type(events, "batch")]
    assert rates[:2] == [(1, 0.01), (2, 0.01)]
    assert all(rate == 0.002 for _, rate in rates[2:])
    # The change is reported between batch 2 and batch 3.
    kinds = [(e["type"], e.get("global_step")) for e in events]
    assert kinds.index(("hyperparameters", 2)) == kinds.index(("batch", 3)) - 1


def test_momentum_can_be_turned_on_live_for_sgd(mnist):
    def change(trainer, event):
        if event["type"] == "batch" and event["global_step"] == 1:
            trainer.set_hyperparameters(momentum=0.9)

    trainer, events = make_trainer(mnist, epochs=1, on_event=change)
    trainer.run()
    assert trainer.optimizer.momentum == 0.9 and trainer.optimizer.learning_rate == 0.01
    assert [e["momentum"] for e in of_type(events, "batch")] == [0.0] + [0.9] * 4


@pytest.mark.parametrize("changes, message", [
    ({"learning_rate": -0.1}, "learning_rate"), ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": float("nan")}, "learning_rate"), ({"momentum": 1.0}, "momentum"),
    ({"momentum": -0.5}, "momentum"), ({}, "give a learning_rate"),
])
def test_bad_live_values_are_refused_and_change_nothing(mnist, changes, message):
    trainer, events = make_trainer(mnist, epochs=1)
    with pytest.raises(ConfigError, match=message):
        trainer.set_hyperparameters(**changes)
    trainer.run()
    assert of_type(events, "hyperparameters") == []
    assert trainer.optimizer.learning_rate == 0.01


# -- step and extend ---------------------------------------------------------------------------

def test_a_step_from_a_pause_mid_epoch_finishes_that_epoch_then_pauses_again(mnist):
    paused_again, resumed = threading.Event(), []

    def control(trainer, event):
        if event["type"] == "batch" and (event["epoch"], event["step"]) == (1, 2):
            trainer.pause()
        if event.get("state") == "paused" and not resumed:
            resumed.append(True)
            threading.Timer(0.05, trainer.step_epoch).start()
        elif event.get("state") == "paused":
            paused_again.set()
            threading.Timer(0.05, trainer.resume).start()

    trainer, events = make_trainer(mnist, epochs=3, on_event=control)
    worker = threading.Thread(target=trainer.run)
    worker.start()
    worker.join(30)
    assert not worker.is_alive() and paused_again.is_set()
    sequence = [(e["type"], e.get("epoch"), e.get("step"), e.get("state")) for e in events
                if e["type"] in ("batch", "epoch", "state")]
    second_pause = [i for i, item in enumerate(sequence) if item[3] == "paused"][1]
    # The step ran batches 3..5 of epoch 1, the epoch's evaluation, then paused
    # before epoch 2's first batch.
    assert sequence[second_pause - 1] == ("epoch", 1, None, None)
    assert sequence[second_pause - 4:second_pause - 1] == [("batch", 1, s, None) for s in (3, 4, 5)]
    assert sequence[second_pause + 2] == ("batch", 2, 1, None)
    assert [record["epoch"] for record in trainer.history] == [1, 2, 3]


def test_a_stop_during_a_step_ends_the_run_instead_of_pausing_it_forever(mnist):
    # The stop lands just before the step's pause at the epoch end: the stop wins.
    stepped = []

    def control(trainer, event):
        if event["type"] == "batch" and (event["epoch"], event["step"]) == (1, 2):
            trainer.pause()
        if event.get("state") == "paused" and not stepped:
            stepped.append(True)
            threading.Timer(0.05, trainer.step_epoch).start()
        if event["type"] == "epoch":
            trainer.stop()

    trainer, events = make_trainer(mnist, epochs=3, on_event=control)
    worker = threading.Thread(target=trainer.run)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "the stopped run waits for a resume forever"
    assert trainer.stopped and [record["epoch"] for record in trainer.history] == [1]


def test_extend_trains_exactly_one_more_epoch_after_a_finished_run(mnist):
    trainer, events = make_trainer(mnist, epochs=1)
    trainer.run()
    before = len(events)
    history = trainer.extend(1)
    assert [record["epoch"] for record in history] == [1, 2]
    assert trainer.config.epochs == 2 and history[1]["epochs"] == 2
    new = events[before:]
    assert [e["epoch"] for e in of_type(new, "epoch")] == [2]
    assert [e["epoch"] for e in of_type(new, "evaluation")] == [2]
    assert [e["epoch"] for e in of_type(new, "histograms")] == [2]
    assert of_type(new, "batch")[-1]["progress"] == pytest.approx(1.0)


def test_extend_after_a_stop_redoes_the_unfinished_epoch_and_continues(mnist):
    def stop_in_epoch_2(trainer, event):
        if event["type"] == "batch" and (event["epoch"], event["step"]) == (2, 1):
            trainer.stop()

    trainer, events = make_trainer(mnist, epochs=3, on_event=stop_in_epoch_2)
    trainer.run()
    assert trainer.stopped and len(trainer.history) == 1
    trainer.callback = events.append  # no second stop
    trainer.extend(1)
    assert not trainer.stopped
    assert [record["epoch"] for record in trainer.history] == [1, 2]
    assert trainer.config.epochs == 3  # never fewer than asked for at the start


# -- stroke width ------------------------------------------------------------------------------

def vertical_line(width: int = 1) -> np.ndarray:
    image = np.zeros((1, 1, 28, 28), np.float32)
    image[0, 0, 4:24, 14:14 + width] = 1.0
    return image


def test_change_strokes_thickens_and_thins_by_up_to_a_pixel_each_side():
    line = vertical_line(3)
    thicker = change_strokes(line, np.array([1.0]))
    thinner = change_strokes(line, np.array([-1.0]))
    unchanged = change_strokes(line, np.array([0.0]))
    np.testing.assert_array_equal(unchanged, line)
    assert (thicker[0, 0, 14] > 0).sum() == 5       # 3 px wide -> 5 px
    assert (thinner[0, 0, 14] > 0).sum() == 1       # 3 px wide -> 1 px
    half = change_strokes(line, np.array([0.5]))
    assert line.sum() < half.sum() < thicker.sum()
    for out in (thicker, thinner, half):
        assert out.min() >= 0.0 and out.max() <= 1.0


def test_stroke_augmentation_adds_to_the_affine_part_without_changing_it(mnist):
    images = (mnist.train_images[:16].astype(np.float32) / 255)[:, None]
    affine = augment(images, np.random.default_rng(3), Augmentation(2.0, 0.1, 10.0))
    both = augment(images, np.random.default_rng(3), Augmentation(2.0, 0.1, 10.0, stroke=1.0))
    amounts = np.random.default_rng(3)
    amounts.uniform(size=16), amounts.uniform(size=16), amounts.uniform(size=(16, 2))
    expected = change_strokes(affine, amounts.uniform(-1.0, 1.0, 16))
    np.testing.assert_allclose(both, expected, atol=1e-6)
    ink_change = both.sum(axis=(1, 2, 3)) - affine.sum(axis=(1, 2, 3))
    assert (ink_change > 0).any() and (ink_change < 0).any()  # some thicker, some thinner


def test_the_stroke_setting_is_validated_and_reaches_the_augmentation():
    assert TrainConfig(augment_stroke=0.5).validated().augmentation() == Augmentation(0, 0, 0, 0.5)
    for bad in (-0.1, 1.5, float("inf")):
        with pytest.raises(ConfigError, match="augment_stroke"):
            TrainConfig(augment_stroke=bad).validated()
