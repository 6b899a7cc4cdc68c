"""How good is the estimate of seconds per epoch (issue 14)? For the three presets and
three other networks, the estimate from a calibration measured in this same run
(cnn.cost.calibrate, as the server measures it once) against real Trainer epochs of
the same configuration, and their ratio (estimate / measured; the target is 0.7..1.3).
The calibration counts CPU seconds (the work a run asks of the machine), so the
ratio that measures the model is against each epoch's CPU seconds; the one against
its wall-clock seconds is printed too, and is lower by about the machine's load.

The batch-64 networks train on a reduced set (--train-size, --test-size: the estimate
is made for that same reduced configuration, as POST /api/specs/check makes it for a
run with train_size and test_size); `seed` and `seed-fc` keep their presets' 1000/100.
The whole table is measured --repeats times, each with a fresh calibration, to show the
noise; other busy processes on the machine (see the load average) skew every figure.

Usage: python bench/bench_spec.py [--repeats 2] [--epochs 2] [--train-size 6000]
           [--test-size 1000] [--blas-threads 1] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import os
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
from cnn.cost import calibrate, config_epoch_seconds  # noqa: E402
from cnn.data import load_mnist  # noqa: E402
from cnn.model import Model  # noqa: E402
from cnn.presets import PRESETS  # noqa: E402
from cnn.train import Trainer, make_dataset  # noqa: E402

FLAT_10 = [{"type": "flatten"}, {"type": "dense", "units": 10}]
# (name, spec, the preset whose settings it trains with)
NETWORKS = [
    ("seed", PRESETS["seed"].spec, "seed"),
    ("seed-fc", PRESETS["seed-fc"].spec, "seed-fc"),
    ("default", PRESETS["default"].spec, "default"),
    ("wide-conv 16x5x5", {"layers": [{"type": "conv", "filters": 16, "kernel": 5, "padding": 2},
                                     {"type": "relu"}, {"type": "maxpool", "size": 2},
                                     *FLAT_10]}, "default"),
    ("mlp 256-128-10", {"layers": [{"type": "flatten"}, {"type": "dense", "units": 256},
                                   {"type": "relu"}, {"type": "dense", "units": 128},
                                   {"type": "relu"}, {"type": "dense", "units": 10}]}, "default"),
    ("strided tanh", {"layers": [{"type": "conv", "filters": 8, "kernel": 3, "stride": 2},
                                 {"type": "tanh"},
                                 {"type": "conv", "filters": 16, "kernel": 3, "stride": 2},
                                 {"type": "tanh"}, *FLAT_10]}, "default"),
]


def measured_epochs(spec, config, mnist, epochs: int) -> tuple[list[float], list[float]]:
    """Wall-clock seconds of each of `epochs` real epochs (training and test
    evaluation, as the epoch event reports them), and this thread's CPU seconds of
    each, over the same span: from the trainer's last event before the epoch's
    first step (histograms, filters or the previous checkpoint) to its epoch event."""
    seconds, cpu = [], []
    marks = {"before": time.thread_time(), "start": None}

    def record(event):
        now = time.thread_time()
        if event["type"] == "batch":
            if event["step"] == 1:
                marks["start"] = marks["before"]
        elif event["type"] == "epoch":
            seconds.append(event["seconds"])
            cpu.append(now - marks["start"])
        marks["before"] = time.thread_time()
    trainer = Trainer(Model(spec, seed=config.seed), config.replace(epochs=epochs),
                      make_dataset(mnist, config), record)
    trainer.run()
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="tables, each calibrated anew")
    parser.add_argument("--epochs", type=int, default=2, help="measured epochs per network")
    parser.add_argument("--train-size", type=int, default=6000,
                        help="training images of the batch-64 networks (MNIST has 60,000)")
    parser.add_argument("--test-size", type=int, default=1000,
                        help="test images of the batch-64 networks (MNIST has 10,000)")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="as the server trains (CNN_LIVE_TRAINING_BLAS_THREADS); 0: no limit")
    machine.add_data_argument(parser)
    machine.add_blas_argument(parser)
    args = parser.parse_args()

    limit = None
    if args.blas_threads > 0:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(limits=args.blas_threads, user_api="blas")
    machine.describe_with_load()
    print(f"BLAS threads for calibration and training: {args.blas_threads or 'no limit'}")
    mnist = load_mnist(args.data_dir, download=False)
    ratios: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in NETWORKS}
    for repeat in range(1, args.repeats + 1):
        started = time.perf_counter()
        calibration = calibrate()
        print(f"\nround {repeat}: calibrated in {time.perf_counter() - started:.2f} s, "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"{'network':<17} {'settings':<36} {'estimate':>8} {'CPU s':>6} {'ratio':>5}"
              f" {'wall s (range)':>18} {'ratio':>5}")
        for name, spec, preset in NETWORKS:
            config = PRESETS[preset].config
            if config.batch_size > 1:
                config = config.replace(train_size=args.train_size, test_size=args.test_size)
            estimate = config_epoch_seconds(spec, config, calibration)
            wall, cpu = measured_epochs(spec, config, mnist, args.epochs)
            wall_middle, cpu_middle = statistics.median(wall), statistics.median(cpu)
            ratios[name].append((estimate / cpu_middle, estimate / wall_middle))
            settings = (f"{preset}: batch {config.batch_size}, {config.optimizer}, "
                        f"{config.train_size or 60000}/{config.test_size or 10000}")
            spread = f"{wall_middle:.2f} ({min(wall):.2f}-{max(wall):.2f})"
            print(f"{name:<17} {settings:<36} {estimate:7.2f}s {cpu_middle:6.2f} "
                  f"{estimate / cpu_middle:5.2f} {spread:>18} {estimate / wall_middle:5.2f}",
                  flush=True)
    print(f"\nratio estimate / measured CPU seconds (wall-clock in brackets), median of "
          f"{args.epochs} epochs, per round; target 0.70..1.30; load average now "
          f"{os.getloadavg()[0]:.1f}")
    worst = {"CPU": 1.0, "wall": 1.0}
    for name, values in ratios.items():
        print(f"  {name:<17} " + "  ".join(f"{c:.2f} ({w:.2f})" for c, w in values))
        for c, w in values:
            worst["CPU"] = max(worst["CPU"], c, 1 / c)
            worst["wall"] = max(worst["wall"], w, 1 / w)
    print(f"worst: {worst['CPU']:.2f}x off CPU seconds, {worst['wall']:.2f}x off wall-clock")
    if limit is not None:
        limit.restore_original_limits()


if __name__ == "__main__":
    main()
