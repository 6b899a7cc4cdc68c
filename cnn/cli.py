"""The `cnn-live` command line: train, evaluate, download, presets, spec.

Each sub-command is one `Command` in the `COMMANDS` table: a function that adds its
arguments and a function that runs it and returns the exit code. A new sub-command
(say `serve`) is a pair of functions and one more entry in the table.

Expected failures (bad settings, missing data, unreadable model files, a diverging
run) print one line, `cnn-live: error: ...`, on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
import time
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import data
from .cost import (CALIBRATION_ENV, Calibration, ModelLimits, calibrate, fixed_calibration,
                   spec_report)
from .drawings_file import HELD_OUT_EVERY, DrawingsFileError, read_drawings_file
from .model import Model, ModelFileError, SpecError, TrainingDiverged, normalize_spec
from .optim import OPTIMIZERS
from .presets import PRESETS, Preset
from .teach import score
from .train import ConfigError, TrainConfig, Trainer, make_dataset

PROG = "cnn-live"
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
REDRAW_SECONDS = 0.1  # the progress bar redraws at most ten times a second
BAR_WIDTH = 24


class CliError(Exception):
    """A failure to report as one line on stderr, with exit status 2."""


# Errors that end a command with a one-line message instead of a traceback.
EXPECTED_ERRORS = (CliError, ConfigError, SpecError, data.DataError, ModelFileError,
                   TrainingDiverged)


def version() -> str:
    try:
        return importlib_metadata.version("cnn-live")
    except importlib_metadata.PackageNotFoundError:
        return "0.0.0+unknown"


# --- argument types ------------------------------------------------------------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def finite_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line: `cnn-live: error: ...`, exit status 2."""

    def error(self, message: str):
        hint = f" (see `{self.prog} --help`)"
        self.exit(EXIT_ERROR, f"{PROG}: error: {message}{hint}\n")


# --- output helpers ------------------------------------------------------------------


def say(message: str) -> None:
    """A message for the person at the terminal: stderr, so stdout stays clean."""
    print(message, file=sys.stderr, flush=True)


