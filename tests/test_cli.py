"""Tests for the `cnn-live` command line (cnn.cli), run in-process through main()."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from http_folder import serve_folder

from cnn.presets import PRESETS

from cnn import cli
from cnn.data import MNIST_FILES
from cnn.model import Model, TrainingDiverged, normalize_spec

REPO_ROOT = Path(__file__).resolve().parents[1]
EPOCH_KEYS = {"epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
              "test_correct", "test_total", "seconds"}
TINY_SPEC = {"input": [1, 8, 8], "layers": [{"type": "flatten"}, {"type": "dense", "units": 10}]}


@dataclass
class Result:
    code: int
    out: str
    err: str


def run(capsys, *argv) -> Result:
    code = cli.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def small_train(mnist_dir, *extra, preset="seed-fc", epochs=2, train_size=200, test_size=100):
    return ["train", "--preset", preset, "--epochs", epochs, "--train-size", train_size,
            "--test-size", test_size, "--data-dir", mnist_dir, "--no-download", *extra]


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.code == 2
    assert "Traceback" not in result.err
    errors = [line for line in result.err.splitlines() if line.startswith("cnn-live: error: ")]
    assert len(errors) == 1, result.err
    for fragment in fragments:
        assert fragment in errors[0]


# --- help and version ------------------------------------------------------------------


def test_python_dash_m_cnn_prints_help_and_version_in_a_real_subprocess():
    def cnn(*argv):
        return subprocess.run([sys.executable, "-m", "cnn", *argv], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=60)

    version = cnn("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("cnn-live ") and version.stdout.split()[1][0].isdigit()
    helped = cnn("--help")
    assert helped.returncode == 0
    for name in ("train", "evaluate", "download", "presets", "examples:"):
        assert name in helped.stdout


@pytest.mark.parametrize("command", [command.name for command in cli.COMMANDS])
def test_every_subcommand_help_shows_usage_and_examples(capsys, command):
    result = run(capsys, command, "--help")
    assert result.code == 0
    assert f"usage: cnn-live {command}" in result.out
    assert "examples:" in result.out
    assert f"  cnn-live {command}" in result.out.split("examples:")[1]


def test_version_falls_back_when_the_package_metadata_is_missing(monkeypatch):
    def not_installed(name):
        raise cli.importlib_metadata.PackageNotFoundError(name)

    monkeypatch.setattr(cli.importlib_metadata, "version", not_installed)
    assert cli.version() == "0.0.0+unknown"


# --- train ---------------------------------------------------------------------------------


def test_train_json_prints_one_parseable_line_per_epoch_and_nothing_else(capsys, mnist_dir):
    result = run(capsys, *small_train(mnist_dir, "--json", epochs=3))
    assert result.code == 0
    records = [json.loads(line) for line in result.out.splitlines()]
    assert len(records) == 3
    assert [record["epoch"] for record in records] == [1, 2, 3]
    for record in records:
        assert EPOCH_KEYS <= set(record)
        assert record["test_total"] == 100
        assert 0.0 <= record["test_accuracy"] <= 1.0
    assert "final test accuracy" in result.err


def test_train_off_a_terminal_writes_one_plain_line_per_epoch_and_a_summary(capsys, mnist_dir):
    result = run(capsys, *small_train(mnist_dir))
    assert result.code == 0
    assert result.out == ""
    assert "\r" not in result.err
    lines = result.err.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("epoch")] == \
        ["epoch 1/2", "epoch 2/2"]
    assert "final test accuracy" in lines[-1] and "/100)" in lines[-1] and " s" in lines[-1]


def test_train_on_a_terminal_draws_a_throttled_progress_bar_with_an_eta(capsys, monkeypatch,
                                                                         mnist_dir):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    started = time.monotonic()
    result = run(capsys, *small_train(mnist_dir, train_size=500))
    elapsed = time.monotonic() - started
    assert result.code == 0
    draws = result.err.count("ETA ")
    assert draws >= 2  # the first batch of each epoch is drawn at once
    assert draws <= 2 + 10 * elapsed + 2  # 1000 batch events, about ten redraws a second
    bar = result.err.split("\r")[1]
    assert bar.startswith("epoch 1/2 [") and "%" in bar and "loss" in bar and "img/s" in bar
    assert "epoch 2/2:" in result.err  # epoch lines are still written


@pytest.mark.parametrize("seconds, text", [(0.4, "0:00"), (5, "0:05"), (754, "12:34"),
                                           (3723, "1:02:03"), (-3, "0:00"), (math.inf, "?")])
def test_an_eta_reads_as_minutes_and_seconds_or_hours(seconds, text):
    assert cli.format_duration(seconds) == text


def test_train_save_writes_a_model_that_evaluate_reads_back_with_the_same_accuracy(
        capsys, tmp_path, mnist_dir):
    path = tmp_path / "out" / "seed.npz"
    trained = run(capsys, *small_train(mnist_dir, "--json", "--save", path, "--seed", 3,
                                       preset="seed", train_size=300, test_size=200))
    assert trained.code == 0
    assert f"saved the model to {path}" in trained.err
    final = json.loads(trained.out.splitlines()[-1])

    evaluated = run(capsys, "evaluate", path, "--data-dir", mnist_dir, "--test-size", 200,
                    "--json")
    assert evaluated.code == 0
    report = json.loads(evaluated.out)
    assert report["test_correct"] == final["test_correct"]
    assert report["test_total"] == 200
    assert report["test_accuracy"] == pytest.approx(final["test_accuracy"])
    assert report["test_loss"] == pytest.approx(final["test_loss"], rel=1e-5)

    _, metadata = Model.load_with_metadata(path)
    assert metadata["preset"] == "seed"
    assert metadata["config"]["seed"] == 3 and metadata["config"]["train_size"] == 300
    assert len(metadata["history"]) == 2 and metadata["interrupted"] is False
    assert metadata["test_correct"] == final["test_correct"]


def test_train_augmentation_options_reach_the_saved_config(capsys, tmp_path, mnist_dir):
    path = tmp_path / "augmented.npz"
    trained = run(capsys, *small_train(mnist_dir, "--save", path, "--augment-stroke", 0.5,
                                       "--augment-rotation", 15, "--augment-shift", 0,
                                       preset="default", train_size=300, test_size=100))
    assert trained.code == 0
    _, metadata = Model.load_with_metadata(path)
    config = metadata["config"]
    assert (config["augment_stroke"], config["augment_rotation"]) == (0.5, 15.0)
    assert config["augment_shift"] == 0.0
    assert config["augment_scale"] == PRESETS["default"].config.augment_scale  # the preset's


def test_evaluate_prints_accuracy_as_a_percent_and_the_loss(capsys, tmp_path, mnist_dir):
    path = tmp_path / "model.npz"
    assert run(capsys, *small_train(mnist_dir, "--save", path, epochs=1)).code == 0
    result = run(capsys, "evaluate", path, "--data-dir", mnist_dir, "--test-size", 50)
    assert result.code == 0
    assert "test accuracy" in result.out and "%" in result.out and "/50)" in result.out
    assert "loss" in result.out


def test_keyboard_interrupt_mid_run_exits_130_and_still_saves_the_model(capsys, monkeypatch,
                                                                         tmp_path, mnist_dir):
    real_step, calls = Model.train_step, []

    def interrupted_in_epoch_two(self, *args):
        calls.append(1)
        if len(calls) == 150:  # batch size 1, 100 images an epoch
            raise KeyboardInterrupt
        return real_step(self, *args)

    monkeypatch.setattr(Model, "train_step", interrupted_in_epoch_two)
    path = tmp_path / "partial.npz"
    result = run(capsys, *small_train(mnist_dir, "--save", path, epochs=5, train_size=100))
    assert result.code == 130
    assert "interrupted" in result.err and f"saved the model trained so far to {path}" in result.err
    model, metadata = Model.load_with_metadata(path)
    assert metadata["interrupted"] is True and metadata["epochs_completed"] == 1
    assert all(np.isfinite(p).all() for p in model.parameters())


def test_keyboard_interrupt_without_save_exits_130(capsys, monkeypatch, mnist_dir):
    def interrupt(self, *args):
        raise KeyboardInterrupt

    monkeypatch.setattr(Model, "train_step", interrupt)
    result = run(capsys, *small_train(mnist_dir))
    assert result.code == 130
    assert "interrupted: no epoch finished" in result.err


def test_a_diverging_run_is_a_one_line_error(capsys, monkeypatch, mnist_dir):
    def diverge(self, *args):
        raise TrainingDiverged("the loss became nan: training diverged; try a smaller learning rate")

    monkeypatch.setattr(Model, "train_step", diverge)
    result = run(capsys, *small_train(mnist_dir))
    assert_one_line_error(result, "training diverged", "smaller learning rate")


# --- presets ---------------------------------------------------------------------------------


def test_presets_json_lists_seed_seed_fc_and_default_with_their_specs(capsys):
    result = run(capsys, "presets", "--json")
    assert result.code == 0
    presets = {entry["name"]: entry for entry in json.loads(result.out)}
    assert {"seed", "seed-fc", "default"} <= set(presets)
    for entry in presets.values():
        assert entry["spec"]["layers"] and entry["description"]
        assert entry["config"]["epochs"] >= 1
    assert presets["seed"]["spec"]["layers"][0]["type"] == "conv"


def test_presets_lists_names_and_settings_in_plain_text(capsys):
    result = run(capsys, "presets")
    assert result.code == 0
    seed = PRESETS["seed"].config
    assert (f"seed: {seed.epochs} epochs, batch size {seed.batch_size}, {seed.optimizer} "
            f"learning rate {seed.learning_rate:g}, {seed.train_size} train / {seed.test_size} test"
            in result.out)
    assert "default:" in result.out and "all train / all test images" in result.out


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("extra, fragments", [
    (["--preset", "nope"], ["--preset", "invalid choice", "'nope'", "seed-fc", "default"]),
    (["--preset", "seed", "--epochs", "0"], ["--epochs", "at least 1", "'0'"]),
    (["--preset", "seed", "--epochs", "abc"], ["--epochs", "whole number", "'abc'"]),
    (["--preset", "seed", "--batch-size", "1.5"], ["--batch-size", "'1.5'"]),
    (["--preset", "seed", "--learning-rate", "-0.5"], ["--learning-rate", "-0.5"]),
    (["--preset", "seed", "--learning-rate", "nan"], ["--learning-rate", "finite"]),
    (["--preset", "seed", "--epochs", "20000"], ["--epochs", "10000"]),
    (["--preset", "seed", "--seed", "-1"], ["--seed"]),
    (["--preset", "seed", "--optimizer", "rmsprop"], ["--optimizer", "invalid choice"]),
    (["--preset", "seed", "--augment-stroke", "2"], ["--augment-stroke", "[0.0, 1.0]", "2.0"]),
    (["--preset", "seed", "--augment-shift", "-1"], ["--augment-shift", "-1"]),
    ([], ["--preset", "required"]),
])
def test_bad_train_arguments_exit_2_with_a_one_line_message(capsys, tmp_path, extra, fragments):
    result = run(capsys, "train", *extra, "--data-dir", tmp_path, "--no-download")
    assert_one_line_error(result, *fragments)
    assert result.out == ""


def test_an_unknown_command_exits_2_naming_the_commands(capsys):
    assert_one_line_error(run(capsys, "fly"), "invalid choice", "train", "presets")


def test_a_missing_model_file_is_a_one_line_error(capsys, tmp_path):
    path = tmp_path / "missing.npz"
    assert_one_line_error(run(capsys, "evaluate", path), str(path), "no such file")


@pytest.mark.parametrize("content", [b"not a zip at all", b"PK\x03\x04" + bytes(100)],
                         ids=["text", "broken zip"])
def test_a_corrupt_model_file_is_a_one_line_error(capsys, tmp_path, content):
    path = tmp_path / "corrupt.npz"
    path.write_bytes(content)
    assert_one_line_error(run(capsys, "evaluate", path), str(path), "not a model file")


def test_a_truncated_model_file_is_a_one_line_error(capsys, tmp_path):
    path = Model(TINY_SPEC).save(tmp_path / "model.npz")
    path.write_bytes(path.read_bytes()[:-40])
    assert_one_line_error(run(capsys, "evaluate", path), str(path), "not a model file")


def test_evaluate_refuses_a_model_that_does_not_take_mnist_images(capsys, tmp_path, mnist_dir):
    path = Model(TINY_SPEC).save(tmp_path / "small.npz")
    result = run(capsys, "evaluate", path, "--data-dir", mnist_dir)
    assert_one_line_error(result, str(path), "[1, 28, 28]")


def test_evaluate_holds_a_model_to_the_limits_that_cnn_live_max_variables_raise(
        capsys, tmp_path, mnist_dir, monkeypatch):
    wide = {"input": [1, 28, 28], "layers": [{"type": "flatten"}, {"type": "dense", "units": 4096},
                                             {"type": "dense", "units": 512},
                                             {"type": "dense", "units": 10}]}
    path = Model(wide).save(tmp_path / "wide.npz")  # 5.3 M parameters, over the default 5 M
    result = run(capsys, "evaluate", path, "--data-dir", mnist_dir, "--test-size", 20)
    assert_one_line_error(result, str(path), "CNN_LIVE_MAX_PARAMETERS")
    monkeypatch.setenv("CNN_LIVE_MAX_PARAMETERS", "6000000")
    result = run(capsys, "evaluate", path, "--data-dir", mnist_dir, "--test-size", 20)
    assert result.code == 0 and "/20)" in result.out
    monkeypatch.setenv("CNN_LIVE_MAX_PARAMETERS", "lots")
    assert_one_line_error(run(capsys, "evaluate", path, "--data-dir", mnist_dir),
                          "CNN_LIVE_MAX_PARAMETERS", "'lots'")


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_a_data_dir_without_mnist_names_the_folder_and_how_to_fix_it(capsys, tmp_path, command):
    empty = tmp_path / "empty"
    empty.mkdir()
    model = Model(cli.PRESETS["seed-fc"].spec).save(tmp_path / "model.npz")
    argv = ["--preset", "seed"] if command == "train" else [model]
    result = run(capsys, command, *argv, "--data-dir", empty, "--no-download")
    assert_one_line_error(result, f"MNIST not found in {empty}", "--data-dir",
                          "CNN_LIVE_DATA_DIR", "cnn-live download")
    assert list(empty.iterdir()) == []


def test_an_unwritable_save_path_is_a_one_line_error(capsys, tmp_path, mnist_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run(capsys, *small_train(mnist_dir, "--save", blocker / "model.npz", epochs=1))
    assert_one_line_error(result, "cannot save the model to", str(blocker / "model.npz"))


# --- download --------------------------------------------------------------------------------


def test_download_with_every_mirror_failing_is_a_one_line_error(capsys, tmp_path):
    target = tmp_path / "mnist"
    result = run(capsys, "download", "--data-dir", target)
    assert_one_line_error(result, "could not download", "127.0.0.1:9")
    assert "cnn-live: downloading http://127.0.0.1:9/" in result.err
    assert not list(target.glob("*.gz"))


def test_download_leaves_a_folder_that_already_holds_mnist_alone(capsys, mnist_dir):
    before = {path.name: path.stat().st_mtime_ns for path in mnist_dir.iterdir()}
    result = run(capsys, "download", "--data-dir", mnist_dir)
    assert result.code == 0
    assert result.out.strip() == f"MNIST is in {mnist_dir}"
    assert "downloading" not in result.err
    assert {path.name: path.stat().st_mtime_ns for path in mnist_dir.iterdir()} == before


@pytest.fixture
def local_mirror(mnist_dir):
    """An HTTP server on 127.0.0.1 serving the shared MNIST files (read-only)."""
    with serve_folder(mnist_dir) as url:
        yield url


def test_download_fetches_every_file_from_the_given_mirror_and_prints_where(
        capsys, tmp_path, local_mirror):
    target = tmp_path / "fresh"
    result = run(capsys, "download", "--data-dir", target, "--mirror",
                 "http://127.0.0.1:9/", local_mirror)
    assert result.code == 0
    assert result.out.strip() == f"MNIST is in {target}"
    assert sorted(path.name for path in target.iterdir()) == sorted(f"{n}.gz" for n in MNIST_FILES)
    assert "failed: http://127.0.0.1:9/" in result.err  # the dead mirror was tried first


def test_download_defaults_to_the_data_dir_from_the_environment(capsys, monkeypatch, mnist_dir):
    monkeypatch.setenv("CNN_LIVE_DATA_DIR", str(mnist_dir))
    result = run(capsys, "download")
    assert result.code == 0 and result.out.strip() == f"MNIST is in {mnist_dir}"


# --- networks of one's own: spec and train --spec (issue 14) ------------------------------

CUSTOM_SPEC = {"layers": [{"type": "conv", "filters": 4, "kernel": 5, "stride": 2},
                          {"type": "tanh"}, {"type": "flatten"}, {"type": "dense", "units": 10}]}
# The `default` preset's table, hand-computed: (layer, output, parameters, multiply-adds).
DEFAULT_ROWS = [("conv", "8x28x28", "80", "56,448"), ("relu", "8x28x28", "0", "0"),
                ("maxpool", "8x14x14", "0", "0"), ("conv", "16x14x14", "1,168", "225,792"),
                ("relu", "16x14x14", "0", "0"), ("maxpool", "16x7x7", "0", "0"),
                ("flatten", "784", "0", "0"), ("dense", "64", "50,240", "50,176"),
                ("relu", "64", "0", "0"), ("dense", "10", "650", "640")]


@pytest.fixture
def reference_speed(monkeypatch):
    """Estimates from the fixed reference calibration: no second spent measuring."""
    monkeypatch.setenv("CNN_LIVE_CALIBRATION", "reference")


def write_spec(tmp_path, spec, name="net.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(spec))
    return path


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_spec_preset_prints_the_presets_network_as_json_that_train_and_check_read(
        capsys, tmp_path, name):
    result = run(capsys, "spec", "--preset", name)
    assert result.code == 0 and result.err == ""
    assert json.loads(result.out) == normalize_spec(PRESETS[name].spec)
    assert result.out.count("\n") == len(PRESETS[name].spec["layers"]) + 7  # a line a layer


def test_spec_check_prints_shapes_parameters_multiply_adds_totals_and_the_time(
        capsys, tmp_path, reference_speed):
    path = write_spec(tmp_path, PRESETS["default"].spec)
    result = run(capsys, "spec", "--check", path)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["#", "layer", "output", "parameters", "multiply-adds"]
    assert lines[1].split() == ["input", "1x28x28"]
    rows = [tuple(line.split()[1:]) for line in lines[2:12]]
    assert rows == DEFAULT_ROWS
    assert set(lines[12]) == {"-"}
    assert lines[13].split() == ["total", "52,138", "333,056"]
    assert lines[14].startswith("estimated ") and "preset 'default'" in lines[14]
    assert "batch size 64" in lines[14] and "8 epochs" in lines[14]


def test_spec_check_json_answers_like_the_api_and_follows_the_settings(
        capsys, tmp_path, reference_speed):
    path = write_spec(tmp_path, CUSTOM_SPEC)
    full = json.loads(run(capsys, "spec", "--check", path, "--json").out)
    assert [layer["output_shape"] for layer in full["layers"]] == [[4, 12, 12], [4, 12, 12],
                                                                  [576], [10]]
    assert full["parameters"] == 4 * 26 + 577 * 10 and full["multiply_adds"] == 4 * 144 * 25 + 5760
    assert full["spec"] == normalize_spec(CUSTOM_SPEC) and full["epochs"] == 8
    assert full["run_seconds"] == pytest.approx(8 * full["seconds_per_epoch"])
    tenth = json.loads(run(capsys, "spec", "--check", path, "--json", "--preset", "seed",
                           "--epochs", 3).out)
    assert tenth["epochs"] == 3 and tenth["seconds_per_epoch"] < full["seconds_per_epoch"]


def test_train_spec_trains_that_network_with_the_presets_settings_and_saves_its_spec(
        capsys, tmp_path, mnist_dir, reference_speed):
    spec_path, model_path = write_spec(tmp_path, CUSTOM_SPEC), tmp_path / "custom.npz"
    result = run(capsys, "train", "--spec", spec_path, "--epochs", 1, "--train-size", 300,
                 "--test-size", 100, "--data-dir", mnist_dir, "--no-download",
                 "--save", model_path)
    assert result.code == 0, result.err
    assert f"training {spec_path} with the settings of preset 'default'" in result.err
    model, metadata = Model.load_with_metadata(model_path)
    assert model.spec == normalize_spec(CUSTOM_SPEC)
    assert metadata["spec_file"] == str(spec_path) and metadata["config"]["optimizer"] == "adam"
    assert run(capsys, "evaluate", model_path, "--data-dir", mnist_dir,
               "--test-size", 100).code == 0


DEEP = {"layers": [{"type": "conv", "filters": 2, "padding": 1}, *[{"type": "relu"}] * 67,
                   {"type": "flatten"}, {"type": "dense", "units": 10}]}
# Each kind of bad spec file: (file content, environment, words of the one-line error).
BAD_SPEC_FILES = {
    "a missing file": (None, {}, ["no such file"]),
    "not JSON": ("{'layers': [", {}, ["not JSON", "line 1, column 2", "cnn-live spec --preset"]),
    "not UTF-8": (b"\xff\xfe{}", {}, ["cannot read it"]),
    "not an object": ("[1, 2]", {}, ["a spec is a JSON object, got list"]),
    "a bad layer (wrong order)": (
        {"layers": [{"type": "flatten"}, {"type": "conv", "filters": 2},
                    {"type": "dense", "units": 10}]}, {}, ["layer 1 (conv)", "put it before flatten"]),
    "an unknown type": ({"layers": [{"type": "dropout"}]}, {}, ["layer 0", "'type' must be one of"]),
    "negative units": ({"layers": [{"type": "flatten"}, {"type": "dense", "units": -4}]}, {},
                       ["layer 1 (dense)", "'units' must be"]),
    "not MNIST's input": ({"input": [1, 8, 8], **CUSTOM_SPEC}, {}, ["'input' must be [1, 28, 28]"]),
    "too few classes": ({"layers": [{"type": "flatten"}, {"type": "dense", "units": 3}]}, {},
                        ["layer 1 (dense)", "3 class scores", "10 classes"]),
    "past the parameters limit": (CUSTOM_SPEC, {"CNN_LIVE_MAX_PARAMETERS": "1000"},
                                  ["layer 3 (dense)", "over the limit of 1,000",
                                   "CNN_LIVE_MAX_PARAMETERS"]),
    "past the layers limit": (DEEP, {}, ["layer 64 (relu)", "CNN_LIVE_MAX_LAYERS"]),
    "past the run-time limit": (PRESETS["default"].spec, {"CNN_LIVE_MAX_RUN_MINUTES": "1"},
                                ["layer 3 (conv)", "8 epochs of", "over the limit of 1 minutes",
                                 "CNN_LIVE_MAX_RUN_MINUTES"]),
    "a junk limit": (CUSTOM_SPEC, {"CNN_LIVE_MAX_LAYERS": "many"},
                     ["CNN_LIVE_MAX_LAYERS", "'many'"]),
    "a junk calibration": (CUSTOM_SPEC, {"CNN_LIVE_CALIBRATION": "fast"},
                           ["CNN_LIVE_CALIBRATION must be measure, reference or a JSON file"]),
}


@pytest.mark.parametrize("command", ["train", "spec"])
@pytest.mark.parametrize("kind", BAD_SPEC_FILES)
def test_each_kind_of_bad_spec_file_exits_2_with_one_line_naming_the_file(
        capsys, tmp_path, monkeypatch, reference_speed, kind, command):
    content, environ, words = BAD_SPEC_FILES[kind]
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "net.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        path.write_text(json.dumps(content))
    argv = (["train", "--spec", path, "--data-dir", tmp_path, "--no-download"]
            if command == "train" else ["spec", "--check", path])
    result = run(capsys, *argv)
    assert_one_line_error(result, *words)
    if kind != "a junk calibration" and kind != "a junk limit":
        assert f"cnn-live: error: {path}: " in result.err
    assert result.out == "" and len(result.err.splitlines()) == 1


def test_spec_without_a_preset_or_a_file_is_a_one_line_error(capsys):
    assert_one_line_error(run(capsys, "spec"), "--preset NAME", "--check FILE")


# -- people's drawings -----------------------------------------------------------------------

def drawings_file(tmp_path, mnist_dir, count: int, kind: str = "npz") -> Path:
    """The first `count` MNIST test digits as a file of labelled drawings, as the server
    exports them (ids 1..count)."""
    from cnn.data import load_mnist
    from cnn.drawings_file import write_idx_zip, write_npz
    mnist = load_mnist(mnist_dir, download=False)
    images, labels = mnist.test_images[:count], mnist.test_labels[:count].astype(np.int64)
    path = tmp_path / f"drawings.{'npz' if kind == 'npz' else 'zip'}"
    content = (write_npz(np.arange(1, count + 1), images, labels) if kind == "npz"
               else write_idx_zip(images, labels))
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("kind", ["npz", "idx"])
def test_train_drawings_mixes_them_in_and_measures_the_held_out_fifth(capsys, tmp_path,
                                                                       mnist_dir, kind):
    path = drawings_file(tmp_path, mnist_dir, 20, kind)
    save = tmp_path / "model.npz"
    result = run(capsys, *small_train(mnist_dir, "--drawings", str(path),
                                      "--include-drawings", "0.5", "--save", str(save)))
    assert result.code == 0, result.err
    # 200 MNIST images and as many of the 16 teaching drawings, repeated
    assert "on 400 images" in result.err
    (line,) = [line for line in result.err.splitlines() if "your drawings" in line]
    assert "/4)" in line  # ids 5, 10, 15, 20 held out
    _, metadata = Model.load_with_metadata(save)
    assert metadata["config"]["include_drawings"] == 0.5


def test_train_drawings_without_a_share_takes_a_fifth(capsys, tmp_path, mnist_dir):
    path = drawings_file(tmp_path, mnist_dir, 10)
    result = run(capsys, *small_train(mnist_dir, "--drawings", str(path)))
    assert result.code == 0, result.err
    assert "on 250 images" in result.err  # 200 and 50: a fifth of the training images


@pytest.mark.parametrize("problem, fragments", [
    ("missing", ("no such file",)),
    ("not a file of drawings", ("a .npz file or a zip",)),
    ("too few", ("holds 5 drawings", "at least 10")),
    ("share without drawings", ("--include-drawings", "needs --drawings")),
    ("share too large", ("include_drawings",)),
])
def test_train_drawings_errors_are_one_line_and_exit_2(capsys, tmp_path, mnist_dir, problem,
                                                        fragments):
    path = tmp_path / "drawings.npz"
    extra = ["--drawings", str(path)]
    if problem == "not a file of drawings":
        path.write_text("hello")
    elif problem == "too few":
        path = drawings_file(tmp_path, mnist_dir, 5)
        extra = ["--drawings", str(path)]
    elif problem == "share without drawings":
        extra = ["--include-drawings", "0.3"]
    elif problem == "share too large":
        extra = ["--drawings", str(drawings_file(tmp_path, mnist_dir, 10)),
                 "--include-drawings", "0.95"]
    assert_one_line_error(run(capsys, *small_train(mnist_dir, *extra)), *fragments)
