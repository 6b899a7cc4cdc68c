"""Optimisers. Each updates parameter arrays in place from their gradients; the
learning rate may be changed between steps (the dashboard steers it live).

`state()` and `load_state()` carry what an optimiser has learned (SGD's velocity, Adam's
moments and step count) with its current learning rate and momentum, as named arrays:
a checkpoint keeps them, so that a run continued from it takes the same steps as one
that never stopped.
"""

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

    def state(self) -> dict[str, np.ndarray]:
        """The learning rate, momentum and velocity (`velocity.<i>`, one per parameter,
        none before the first step with momentum). The optimiser's own arrays: copy
        them to keep them past its next step."""
        arrays = _scalars(learning_rate=self.learning_rate, momentum=self.momentum)
        arrays.update({f"velocity.{i}": v for i, v in enumerate(self._velocity)})
        return arrays

    def load_state(self, state: dict[str, np.ndarray], params: list[np.ndarray]) -> None:
        """Take up where `state()` was saved; ValueError if it does not fit `params`."""
        self.learning_rate, self.momentum = _read_scalars(state, "learning_rate", "momentum")
        self._velocity = _read_arrays(state, "velocity", params)

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

    def state(self) -> dict[str, np.ndarray]:
        """The learning rate, beta1 (`momentum`), the step count and the moments
        (`mean.<i>` and `square.<i>` per parameter). The optimiser's own arrays: copy
        them to keep them past its next step."""
        arrays = _scalars(learning_rate=self.learning_rate, momentum=self.beta1,
                          steps=self._steps)
        for i, (mean, square, _) in enumerate(self._moments):
            arrays[f"mean.{i}"], arrays[f"square.{i}"] = mean, square
        return arrays

    def load_state(self, state: dict[str, np.ndarray], params: list[np.ndarray]) -> None:
        """Take up where `state()` was saved; ValueError if it does not fit `params`."""
        self.learning_rate, self.beta1, steps = _read_scalars(state, "learning_rate",
                                                              "momentum", "steps")
        if steps != int(steps) or steps < 0:
            raise ValueError(f"optimizer state: steps must be a whole number, got {steps}")
        means, squares = _read_arrays(state, "mean", params), _read_arrays(state, "square", params)
        if len(means) != len(squares) or (steps > 0) != bool(means):
            raise ValueError("optimizer state: Adam's moments are incomplete")
        self._steps = int(steps)
        self._moments = [(mean, square, np.empty_like(mean))
                         for mean, square in zip(means, squares)]

    def __repr__(self):
        return f"Adam(learning_rate={self.learning_rate}, beta1={self.beta1}, beta2={self.beta2})"


OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam)}


def _scalars(**values: float) -> dict[str, np.ndarray]:
    return {name: np.array(value, dtype=np.float64) for name, value in values.items()}


def _read_scalars(state: dict[str, np.ndarray], *names: str) -> list[float]:
    values = []
    for name in names:
        value = np.asarray(state.get(name, np.nan))
        if value.shape != () or not np.issubdtype(value.dtype, np.number) \
                or not np.isfinite(value):
            raise ValueError(f"optimizer state: {name!r} is missing or not a finite number")
        values.append(float(value))
    return values


def _read_arrays(state: dict[str, np.ndarray], kind: str, params: list[np.ndarray]
                 ) -> list[np.ndarray]:
    """`<kind>.0`, `<kind>.1`... as copies of the parameters' shape and type; [] when
    there are none (an optimiser that had not stepped yet)."""
    names = {name for name in state if name.startswith(kind + ".")}
    if not names:
        return []
    expected = [f"{kind}.{i}" for i in range(len(params))]
    if names != set(expected):
        raise ValueError(f"optimizer state: expected {len(params)} '{kind}' arrays, "
                         f"got {len(names)}")
    arrays = []
    for name, param in zip(expected, params):
        value = np.asarray(state[name])
        if value.shape != param.shape or not np.issubdtype(value.dtype, np.floating) \
                or not np.isfinite(value).all():
            raise ValueError(f"optimizer state: {name} does not fit its parameter "
                             f"{param.shape}")
        arrays.append(value.astype(param.dtype, copy=True))
    return arrays
