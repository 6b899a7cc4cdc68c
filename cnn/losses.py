"""Losses: each turns the network's outputs and integer labels into a mean loss over
the batch and its gradient with respect to the outputs."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)  # exp never overflows
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def one_hot(labels: np.ndarray, classes: int, dtype=np.float32) -> np.ndarray:
    out = np.zeros((labels.shape[0], classes), dtype)
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


class SoftmaxCrossEntropy:
    """Cross-entropy of softmax(logits) against the labels."""

    name = "softmax_cross_entropy"

    def __call__(self, logits, labels):
        # logits: (N, classes), labels: (N,) -> (mean loss, d loss / d logits)
        n = logits.shape[0]
        probs = softmax(logits)
        picked = probs[np.arange(n), labels]
        loss = float(-np.log(np.maximum(picked, 1e-12)).mean())
        grad = probs
        grad[np.arange(n), labels] -= 1.0
        grad /= n
        return loss, grad

    def probabilities(self, logits):
        return softmax(logits)


class SquaredError:
    """Half the squared distance to the one-hot label, summed over classes, as the
    2017 blog used with sigmoid outputs (its update was error * sigmoid')."""

    name = "squared_error"

    def __call__(self, outputs, labels):
        n, classes = outputs.shape
        error = outputs - one_hot(labels, classes, outputs.dtype)
        loss = float(0.5 * np.einsum("ij,ij->", error, error) / n)
        return loss, error / n

    def probabilities(self, outputs):
        # Sigmoid outputs are not a distribution; scale them to sum to one for display.
        clipped = np.clip(outputs, 1e-12, None)
        return clipped / clipped.sum(axis=1, keepdims=True)


LOSSES = {cls.name: cls for cls in (SoftmaxCrossEntropy, SquaredError)}
