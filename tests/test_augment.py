"""Tests for cnn.augment (random shift / scale / rotation of training images) and its use
by the trainer: the settings, the geometry of each distortion, that nothing is lost off
the canvas, reproducibility, and that only the training batches are distorted.

Conventions the tests pin down (rows grow downwards, columns to the right):
- a positive shift (dy, dx) moves the picture down by dy rows and right by dx columns;
- a zoom above 1 makes the picture bigger, about the image centre;
- a positive rotation angle turns the picture clockwise as seen on screen: the top of a
  vertical bar leans to the right.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnn.augment import Augmentation, augment
from cnn.model import Model
from cnn.train import ConfigError, TrainConfig, Trainer, make_dataset, scale_images

SIZE = 28
CENTRE = (SIZE - 1) / 2
TINY_CONV = {"input": [1, 28, 28],
             "layers": [{"type": "conv", "filters": 4, "kernel": 3}, {"type": "relu"},
                        {"type": "maxpool", "size": 2}, {"type": "flatten"},
                        {"type": "dense", "units": 10}]}
TIMING_KEYS = {"seconds", "images_per_second"}


class ChosenRng:
    """Stands in for np.random.Generator in augment(): `uniform` returns the chosen value
    for every image instead of a random one (and checks it lies in the range asked for).
    The call is recognised by its range, not its order: the zoom's range is centred on 1,
    the shift's draw has shape (N, 2), the rotation's range is centred on 0."""

    def __init__(self, rotation: float = 0.0, zoom: float = 1.0,
                 shift: tuple[float, float] = (0.0, 0.0)) -> None:
        self.rotation, self.zoom, self.shift = rotation, zoom, shift

    def uniform(self, low, high, size):
        shape = tuple(np.atleast_1d(size))
        if len(shape) == 2:
            value = np.broadcast_to(np.asarray(self.shift, dtype=np.float64), shape)
        elif np.isclose((low + high) / 2, 1.0):
            value = np.full(shape, self.zoom)
        else:
            value = np.full(shape, self.rotation)
        assert np.all((low <= value) & (value <= high)), (low, high, value)
        return np.array(value, dtype=np.float64)


def transformed(images, rotation=0.0, zoom=1.0, shift=(0.0, 0.0)):
    """augment() with one known transform for every image (settings wide enough for it)."""
    settings = Augmentation(shift=max(abs(shift[0]), abs(shift[1])), scale=abs(zoom - 1),
                            rotation=abs(rotation))
    return augment(images, ChosenRng(rotation, zoom, shift), settings)


def as_batch(picture: np.ndarray) -> np.ndarray:
    return picture.astype(np.float32)[None, None]


def centre_of_mass(picture: np.ndarray) -> np.ndarray:
    """(row, column) of a 2-D picture's ink."""
    rows, cols = np.indices(picture.shape)
    total = picture.sum()
    return np.array([(rows * picture).sum() / total, (cols * picture).sum() / total])


def centred_blob(sigma: float = 3.0) -> np.ndarray:
    rows, cols = np.indices((SIZE, SIZE))
    return np.exp(-((rows - CENTRE) ** 2 + (cols - CENTRE) ** 2) / (2 * sigma ** 2))


def vertical_bar() -> np.ndarray:
    """A bar two pixels wide, from row 4 to row 23, straddling the centre column."""
    picture = np.zeros((SIZE, SIZE))
    picture[4:24, 13:15] = 1.0
    return picture


@pytest.fixture(scope="module")
def digits(request):
    """The first 32 real MNIST test digits as float32 (32, 1, 28, 28) in [0, 1]."""
    mnist = request.getfixturevalue("mnist")
    return scale_images(mnist.test_images[:32])


# --- no distortion ----------------------------------------------------------------------------


def test_zero_settings_return_the_images_exactly_unchanged_in_shape_and_float32():
    images = np.random.default_rng(0).random((5, 1, SIZE, SIZE)).astype(np.float32)
    out = augment(images, np.random.default_rng(1), Augmentation(0, 0, 0))
    assert out.shape == images.shape
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, images)


def test_augment_leaves_its_input_array_untouched():
    images = np.random.default_rng(0).random((4, 1, SIZE, SIZE)).astype(np.float32)
    before = images.copy()
    augment(images, np.random.default_rng(1), Augmentation(2, 0.1, 10))
    np.testing.assert_array_equal(images, before)


# --- shift ------------------------------------------------------------------------------------


def test_a_positive_integer_shift_moves_a_pixel_down_and_right_by_exactly_that_many_pixels():
    picture = np.zeros((SIZE, SIZE))
    picture[10, 12] = 1.0
    out = transformed(as_batch(picture), shift=(3.0, 2.0))[0, 0]
    expected = np.zeros((SIZE, SIZE), np.float32)
    expected[13, 14] = 1.0
    np.testing.assert_array_equal(out, expected)


