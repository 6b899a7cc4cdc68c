"""An exponential moving average of a model's weights (Polyak averaging): the weights
that answer drawings while a run trains.

Adam at a high learning rate with augmented images moves the weights a lot from batch
to batch: evaluated every second on the same drawings, the raw weights of `default`
swung between 90% and 97.5% within five seconds. Their average over the last few
hundred batches sits in the middle of that wobble and reads drawings better and more
steadily (bench/bench_live_model.py measures both).

    average += (1 - d) * (weights - average)      after every step, in place

with d = min(decay, (1 + t) / (10 + t)) for the t-th update (counted from 0): early
on the average follows the weights closely (d = 0.1, 0.18, 0.25, ...) and forgets the
random start within a few batches; later it averages over about 1 / (1 - decay)
batches. It starts equal to the model.
"""

from __future__ import annotations

import numpy as np


# The warm-up's constant: d = min(decay, (1 + t) / (WARMUP + t)).
WARMUP = 10.0


class WeightAverage:
    """The running average of a list of parameter arrays (a model's parameters())."""

    def __init__(self, params: list[np.ndarray], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay!r}")
        self.decay = decay
        self.steps = 0  # updates so far: the warm-up's t
        self.params = [param.copy() for param in params]
        self._scratch = [np.empty_like(param) for param in params]  # no allocation per step

    def current_decay(self) -> float:
        """The decay the next update uses (the warm-up's, until it reaches `decay`)."""
        t = self.steps
        return min(self.decay, (1.0 + t) / (WARMUP + t))

    def update(self, params: list[np.ndarray]) -> None:
        """One step of the average towards `params` (after an optimiser step)."""
        rate = 1.0 - self.current_decay()
        for average, param, scratch in zip(self.params, params, self._scratch):
            np.subtract(param, average, out=scratch)
            scratch *= rate
            average += scratch
        self.steps += 1

    def named(self, model) -> dict[str, np.ndarray]:
        """The averaged arrays named as `model.state()` names its weights (not copied)."""
        names = [f"{i}.{name}" for i, layer in enumerate(model.layers) for name in layer.params]
        return dict(zip(names, self.params))

    def load(self, state: dict[str, np.ndarray], model, steps: int) -> None:
        """Take up a saved average (named as `named()` names them) and its step count;
        ValueError if it does not fit `model`."""
        expected = self.named(model)
        if set(state) != set(expected):
            raise ValueError("the saved average does not fit the model's weights")
        for name, target in expected.items():
            value = np.asarray(state[name])
            if value.shape != target.shape or not np.isfinite(value).all():
                raise ValueError(f"the saved average's {name} does not fit the model")
            np.copyto(target, value, casting="same_kind")
        self.steps = int(steps)

    def __repr__(self):
        return f"WeightAverage(decay={self.decay}, steps={self.steps})"
