"""Teaching a person's handwriting (cnn/teach.py): drawings mixed into the batches at
their share, oversampled evenly; a replay of MNIST; fine-tuning that changes the model
only through the optimiser's steps and learns what it is shown."""

from __future__ import annotations

import numpy as np
import pytest

from cnn import teach
from cnn.drawn import slant
from cnn.model import Model
from cnn.optim import Adam
from cnn.presets import PRESETS
from cnn.teach import MAX_COPIES, Teaching, fine_tune, mix_in, read, score
from cnn.train import Dataset, TrainConfig

TINY_SPEC = {"input": [1, 28, 28],
             "layers": [{"type": "conv", "filters": 2, "kernel": 3}, {"type": "relu"},
                        {"type": "maxpool", "size": 2}, {"type": "flatten"},
                        {"type": "dense", "units": 10}],
             "loss": "softmax_cross_entropy", "init": "he"}


def dataset(n: int = 300, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.int64)
    return Dataset(images, labels, images[:50], labels[:50])


def drawings(k: int = 7) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([np.full((28, 28), 200 + i, np.uint8) for i in range(k)])
    return images, np.arange(k) % 10


def test_the_drawings_make_up_their_share_each_repeated_evenly():
    data = dataset(300)
    images, labels = drawings(7)
    mixed = mix_in(data, images, labels, share=0.25)
    added = len(mixed.train_labels) - 300
    assert added == 100  # 0.25 / 0.75 x 300: a quarter of the 400
    assert added / len(mixed.train_labels) == pytest.approx(0.25)
    tail = mixed.train_images[300:]
    counts = np.bincount(tail[:, 0, 0] - 200, minlength=7)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 100  # evenly oversampled
    assert (mixed.train_labels[300:] == tail[:, 0, 0] - 200).all()  # labels follow images
    assert (mixed.train_images[:300] == data.train_images).all()
    assert mixed.test_images is data.test_images  # measured on the same test set


def test_a_few_drawings_are_repeated_at_most_max_copies_times_each():
    """Three drawings cannot make up half of 3,000 images: 40 copies each, no more (one
    mislabelled drawing among a few must not be taught hundreds of times)."""
    mixed = mix_in(dataset(3000), *drawings(3), share=0.5)
    tail = mixed.train_images[3000:]
    assert len(tail) == 3 * MAX_COPIES == 120
    assert (np.bincount(tail[:, 0, 0] - 200) == MAX_COPIES).all()


def test_every_drawing_is_in_even_at_a_tiny_share():
    mixed = mix_in(dataset(100), *drawings(7), share=0.01)
    assert len(mixed.train_labels) == 107


@pytest.mark.parametrize("share", [0, -0.1, 0.95, 1.0])
def test_a_share_out_of_range_is_refused(share):
    with pytest.raises(ValueError, match="share"):
        mix_in(dataset(), *drawings(), share=share)


def test_drawings_that_do_not_fit_are_refused():
    images, labels = drawings(3)
    with pytest.raises(ValueError, match="a label each"):
        mix_in(dataset(), images, labels[:2], 0.5)
    with pytest.raises(ValueError, match="uint8"):
        mix_in(dataset(), images.astype(np.float32), labels, 0.5)
    with pytest.raises(ValueError, match="at least one"):
        mix_in(dataset(), images[:0], labels[:0], 0.5)