def emit_json(value) -> None:
    print(json.dumps(value, default=_json_default), flush=True)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def format_duration(seconds: float) -> str:
    """0:05, 12:34 or 1:02:03; "?" when there is no estimate."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(max(seconds, 0.0)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def accuracy_text(correct: int, total: int) -> str:
    return f"{100.0 * correct / max(total, 1):.2f}% ({correct}/{total})"


def epoch_line(record: dict) -> str:
    return (f"epoch {record['epoch']}/{record['epochs']}: "
            f"train loss {record['train_loss']:.4f}, "
            f"train accuracy {100.0 * record['train_accuracy']:.2f}%, "
            f"test loss {record['test_loss']:.4f}, "
            f"test accuracy {accuracy_text(record['test_correct'], record['test_total'])}, "
            f"{record['images_per_second']:,.0f} images/s, {record['seconds']:.1f} s")


# --- training progress ---------------------------------------------------------------


class TrainingReporter:
    """The Trainer's callback: a live one-line bar on a terminal and a line per epoch
    on `stream`, plus one JSON object per epoch on stdout with --json. Batch events
    can come thousands of times a second, so each costs a little arithmetic and a
    clock read; the bar is redrawn at most every REDRAW_SECONDS."""

    def __init__(self, stream, epochs: int, interactive: bool, as_json: bool) -> None:
        self.stream, self.epochs = stream, epochs
        self.interactive, self.as_json = interactive, as_json
        self.smoothed_loss: float | None = None
        self.seconds_per_image: float | None = None
        self.last_draw = -math.inf
        self.shown = 0  # characters of the bar now on screen; 0 when none

    def __call__(self, event: dict) -> None:
        if event["type"] == "batch" and self.interactive:
            self.on_batch(event)
        elif event["type"] == "epoch":
            self.on_epoch(event)

    def on_batch(self, event: dict) -> None:
        self.smoothed_loss = _smooth(self.smoothed_loss, event["loss"])
        pace = 1.0 / max(event["images_per_second"], 1e-9)
        self.seconds_per_image = _smooth(self.seconds_per_image, pace)
        now = time.monotonic()
        if now - self.last_draw >= REDRAW_SECONDS:
            self.last_draw = now
            self.draw(self.bar_text(event))

    def bar_text(self, event: dict) -> str:
        progress = min(max(event["progress"], 0.0), 1.0)
        filled = int(progress * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        return (f"epoch {event['epoch']}/{self.epochs} [{bar}] {100.0 * progress:5.1f}%"
                f"  loss {self.smoothed_loss:.4f}"
                f"  {1.0 / self.seconds_per_image:,.0f} img/s"
                f"  ETA {format_duration(event['eta_seconds'])}")

    def draw(self, text: str) -> None:
        padding = " " * max(self.shown - len(text), 0)  # covers a longer earlier line
        self.stream.write(f"\r{text}{padding}")
        self.stream.flush()
        self.shown = len(text)

    def clear(self) -> None:
        """Wipe the bar, so that the next message starts on a clean line."""
        if self.shown:
            self.stream.write("\r" + " " * self.shown + "\r")
            self.stream.flush()
            self.shown = 0

    def on_epoch(self, record: dict) -> None:
        self.clear()
        self.last_draw = -math.inf  # the next epoch's bar shows up at once
        if self.as_json:
            emit_json({key: value for key, value in record.items() if key != "type"})
        self.stream.write(epoch_line(record) + "\n")
        self.stream.flush()


def _smooth(previous: float | None, value: float, weight: float = 0.05) -> float:
    """An exponential moving average; starts at the first (finite) value."""
    if previous is None or not math.isfinite(previous):
        return value
    return previous + weight * (value - previous)


# --- train ---------------------------------------------------------------------------

# Options of `train` that override the preset's TrainConfig field of the same name.
CONFIG_OPTIONS = ("epochs", "batch_size", "learning_rate", "optimizer", "seed",
                  "train_size", "test_size", "augment_shift", "augment_scale",
                  "augment_rotation", "augment_stroke", "include_drawings")
MIN_DRAWINGS = 10  # as the server: fewer teach and measure nothing worth a figure
DEFAULT_DRAWINGS_SHARE = 0.2
MAX_DRAWINGS_FILE = 1_000_000


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), metavar="NAME",
                        help=f"network and settings to start from: {', '.join(sorted(PRESETS))}"
                             " (with --spec, its settings alone; default: default)")
    parser.add_argument("--spec", type=Path, metavar="FILE",
                        help="train this network instead (a JSON spec, as `cnn-live spec "
                             "--preset NAME` writes one), held to the server's limits")
    add_config_arguments(parser)
    add_data_arguments(parser)
    parser.add_argument("--drawings", type=Path, metavar="FILE",
                        help="people's labelled drawings, as the server exports them (.npz, "
                             "or a zip of IDX files): four fifths mixed into the training "
                             "images (--include-drawings, default "
                             f"{DEFAULT_DRAWINGS_SHARE}), every fifth held out and measured")
    parser.add_argument("--save", type=Path, metavar="PATH",
                        help="write the trained model (.npz) here, also when interrupted")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per epoch on stdout")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that replace a preset's training settings (CONFIG_OPTIONS)."""
    parser.add_argument("--epochs", type=positive_int, metavar="N", help="passes over the data")
    parser.add_argument("--batch-size", type=positive_int, metavar="N",
                        help="images per update")
    parser.add_argument("--learning-rate", "--lr", type=finite_number, metavar="X",
                        help="step size, greater than 0")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), help="update rule")
    parser.add_argument("--seed", type=whole_number, metavar="S",
                        help="random seed for the weights and the shuffling")
    parser.add_argument("--train-size", type=positive_int, metavar="N",
                        help="train on the first N training images")
    parser.add_argument("--test-size", type=positive_int, metavar="N",
                        help="test on the first N test images")
    parser.add_argument("--include-drawings", type=finite_number, metavar="SHARE",
                        help="the share of the training images that are --drawings, 0..0.9")
    augmentation = parser.add_argument_group(
        "augmentation", "random distortions of each training image (0 turns one off)")
    for name, unit in (("shift", "pixels, 0..8"), ("scale", "relative, 0..0.5"),
                       ("rotation", "degrees, 0..45"), ("stroke", "pixels thicker or thinner, 0..1")):
        augmentation.add_argument(f"--augment-{name}", type=finite_number, metavar="X",
                                  help=f"at most this much ({unit})")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR",
                        help=f"folder with the MNIST files (default: ${data.DATA_DIR_ENV}, "
                             "else ~/.cache/cnn-live/mnist)")
    parser.add_argument("--no-download", action="store_true",
                        help="fail instead of downloading MNIST when it is missing")


