"""Tests for cnn.average (the moving average of the weights that answers drawings) and
how the trainer, its checkpoints and `train --save` carry it."""

from __future__ import annotations

import numpy as np
import pytest

from cnn.average import WeightAverage
from cnn.checkpoint import load_checkpoint, save_checkpoint
from cnn.model import Model
from cnn.presets import PRESETS
from cnn.train import ConfigError, TrainConfig, Trainer, make_dataset

TINY = {"input": [1, 6, 6],
        "layers": [{"type": "conv", "filters": 2, "kernel": 3}, {"type": "relu"},
                   {"type": "flatten"}, {"type": "dense", "units": 3}]}
SMALL_CONV = {"input": [1, 28, 28],
              "layers": [{"type": "conv", "filters": 4, "kernel": 3}, {"type": "relu"},
                         {"type": "maxpool", "size": 2}, {"type": "flatten"},
                         {"type": "dense", "units": 10}]}


def averaged_by_a_loop(history: list[list[np.ndarray]], decay: float) -> list[np.ndarray]:
    """The rule written out weight by weight in float64: the average starts at the first
    weights; the t-th update (t from 0) moves it by (1 - d_t) towards the weights after
    step t + 1, with d_t = min(decay, (1 + t) / (10 + t))."""
    average = [p.astype(np.float64).ravel().tolist() for p in history[0]]
    for t, weights in enumerate(history[1:]):
        d = min(decay, (1 + t) / (10 + t))
        for a, w in zip(average, weights):
            flat = w.astype(np.float64).ravel()
            for i in range(len(a)):
                a[i] = d * a[i] + (1 - d) * flat[i]
    return [np.array(a).reshape(p.shape) for a, p in zip(average, history[0])]


def test_the_average_starts_equal_to_the_model_and_is_its_own_copy():
    model = Model(TINY, seed=3)
    average = WeightAverage(model.parameters(), 0.99)
    for mine, theirs in zip(average.params, model.parameters()):
        np.testing.assert_array_equal(mine, theirs)
        assert not np.shares_memory(mine, theirs)


@pytest.mark.parametrize("decay", [0.5, 0.9, 0.999])
def test_the_update_rule_matches_a_plain_loop_on_a_tiny_model(decay):
    model = Model(TINY, seed=1)
    rng = np.random.default_rng(0)
    average = WeightAverage(model.parameters(), decay)
    history = [[p.copy() for p in model.parameters()]]
    for _ in range(40):  # past the warm-up's crossing for 0.5 and 0.9
        for p in model.parameters():
            p += rng.normal(0, 0.1, p.shape).astype(p.dtype)
        average.update(model.parameters())
        history.append([p.copy() for p in model.parameters()])
    for mine, expected in zip(average.params, averaged_by_a_loop(history, decay)):
        np.testing.assert_allclose(mine, expected, rtol=1e-5, atol=1e-6)
    assert average.steps == 40


def test_the_update_allocates_nothing_and_keeps_its_arrays():
    model = Model(TINY, seed=1)
    average = WeightAverage(model.parameters(), 0.9)
    arrays = [id(a) for a in average.params]
    average.update(model.parameters())
    assert [id(a) for a in average.params] == arrays


def train(mnist, spec=SMALL_CONV, **settings):
    config = TrainConfig(**{"epochs": 1, "batch_size": 32, "learning_rate": 0.01,
                            "train_size": 256, "test_size": 100, **settings})
    events: list[dict] = []
    model = Model(spec, seed=config.seed)
    trainer = Trainer(model, config, make_dataset(mnist, config), events.append)
    trainer.run()
    return model, trainer, events


def test_a_trainer_averages_only_when_asked(mnist):
    _, trainer, _ = train(mnist)
    assert trainer.average is None
    model, trainer, _ = train(mnist, average_decay=0.9)
    assert trainer.average.steps == 8
    assert not all(np.array_equal(a, p) for a, p in zip(trainer.average.params,
                                                         model.parameters()))


def test_averaging_leaves_the_raw_training_unchanged(mnist):
    plain, _, _ = train(mnist)
    averaged, _, _ = train(mnist, average_decay=0.9, evaluate_averaged=True)
    for a, b in zip(plain.parameters(), averaged.parameters()):
        np.testing.assert_array_equal(a, b)


def test_the_epoch_evaluation_measures_the_average_when_asked(mnist):
    _, trainer, events = train(mnist, average_decay=0.9, evaluate_averaged=True)
    epoch = next(e for e in events if e["type"] == "epoch")
    answering = trainer.answering_model()
    config = trainer.config
    data = make_dataset(mnist, config)
    _, correct = answering.evaluate(data.test_images, data.test_labels)
    assert epoch["test_correct"] == correct


def test_evaluating_the_average_needs_an_average():
    with pytest.raises(ConfigError, match="evaluate_averaged needs an average"):
        TrainConfig(evaluate_averaged=True).validated()


def test_the_default_preset_answers_with_averaged_weights():
    assert 0.9 < PRESETS["default"].config.average_decay < 1
    assert PRESETS["default"].config.evaluate_averaged


def test_a_checkpoint_holds_the_averaged_weights_says_so_and_continues_exactly(mnist, tmp_path):
    settings = {"epochs": 2, "average_decay": 0.95, "seed": 4}
    whole, whole_trainer, _ = train(mnist, **settings)

    saved = {}
    config = TrainConfig(**{"batch_size": 32, "learning_rate": 0.01, "train_size": 256,
                            "test_size": 100, **settings})
    data = make_dataset(mnist, config)
    model = Model(SMALL_CONV, seed=4)

    def keep_first_checkpoint(event):
        if event["type"] == "checkpoint" and event["epoch"] == 1:
            saved["path"] = save_checkpoint(tmp_path / "run.npz", model, event["optimizer"],
                                            {"epoch": 1}, event["average"])
            trainer.stop()
    trainer = Trainer(model, config, data, keep_first_checkpoint)
    trainer.run()

    as_a_model, metadata = Model.load_with_metadata(saved["path"])
    assert metadata["weights"] == "averaged"
    checkpoint = load_checkpoint(saved["path"])
    for name, value in as_a_model.state().items():  # the file's weights are the average
        np.testing.assert_array_equal(value, checkpoint.average[0][name])
    assert checkpoint.average[1] == 8

    continued = Trainer(checkpoint.model, config, data)
    continued.restore(1, checkpoint.optimizer_state, average=checkpoint.average)
    continued.run()
    for a, b in zip(whole.parameters(), checkpoint.model.parameters()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(whole_trainer.average.params, continued.average.params):
        np.testing.assert_array_equal(a, b)


def test_a_checkpoint_of_a_run_without_an_average_says_raw(mnist, tmp_path):
    model = Model(SMALL_CONV, seed=0)
    path = save_checkpoint(tmp_path / "run.npz", model, {}, {"epoch": 0})
    assert Model.load_with_metadata(path)[1]["weights"] == "raw"
    assert load_checkpoint(path).average is None
