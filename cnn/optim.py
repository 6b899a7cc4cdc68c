"""Optimisers. Each updates parameter arrays in place from their gradients; the
learning rate may be changed between steps (the dashboard steers it live)."""

from __future__ import annotations

import numpy as np


class SGD:
    """Stochastic gradient descent with (heavy-ball) momentum; momentum 0 is plain SGD."""

    name = "sgd"

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0) -> None:
        self.learning_rate, self.momentum = learning_rate, momentum
        self._velocity: list[np.ndarray] = []

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        if self.momentum and not self._velocity:
            self._velocity = [np.zeros_like(param) for param in params]
        for index, (param, grad) in enumerate(zip(params, grads)):
            if self.momentum:
                velocity = self._velocity[index]
                velocity *= self.momentum
                velocity += grad
                grad = velocity
            param -= self.learning_rate * grad

    def __repr__(self):
        return f"SGD(learning_rate={self.learning_rate}, momentum={self.momentum})"


class Adam:
    """Adam (Kingma and Ba, 2015) with bias correction."""

    name = "adam"

    def __init__(self, learning_rate: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8) -> None:
        self.learning_rate, self.beta1, self.beta2, self.eps = learning_rate, beta1, beta2, eps
        self._moments: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._steps = 0

    @property
    def momentum(self) -> float:
        """Adam's first-moment decay plays the part of momentum."""
        return self.beta1

    @momentum.setter
    def momentum(self, value: float) -> None:
        self.beta1 = value

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        self._steps += 1
        t = self._steps
        step_size = self.learning_rate * (1 - self.beta2 ** t) ** 0.5 / (1 - self.beta1 ** t)
        if not self._moments:
            self._moments = [(np.zeros_like(p), np.zeros_like(p), np.empty_like(p))
                             for p in params]
        for (mean, square, scratch), param, grad in zip(self._moments, params, grads):
            # In place, through one scratch array: the same arithmetic as the textbook
            # lines, without a temporary per operation.
            mean *= self.beta1
            np.multiply(grad, 1 - self.beta1, out=scratch)
            mean += scratch
            square *= self.beta2
            np.multiply(grad, grad, out=scratch)
            scratch *= 1 - self.beta2
            square += scratch
            np.sqrt(square, out=scratch)
            scratch += self.eps
            np.divide(mean, scratch, out=scratch)
            scratch *= step_size
            param -= scratch

    def __repr__(self):
        return f"Adam(learning_rate={self.learning_rate}, beta1={self.beta1}, beta2={self.beta2})"


OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam)}
