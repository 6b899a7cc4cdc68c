"""Tests for cnn.layers, cnn.losses, cnn.optim and the model's gradients.

The fast layers work on images laid out (C, N, H, W); the loop-by-loop reference in
naive_reference.py works in the usual (N, C, H, W). `to_net` and `from_net` convert.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np
import pytest

import naive_reference as ref
from cnn.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Sigmoid, Tanh
from cnn.losses import SoftmaxCrossEntropy, SquaredError
from cnn.model import Model
from cnn.optim import SGD, Adam

TOL = 1e-5  # float32 layers against the float64 reference, values of order 1
FD_EPS = 1e-6
FD_TOL = 1e-6


# -- helpers ----------------------------------------------------------------------------

def to_net(x_nchw):
    """(N, C, H, W) -> the network's (C, N, H, W), as a contiguous array."""
    return np.ascontiguousarray(np.asarray(x_nchw).transpose(1, 0, 2, 3))


def from_net(x_cnhw):
    """The network's (C, N, H, W) -> (N, C, H, W)."""
    return np.asarray(x_cnhw).transpose(1, 0, 2, 3)


def relative_error(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300)


def numerical_gradient(objective, array, eps=FD_EPS):
    """Central differences of objective() with respect to each entry of `array`,
    which is perturbed in place (and restored)."""
    flat = array.reshape(-1)
    assert np.shares_memory(flat, array), "the array must be contiguous to perturb it"
    grad = np.zeros(array.size)
    for i in range(array.size):
        old = flat[i]
        flat[i] = old + eps
        plus = objective()
        flat[i] = old - eps
        minus = objective()
        flat[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad.reshape(array.shape)


def make_conv(c, f, k, s, p, rng, dtype=np.float32):
    layer = Conv2D(c, f, k, s, p)
    scale = 1.0 / np.sqrt(c * k * k)  # keeps outputs of order 1
    layer.params["weight"] = (rng.uniform(-1, 1, (f, c, k, k)) * scale).astype(dtype)
    layer.params["bias"] = rng.uniform(-1, 1, f).astype(dtype)
    return layer


def make_dense(d, units, rng, dtype=np.float32):
    layer = Dense(d, units)
    layer.params["weight"] = (rng.uniform(-1, 1, (d, units)) / np.sqrt(d)).astype(dtype)
    layer.params["bias"] = rng.uniform(-1, 1, units).astype(dtype)
    return layer


def assert_close(actual, expected, tol=TOL):
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


def untied(rng, shape, gap=1e-3):
    """Random values whose every pair differs by well over the finite-difference step
    (a shuffled, jittered grid), so no max-pool window has a tie or a near-tie."""
    size = int(np.prod(shape))
    values = np.arange(size) / size * 4.0 - 2.0 + rng.uniform(0, gap, size)
    return rng.permutation(values).reshape(shape)


def away_from_zero(rng, shape):
    """Random values of either sign at least 0.05 from zero (ReLU's kink)."""
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.05, 1.5, shape)


# -- fast layers against the naive reference (float32 vs float64) -------------------------

# (in_channels, filters, kernel, stride, padding, batch, height, width)
CONV_CONFIGS = [
    (1, 1, 1, 1, 0, 1, 9, 7),
    (1, 4, 3, 1, 1, 3, 9, 7),
    (3, 1, 3, 2, 0, 1, 9, 7),
    (3, 4, 3, 2, 1, 3, 9, 7),
    (3, 4, 5, 1, 2, 3, 9, 7),
    (1, 4, 5, 2, 2, 1, 9, 7),
    (3, 1, 5, 1, 0, 3, 9, 7),
    (3, 4, 1, 2, 0, 3, 9, 7),
    (1, 1, 3, 1, 2, 3, 9, 7),
    (3, 4, 5, 2, 1, 3, 9, 7),
    (1, 4, 1, 1, 1, 1, 9, 7),
    (3, 1, 3, 1, 0, 1, 7, 9),
    (1, 4, 3, 2, 0, 3, 8, 6),  # stride 2 leaves the last row and column unused
]


