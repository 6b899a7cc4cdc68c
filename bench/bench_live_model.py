"""How soon the model that answers drawings reads them, and how steadily, from Start.

Trains the `default` preset in this process (no server) and every --every training
images asks both kinds of weights, the raw ones of the last step and the trainer's
moving average of them (cnn/average.py), to read a drawn-digit set (cnn/drawn.py:
MNIST test digits redrawn as canvas drawings, through preprocess_drawing as the
server does). For each seed and each kind it prints

- images to readable: training images seen until the model reads >= --reach (97%)
  of the drawings and stays >= --floor (96%) at every later check; the seconds of
  training to that point (checks excluded) beside it;
- the largest drop between two checks after that point (and anywhere after the first
  check past 1/3 of the run, for a sense of the wobble);
- the lowest accuracy after that point;

then the medians over the seeds. Images are the measure (they do not depend on the
machine); seconds depend on its vector extensions, printed first.

--epoch-time instead times whole first epochs of `default` as it is, without the
schedule of its start (lr_boost, augment_start...: cnn/presets.py) and
without the average, alternating, and prints the ratios. --full trains the full
`default` run (8 epochs) and prints its test accuracy each epoch (raw and averaged).
--set changes the preset's settings in every mode (e.g. lr_boost=1.0 lr_boost_batches=0
to see what the boost is worth).

Usage: python bench/bench_live_model.py [--seeds 0 1 2] [--images 120000]
       [--every 2000] [--count 1000] [--set average_decay=0.999 ...]
       python bench/bench_live_model.py --epoch-time [--repeat 2]
       python bench/bench_live_model.py --full [--seeds 0]
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import statistics
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
from cnn.drawn import make_drawn_set  # noqa: E402
from cnn.model import Model  # noqa: E402
from cnn.preprocess import preprocess_drawing  # noqa: E402
from cnn.presets import get_preset  # noqa: E402
from cnn.train import Trainer, make_dataset  # noqa: E402

KINDS = ("raw", "averaged")


class Stop(Exception):
    """The run has seen enough images."""


def vector_extensions() -> str:
    try:
        flags = set(re.findall(r"\b(avx512\w*|avx2|avx|fma|sse4_2)\b",
                               Path("/proc/cpuinfo").read_text()))
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    return " ".join(sorted(flags)) or "none of avx/avx2/avx512"


def parse_settings(pairs: list[str]) -> dict:
    changes = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        changes[name] = ast.literal_eval(value)
    return changes


def readable_from(accuracies: list[float], reach: float, floor: float) -> int | None:
    """The first check at >= reach from which every later check stays >= floor."""
    for i, value in enumerate(accuracies):
        if value >= reach and min(accuracies[i:]) >= floor:
            return i
    return None


def largest_drop(accuracies: list[float]) -> float:
    return max((a - b for a, b in zip(accuracies, accuracies[1:])), default=0.0)


def drawn_images(mnist, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    drawn = make_drawn_set(mnist.test_images, mnist.test_labels, count, seed=seed)
    images = np.stack([preprocess_drawing(c) for c in drawn.canvases])[:, None]
    return images.astype(np.float32), drawn.labels


def read(model: Model, images: np.ndarray, labels: np.ndarray) -> float:
    return float((model.predict_proba(images, batch_size=250).argmax(axis=1) == labels).mean())


def follow_run(mnist, config, images, labels, every: int, limit: int) -> dict:
    """Train until `limit` images, checking both kinds every `every` images."""
    preset = get_preset("default")
    model = Model(preset.spec, seed=config.seed)
    checks = {"images": [], "seconds": [], "raw": [], "averaged": []}
    state = {"trained": 0.0, "since": time.perf_counter(), "next": every}
    batch = config.batch_size

    def report(event):
        if event["type"] != "batch":
            return
        seen = event["global_step"] * batch
        if seen < state["next"]:
            return
        now = time.perf_counter()
        state["trained"] += now - state["since"]
        state["next"] += every
        checks["images"].append(seen)
        checks["seconds"].append(state["trained"])
        checks["raw"].append(read(trainer.model.copy(), images, labels))
        checks["averaged"].append(read(trainer.answering_model(), images, labels))
        if seen >= limit:
            raise Stop
        state["since"] = time.perf_counter()

    trainer = Trainer(model, config, make_dataset(mnist, config), report)
    try:
        trainer.run()
    except Stop:
        pass
    return checks


def live(args, mnist) -> None:
    preset = get_preset("default")
    changes = parse_settings(args.set)
    images, labels = drawn_images(mnist, args.count, args.drawn_seed)
    print(f"drawn set: {len(labels)} drawings (seed {args.drawn_seed}); checks every "
          f"{args.every:,} images up to {args.images:,}; readable: >= {args.reach:.0%} and "
          f"never below {args.floor:.0%} after; settings changed: {changes or 'none'}",
          flush=True)
    results = {kind: [] for kind in KINDS}
    for seed in args.seeds:
        config = preset.config.replace(**{**changes, "seed": seed,
                                          "epochs": max(preset.config.epochs, 2)})
        if not config.average_decay:
            config = config.replace(average_decay=0.999)  # the averaged column needs one
        started = time.perf_counter()
        checks = follow_run(mnist, config, images, labels, args.every, args.images)
        print(f"\nseed {seed} ({time.perf_counter() - started:.0f} s with the checks)")
        for kind in KINDS:
            accuracies = checks[kind]
            at = readable_from(accuracies, args.reach, args.floor)
            later = accuracies[at:] if at is not None else []
            result = {"images": checks["images"][at] if at is not None else None,
                      "seconds": checks["seconds"][at] if at is not None else None,
                      "drop": largest_drop(later) if later else None,
                      "lowest": min(later) if later else None,
                      "wobble": largest_drop(accuracies[len(accuracies) // 3:])}
            results[kind].append(result)
            trace = " ".join(f"{100 * a:.0f}" for a in accuracies[:25])
            print(f"  {kind:8s} readable from {_images(result['images'])} images "
                  f"({_seconds(result['seconds'])} of training); largest drop after "
                  f"{_points(result['drop'])}, lowest after {_percent(result['lowest'])}; "
                  f"largest drop in the last 2/3 {_points(result['wobble'])}", flush=True)
            print(f"           first checks (%): {trace}", flush=True)
    print(f"\nmedian of {len(args.seeds)} seeds      images to readable   seconds   "
          f"largest drop after   lowest after")
    for kind in KINDS:
        rows = results[kind]
        print(f"  {kind:8s}                 {_images(_median(r['images'] for r in rows)):>12s}"
              f"   {_seconds(_median(r['seconds'] for r in rows)):>7s}"
              f"   {_points(_median(r['drop'] for r in rows)):>18s}"
              f"   {_percent(_median(r['lowest'] for r in rows)):>12s}")


def _median(values):
    """The median, a seed that never got there counting as infinitely late."""
    values = [float("inf") if v is None else v for v in values]
    value = statistics.median(values)
    return None if value == float("inf") else value


def _images(value) -> str:
    return "never" if value is None else f"{value:,.0f}"


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _points(value) -> str:
    return "-" if value is None else f"{100 * value:.1f} points"


def _percent(value) -> str:
    return "-" if value is None else f"{value:.1%}"


# The settings that schedule the start of a run (cnn/presets.py), turned off.
NO_SCHEDULE = {"lr_boost": 1.0, "lr_boost_batches": 0, "augment_start": 1.0,
               "augment_warmup": 0}


def epoch_time(args, mnist) -> None:
    """Whole first epochs of `default`, without its schedule and without its average,
    alternating, so that load from other processes falls on all three."""
    preset = get_preset("default")
    base = preset.config.replace(**{**parse_settings(args.set), "epochs": 1})
    variants = {"default": base, "without the schedule": base.replace(**NO_SCHEDULE),
                "without the average": base.replace(average_decay=0.0,
                                                    evaluate_averaged=False)}
    seconds = {label: [] for label in variants}
    for _ in range(args.repeat):
        for label, config in variants.items():
            trainer = Trainer(Model(preset.spec, seed=0), config, make_dataset(mnist, config))
            trainer.run()
            seconds[label].append(trainer.history[0]["seconds"])
            print(f"  one epoch, {label}: {trainer.history[0]['seconds']:.2f} s", flush=True)
    best = {label: min(values) for label, values in seconds.items()}
    print("fastest epoch: " + ", ".join(f"{label} {value:.2f} s" for label, value in best.items()))
    for label in list(variants)[1:]:
        print(f"  default / {label}: ratio {best['default'] / best[label]:.3f}")
    print(f"load average now: {os.getloadavg()[0]:.1f}")


def full(args, mnist) -> None:
    preset = get_preset("default")
    changes = parse_settings(args.set)
    for seed in args.seeds:
        config = preset.config.replace(**{**changes, "seed": seed})
        model = Model(preset.spec, seed=seed)
        data = make_dataset(mnist, config)

        def report(event):
            if event["type"] != "checkpoint":
                return
            raw = model.evaluate(data.test_images, data.test_labels)[1]
            averaged = trainer.answering_model().evaluate(data.test_images, data.test_labels)[1]
            record = trainer.history[-1]
            print(f"  seed {seed} epoch {event['epoch']}: MNIST test raw {raw / 100:.2f}%, "
                  f"averaged {averaged / 100:.2f}% ({record['seconds']:.1f} s)", flush=True)

        trainer = Trainer(model, config, data, report)
        trainer.run()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--images", type=int, default=120_000, help="training images per run")
    parser.add_argument("--every", type=int, default=2000, help="images between checks")
    parser.add_argument("--count", type=int, default=1000, help="drawings in the set")
    parser.add_argument("--drawn-seed", type=int, default=0)
    parser.add_argument("--reach", type=float, default=0.97)
    parser.add_argument("--floor", type=float, default=0.96)
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="change a setting of the preset (e.g. average_decay=0.99)")
    parser.add_argument("--epoch-time", action="store_true")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--warmup", type=float, help="the average's warm-up constant "
                        "(cnn/average.py WARMUP), to try others")
    machine.add_data_argument(parser)
    machine.add_blas_argument(parser)
    args = parser.parse_args(argv)
    machine.describe_with_load()
    print(f"vector extensions: {vector_extensions()}", flush=True)
    if args.warmup is not None:
        import cnn.average
        cnn.average.WARMUP = args.warmup
        print(f"the average's warm-up: (1 + t) / ({args.warmup:g} + t)")
    mnist = load_mnist(args.data_dir, download=False)
    if args.epoch_time:
        epoch_time(args, mnist)
    elif args.full:
        full(args, mnist)
    else:
        live(args, mnist)
    return 0


if __name__ == "__main__":
    sys.exit(main())
