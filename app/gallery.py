"""MNIST images as the page receives them: the misclassified test images of an
evaluation (built in the worker that trains the run) and the images of one cell of
a confusion matrix (in the server, which reads MNIST's test set itself)."""

from __future__ import annotations

import base64

import numpy as np

from cnn.insight import Evaluation

GALLERY_SIZE = 36  # misclassified test images sent with each evaluation event


def encode_pixels(image: np.ndarray) -> str:
    """A 28x28 uint8 image as base64 of its bytes, row-major: 1 KB, not 3 KB of JSON."""
    return base64.b64encode(np.ascontiguousarray(image, dtype=np.uint8).tobytes()).decode("ascii")


def sample(image: np.ndarray, label) -> dict:
    return {"label": int(label), "pixels": encode_pixels(image)}


def test_image(evaluation: Evaluation, index, test_images: np.ndarray) -> dict:
    """One test image (MNIST's own uint8 pixels, base64) with the network's answer."""
    index = int(index)
    return {"index": index, "label": int(evaluation.labels[index]),
            "predicted": int(evaluation.predicted[index]),
            "probability": round(float(evaluation.confidence[index]), 4),
            "pixels": encode_pixels(test_images[index])}


def evaluation_event(run_id: str, epoch: int, evaluation: Evaluation,
                     test_images: np.ndarray) -> dict:
    """The confusion matrix and the first misclassified images of one evaluation."""
    mistakes = evaluation.mistakes()
    return {"run_id": run_id, "epoch": epoch,
            "confusion": evaluation.confusion().tolist(),
            "test_total": len(evaluation.labels), "misclassified_total": len(mistakes),
            "misclassified": [test_image(evaluation, index, test_images)
                              for index in mistakes[:GALLERY_SIZE]]}