def conv_id(cfg):
    c, f, k, s, p, n, h, w = cfg
    return f"C{c}-F{f}-k{k}-s{s}-p{p}-N{n}-{h}x{w}"


@pytest.mark.parametrize("cfg", CONV_CONFIGS, ids=conv_id)
def test_conv2d_forward_and_backward_match_the_naive_reference(cfg):
    c, f, k, s, p, n, h, w = cfg
    rng = np.random.default_rng(1)
    layer = make_conv(c, f, k, s, p, rng)
    weight, bias = layer.params["weight"], layer.params["bias"]
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    assert layer.output_shape((c, h, w)) == (f, ho, wo)

    # A first round on other data, so the second meets work buffers left dirty.
    layer.forward(to_net(rng.uniform(-3, 3, (n, c, h, w)).astype(np.float32)))
    layer.backward(to_net(rng.uniform(-3, 3, (n, f, ho, wo)).astype(np.float32)))

    x = rng.uniform(-1, 1, (n, c, h, w)).astype(np.float32)
    grad_out = rng.uniform(-1, 1, (n, f, ho, wo)).astype(np.float32)
    out = layer.forward(to_net(x))
    assert out.dtype == np.float32
    assert_close(from_net(out), ref.conv2d_forward(x, weight, bias, s, p))

    grad_x = layer.backward(to_net(grad_out))
    ref_gx, ref_gw, ref_gb = ref.conv2d_backward(x, weight, s, p, grad_out)
    assert_close(from_net(grad_x), ref_gx)
    assert_close(layer.grads["weight"], ref_gw)
    assert_close(layer.grads["bias"], ref_gb)


def test_conv2d_without_input_gradient_returns_none_but_still_fills_parameter_gradients():
    rng = np.random.default_rng(2)
    layer = make_conv(3, 4, 3, 2, 1, rng)
    x = rng.uniform(-1, 1, (2, 3, 7, 6)).astype(np.float32)
    out = layer.forward(to_net(x))
    grad_out = rng.uniform(-1, 1, out.shape).astype(np.float32)
    layer.backward(grad_out)
    expected = {name: g.copy() for name, g in layer.grads.items()}

    layer.needs_input_grad = False
    layer.forward(to_net(x))
    assert layer.backward(grad_out) is None
    for name in ("weight", "bias"):
        np.testing.assert_array_equal(layer.grads[name], expected[name])


def test_conv2d_and_maxpool_accept_a_strided_view_as_the_model_passes_them():
    # The model hands its first layer x.transpose(1, 0, 2, 3), a non-contiguous view.
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (3, 2, 7, 8)).astype(np.float32)
    conv = make_conv(2, 4, 3, 1, 1, rng)
    view_out = conv.forward(x.transpose(1, 0, 2, 3)).copy()
    np.testing.assert_array_equal(view_out, conv.forward(to_net(x)))
    pool = MaxPool2D(3)
    view_out = pool.forward(x.transpose(1, 0, 2, 3)).copy()
    np.testing.assert_array_equal(view_out, pool.forward(to_net(x)))


