"""cnn/drawn.py: MNIST digits redrawn like canvas drawings, and what preprocess_drawing
makes of them (no trained model needed)."""

import struct
import zlib

import numpy as np
import pytest

from cnn.drawn import (CANVAS_RANGE, HEIGHT_RANGE, draw_skeleton, enlarge, make_drawn_set,
                       skeleton_segments, skeletonize, write_png, zhang_suen)
from cnn.preprocess import BOX, STROKE_WIDTH, _stroke_width, preprocess_drawing

COUNT = 16


@pytest.fixture(scope="module")
def drawn(mnist):
    return make_drawn_set(mnist.test_images, mnist.test_labels, COUNT, seed=7)


def ink_box(canvas):
    rows = np.flatnonzero(canvas.max(axis=1) > 0)
    cols = np.flatnonzero(canvas.max(axis=0) > 0)
    return rows[0], rows[-1], cols[0], cols[-1]


def test_the_same_seed_gives_the_same_drawings_and_another_seed_others(mnist, drawn):
    again = make_drawn_set(mnist.test_images, mnist.test_labels, COUNT, seed=7)
    assert np.array_equal(drawn.sources, again.sources)
    assert all(np.array_equal(a, b) for a, b in zip(drawn.canvases, again.canvases))
    other = make_drawn_set(mnist.test_images, mnist.test_labels, COUNT, seed=8)
    assert not np.array_equal(drawn.sources, other.sources)
    assert np.array_equal(drawn.labels, mnist.test_labels[drawn.sources])


def test_canvases_have_the_requested_sizes_and_the_ink_the_requested_height(drawn):
    assert len(drawn) == COUNT
    assert set(np.unique(drawn.pens)) <= set(range(1, 8))
    for canvas, size, height, pen in zip(drawn.canvases, drawn.canvas_sizes,
                                         drawn.heights, drawn.pens):
        assert canvas.dtype == np.uint8 and canvas.shape == (size, size)
        assert CANVAS_RANGE[0] <= size <= CANVAS_RANGE[1]
        assert canvas.max() >= 240 and canvas.min() == 0  # ink 255 on 0, anti-aliased
        top, bottom, left, right = ink_box(canvas)
        assert top > 0 and left > 0 and bottom < size - 1 and right < size - 1
        ink_height = bottom - top + 1
        # Outer edge to outer edge is the requested height, plus at most an
        # anti-aliased pixel each side; a digit wider than high may be made smaller
        # to fit the canvas.
        assert ink_height <= height * size + 2
        assert HEIGHT_RANGE[0] * size - 2 <= ink_height <= HEIGHT_RANGE[1] * size + 2
        if (right - left) < 0.8 * size:
            assert ink_height >= height * size - 2


def test_positions_vary(drawn):
    tops = [ink_box(c)[0] / len(c) for c in drawn.canvases]
    lefts = [ink_box(c)[2] / len(c) for c in drawn.canvases]
    assert np.ptp(tops) > 0.2 and np.ptp(lefts) > 0.2


def test_a_wider_pen_draws_more_ink_in_proportion(mnist):
    skeleton = skeletonize(enlarge(mnist.test_images[:1]))[0]
    areas = [draw_skeleton(skeleton, 240, 0.7, pen, np.random.default_rng(0)).sum() / 255
             for pen in (1, 3, 7)]
    assert areas[0] < areas[1] < areas[2]
    assert 4 < areas[2] / areas[0] < 8  # area ~ pen width x stroke length


def test_zhang_suen_thins_a_thick_bar_to_a_one_pixel_line():
    bar = np.zeros((1, 20, 40), bool)
    bar[0, 6:13, 5:35] = True
    line = zhang_suen(bar)[0]
    assert line.any()
    assert (line.sum(axis=0) <= 1).all()  # one pixel high everywhere
    assert 6 <= np.flatnonzero(line.any(axis=1)).mean() <= 12  # in the middle
    segments = skeleton_segments(line)
    assert len(segments) == line.sum() - 1  # a chain: one link fewer than pixels


def test_a_corner_is_linked_without_a_triangle():
    corner = np.zeros((5, 5), bool)
    corner[1, 1:4] = True
    corner[1:4, 3] = True  # an L: the diagonal (1,2)-(2,3) would close a triangle
    assert len(skeleton_segments(corner)) == 4


def test_write_png_writes_a_decodable_grey_png(tmp_path):
    image = (np.arange(12 * 7) % 256).astype(np.uint8).reshape(7, 12)
    path = tmp_path / "grid.png"
    write_png(path, image)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (12, 7)
    length = struct.unpack(">I", data[33:37])[0]
    assert data[37:41] == b"IDAT"
    rows = np.frombuffer(zlib.decompress(data[41:41 + length]), np.uint8).reshape(7, 13)
    assert (rows[:, 0] == 0).all() and np.array_equal(rows[:, 1:], image)


def blur(image):
    """A 3x3 box blur: compares shapes, not exact pixels."""
    padded = np.pad(image, 1)
    return sum(padded[dy:dy + 28, dx:dx + 28] for dy in range(3) for dx in range(3)) / 9


def test_a_drawing_preprocesses_to_nearly_its_source_digit(mnist, drawn):
    # What a model sees of a drawing should look like what it sees of the MNIST digit
    # it came from: same place, size and (after widening hairlines) stroke width.
    correlations, plain = [], []
    for canvas, source in zip(drawn.canvases, drawn.sources):
        digit = preprocess_drawing(mnist.test_images[source])
        drawing = preprocess_drawing(canvas)
        correlations.append(np.corrcoef(blur(digit).ravel(), blur(drawing).ravel())[0, 1])
        # For reference: the whole canvas shrunk to 28x28 is nothing like it.
        step = len(canvas) / 28
        corners = (np.arange(28) * step).astype(int)
        shrunk = np.add.reduceat(np.add.reduceat(canvas / 255.0, corners, 0), corners, 1)
        plain.append(np.corrcoef(blur(digit).ravel(), blur(shrunk).ravel())[0, 1])
    # Over 400 drawings the median is 0.91 and 90% are above 0.77; a few digits redraw
    # less faithfully (a blotted MNIST stroke has no clean centre-line).
    assert np.median(correlations) > 0.85
    assert np.mean(np.array(correlations) > 0.7) >= 0.75
    assert min(correlations) > 0.35
    assert np.median(plain) < 0.5


def test_hairlines_are_widened_to_mnist_stroke_width_and_mnist_digits_left_alone(mnist):
    skeleton = skeletonize(enlarge(mnist.test_images[3:4]))[0]
    widths = {}
    for canvas, pen in ((320, 1), (240, 4), (160, 7)):
        drawing = draw_skeleton(skeleton, canvas, 0.8, pen, np.random.default_rng(1))
        widths[pen] = _stroke_width(preprocess_drawing(drawing))
    # Pens of 1 and 4 pixels on a digit 250 pixels high would be 0.1 and 0.3 pixels
    # wide at 28x28: hairlines, widened to MNIST's median.
    assert abs(widths[1] - STROKE_WIDTH) < 0.3 and abs(widths[4] - STROKE_WIDTH) < 0.3
    # 7 pixels on 128 is 1.1 pixels in the 20x20 box: within MNIST's range, kept.
    assert widths[7] < 1.6
    for digit in mnist.test_images[:20]:
        out = preprocess_drawing(digit)
        before = _stroke_width(digit / 255.0)
        assert abs(_stroke_width(out) - before) < 0.1 * BOX / 20 + 0.05
