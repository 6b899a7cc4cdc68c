"""How fast the NumPy engine trains, against PyTorch CPU and against the naive loops.

1. One epoch of the `default` preset's network on the 60,000 MNIST training images,
   in this engine and in PyTorch (same architecture, batch size, optimiser and
   learning rate), alternating runs; prints each epoch's seconds and the ratio
   numpy/torch (lower is better; below 1.0 the engine is faster).
2. The `seed` network (the 2017 blog's) trained one image per update: seconds per
   image in this engine and in the naive loop reference (tests/naive_reference.py),
   and the speedup.

Usage: python bench/bench_engine.py [--data-dir DIR] [--repeats 3] [--skip-torch]
PyTorch is a benchmark-only extra: pip install torch==2.13.0
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
from cnn.data import load_mnist  # noqa: E402
from cnn.model import Model, normalize_spec  # noqa: E402
from cnn.presets import get_preset  # noqa: E402
from cnn.train import make_dataset, make_optimizer, scale_images  # noqa: E402


def numpy_epoch(spec, config, images, labels, order) -> float:
    model = Model(spec, seed=config.seed)
    optimizer = make_optimizer(config)
    batch = config.batch_size
    started = time.perf_counter()
    for start in range(0, len(order), batch):
        index = order[start:start + batch]
        model.train_step(images[index], labels[index], optimizer)
    return time.perf_counter() - started


def torch_network(spec):
    import torch.nn as nn
    spec = normalize_spec(spec)
    flat = None
    modules = []
    shape = spec["input"]
    for layer in spec["layers"]:
        kind = layer["type"]
        if kind == "conv":
            modules.append(nn.Conv2d(shape[0], layer["filters"], layer["kernel"],
                                     layer["stride"], layer["padding"]))
            h = (shape[1] + 2 * layer["padding"] - layer["kernel"]) // layer["stride"] + 1
            w = (shape[2] + 2 * layer["padding"] - layer["kernel"]) // layer["stride"] + 1
            shape = [layer["filters"], h, w]
        elif kind == "maxpool":
            modules.append(nn.MaxPool2d(layer["size"]))
            shape = [shape[0], shape[1] // layer["size"], shape[2] // layer["size"]]
        elif kind == "flatten":
            modules.append(nn.Flatten())
            flat = int(np.prod(shape))
        elif kind == "dense":
            modules.append(nn.Linear(flat, layer["units"]))
            flat = layer["units"]
        else:
            modules.append({"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[kind]())
    return nn.Sequential(*modules)


def torch_epoch(spec, config, images, labels, order) -> float:
    import torch
    torch.manual_seed(config.seed)
    net = torch_network(spec)
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate,
                                     betas=(config.momentum, 0.999))
    else:
        optimizer = torch.optim.SGD(net.parameters(), lr=config.learning_rate,
                                    momentum=config.momentum)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y, order = torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(order)
    batch = config.batch_size
    started = time.perf_counter()
    for start in range(0, len(order), batch):
        index = order[start:start + batch]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(x[index]), y[index])
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def compare_with_torch(mnist, repeats: int, skip_torch: bool) -> None:
    preset = get_preset("default")
    data = make_dataset(mnist, preset.config)
    order = np.random.default_rng(0).permutation(len(data.train_labels))
    print(f"\n1. one epoch of the default network ({len(order)} images, batch "
          f"{preset.config.batch_size}, {preset.config.optimizer})")
    if not skip_torch:
        try:
            import torch
            torch.set_num_threads(os.cpu_count() or 1)
            print(f"   torch {torch.__version__}, {torch.get_num_threads()} threads")
        except ImportError:
            print("   PyTorch is not installed (pip install torch==2.13.0): numpy only")
            skip_torch = True
    numpy_times, torch_times = [], []
    images = scale_images(data.train_images)  # both engines get the same float32 images
    for run in range(repeats):
        numpy_times.append(numpy_epoch(preset.spec, preset.config, images,
                                       data.train_labels, order))
        line = f"   run {run + 1}: numpy {numpy_times[-1]:.2f} s"
        if not skip_torch:
            torch_times.append(torch_epoch(preset.spec, preset.config, images,
                                           data.train_labels, order))
            line += f", torch {torch_times[-1]:.2f} s"
        print(line, flush=True)
    numpy_median = statistics.median(numpy_times)
    print(f"   numpy: median {numpy_median:.2f} s/epoch "
          f"({len(order) / numpy_median:,.0f} images/s), spread {min(numpy_times):.2f}-"
          f"{max(numpy_times):.2f} s")
    if torch_times:
        torch_median = statistics.median(torch_times)
        print(f"   torch: median {torch_median:.2f} s/epoch "
              f"({len(order) / torch_median:,.0f} images/s)")
        print(f"   ratio numpy/torch: {numpy_median / torch_median:.2f} (target <= 1.0)")


def naive_seed_step(model: Model, image: np.ndarray, label: int, learning_rate: float) -> None:
    """One per-image SGD step of the seed network with the loop reference."""
    sys.path.insert(0, str(ROOT / "tests"))
    import naive_reference as ref
    conv, _, _, _, dense1, _, dense2, _ = model.layers
    x = image[None].astype(np.float64)
    z1 = ref.conv2d_forward(x, conv.params["weight"], conv.params["bias"], 1, 0)
    a1 = ref.sigmoid_forward(z1)
    p1 = ref.maxpool_forward(a1, 2)
    flat = p1.reshape(1, -1)
    z2 = ref.dense_forward(flat, dense1.params["weight"], dense1.params["bias"])
    a2 = ref.sigmoid_forward(z2)
    z3 = ref.dense_forward(a2, dense2.params["weight"], dense2.params["bias"])
    a3 = ref.sigmoid_forward(z3)
    _, grad = ref.squared_error(a3, np.array([label]))
    grad = ref.sigmoid_backward(z3, grad)
    grad, gw3, gb3 = ref.dense_backward(a2, dense2.params["weight"], grad)
    grad = ref.sigmoid_backward(z2, grad)
    grad, gw2, gb2 = ref.dense_backward(flat, dense1.params["weight"], grad)
    grad = ref.maxpool_backward(a1, 2, grad.reshape(p1.shape))
    grad = ref.sigmoid_backward(z1, grad)
    _, gw1, gb1 = ref.conv2d_backward(x, conv.params["weight"], 1, 0, grad)
    for layer, gw, gb in ((conv, gw1, gb1), (dense1, gw2, gb2), (dense2, gw3, gb3)):
        layer.params["weight"] -= learning_rate * gw.astype(np.float32)
        layer.params["bias"] -= learning_rate * gb.astype(np.float32)


def compare_with_naive(mnist, images_count: int = 1000, naive_count: int = 20) -> None:
    preset = get_preset("seed")
    config = preset.config
    data = make_dataset(mnist, config)
    images = scale_images(data.train_images[:images_count])
    labels = data.train_labels[:images_count]
    print("\n2. the seed network, one image per SGD update")
    model = Model(preset.spec, seed=0)
    optimizer = make_optimizer(config)
    started = time.perf_counter()
    for i in range(len(images)):
        model.train_step(images[i:i + 1], labels[i:i + 1], optimizer)
    fast = (time.perf_counter() - started) / len(images)
    naive_model = Model(preset.spec, seed=0)
    started = time.perf_counter()
    for i in range(naive_count):
        naive_seed_step(naive_model, images[i], int(labels[i]), config.learning_rate)
    naive = (time.perf_counter() - started) / naive_count
    print(f"   engine: {fast * 1e6:,.0f} us/image ({images_count} images); "
          f"naive loops: {naive * 1e3:,.1f} ms/image ({naive_count} images)")
    print(f"   speedup: {naive / fast:,.0f}x per image (target >= 200x); the blog's "
          f"37 epochs x 1000 images would take {37_000 * fast:.1f} s here")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-torch", action="store_true")
    machine.add_blas_argument(parser)
    args = parser.parse_args()
    machine.describe()
    mnist = load_mnist(args.data_dir, download=False)
    compare_with_torch(mnist, args.repeats, args.skip_torch)
    compare_with_naive(mnist)


if __name__ == "__main__":
    main()
