"""A slow reference for the layers and losses, written loop by loop from their
definitions. It is the spec the fast layers are tested against.

Layout: images are (N, C, H, W), flat data (N, D); everything in float64.
"""

from __future__ import annotations

import numpy as np


def _as64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def _pad(x, padding):
    return np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


# -- convolution (cross-correlation), zero padding, stride --------------------------

def conv2d_forward(x, weight, bias, stride, padding):
    """out[n, f, i, j] = sum over (c, a, b) of
    padded_x[n, c, i*stride + a, j*stride + b] * weight[f, c, a, b], plus bias[f]."""
    x, weight, bias = _as64(x, weight, bias)
    n_images, _, h, w = x.shape
    filters, _, k, _ = weight.shape
    ho = (h + 2 * padding - k) // stride + 1
    wo = (w + 2 * padding - k) // stride + 1
    xp = _pad(x, padding)
    out = np.zeros((n_images, filters, ho, wo))
    for n in range(n_images):
        for f in range(filters):
            for i in range(ho):
                for j in range(wo):
                    window = xp[n, :, i * stride:i * stride + k, j * stride:j * stride + k]
                    out[n, f, i, j] = np.sum(window * weight[f]) + bias[f]
    return out


def conv2d_backward(x, weight, stride, padding, grad_out):
    """Gradients of sum(out * grad_out) with respect to x, weight and bias: each
    output element passes its gradient back along the products that made it."""
    x, weight, grad_out = _as64(x, weight, grad_out)
    n_images, _, h, w = x.shape
    filters, _, k, _ = weight.shape
    _, _, ho, wo = grad_out.shape
    xp = _pad(x, padding)
    grad_xp = np.zeros_like(xp)
    grad_w = np.zeros_like(weight)
    grad_b = np.zeros(filters)
    for n in range(n_images):
        for f in range(filters):
            for i in range(ho):
                for j in range(wo):
                    g = grad_out[n, f, i, j]
                    rows = slice(i * stride, i * stride + k)
                    cols = slice(j * stride, j * stride + k)
                    grad_w[f] += g * xp[n, :, rows, cols]
                    grad_xp[n, :, rows, cols] += g * weight[f]
                    grad_b[f] += g
    grad_x = grad_xp[:, :, padding:padding + h, padding:padding + w]
    return grad_x, grad_w, grad_b


# -- max pooling over non-overlapping windows; a ragged edge is dropped -------------

def maxpool_forward(x, size):
    (x,) = _as64(x)
    n_images, channels, h, w = x.shape
    ho, wo = h // size, w // size
    out = np.zeros((n_images, channels, ho, wo))
    for n in range(n_images):
        for c in range(channels):
            for i in range(ho):
                for j in range(wo):
                    window = x[n, c, i * size:(i + 1) * size, j * size:(j + 1) * size]
                    out[n, c, i, j] = window.max()
    return out


def maxpool_backward(x, size, grad_out):
    """Each window's gradient goes to its first maximum in row-major order."""
    x, grad_out = _as64(x, grad_out)
    n_images, channels, h, w = x.shape
    ho, wo = h // size, w // size
    grad_x = np.zeros_like(x)
    for n in range(n_images):
        for c in range(channels):
            for i in range(ho):
                for j in range(wo):
                    window = x[n, c, i * size:(i + 1) * size, j * size:(j + 1) * size]
                    a, b = divmod(int(np.argmax(window)), size)  # argmax: first maximum
                    grad_x[n, c, i * size + a, j * size + b] += grad_out[n, c, i, j]
    return grad_x


# -- fully connected ------------------------------------------------------------------

def dense_forward(x, weight, bias):
    """out[n, u] = sum over d of x[n, d] * weight[d, u], plus bias[u]."""
    x, weight, bias = _as64(x, weight, bias)
    out = np.zeros((x.shape[0], weight.shape[1]))
    for n in range(x.shape[0]):
        for u in range(weight.shape[1]):
            out[n, u] = np.sum(x[n] * weight[:, u]) + bias[u]
    return out


def dense_backward(x, weight, grad_out):
    x, weight, grad_out = _as64(x, weight, grad_out)
    grad_x = np.zeros_like(x)
    grad_w = np.zeros_like(weight)
    for n in range(x.shape[0]):
        for u in range(weight.shape[1]):
            grad_x[n] += grad_out[n, u] * weight[:, u]
            grad_w[:, u] += grad_out[n, u] * x[n]
    grad_b = grad_out.sum(axis=0)
    return grad_x, grad_w, grad_b


def flatten_forward(x):
    """out[n, (c * H + i) * W + j] = x[n, c, i, j]: channel by channel, row by row."""
    (x,) = _as64(x)
    n, c, h, w = x.shape
    out = np.zeros((n, c * h * w))
    for b in range(n):
        for ch in range(c):
            for i in range(h):
                for j in range(w):
                    out[b, (ch * h + i) * w + j] = x[b, ch, i, j]
    return out


def flatten_backward(shape, grad_out):
    """Each gradient back to the pixel it came from."""
    (grad_out,) = _as64(grad_out)
    n, c, h, w = shape
    grad_x = np.zeros(shape)
    for b in range(n):
        for ch in range(c):
            for i in range(h):
                for j in range(w):
                    grad_x[b, ch, i, j] = grad_out[b, (ch * h + i) * w + j]
    return grad_x


# -- activations: forward(x) and backward(x, grad_out) ------------------------------

def sigmoid_forward(x):
    (x,) = _as64(x)
    return 1.0 / (1.0 + np.exp(-x))


def sigmoid_backward(x, grad_out):
    s = sigmoid_forward(x)
    return np.asarray(grad_out, np.float64) * s * (1.0 - s)


def relu_forward(x):
    (x,) = _as64(x)
    return np.where(x > 0, x, 0.0)


def relu_backward(x, grad_out):
    (x,) = _as64(x)
    return np.where(x > 0, np.asarray(grad_out, np.float64), 0.0)


def tanh_forward(x):
    (x,) = _as64(x)
    return np.tanh(x)


def tanh_backward(x, grad_out):
    t = tanh_forward(x)
    return np.asarray(grad_out, np.float64) * (1.0 - t * t)


# -- losses: (mean loss over the batch, d loss / d outputs) -------------------------

def softmax_cross_entropy(logits, labels):
    """Mean over the batch of -log softmax(logits)[label]."""
    (logits,) = _as64(logits)
    n_images, classes = logits.shape
    loss, grad = 0.0, np.zeros_like(logits)
    for n in range(n_images):
        exp = np.exp(logits[n] - logits[n].max())
        probs = exp / exp.sum()
        loss += -np.log(probs[labels[n]])
        grad[n] = probs
        grad[n, labels[n]] -= 1.0
    return loss / n_images, grad / n_images


def squared_error(outputs, labels):
    """Mean over the batch of 0.5 * sum over classes of (output - one_hot)^2."""
    (outputs,) = _as64(outputs)
    n_images, classes = outputs.shape
    loss, grad = 0.0, np.zeros_like(outputs)
    for n in range(n_images):
        target = np.zeros(classes)
        target[labels[n]] = 1.0
        error = outputs[n] - target
        loss += 0.5 * np.sum(error * error)
        grad[n] = error
    return loss / n_images, grad / n_images
