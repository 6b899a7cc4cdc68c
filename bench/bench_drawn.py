"""How well models recognise digits drawn the way people draw on a canvas.

Builds a test set from MNIST's test images (cnn/drawn.py): each digit's centre-line
redrawn on a canvas of random size 160-320 px, 35-85% of it high, at a random
place, with a round pen 1-7 px wide, ink 255 on 0. Then reports the accuracy on it of

(a) a plain area resize of the whole canvas to 28x28, for reference;
(b) preprocess_drawing + each model: the `default` preset trained now (unless
    --model is given), every --model file, and the bundled app/assets/default-model.npz
    if it exists; with accuracy by pen width and by digit size, and beside it each
    model's accuracy on MNIST's own test images, raw and through preprocess_drawing.

Usage: python bench/bench_drawn.py [--count 2000] [--seed 0] [--model PATH ...]
       [--save PATH] [--grid drawn.png] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402

machine.use_fast_blas()

import numpy as np  # noqa: E402 (after the BLAS settings are dropped)

sys.path.insert(0, str(ROOT))
from cnn.data import load_mnist  # noqa: E402
from cnn.drawn import grid, make_drawn_set, write_png  # noqa: E402
from cnn.model import Model  # noqa: E402
from cnn.preprocess import _resample_matrix, preprocess_drawing  # noqa: E402
from cnn.presets import get_preset  # noqa: E402
from cnn.train import Trainer, make_dataset, scale_images  # noqa: E402

BUNDLED = ROOT / "app" / "assets" / "default-model.npz"
SIZE_BUCKETS = ((0.35, 0.45), (0.45, 0.55), (0.55, 0.65), (0.65, 0.75), (0.75, 0.85))
CANVAS_BUCKETS = ((160, 199), (200, 239), (240, 279), (280, 320))


def plain_resize(canvas: np.ndarray) -> np.ndarray:
    """The whole canvas area-resampled to 28x28, in [0, 1]."""
    h, w = canvas.shape
    shrunk = _resample_matrix(28, h) @ (canvas / 255.0) @ _resample_matrix(28, w).T
    return shrunk.astype(np.float32)


def train_default(mnist, save: str | None) -> Model:
    preset = get_preset("default")
    model = Model(preset.spec, seed=preset.config.seed)
    started = time.perf_counter()

    def report(event):
        if event["type"] == "epoch":
            print(f"  epoch {event['epoch']}/{event['epochs']}: MNIST test "
                  f"{event['test_accuracy']:.2%} ({time.perf_counter() - started:.0f} s)",
                  flush=True)

    Trainer(model, preset.config, make_dataset(mnist, preset.config), report).run()
    if save:
        model.save(save, metadata={"preset": "default"})
        print(f"  saved {save}")
    return model


def accuracy(model: Model, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Whether each image is recognised: (N,) bool."""
    return model.predict_proba(images[:, None]).argmax(axis=1) == labels


def percent(hits: np.ndarray) -> str:
    return f"{hits.mean():7.2%} ({int(hits.sum())}/{hits.size})" if hits.size else "   -"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="drawings (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawn set")
    parser.add_argument("--model", action="append", default=[], metavar="PATH",
                        help="a saved model to evaluate (repeatable); without it the "
                             "`default` preset is trained now")
    parser.add_argument("--save", metavar="PATH", help="save the model trained now here")
    parser.add_argument("--grid", metavar="PNG", help="save the first 24 drawings as a PNG")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--keep-blas-env", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    machine.describe()

    mnist = load_mnist(args.data_dir, download=False)
    started = time.perf_counter()
    drawn = make_drawn_set(mnist.test_images, mnist.test_labels, args.count, seed=args.seed)
    print(f"drawn set: {len(drawn)} MNIST test digits redrawn (seed {args.seed}), "
          f"canvas {drawn.canvas_sizes.min()}-{drawn.canvas_sizes.max()} px, ink height "
          f"{drawn.heights.min():.0%}-{drawn.heights.max():.0%}, pen "
          f"{drawn.pens.min()}-{drawn.pens.max()} px, in {time.perf_counter() - started:.1f} s")
    if args.grid:
        write_png(args.grid, grid(drawn.canvases[:24], 6, 320))
        print(f"  wrote {args.grid}")

    started = time.perf_counter()
    prepared = np.stack([preprocess_drawing(c) for c in drawn.canvases])
    print(f"preprocess_drawing: {(time.perf_counter() - started) / len(drawn) * 1e3:.2f} ms "
          "per drawing")
    resized = np.stack([plain_resize(c) for c in drawn.canvases])
    mnist_raw = scale_images(mnist.test_images)[:, 0]
    mnist_prepared = np.stack([preprocess_drawing(d) for d in mnist.test_images])

    models: list[tuple[str, Model]] = []
    if not args.model:
        print("training the `default` preset now:", flush=True)
        models.append(("default (trained now)", train_default(mnist, args.save)))
    models += [(path, Model.load(path)) for path in args.model]
    if BUNDLED.exists():
        models.append((f"bundled {BUNDLED.relative_to(ROOT)}", Model.load(BUNDLED)))
    else:
        print(f"(no bundled model at {BUNDLED.relative_to(ROOT)}: skipped)")

    labels = drawn.labels
    for name, model in models:
        print(f"\n== {name}")
        mnist_hits = accuracy(model, mnist_raw, mnist.test_labels)
        print(f"  MNIST test, raw 28x28              {percent(mnist_hits)}")
        via = accuracy(model, mnist_prepared, mnist.test_labels)
        print(f"  MNIST test, via preprocess_drawing {percent(via)}")
        print(f"  MNIST, the drawn set's sources     {percent(mnist_hits[drawn.sources])}")
        print(f"  drawn, plain resize to 28x28       {percent(accuracy(model, resized, labels))}")
        hits = accuracy(model, prepared, labels)
        print(f"  drawn, preprocess_drawing          {percent(hits)}")
        print("    by pen width:")
        for pen in range(drawn.pens.min(), drawn.pens.max() + 1):
            print(f"      {pen} px                         {percent(hits[drawn.pens == pen])}")
        print("    by ink height (of the canvas):")
        for low, high in SIZE_BUCKETS:
            chosen = (drawn.heights >= low) & (drawn.heights < high)
            print(f"      {low:.0%}-{high:.0%}                      {percent(hits[chosen])}")
        print("    by canvas size:")
        for low, high in CANVAS_BUCKETS:
            chosen = (drawn.canvas_sizes >= low) & (drawn.canvas_sizes <= high)
            print(f"      {low}-{high} px                   {percent(hits[chosen])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