def test_fine_tuning_changes_the_model_only_through_the_optimiser(monkeypatch):
    """Every change to the weights is one the optimiser's steps made: replaying the
    steps' updates on a copy of the starting weights gives the final weights."""
    model = Model(TINY_SPEC, seed=1)
    start = [param.copy() for param in model.parameters()]
    updates: list[list[np.ndarray]] = []
    real_step = Adam.step

    def recording_step(self, params, grads):
        before = [param.copy() for param in params]
        real_step(self, params, grads)
        updates.append([param - old for param, old in zip(params, before)])

    monkeypatch.setattr(Adam, "step", recording_step)
    trainer = fine_tune(model, *drawings(5), dataset(64), TrainConfig(optimizer="adam"),
                        Teaching(replay=64, share=0.5, learning_rate=0.01, batch_size=16))
    steps = -(-len(trainer.data.train_labels) // 16)
    assert len(updates) == steps > 0
    replayed = [param.copy() for param in start]
    for step in updates:
        for param, update in zip(replayed, step):
            param += update
    for param, expected in zip(model.parameters(), replayed):
        np.testing.assert_allclose(param, expected, atol=1e-6)
    assert any(not np.array_equal(p, s) for p, s in zip(model.parameters(), start))


def test_the_teaching_config_is_a_short_nudge_with_the_base_runs_settings():
    base = PRESETS["default"].config
    config = Teaching(passes=2, learning_rate=0.0004, seed=3, replay=500,
                      share=0.4).config(base)
    assert (config.epochs, config.learning_rate, config.seed) == (2, 0.0004, 3)
    assert (config.train_size, config.include_drawings) == (500, 0.4)
    assert config.optimizer == base.optimizer
    assert config.augment_rotation == base.augment_rotation  # augmented like MNIST
    assert config.lr_boost == 1.0 and config.augment_start == 1.0 and config.average_decay == 0


def test_fine_tuning_learns_the_drawings_it_is_shown():
    """Drawings that look like nothing in the replay (bright bars), labelled 3: after a
    few passes the model reads them as 3, and the score says so."""
    model = Model(TINY_SPEC, seed=0)
    bars = np.zeros((10, 28, 28), np.uint8)
    bars[:, 10:18, :] = 255
    labels = np.full(10, 3)
    data = dataset(200)
    assert score(model, bars, labels)[0] < 10
    fine_tune(model, bars, labels, data, TrainConfig(optimizer="adam"),
              Teaching(replay=200, share=0.3, learning_rate=0.01, passes=3))
    assert score(model, bars, labels) == (10, 10)


def test_score_counts_right_answers():
    model = Model(TINY_SPEC, seed=0)
    images, labels = drawings(6)
    answers = model.predict_proba(images[:, None] / 255.0).argmax(axis=1)
    assert score(model, images, answers) == (6, 6)
    assert score(model, images, (answers + 1) % 10) == (0, 6)
    assert score(model, images[:0], labels[:0]) == (0, 0)


def test_read_gives_the_answers_and_the_drawings_confusion_matrix():
    model = Model(TINY_SPEC, seed=0)
    images, _ = drawings(6)
    answers = model.predict_proba(images[:, None] / 255.0).argmax(axis=1)
    labels = (answers + np.array([0, 0, 0, 0, 1, 2])) % 10  # four right, two wrong
    evaluation = read(model, images, labels)
    assert (evaluation.predicted == answers).all()
    confusion = evaluation.confusion()
    assert confusion.shape == (10, 10) and confusion.sum() == 6 and np.trace(confusion) == 4
    assert confusion[labels[4], answers[4]] >= 1
    assert score(model, images, labels) == (4, 6)
    assert read(model, images[:0], labels[:0]).confusion().sum() == 0


def test_slant_leans_a_drawing_and_keeps_its_ink():
    canvas = np.zeros((40, 20))
    canvas[:, 10] = 255
    leaning = slant(canvas, 0.5)
    assert leaning.sum() == pytest.approx(canvas.sum())
    columns = leaning.argmax(axis=1)
    assert columns[0] - columns[-1] == pytest.approx(0.5 * 39, abs=1.5)  # the top leans right
    assert (slant(canvas, 0.0)[:, 2:-2] == canvas).all()


def test_teach_imports_only_numpy_and_the_standard_library():
    source = open(teach.__file__).read()
    imports = [line.split()[1] for line in source.splitlines()
               if line.startswith(("import ", "from "))]
    assert all(name in ("__future__", "dataclasses", "numpy") or name.startswith(".")
               for name in imports), imports


def test_make_dataset_mixes_the_drawings_in_at_the_configs_share():
    from types import SimpleNamespace
    from cnn.train import ConfigError, make_dataset
    data = dataset(300)
    mnist = SimpleNamespace(train_images=data.train_images, train_labels=data.train_labels,
                            test_images=data.test_images, test_labels=data.test_labels)
    config = TrainConfig(train_size=200, include_drawings=0.2)
    mixed = make_dataset(mnist, config, drawings(5))
    assert len(mixed.train_labels) == 250  # 200 MNIST + 50 drawing images: a fifth
    assert len(make_dataset(mnist, config).train_labels) == 200  # no drawings given
    assert len(make_dataset(mnist, TrainConfig(train_size=200), drawings(5)).train_labels) == 200
    with pytest.raises(ConfigError, match="include_drawings"):
        TrainConfig(include_drawings=0.95).validated()