def run_train(args: argparse.Namespace) -> int:
    if args.preset is None and args.spec is None:
        raise CliError("one of --preset NAME or --spec FILE is required")
    preset = PRESETS[args.preset or DEFAULT_PRESET]
    config = train_config(preset, args)
    spec = preset.spec
    if args.spec is not None:
        spec = read_spec(args.spec)
        check_spec(spec, config, args.spec)
    drawings = None
    if getattr(args, "drawings", None) is not None:
        drawings = read_drawings(args.drawings)
        if not config.include_drawings:
            config = config.replace(include_drawings=DEFAULT_DRAWINGS_SHARE)
    elif config.include_drawings:
        raise CliError("argument --include-drawings: needs --drawings FILE")
    mnist = load_data(args.data_dir, download=not args.no_download)
    model = Model(spec, seed=config.seed)
    dataset = make_dataset(mnist, config, drawings and drawings[:2])
    network = f"{args.spec}" if args.spec is not None else f"preset {preset.name!r}"
    settings = (f" with the settings of preset {preset.name!r}" if args.spec is not None
                else "")
    say(f"training {network}{settings} ({model.parameter_count():,} parameters) on "
        f"{len(dataset.train_labels):,} images, testing on {len(dataset.test_labels):,}, "
        f"for {config.epochs} epoch{'s' if config.epochs != 1 else ''}")
    reporter = TrainingReporter(sys.stderr, config.epochs, sys.stderr.isatty(), args.json)
    trainer = Trainer(model, config, dataset, reporter)
    started = time.perf_counter()
    interrupted = run_trainer(trainer, reporter)
    seconds = time.perf_counter() - started
    say(summary_line(trainer.history, seconds, interrupted))
    if drawings is not None:
        correct, total = score(trainer.answering_model(), *drawings[2:])
        say(f"your drawings, held out (every fifth, never taught): "
            f"{accuracy_text(correct, total)}")
    if args.save is not None:
        metadata = training_metadata(preset, config, trainer.history, interrupted, seconds)
        if args.spec is not None:
            metadata["spec_file"] = str(args.spec)
        # The weights that answer drawings: the average's if the preset averages.
        metadata["weights"] = "averaged" if trainer.average is not None else "raw"
        path = save_model(trainer.answering_model(), args.save, metadata)
        say(f"saved the model{' trained so far' if interrupted else ''} to {path}")
    return EXIT_INTERRUPTED if interrupted else 0


def train_config(preset: Preset, args: argparse.Namespace) -> TrainConfig:
    """The preset's settings with the options given; a bad value names its option."""
    changes = {name: getattr(args, name) for name in CONFIG_OPTIONS
               if getattr(args, name) is not None}
    try:
        return preset.config.replace(**changes)
    except ConfigError as exc:
        field = str(exc).split(" ", 1)[0]
        if field not in changes:
            raise
        raise CliError(f"argument --{field.replace('_', '-')}: {exc}") from None


def run_trainer(trainer: Trainer, reporter: TrainingReporter) -> bool:
    """Run the training; True if Ctrl-C stopped it (the model keeps what it learnt)."""
    try:
        # Overflow on the way to a divergence is reported as TrainingDiverged instead.
        with np.errstate(over="ignore", invalid="ignore"):
            trainer.run()
    except KeyboardInterrupt:
        return True
    finally:
        reporter.clear()
    return False


def summary_line(history: list[dict], seconds: float, interrupted: bool) -> str:
    prefix = "interrupted: " if interrupted else ""
    if not history:
        return f"{prefix}no epoch finished, {seconds:.1f} s"
    last = history[-1]
    epochs = f"{len(history)} epoch{'s' if len(history) != 1 else ''}"
    return (f"{prefix}final test accuracy {accuracy_text(last['test_correct'], last['test_total'])}"
            f" after {epochs} in {seconds:.1f} s")


def training_metadata(preset: Preset, config: TrainConfig, history: list[dict],
                      interrupted: bool, seconds: float) -> dict:
    records = [{key: value for key, value in record.items() if key != "type"}
               for record in history]
    final = records[-1] if records else {}
    metadata = {
        "saved_by": f"{PROG} {version()}", "preset": preset.name, "config": config.to_dict(),
        "epochs_completed": len(records), "interrupted": interrupted, "seconds": seconds,
        "test_accuracy": final.get("test_accuracy"), "test_correct": final.get("test_correct"),
        "test_total": final.get("test_total"), "history": records,
    }
    return json.loads(json.dumps(metadata, default=_json_default))  # plain JSON types only