def test_a_negative_integer_shift_moves_a_pixel_up_and_left_by_exactly_that_many_pixels():
    picture = np.zeros((SIZE, SIZE))
    picture[10, 12] = 1.0
    out = transformed(as_batch(picture), shift=(-3.0, -2.0))[0, 0]
    expected = np.zeros((SIZE, SIZE), np.float32)
    expected[7, 10] = 1.0
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dy, dx", [(2.0, 3.0), (-2.0, -3.0), (2.0, -3.0), (-2.0, 3.0)])
def test_an_integer_shift_moves_the_picture_exactly_and_lets_only_zeros_in_from_the_edge(dy, dx):
    # A full-canvas pattern with ink right up to every edge: whatever enters the canvas
    # from outside must be exactly zero, whichever way the picture moves.
    picture = 0.5 + 0.5 * np.random.default_rng(0).random((SIZE, SIZE))
    out = transformed(as_batch(picture), shift=(dy, dx))[0, 0]
    ry, rx = int(dy), int(dx)
    expected = np.zeros((SIZE, SIZE), np.float32)
    expected[max(ry, 0):SIZE + min(ry, 0), max(rx, 0):SIZE + min(rx, 0)] = \
        picture.astype(np.float32)[max(-ry, 0):SIZE + min(-ry, 0), max(-rx, 0):SIZE + min(-rx, 0)]
    np.testing.assert_array_equal(out, expected)


def test_a_half_pixel_shift_averages_neighbouring_pixels():
    picture = np.zeros((SIZE, SIZE))
    picture[10, 12] = 1.0
    out = transformed(as_batch(picture), shift=(0.0, 0.5))[0, 0]
    assert out[10, 12] == pytest.approx(0.5)
    assert out[10, 13] == pytest.approx(0.5)
    assert out.sum() == pytest.approx(1.0)


# --- scale and rotation -------------------------------------------------------------------------


def test_a_zoom_above_one_makes_a_centred_blob_bigger():
    blob = as_batch(centred_blob())
    assert (transformed(blob, zoom=1.2) > 0.5).sum() > (blob > 0.5).sum()


def test_a_zoom_below_one_makes_a_centred_blob_smaller():
    blob = as_batch(centred_blob())
    assert (transformed(blob, zoom=0.8) > 0.5).sum() < (blob > 0.5).sum()


@pytest.mark.parametrize("rotation, zoom", [(10.0, 1.0), (-10.0, 1.0), (0.0, 1.1),
                                            (0.0, 0.9), (10.0, 1.1), (-10.0, 0.9)])
def test_rotation_and_scale_keep_a_centred_digit_centre_of_mass_within_half_a_pixel(
        digits, rotation, zoom):
    for digit in digits:
        before = centre_of_mass(digit[0])
        assert np.abs(before - CENTRE).max() < 1.5  # MNIST digits are centred by their ink
        after = centre_of_mass(transformed(digit[None], rotation=rotation, zoom=zoom)[0, 0])
        assert np.abs(after - before).max() < 0.5


def test_rotation_and_scale_turn_about_the_image_centre():
    # A blob exactly at the centre stays exactly there (to float precision).
    blob = as_batch(centred_blob())
    for rotation, zoom in [(10.0, 1.0), (-30.0, 0.7), (20.0, 1.3)]:
        out = transformed(blob, rotation=rotation, zoom=zoom)[0, 0]
        np.testing.assert_allclose(centre_of_mass(out), [CENTRE, CENTRE], atol=1e-3)