@pytest.mark.parametrize("size", [2, 3])
def test_maxpool_forward_and_backward_match_the_naive_reference_with_ragged_edges(size):
    rng = np.random.default_rng(4)
    n, c, h, w = 3, 2, 7, 8
    layer = MaxPool2D(size)
    assert layer.output_shape((c, h, w)) == (c, h // size, w // size)
    layer.forward(to_net(untied(rng, (n, c, h, w)).astype(np.float32)))  # dirty buffers
    layer.backward(to_net(rng.uniform(-1, 1, (n, c, h // size, w // size)).astype(np.float32)))

    x = untied(rng, (n, c, h, w)).astype(np.float32)
    grad_out = rng.uniform(-1, 1, (n, c, h // size, w // size)).astype(np.float32)
    out = layer.forward(to_net(x))
    np.testing.assert_array_equal(from_net(out), ref.maxpool_forward(x, size))
    grad_x = layer.backward(to_net(grad_out))
    assert grad_x.shape == (c, n, h, w)
    np.testing.assert_array_equal(from_net(grad_x), ref.maxpool_backward(x, size, grad_out))


def test_dense_forward_and_backward_match_the_naive_reference():
    rng = np.random.default_rng(5)
    layer = make_dense(7, 5, rng)
    x = rng.uniform(-1, 1, (3, 7)).astype(np.float32)
    grad_out = rng.uniform(-1, 1, (3, 5)).astype(np.float32)
    weight, bias = layer.params["weight"], layer.params["bias"]
    assert layer.output_shape((7,)) == (5,)
    assert_close(layer.forward(x), ref.dense_forward(x, weight, bias))
    grad_x = layer.backward(grad_out)
    ref_gx, ref_gw, ref_gb = ref.dense_backward(x, weight, grad_out)
    assert_close(grad_x, ref_gx)
    assert_close(layer.grads["weight"], ref_gw)
    assert_close(layer.grads["bias"], ref_gb)
    layer.needs_input_grad = False
    layer.forward(x)
    assert layer.backward(grad_out) is None
    assert_close(layer.grads["weight"], ref_gw)


ACTIVATIONS = {
    "relu": (ReLU, ref.relu_forward, ref.relu_backward),
    "sigmoid": (Sigmoid, ref.sigmoid_forward, ref.sigmoid_backward),
    "tanh": (Tanh, ref.tanh_forward, ref.tanh_backward),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 6)], ids=["image", "flat"])
def test_activation_forward_and_backward_match_the_naive_reference(name, shape):
    cls, forward, backward = ACTIVATIONS[name]
    rng = np.random.default_rng(6)
    x = away_from_zero(rng, shape).astype(np.float32) * 2
    grad_out = rng.uniform(-1, 1, shape).astype(np.float32)
    layer = cls()
    out = layer.forward(x)
    assert out.shape == shape and out.dtype == np.float32
    assert_close(out, forward(x))
    assert_close(layer.backward(grad_out), backward(x, grad_out))


def test_sigmoid_saturates_without_nan_for_huge_inputs():
    x = np.array([[-1000.0, -100.0, 0.0, 100.0, 1000.0]], np.float32)
    layer = Sigmoid()
    out = layer.forward(x)
    np.testing.assert_allclose(out, [[0.0, 0.0, 0.5, 1.0, 1.0]], atol=1e-30)
    grad = layer.backward(np.ones_like(x))
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad, [[0.0, 0.0, 0.25, 0.0, 0.0]], atol=1e-30)


def test_relu_passes_no_gradient_where_its_input_was_negative_or_zero():
    x = np.array([[-2.0, -0.0, 0.0, 0.5, 3.0]], np.float32)
    layer = ReLU()
    np.testing.assert_array_equal(layer.forward(x), [[0.0, 0.0, 0.0, 0.5, 3.0]])
    np.testing.assert_array_equal(layer.backward(np.full_like(x, 5.0)),
                                  [[0.0, 0.0, 0.0, 5.0, 5.0]])


def test_flatten_orders_features_like_a_reshape_of_nchw_and_backward_inverts_it():
    rng = np.random.default_rng(7)
    n, c, h, w = 3, 4, 2, 5
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    layer = Flatten()
    assert layer.output_shape((c, h, w)) == (c * h * w,)
    np.testing.assert_array_equal(layer.forward(to_net(x)), x.reshape(n, -1))
    grad_flat = rng.standard_normal((n, c * h * w)).astype(np.float32)
    grad = layer.backward(grad_flat)
    assert grad.shape == (c, n, h, w)
    np.testing.assert_array_equal(from_net(grad), grad_flat.reshape(n, c, h, w))


def test_flatten_forward_and_backward_match_the_naive_reference():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    layer = Flatten()
    assert_close(layer.forward(to_net(x)), ref.flatten_forward(x))
    grad = rng.standard_normal((2, 60)).astype(np.float32)
    assert_close(from_net(layer.backward(grad)), ref.flatten_backward(x.shape, grad))


LOSS_CASES = {
    "softmax_cross_entropy": (SoftmaxCrossEntropy, ref.softmax_cross_entropy),
    "squared_error": (SquaredError, ref.squared_error),
}


@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_losses_and_their_gradients_match_the_naive_reference(name):
    cls, reference = LOSS_CASES[name]
    rng = np.random.default_rng(8)
    outputs = rng.uniform(-2, 2, (5, 10)).astype(np.float32)
    labels = np.array([0, 9, 3, 3, 7])
    kept = outputs.copy()
    loss, grad = cls()(outputs, labels)
    ref_loss, ref_grad = reference(outputs, labels)
    assert isinstance(loss, float)
    assert loss == pytest.approx(ref_loss, rel=TOL, abs=TOL)
    assert_close(grad, ref_grad)
    np.testing.assert_array_equal(outputs, kept)  # the loss leaves its input alone


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]], np.float32)
    loss, grad = SoftmaxCrossEntropy()(logits, np.array([0, 2]))
    assert np.isfinite(loss) and np.isfinite(grad).all()
    assert loss == pytest.approx(np.log(3) / 2, rel=1e-6)
    np.testing.assert_allclose(grad, [[0, 0, 0], [1 / 6, 1 / 6, -1 / 3]], atol=1e-7)


# -- finite differences in float64 ---------------------------------------------------------

def check_layer_gradients(layer, x, seed=0):
    """Compare a float64 layer's backward with central differences of sum(out * R)."""
    rng = np.random.default_rng(seed)
    for name in layer.params:
        layer.params[name] = layer.params[name].astype(np.float64)
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = layer.forward(x)
    assert out.dtype == np.float64
    weights = rng.standard_normal(out.shape)

    def objective():
        return float(np.sum(layer.forward(x) * weights))

    objective()
    grad_x = layer.backward(weights)
    grad_x = None if grad_x is None else np.array(grad_x)
    grads = {name: np.array(g) for name, g in layer.grads.items()}
    errors = {}
    if grad_x is not None:
        assert grad_x.shape == x.shape and grad_x.dtype == np.float64
        errors["input"] = relative_error(grad_x, numerical_gradient(objective, x))
    for name, param in layer.params.items():
        assert grads[name].shape == param.shape and grads[name].dtype == np.float64
        errors[name] = relative_error(grads[name], numerical_gradient(objective, param))
    assert errors, "nothing was checked"
    assert all(err < FD_TOL for err in errors.values()), errors
    return errors


@pytest.mark.parametrize("kernel, stride, padding, h, w", [
    (3, 1, 0, 5, 6), (3, 2, 1, 6, 5), (1, 2, 0, 5, 4), (5, 1, 2, 5, 4), (3, 2, 0, 6, 6),
], ids=["k3-s1-p0", "k3-s2-p1", "k1-s2-p0", "k5-s1-p2", "k3-s2-p0-unused-edge"])
def test_conv2d_gradients_match_finite_differences(kernel, stride, padding, h, w):
    rng = np.random.default_rng(10)
    layer = make_conv(2, 3, kernel, stride, padding, rng, np.float64)
    errors = check_layer_gradients(layer, to_net(rng.uniform(-1, 1, (2, 2, h, w))))
    assert set(errors) == {"input", "weight", "bias"}


@pytest.mark.parametrize("size", [2, 3])
def test_maxpool_gradients_match_finite_differences_on_inputs_without_ties(size):
    rng = np.random.default_rng(11)
    errors = check_layer_gradients(MaxPool2D(size), to_net(untied(rng, (2, 2, 7, 8))))
    assert set(errors) == {"input"}


def test_dense_gradients_match_finite_differences():
    rng = np.random.default_rng(12)
    errors = check_layer_gradients(make_dense(6, 4, rng, np.float64), rng.uniform(-1, 1, (3, 6)))
    assert set(errors) == {"input", "weight", "bias"}


@pytest.mark.parametrize("cls", [ReLU, Sigmoid, Tanh, Flatten], ids=lambda c: c.__name__)
def test_parameterless_layer_gradients_match_finite_differences(cls):
    rng = np.random.default_rng(13)
    x = away_from_zero(rng, (2, 3, 3, 4))  # (C, N, H, W), fine for every one of them
    assert set(check_layer_gradients(cls(), x)) == {"input"}


# -- max pooling with tied maxima ------------------------------------------------------------

def _tied_inputs(rng):
    blank = np.zeros((2, 2, 7, 8))
    stroke = blank.copy()
    stroke[:, :, 2:5, 1:7] = 1.0  # a bright block on a blank background
    small_ints = rng.integers(0, 3, (2, 2, 7, 8)).astype(np.float64)
    return {"all-equal": blank + 0.5, "blank-with-stroke": stroke, "small-integers": small_ints}


@pytest.mark.parametrize("case", ["all-equal", "blank-with-stroke", "small-integers"])
@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_maxpool_sends_each_windows_gradient_to_exactly_one_position_when_maxima_tie(
        case, size, dtype):
    rng = np.random.default_rng(14)
    x = _tied_inputs(rng)[case].astype(dtype)  # (N, C, H, W)
    n, c, h, w = x.shape
    ho, wo = h // size, w // size
    layer = MaxPool2D(size)
    out = from_net(layer.forward(to_net(x)))
    grad_out = rng.uniform(0.5, 1.5, (n, c, ho, wo)).astype(dtype)  # never zero
    grad_x = from_net(layer.backward(to_net(grad_out)))
    assert grad_x.shape == x.shape

    assert grad_x.sum() == pytest.approx(grad_out.sum(), rel=1e-6)
    windows = grad_x[:, :, :ho * size, :wo * size].reshape(n, c, ho, size, wo, size)
    nonzero = (windows != 0).sum(axis=(3, 5))
    np.testing.assert_array_equal(nonzero, np.ones_like(nonzero))
    np.testing.assert_array_equal(windows.sum(axis=(3, 5)), grad_out)
    # ... and the one position holds the window's maximum
    x_windows = x[:, :, :ho * size, :wo * size].reshape(n, c, ho, size, wo, size)
    picked = np.where(windows != 0, x_windows, -np.inf).max(axis=(3, 5))
    np.testing.assert_array_equal(picked, out)
    # the ragged edge gets nothing
    assert not grad_x[:, :, ho * size:, :].any() and not grad_x[:, :, :, wo * size:].any()


# -- the whole model --------------------------------------------------------------------------

SMALL_NET = {
    "input": [2, 8, 7],
    "layers": [
        {"type": "conv", "filters": 3, "kernel": 3, "stride": 1, "padding": 1},
        {"type": "tanh"},
        {"type": "maxpool", "size": 2},  # 8x7 -> 4x3: a ragged column
        {"type": "conv", "filters": 4, "kernel": 3, "stride": 2, "padding": 1},
        {"type": "relu"},
        {"type": "flatten"},
        {"type": "dense", "units": 5},
    ],
    "init": "uniform",  # biases too, so that nothing sits exactly at a ReLU kink
}


def small_net_spec(loss):
    spec = dict(SMALL_NET, loss=loss, layers=list(SMALL_NET["layers"]))
    if loss == "squared_error":
        spec["layers"] = spec["layers"] + [{"type": "sigmoid"}]
    return spec


class Float64Model(Model):
    """The model with its door opened to float64: Model.forward casts inputs to
    self.dtype, which is float32 in the real class. Everything else is unchanged."""

    @property
    def dtype(self):
        return np.float64


def reference_model_forward(model, x):
    """The model's layers run through the naive reference, in (N, C, H, W)."""
    out = np.asarray(x, np.float64)
    for layer in model.layers:
        if isinstance(layer, Conv2D):
            out = ref.conv2d_forward(out, layer.params["weight"], layer.params["bias"],
                                     layer.stride, layer.padding)
        elif isinstance(layer, MaxPool2D):
            out = ref.maxpool_forward(out, layer.size)
        elif isinstance(layer, Dense):
            out = ref.dense_forward(out, layer.params["weight"], layer.params["bias"])
        elif isinstance(layer, Flatten):
            out = out.reshape(out.shape[0], -1)
        else:
            out = {"relu": ref.relu_forward, "sigmoid": ref.sigmoid_forward,
                   "tanh": ref.tanh_forward}[layer.kind](out)
    return out


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "squared_error"])
def test_model_forward_matches_the_reference_layers_chained_in_nchw(loss):
    model = Model(small_net_spec(loss), seed=3)
    x = np.random.default_rng(20).uniform(0, 1, (3, 2, 8, 7)).astype(np.float32)
    out = model.forward(x)
    assert out.shape == (3, 5) and out.dtype == np.float32
    assert_close(out, reference_model_forward(model, x))