def save_model(model: Model, path: Path, metadata: dict) -> Path:
    try:
        return model.save(path, metadata=metadata)
    except OSError as exc:
        raise CliError(f"cannot save the model to {path}: {exc.strerror or exc}") from None


def load_data(data_dir: str | None, download: bool) -> data.Mnist:
    return data.load_mnist(data_dir, download=download,
                           progress=lambda message: say(f"{PROG}: {message}"))


# --- evaluate ------------------------------------------------------------------------


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL.npz", help="a model saved by `train --save`")
    add_data_arguments(parser)
    parser.add_argument("--test-size", type=positive_int, metavar="N",
                        help="use the first N test images (default: all 10,000)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run_evaluate(args: argparse.Namespace) -> int:
    try:
        limits = ModelLimits.from_env(os.environ)  # the server's limits, raised the same way
    except ValueError as exc:
        raise CliError(str(exc)) from None
    model, metadata = Model.load_with_metadata(args.model, limits)
    check_fits_mnist(model, args.model)
    mnist = load_data(args.data_dir, download=not args.no_download)
    images = mnist.test_images[:args.test_size]  # uint8: the model scales each chunk
    labels = mnist.test_labels[:args.test_size].astype(np.int64)
    loss, correct = model.evaluate(images, labels)
    total = len(labels)
    if args.json:
        emit_json({"model": args.model, "preset": metadata.get("preset"),
                   "test_accuracy": correct / max(total, 1), "test_correct": correct,
                   "test_total": total, "test_loss": loss})
    else:
        print(f"{args.model}: test accuracy {accuracy_text(correct, total)}, loss {loss:.4f}")
    return 0


def check_fits_mnist(model: Model, name: str) -> None:
    if list(model.spec["input"]) != [1, 28, 28]:
        raise CliError(f"{name}: the model takes {model.spec['input']} inputs, "
                       "not MNIST's [1, 28, 28]")
    classes = model.forward(np.zeros((1, 1, 28, 28), model.dtype)).shape[1]
    if classes < data.NUM_CLASSES:
        raise CliError(f"{name}: the model has {classes} outputs; MNIST needs "
                       f"{data.NUM_CLASSES}")


# --- download ------------------------------------------------------------------------


def add_download_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR",
                        help=f"where to put the files (default: ${data.DATA_DIR_ENV}, "
                             "else ~/.cache/cnn-live/mnist)")
    parser.add_argument("--mirror", action="extend", nargs="+", metavar="URL",
                        help=f"base URL to fetch from, tried in order (default: "
                             f"${data.MIRRORS_ENV}, else the built-in mirrors)")


def run_download(args: argparse.Namespace) -> int:
    directory = data.resolve_data_dir(args.data_dir)
    if data.find_mnist(directory) is None:
        data.download_mnist(directory, mirrors=args.mirror,
                            progress=lambda message: say(f"{PROG}: {message}"))
        data.load_mnist(directory, download=False)  # proves the files can be read
    print(f"MNIST is in {directory}")
    return 0


# --- spec ----------------------------------------------------------------------------

DEFAULT_PRESET = "default"  # whose settings a spec of one's own trains with, unless told


