"""What a learner looks at besides the loss: where the network is wrong (a confusion
matrix and its most confident mistakes) and how each layer's weights and gradients
are spread (histograms, against the start of the run)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HISTOGRAM_BINS = 30


@dataclass(frozen=True, eq=False)
class Evaluation:
    """One pass over the test images: what the network answered for each."""
    labels: np.ndarray         # (N,) the true digits
    predicted: np.ndarray      # (N,) the network's digits
    confidence: np.ndarray     # (N,) the probability it gave its answer
    classes: int = 10

    @classmethod
    def from_probabilities(cls, labels: np.ndarray, probabilities: np.ndarray) -> "Evaluation":
        predicted = probabilities.argmax(axis=1)
        confidence = probabilities[np.arange(len(predicted)), predicted]
        return cls(np.asarray(labels), predicted, confidence.astype(np.float64),
                   probabilities.shape[1])

    def confusion(self) -> np.ndarray:
        """(classes, classes) counts: row = true digit, column = the network's answer."""
        pairs = self.labels * self.classes + self.predicted
        counts = np.bincount(pairs, minlength=self.classes * self.classes)
        return counts.reshape(self.classes, self.classes)

    def cell(self, label: int, predicted: int) -> np.ndarray:
        """Indices of the images of one confusion cell, most confident answers first."""
        indices = np.flatnonzero((self.labels == label) & (self.predicted == predicted))
        return indices[np.argsort(-self.confidence[indices], kind="stable")]

    def mistakes(self) -> np.ndarray:
        """Indices of the wrongly classified images, most confident mistakes first."""
        indices = np.flatnonzero(self.labels != self.predicted)
        return indices[np.argsort(-self.confidence[indices], kind="stable")]


def histogram(values: np.ndarray, reference: np.ndarray, bins: int = HISTOGRAM_BINS) -> dict:
    """Counts of `values` and of `reference` (e.g. the same weights at the start of the
    run) on shared edges that span both, so the two can be drawn on one axis."""
    values, reference = np.ravel(values), np.ravel(reference)
    low = float(min(values.min(), reference.min()))
    high = float(max(values.max(), reference.max()))
    if not high > low:  # all equal (a bias at zero): one bin's width around the value
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    return {"edges": edges.tolist(),
            "counts": np.histogram(values, edges)[0].tolist(),
            "start_counts": np.histogram(reference, edges)[0].tolist()}