def test_model_takes_single_channel_images_without_a_channel_axis():
    spec = {"input": [1, 6, 6], "layers": [{"type": "conv", "filters": 2, "kernel": 3},
                                           {"type": "flatten"}, {"type": "dense", "units": 3}]}
    model = Model(spec, seed=1)
    x = np.random.default_rng(21).uniform(0, 1, (4, 6, 6)).astype(np.float32)
    assert_close(model.forward(x), reference_model_forward(model, x[:, None]))


def model_loss_gradients(model, x, labels):
    loss, grad = model.loss(model.forward(x), labels)
    model.backward(grad)
    return loss, [np.array(g) for g in model.gradients()]


# Batch 1, conv straight into maxpool and into flatten: there the next layer keeps a
# view of the conv's reused output buffer rather than a copy.
BUFFER_VIEW_NET = {
    "input": [1, 6, 6],
    "layers": [
        {"type": "conv", "filters": 2, "kernel": 3, "padding": 1},
        {"type": "maxpool", "size": 2},
        {"type": "conv", "filters": 2, "kernel": 2},
        {"type": "flatten"},
        {"type": "dense", "units": 3},
    ],
    "loss": "softmax_cross_entropy",
    "init": "uniform",
}


@pytest.mark.parametrize("spec, batch", [
    (small_net_spec("softmax_cross_entropy"), 3),
    (small_net_spec("squared_error"), 3),
    (BUFFER_VIEW_NET, 1),
], ids=["softmax-cross-entropy", "squared-error", "batch-1-buffer-views"])
def test_model_loss_gradient_matches_finite_differences_for_every_parameter(spec, batch):
    # Model forces float32 at the door; Float64Model lifts that, and the float64
    # parameters then make every layer compute in float64.
    model = Float64Model(spec, seed=4)
    for layer in model.layers:
        for name in layer.params:
            layer.params[name] = layer.params[name].astype(np.float64)
    rng = np.random.default_rng(22)
    x = rng.uniform(0, 1, (batch, *spec["input"]))
    labels = np.array([1, 2, 0][:batch])
    _, grads = model_loss_gradients(model, x, labels)
    params = model.parameters()
    assert len(params) == len(grads) == 6
    assert all(p.dtype == np.float64 for p in params)

    def objective():
        return model.loss(model.forward(x), labels)[0]

    errors = [relative_error(g, numerical_gradient(objective, p)) for p, g in zip(params, grads)]
    assert all(err < FD_TOL for err in errors), errors