def read_drawings(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A file of labelled drawings -> (teaching images, labels, held-out images, labels),
    split as the server splits them (ids divisible by 5 held out); CliError naming the
    file and why."""
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except OSError as exc:
        raise CliError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    try:
        images, labels, ids = read_drawings_file(content, MAX_DRAWINGS_FILE)
    except DrawingsFileError as exc:
        raise CliError(f"{path}: {exc}") from None
    if len(labels) < MIN_DRAWINGS:
        raise CliError(f"{path}: holds {len(labels)} drawings; at least {MIN_DRAWINGS} are "
                       "needed")
    held_out = ids % HELD_OUT_EVERY == 0
    return images[~held_out], labels[~held_out], images[held_out], labels[held_out]


def read_spec(path: Path) -> dict:
    """A network spec from a JSON file, normalised; CliError naming the file (and, for
    a spec that cannot be built, the layer and why: the API's own words)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: cannot read it: {getattr(exc, 'strerror', None) or exc}") \
            from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{path}: not JSON ({exc.msg} at line {exc.lineno}, column "
                       f"{exc.colno}); `cnn-live spec --preset default` writes a spec "
                       f"to start from") from None
    try:
        return normalize_spec(value)
    except SpecError as exc:
        raise CliError(f"{path}: {exc}") from None


def machine_calibration() -> Calibration:
    """This machine's speed, as CNN_LIVE_CALIBRATION says (measured by default: about a
    second)."""
    try:
        fixed = fixed_calibration(os.environ.get(CALIBRATION_ENV, ""))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return fixed if fixed is not None else calibrate()


def check_spec(spec: dict, config: TrainConfig, path: Path,
               calibration: Calibration | None = None) -> None:
    """The server's checks of a run of `spec` (it fits MNIST, it is within the
    CNN_LIVE_MAX_* limits, its estimated time too); CliError naming the file."""
    try:
        limits = ModelLimits.from_env(os.environ)  # the server's limits, raised the same way
    except ValueError as exc:
        raise CliError(str(exc)) from None
    try:
        limits.check_training(spec, config, calibration or machine_calibration)
    except SpecError as exc:
        raise CliError(f"{path}: {exc}") from None


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), metavar="NAME",
                        help="alone: print this preset's network as JSON; with --check: "
                             f"estimate the time with its settings (default: {DEFAULT_PRESET})")
    parser.add_argument("--check", type=Path, metavar="FILE",
                        help="print each layer's output shape, parameters and "
                             "multiply-adds, the totals and the estimated time")
    add_config_arguments(parser)
    parser.add_argument("--json", action="store_true",
                        help="with --check: the same answer as POST /api/specs/check")


def run_spec(args: argparse.Namespace) -> int:
    if args.check is None:
        if args.preset is None:
            raise CliError("give --preset NAME (print its spec) or --check FILE")
        print(spec_json(normalize_spec(PRESETS[args.preset].spec)))
        return 0
    preset = PRESETS[args.preset or DEFAULT_PRESET]
    config = train_config(preset, args)
    spec = read_spec(args.check)
    calibration = machine_calibration()
    check_spec(spec, config, args.check, calibration)
    report = spec_report(spec, config, calibration)
    if args.json:
        emit_json(report)
    else:
        print(cost_table(report))
        print(estimate_text(preset, config, report["seconds_per_epoch"]))
    return 0


def spec_json(spec: dict) -> str:
    """A spec as JSON that reads as a network: one line a layer."""
    layers = ",\n".join(f"    {json.dumps(layer)}" for layer in spec["layers"])
    rest = "".join(f",\n  {json.dumps(key)}: {json.dumps(value)}"
                   for key, value in spec.items() if key not in ("input", "layers"))
    return (f"{{\n  \"input\": {json.dumps(spec['input'])},\n  \"layers\": [\n{layers}\n  ]"
            f"{rest}\n}}")