def lean(picture: np.ndarray) -> float:
    """Columns the ink's top half lies to the right of its bottom half (> 0: top leans right)."""
    top, bottom = picture.copy(), picture.copy()
    top[SIZE // 2:], bottom[:SIZE // 2] = 0, 0
    return centre_of_mass(top)[1] - centre_of_mass(bottom)[1]


def test_a_positive_rotation_turns_a_vertical_bar_clockwise_so_its_top_leans_right():
    bar = as_batch(vertical_bar())
    assert lean(bar[0, 0]) == 0
    turned = lean(transformed(bar, rotation=8.0)[0, 0])
    # The halves' centres are ~5 rows above and below the centre: tan(8 deg) * 10 ~ 1.4.
    assert 0.8 < turned < 2.0


def test_a_negative_rotation_turns_a_vertical_bar_anticlockwise_so_its_top_leans_left():
    turned = lean(transformed(as_batch(vertical_bar()), rotation=-8.0)[0, 0])
    assert -2.0 < turned < -0.8


# --- nothing lost, values in range ----------------------------------------------------------------


@pytest.mark.parametrize("shift", [(2.0, 2.0), (-2.0, -2.0), (2.0, -2.0), (-2.0, 2.0)])
@pytest.mark.parametrize("zoom", [0.9, 1.1])
@pytest.mark.parametrize("rotation", [-10.0, 10.0])
def test_the_extreme_default_distortions_keep_a_real_digit_ink_within_a_quarter(
        digits, shift, zoom, rotation):
    ink = digits.sum(axis=(1, 2, 3))
    out = transformed(digits, rotation=rotation, zoom=zoom, shift=shift)
    ratio = out.sum(axis=(1, 2, 3)) / ink
    assert ratio.min() > 0.75 and ratio.max() < 1.25, ratio


def test_random_default_distortions_keep_every_real_digit_ink_within_a_quarter(digits):
    out = augment(digits, np.random.default_rng(0), Augmentation(2.0, 0.1, 10.0))
    ratio = out.sum(axis=(1, 2, 3)) / digits.sum(axis=(1, 2, 3))
    assert ratio.min() > 0.75 and ratio.max() < 1.25, ratio


def test_values_stay_within_zero_and_one_for_inputs_within_zero_and_one():
    rng = np.random.default_rng(0)
    images = np.concatenate([rng.random((64, 1, SIZE, SIZE)),
                             np.ones((64, 1, SIZE, SIZE))]).astype(np.float32)
    out = augment(images, rng, Augmentation(4.0, 0.5, 45.0))
    assert out.min() >= 0.0
    assert out.max() <= 1.0


# --- randomness -----------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_output_and_another_seed_a_different_one(digits):
    settings = Augmentation(2.0, 0.1, 10.0)
    first = augment(digits, np.random.default_rng(5), settings)
    again = augment(digits, np.random.default_rng(5), settings)
    other = augment(digits, np.random.default_rng(6), settings)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_each_image_in_a_batch_gets_its_own_transform():
    picture = as_batch(centred_blob() * vertical_bar())[0]
    batch = np.stack([picture, picture])
    out = augment(batch, np.random.default_rng(0), Augmentation(2.0, 0.1, 10.0))
    assert not np.allclose(out[0], out[1], atol=1e-3)


@pytest.mark.parametrize("settings", [Augmentation(2.0, 0, 0), Augmentation(0, 0.1, 0),
                                      Augmentation(0, 0, 10.0)])
def test_each_kind_of_distortion_alone_changes_the_images(digits, settings):
    out = augment(digits, np.random.default_rng(0), settings)
    assert out.shape == digits.shape and out.dtype == np.float32
    changed = [not np.allclose(a, b, atol=1e-3) for a, b in zip(out, digits)]
    assert sum(changed) >= len(digits) - 1


# --- settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("augment_shift", -1.0), ("augment_shift", 100.0),
    ("augment_scale", -0.1), ("augment_scale", 1.0),
    ("augment_rotation", -5.0), ("augment_rotation", 360.0),
    ("augment_rotation", float("nan")), ("augment_shift", "2"),
])
def test_a_negative_or_too_large_augment_setting_is_refused_with_a_config_error_naming_it(
        field, value):
    with pytest.raises(ConfigError, match=f"^{field} must be"):
        TrainConfig().replace(**{field: value})
    with pytest.raises(ConfigError, match=f"^{field} must be"):
        Trainer(Model(TINY_CONV), TrainConfig(**{field: value}), None)


def test_augmentation_is_none_when_all_three_settings_are_zero():
    assert TrainConfig().augmentation() is None
    assert TrainConfig(augment_shift=0, augment_scale=0.0, augment_rotation=0).augmentation() is None


@pytest.mark.parametrize("changes", [{"augment_shift": 2.0}, {"augment_scale": 0.1},
                                     {"augment_rotation": 10.0}, {"augment_stroke": 0.5}])
def test_augmentation_carries_the_settings_when_any_one_is_on(changes):
    config = TrainConfig().replace(**changes)
    expected = {"shift": 0.0, "scale": 0.0, "rotation": 0.0, "stroke": 0.0,
                **{key.removeprefix("augment_"): value for key, value in changes.items()}}
    assert config.augmentation().to_dict() == expected


# --- the trainer --------------------------------------------------------------------------------------


AUGMENTED = {"augment_shift": 2.0, "augment_scale": 0.1, "augment_rotation": 10.0}


