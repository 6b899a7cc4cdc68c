"""preprocess_drawing: a drawing of any size becomes a 28x28 MNIST-like image."""

import numpy as np
import pytest

from cnn.preprocess import EmptyDrawing, preprocess_drawing


def draw_seven(canvas: int, top: int, left: int, height: int, pen: int) -> np.ndarray:
    """A '7' with a horizontal bar and a diagonal, ink 255 on 0, pen `pen` pixels wide."""
    image = np.zeros((canvas, canvas))
    width = int(height * 0.7)
    image[top:top + pen, left:left + width] = 255
    for step in range(height):
        x = left + width - 1 - int(step * (width - pen) / height)
        image[top + step, max(x - pen + 1, left):x + 1] = 255
    return image


def centre_of_mass(image):
    ys, xs = np.indices(image.shape)
    return (ys * image).sum() / image.sum(), (xs * image).sum() / image.sum()


def test_an_off_centre_oversized_thick_digit_becomes_the_same_image_as_its_centred_version():
    centred = preprocess_drawing(draw_seven(canvas=100, top=20, left=30, height=60, pen=6))
    off_centre = preprocess_drawing(draw_seven(canvas=400, top=10, left=230, height=240, pen=24))
    assert centred.shape == off_centre.shape == (28, 28)
    assert np.abs(centred - off_centre).mean() < 0.02
    assert np.abs(centred - off_centre).max() < 0.35


def test_the_digit_fits_a_20_pixel_box_and_its_centre_of_mass_is_the_centre():
    image = preprocess_drawing(draw_seven(canvas=300, top=200, left=5, height=90, pen=9))
    rows = np.flatnonzero(image.max(axis=1) > 0.1)
    cols = np.flatnonzero(image.max(axis=0) > 0.1)
    assert max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) == 20
    cy, cx = centre_of_mass(image)
    assert abs(cy - 13.5) <= 0.5 and abs(cx - 13.5) <= 0.5


def test_the_output_is_float32_in_zero_to_one_with_anti_aliased_grey_edges():
    image = preprocess_drawing(draw_seven(canvas=333, top=50, left=50, height=201, pen=13))
    assert image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() == pytest.approx(1.0)
    grey = ((image > 0.05) & (image < 0.95)).sum()
    assert grey > 10  # edges are partly covered pixels, not a hard threshold


def test_a_thin_pen_on_a_big_canvas_still_gives_dark_strokes():
    image = preprocess_drawing(draw_seven(canvas=320, top=20, left=20, height=270, pen=1))
    assert image.max() == pytest.approx(1.0)


def test_the_scale_of_the_ink_values_does_not_matter():
    drawing = draw_seven(canvas=200, top=30, left=40, height=120, pen=8)
    assert np.allclose(preprocess_drawing(drawing), preprocess_drawing(drawing / 255.0))


def test_a_wide_short_drawing_keeps_its_aspect_ratio():
    drawing = np.zeros((100, 200))
    drawing[45:55, 20:180] = 255  # a dash, 16 times wider than high
    image = preprocess_drawing(drawing)
    rows = np.flatnonzero(image.max(axis=1) > 0.1)
    cols = np.flatnonzero(image.max(axis=0) > 0.1)
    assert cols[-1] - cols[0] + 1 == 20
    assert rows[-1] - rows[0] + 1 <= 2


@pytest.mark.parametrize("drawing, error, words", [
    (np.zeros((50, 50)), EmptyDrawing, "empty"),
    (np.zeros((3, 50, 50)), ValueError, "2D"),
    (np.full((50, 50), np.nan), ValueError, "finite"),
])
def test_bad_drawings_are_refused_with_a_clear_message(drawing, error, words):
    with pytest.raises(error, match=words):
        preprocess_drawing(drawing)


def test_mnist_digits_keep_their_place_and_size(mnist):
    # MNIST digits were made by this recipe, so it moves them by about a pixel at most
    # (it crops MNIST's faintest edge pixels before fitting again).
    for digit in mnist.test_images[:50]:
        again = preprocess_drawing(digit)
        before = np.array(centre_of_mass(digit / 255.0))
        after = np.array(centre_of_mass(again))
        assert np.abs(before - after).max() <= 1.5
        rows = np.flatnonzero(again.max(axis=1) > 0.1)
        cols = np.flatnonzero(again.max(axis=0) > 0.1)
        assert 18 <= max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 20