def test_model_float32_gradients_agree_with_float64_ones():
    spec = small_net_spec("softmax_cross_entropy")
    model32, model64 = Model(spec, seed=5), Float64Model(spec, seed=5)
    for layer in model64.layers:
        for name in layer.params:
            layer.params[name] = layer.params[name].astype(np.float64)
    x = np.random.default_rng(23).uniform(0, 1, (4, 2, 8, 7)).astype(np.float32)
    labels = np.array([0, 1, 2, 3])
    loss32, grads32 = model_loss_gradients(model32, x, labels)
    loss64, grads64 = model_loss_gradients(model64, x, labels)
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for g32, g64 in zip(grads32, grads64):
        assert g32.dtype == np.float32
        assert relative_error(g32, g64) < 1e-4


def test_model_train_steps_lower_the_loss_on_a_fixed_batch():
    model = Model(small_net_spec("softmax_cross_entropy"), seed=6)
    x = np.random.default_rng(24).uniform(0, 1, (6, 2, 8, 7)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 4, 0])
    optimizer = SGD(learning_rate=0.05, momentum=0.9)
    first, _ = model.train_step(x, labels, optimizer)
    for _ in range(30):
        last, _ = model.train_step(x, labels, optimizer)
    assert last < 0.5 * first


# -- optimisers -------------------------------------------------------------------------------