def run_trainer(mnist, capture=False, **settings):
    """Train a fresh tiny model; returns (model, trainer, data, captured train_step inputs)."""
    config = TrainConfig(**{"epochs": 2, "batch_size": 32, "learning_rate": 0.01,
                            "train_size": 128, "test_size": 100, "seed": 3,
                            "filter_interval": 3600.0, **settings})
    model = Model(TINY_CONV, seed=3)
    data = make_dataset(mnist, config)
    inputs: list[np.ndarray] = []
    if capture:
        real_train_step = model.train_step

        def recording_train_step(x, labels, optimizer):
            inputs.append(np.array(x, copy=True))
            return real_train_step(x, labels, optimizer)

        model.train_step = recording_train_step
    trainer = Trainer(model, config, data)
    trainer.run()
    return model, trainer, data, inputs


def without_timing(history):
    return [{k: v for k, v in record.items() if k not in TIMING_KEYS} for record in history]


def test_with_augmentation_the_test_evaluation_still_uses_the_original_test_images(mnist):
    model, trainer, data, _ = run_trainer(mnist, **AUGMENTED)
    last = trainer.history[-1]
    test_loss, test_correct = model.evaluate(data.test_images, data.test_labels)
    assert last["test_correct"] == test_correct
    assert last["test_accuracy"] == test_correct / len(data.test_labels)
    assert last["test_loss"] == pytest.approx(test_loss, rel=1e-6)


def test_with_augmentation_the_same_seed_gives_identical_histories(mnist):
    _, first, _, _ = run_trainer(mnist, **AUGMENTED)
    _, again, _, _ = run_trainer(mnist, **AUGMENTED)
    assert len(first.history) == 2
    assert without_timing(first.history) == without_timing(again.history)


def test_with_augmentation_the_training_batches_differ_from_the_raw_images(mnist):
    _, _, data, inputs = run_trainer(mnist, capture=True, shuffle=False, **AUGMENTED)
    raw = scale_images(data.train_images)  # the data set keeps MNIST's uint8 pixels
    assert len(inputs) == 2 * 4
    for step, x in enumerate(inputs):
        batch = raw[(step % 4) * 32:(step % 4 + 1) * 32]
        assert x.shape == batch.shape and x.dtype == np.float32
        differs = [not np.allclose(a, b, atol=1e-3) for a, b in zip(x, batch)]
        assert sum(differs) >= 30
    # The same image is distorted afresh each epoch, and the data set itself is untouched.
    assert not np.array_equal(inputs[0], inputs[4])
    np.testing.assert_array_equal(
        raw, scale_images(make_dataset(mnist, TrainConfig(train_size=128)).train_images))


def test_without_augmentation_the_training_batches_are_the_raw_images(mnist):
    _, _, data, inputs = run_trainer(mnist, capture=True, shuffle=False)
    assert len(inputs) == 2 * 4
    for step, x in enumerate(inputs):
        np.testing.assert_array_equal(
            x, scale_images(data.train_images[(step % 4) * 32:(step % 4 + 1) * 32]))


# --- strength (the start of a run, scheduled by TrainConfig.augment_strength) ---------------------


def test_a_scaled_augmentation_shrinks_every_range_by_the_strength():
    full = Augmentation(shift=2.0, scale=0.1, rotation=10.0, stroke=0.4)
    assert full.scaled(0.5) == Augmentation(shift=1.0, scale=0.05, rotation=5.0, stroke=0.2)
    assert full.scaled(1.0) is full


def test_a_weaker_augmentation_draws_as_many_numbers_so_the_random_stream_does_not_shift(digits):
    full = Augmentation(shift=2.0, scale=0.1, rotation=10.0, stroke=0.4)
    after_full, after_half = np.random.default_rng(7), np.random.default_rng(7)
    augment(digits, after_full, full)
    augment(digits, after_half, full.scaled(0.5))
    assert after_full.random() == after_half.random()


def test_the_trainer_ramps_the_augmentation_from_its_start_strength_to_full(mnist, monkeypatch):
    import cnn.train
    used = []
    real_augment = cnn.train.augment
    monkeypatch.setattr(cnn.train, "augment", lambda images, rng, settings: (
        used.append(settings), real_augment(images, rng, settings))[1])
    run_trainer(mnist, augment_start=0.5, augment_warmup=4, **AUGMENTED)
    # 2 epochs of 4 batches: strength 0.5, 0.625, 0.75, 0.875, then full (the run's
    # batches are counted across epochs).
    assert [s.rotation for s in used] == pytest.approx([5.0, 6.25, 7.5, 8.75] + [10.0] * 4)
    assert [s.shift for s in used] == pytest.approx([1.0, 1.25, 1.5, 1.75] + [2.0] * 4)
    assert [s.scale for s in used] == pytest.approx([0.05, 0.0625, 0.075, 0.0875] + [0.1] * 4)
