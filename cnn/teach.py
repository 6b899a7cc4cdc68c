"""Teaching a network one person's handwriting: their labelled drawings (28x28 uint8, as
the network sees them) mixed into the training batches.

- `mix_in` adds the drawings to a training set so that they make up a chosen share of
  the images an epoch sees: each drawing repeated evenly (oversampled: a person labels
  tens of drawings, MNIST has 60,000 images), and augmented like MNIST's images
  (the Trainer distorts every batch), so repeats are not copies.
- `fine_tune` teaches a trained model for a short while: the drawings mixed into a
  replay of MNIST images (TrainConfig.include_drawings, make_dataset), so that it learns the person's style without forgetting
  what it knew. The model changes only through the optimiser's steps (a Trainer's
  epoch); what it reads before and after is measured by `score` (and `read`: the
  confusion matrix too).

Numpy and the standard library only, like the rest of cnn/.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .insight import Evaluation
from .model import Model
from .train import Callback, Dataset, TrainConfig, Trainer, make_dataset, scale_images

MAX_SHARE = 0.9  # drawings may not crowd MNIST out entirely: forgetting would follow
# Copies of one drawing in an epoch at most: a dozen drawings at a share of 0.5 of a
# 4,000-image replay would otherwise be repeated ~300 times each, and one wrong label
# among them taught hard enough to cost MNIST points (a 1 labelled 4 took 99.1% to
# 96.7% in a trial). 100 drawings at that share are 40 copies each: the cap leaves a
# person's real set as asked, and a handful of drawings a smaller share.
MAX_COPIES = 40


def mix_in(data: Dataset, images: np.ndarray, labels: np.ndarray, share: float) -> Dataset:
    """`data` with `images` (K, 28, 28) uint8 and `labels` (K,) added to its training
    set, each drawing repeated so that they make up `share` of it (about; at least once
    each, at most MAX_COPIES times: fewer drawings make up less). The test set is left
    alone."""
    if not 0.0 < share <= MAX_SHARE:
        raise ValueError(f"the drawings' share of the training images is above 0 and at "
                         f"most {MAX_SHARE}, not {share!r}")
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(f"{len(images)} drawings with {len(labels)} labels: need at least "
                         "one drawing, and a label each")
    if images.dtype != np.uint8 or images.shape[1:] != data.train_images.shape[1:]:
        raise ValueError(f"drawings must be uint8 like the training images "
                         f"{data.train_images.shape[1:]}, not {images.dtype} {images.shape[1:]}")
    mnist = len(data.train_labels)
    copies = max(len(images), min(round(share / (1.0 - share) * mnist),
                                  MAX_COPIES * len(images)))
    repeats = np.resize(np.arange(len(images)), copies)  # 0, 1, ..., K-1, 0, 1, ...
    return Dataset(
        train_images=np.concatenate([data.train_images, images[repeats]]),
        train_labels=np.concatenate([data.train_labels, labels[repeats].astype(np.int64)]),
        test_images=data.test_images, test_labels=data.test_labels)


@dataclass(frozen=True)
class Teaching:
    """How `fine_tune` teaches: the first `replay` MNIST training images with the
    drawings mixed in at `share`, for `passes` over them, at a low learning rate (the
    model already knows digits)."""
    replay: int = 4000
    share: float = 0.5
    passes: int = 1
    learning_rate: float = 0.0003
    optimizer: str | None = None  # None: the base run's
    batch_size: int = 64
    seed: int = 0

    def config(self, base: TrainConfig) -> TrainConfig:
        """The base run's settings (its optimizer, its augmentation) for one pass, with
        this teaching's rate; no warm-up, boost or average: a short nudge."""
        return base.replace(epochs=self.passes, learning_rate=self.learning_rate,
                            optimizer=self.optimizer or base.optimizer,
                            batch_size=self.batch_size, seed=self.seed, lr_decay=1.0,
                            train_size=self.replay, test_size=None,
                            include_drawings=self.share, lr_boost=1.0,
                            lr_boost_batches=0, augment_start=1.0, augment_warmup=0,
                            average_decay=0.0, evaluate_averaged=False)


def fine_tune(model: Model, images: np.ndarray, labels: np.ndarray, mnist,
              base: TrainConfig, teaching: Teaching = Teaching(),
              callback: Callback | None = None) -> Trainer:
    """Teach `model` (in place) the drawings, mixed into a replay of `mnist` (anything
    with MNIST's four arrays, a Dataset too); returns the Trainer (its history holds
    the pass's records, their test figures on `mnist`'s test set). Stop it from
    another thread with trainer.stop()."""
    config = teaching.config(base)
    trainer = Trainer(model, config, make_dataset(mnist, config, (images, labels)), callback)
    trainer.run()
    return trainer


def read(model: Model, images: np.ndarray, labels: np.ndarray) -> Evaluation:
    """What `model` answers for uint8 images with their labels: an Evaluation (its
    confusion matrix is the drawings' own)."""
    probabilities = (model.predict_proba(scale_images(images)) if len(images)
                     else np.zeros((0, 10)))
    return Evaluation.from_probabilities(np.asarray(labels, np.int64), probabilities)


def score(model: Model, images: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    """(correct, total) of `model` on uint8 images."""
    evaluation = read(model, images, labels)
    return int((evaluation.predicted == evaluation.labels).sum()), len(labels)