def _params_and_grads(rng):
    params = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    grads = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    return params, grads


def test_sgd_without_momentum_subtracts_learning_rate_times_gradient_in_place():
    rng = np.random.default_rng(30)
    params, grads = _params_and_grads(rng)
    before = [p.copy() for p in params]
    ids = [id(p) for p in params]
    SGD(learning_rate=0.1, momentum=0.0).step(params, grads)
    assert [id(p) for p in params] == ids
    for p, p0, g in zip(params, before, grads):
        np.testing.assert_array_equal(p, p0 - 0.1 * g)


def test_sgd_with_momentum_follows_a_hand_computed_two_step_sequence():
    p = np.array([1.0, -2.0, 0.5])
    g1, g2 = np.array([0.5, 1.0, -1.0]), np.array([-0.25, 2.0, 0.0])
    opt = SGD(learning_rate=0.1, momentum=0.9)
    opt.step([p], [g1])
    # velocity v1 = g1 = [0.5, 1, -1]; p1 = p0 - 0.1 * v1
    np.testing.assert_allclose(p, [0.95, -2.1, 0.6], rtol=0, atol=1e-15)
    opt.step([p], [g2])
    # v2 = 0.9 * v1 + g2 = [0.2, 2.9, -0.9]; p2 = p1 - 0.1 * v2
    np.testing.assert_allclose(p, [0.93, -2.39, 0.69], rtol=0, atol=1e-15)