def cost_table(report: dict) -> str:
    """spec_report's layers (type, output shape, parameters, multiply-adds per image)
    and totals, in aligned columns."""
    shape = lambda dims: "x".join(str(d) for d in dims)  # noqa: E731
    rows = [("#", "layer", "output", "parameters", "multiply-adds"),
            ("", "input", shape(report["spec"]["input"]), "", "")]
    rows += [(str(i), layer["type"], shape(layer["output_shape"]), f"{layer['parameters']:,}",
              f"{layer['multiply_adds']:,}") for i, layer in enumerate(report["layers"])]
    rows.append(("", "total", "", f"{report['parameters']:,}", f"{report['multiply_adds']:,}"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join([row[0].rjust(widths[0]), row[1].ljust(widths[1]),
                        row[2].ljust(widths[2]), row[3].rjust(widths[3]),
                        row[4].rjust(widths[4])]).rstrip() for row in rows]
    lines.insert(-1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def estimate_text(preset: Preset, config: TrainConfig, per_epoch: float) -> str:
    images = min(config.train_size or 60_000, 60_000)
    plural = "s" if config.epochs != 1 else ""
    return (f"estimated {seconds_text(per_epoch)} an epoch on this machine with the settings "
            f"of preset {preset.name!r} (batch size {config.batch_size}, {config.optimizer}, "
            f"{images:,} training images); {config.epochs} epoch{plural}: "
            f"{seconds_text(per_epoch * config.epochs)}")


def seconds_text(seconds: float) -> str:
    """4.2 s under a minute, else as format_duration (12:34, 1:02:03)."""
    return f"{seconds:.1f} s" if seconds < 59.95 else format_duration(seconds)


# --- presets -------------------------------------------------------------------------


def add_presets_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list with each preset's spec and settings")


def run_presets(args: argparse.Namespace) -> int:
    if args.json:
        emit_json([preset.to_dict() for preset in PRESETS.values()])
    else:
        print("\n\n".join(preset_text(preset) for preset in PRESETS.values()))
    return 0


def preset_text(preset: Preset) -> str:
    c = preset.config
    sizes = f"{c.train_size or 'all'} train / {c.test_size or 'all'} test images"
    settings = (f"{c.epochs} epochs, batch size {c.batch_size}, {c.optimizer} "
                f"learning rate {c.learning_rate:g}, {sizes}")
    description = textwrap.fill(preset.description, width=78, initial_indent="  ",
                                subsequent_indent="  ")
    return f"{preset.name}: {settings}\n{description}"


# --- the command table and main ------------------------------------------------------


@dataclass(frozen=True)
class Command:
    name: str
    summary: str  # one line in `cnn-live --help`
    examples: str  # shown under "examples:" in the command's --help
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: tuple[Command, ...] = (
    Command("train", "train a preset network, or one of your own, on MNIST", """\
  cnn-live train --preset default
  cnn-live train --spec net.json --epochs 2          # preset default's settings
  cnn-live train --spec net.json --preset seed       # preset seed's settings
  cnn-live train --preset seed --epochs 5 --save seed.npz
  cnn-live train --preset default --epochs 2 --train-size 10000 --json > history.jsonl
  cnn-live train --preset default --augment-stroke 0.5 --augment-rotation 15
  cnn-live train --preset seed-fc --data-dir ~/data/mnist --no-download""",
            add_train_arguments, run_train),
    Command("evaluate", "measure a saved model's accuracy on the MNIST test set", """\
  cnn-live evaluate model.npz
  cnn-live evaluate model.npz --test-size 1000 --json""",
            add_evaluate_arguments, run_evaluate),
    Command("download", "download MNIST into the data folder (present files are kept)", """\
  cnn-live download
  cnn-live download --data-dir ~/data/mnist
  cnn-live download --mirror https://storage.googleapis.com/cvdf-datasets/mnist/""",
            add_download_arguments, run_download),
    Command("presets", "list the preset networks and their training settings", """\
  cnn-live presets
  cnn-live presets --json""",
            add_presets_arguments, run_presets),
    Command("spec", "write a preset's network as JSON, or check a network: shapes, cost, "
                    "time", """\
  cnn-live spec --preset default > net.json
  cnn-live spec --check net.json
  cnn-live spec --check net.json --preset seed --epochs 3
  cnn-live spec --check net.json --json""",
            add_spec_arguments, run_spec),
)

MAIN_EXAMPLES = """\
examples:
  cnn-live presets
  cnn-live download
  cnn-live train --preset seed --save seed.npz
  cnn-live evaluate seed.npz
  cnn-live spec --preset default > net.json && cnn-live spec --check net.json

`cnn-live COMMAND --help` shows each command's options."""


@dataclass(frozen=True)
class About:
    """What `cnn-live --help` says above and below the commands."""
    description: str = "Train a NumPy-only CNN on MNIST."
    examples: str = MAIN_EXAMPLES


def build_parser(commands_table: Sequence[Command] = COMMANDS,
                 about: About = About()) -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=about.description, epilog=about.examples,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in commands_table:
        sub = commands.add_parser(command.name, help=command.summary,
                                  description=command.summary[0].upper() + command.summary[1:] + ".",
                                  epilog=f"examples:\n{command.examples}",
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None, commands: Sequence[Command] = COMMANDS,
         about: About = About()) -> int:
    """Run the command line; returns the exit status (0, 2 on errors, 130 on Ctrl-C).
    `commands` and `about` let the server package add its own (`serve`) without this
    engine ever importing the server."""
    try:
        args = build_parser(commands, about).parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_ERROR)
    try:
        return args.run(args)
    except EXPECTED_ERRORS as exc:
        say(f"{PROG}: error: {one_line(str(exc))}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        say(f"{PROG}: interrupted")
        return EXIT_INTERRUPTED


def one_line(message: str) -> str:
    """A multi-line message (e.g. one failure per mirror) joined into one line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return " ".join(lines[:1] + ["; ".join(lines[1:])]).strip()