def test_adam_first_step_moves_each_parameter_by_about_learning_rate_against_the_gradient():
    rng = np.random.default_rng(31)
    params, grads = _params_and_grads(rng)
    grads = [np.sign(g) * (0.1 + np.abs(g)) for g in grads]  # no tiny gradients
    before = [p.copy() for p in params]
    Adam(learning_rate=0.01).step(params, grads)
    for p, p0, g in zip(params, before, grads):
        np.testing.assert_allclose(p - p0, -0.01 * np.sign(g), rtol=1e-5)


@pytest.mark.parametrize("make", [lambda: SGD(0.1), lambda: SGD(0.1, momentum=0.9),
                                  lambda: Adam(0.1)], ids=["sgd", "sgd-momentum", "adam"])
def test_changing_the_learning_rate_between_steps_takes_effect(make):
    rng = np.random.default_rng(32)
    params, grads1 = _params_and_grads(rng)
    _, grads2 = _params_and_grads(rng)
    steady_params, changed_params = [p.copy() for p in params], [p.copy() for p in params]
    steady, changed = make(), make()
    steady.step(steady_params, grads1)
    changed.step(changed_params, grads1)
    for a, b in zip(steady_params, changed_params):
        np.testing.assert_array_equal(a, b)
    after_first = [p.copy() for p in steady_params]
    changed.learning_rate = steady.learning_rate * 0.25
    steady.step(steady_params, grads2)
    changed.step(changed_params, grads2)
    for p0, a, b in zip(after_first, steady_params, changed_params):
        np.testing.assert_allclose(b - p0, 0.25 * (a - p0), rtol=1e-10, atol=1e-15)
        assert np.abs(a - p0).max() > 0
    changed.learning_rate = 0.0
    frozen = [p.copy() for p in changed_params]
    changed.step(changed_params, grads1)
    for p, p0 in zip(changed_params, frozen):
        np.testing.assert_array_equal(p, p0)


# -- ConvPool: a conv and its 2x2 pool fused -----------------------------------------------

@pytest.mark.parametrize("channels, filters, kernel, padding, size", [
    (1, 4, 3, 1, (8, 8)),     # the default network's shape of layer
    (3, 2, 5, 2, (10, 6)),    # several channels, a bigger kernel, a non-square image
    (2, 3, 3, 0, (10, 12)),   # no padding
    (2, 3, 2, 0, (9, 7)),     # an even kernel on an odd image
])
def test_conv_pool_fused_gives_the_same_output_and_gradients_as_the_two_layers(
        channels, filters, kernel, padding, size):
    from cnn.layers import ConvPool
    rng = np.random.default_rng(3)
    conv = Conv2D(channels, filters, kernel, 1, padding)
    conv.params["weight"] = rng.normal(size=conv.params["weight"].shape).astype(np.float64)
    conv.params["bias"] = rng.normal(size=filters).astype(np.float64)
    pool = MaxPool2D(2)
    assert ConvPool.fits(conv, pool, (channels, *size))
    x = rng.normal(size=(channels, 3, *size))
    expected = pool.forward(conv.forward(x)).copy()
    grad = rng.normal(size=expected.shape)
    expected_input_grad = conv.backward(pool.backward(grad)).copy()
    expected_grads = {k: v.copy() for k, v in conv.grads.items()}
    fused = ConvPool(conv)
    np.testing.assert_allclose(fused.forward(x), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fused.backward(grad), expected_input_grad, rtol=1e-10, atol=1e-12)
    for name, value in expected_grads.items():
        np.testing.assert_allclose(conv.grads[name], value, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kernel, padding, size", [(3, 1, (6, 6)), (2, 0, (7, 5))],
                         ids=["k3-p1", "k2-p0-odd-image"])
def test_conv_pool_gradients_match_finite_differences(kernel, padding, size):
    # The path a model takes from FUSE_FROM_BATCH images a batch, checked on its own
    # (the model-level finite differences run smaller batches, unfused).
    from cnn.layers import ConvPool
    rng = np.random.default_rng(12)
    conv = make_conv(2, 3, kernel, 1, padding, rng, np.float64)
    x = rng.uniform(-1, 1, (2, 2, *size))  # continuous: no two outputs of a window tie
    errors = check_layer_gradients(ConvPool(conv), to_net(x))
    assert set(errors) == {"input", "weight", "bias"}


def test_conv_pool_is_not_used_where_it_does_not_fit():
    from cnn.layers import ConvPool
    assert not ConvPool.fits(Conv2D(1, 2, 3, stride=2), MaxPool2D(2), (1, 12, 12))
    assert not ConvPool.fits(Conv2D(1, 2, 3), MaxPool2D(3), (1, 12, 12))
    assert not ConvPool.fits(Conv2D(1, 2, 3), MaxPool2D(2), (1, 11, 12))  # odd output
    assert not ConvPool.fits(Conv2D(1, 2, 3), ReLU(), (1, 12, 12))


def test_a_model_gives_the_same_outputs_and_gradients_for_big_and_small_batches():
    # Batches of FUSE_FROM_BATCH images or more run conv+pool fused; smaller ones do not.
    from cnn.model import FUSE_FROM_BATCH, Model
    from cnn.presets import PRESETS
    rng = np.random.default_rng(5)
    model = Model(PRESETS["default"].spec, seed=2)
    x = rng.random((FUSE_FROM_BATCH, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, FUSE_FROM_BATCH)
    big = model.forward(x).copy()
    model.backward(model.loss(big, labels)[1])
    big_grads = [g.copy() for g in model.gradients()]
    small = np.concatenate([model.forward(x[i:i + 1]).copy() for i in range(FUSE_FROM_BATCH)])
    np.testing.assert_allclose(small, big, rtol=1e-4, atol=1e-5)
    half = FUSE_FROM_BATCH // 2
    summed = None
    for part in (slice(0, half), slice(half, None)):
        out = model.forward(x[part])
        model.backward(model.loss(out, labels[part])[1])
        grads = [g * (len(labels[part]) / FUSE_FROM_BATCH) for g in model.gradients()]
        summed = grads if summed is None else [a + b for a, b in zip(summed, grads)]
    for a, b in zip(summed, big_grads):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
