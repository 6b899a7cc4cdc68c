"""The `cnn-live` command as installed (app.cli: the engine's commands plus `serve`):
--version, --help with examples on every sub-command, and serve's bad settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app import cli as app_cli
from cnn import cli as engine_cli

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMAND_NAMES = [command.name for command in (*engine_cli.COMMANDS, app_cli.SERVE)]


def cnn_live(*argv: str) -> subprocess.CompletedProcess:
    """The command in a real process, as the `cnn-live` script runs it."""
    return subprocess.run([sys.executable, "-m", "app.cli", *argv], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)


def test_version_prints_the_installed_package_version():
    result = cnn_live("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"cnn-live {engine_cli.version()}"


def test_help_lists_every_command_and_shows_how_to_start_the_server():
    result = cnn_live("--help")
    assert result.returncode == 0
    commands = result.stdout.split("examples:")[0]
    for name in COMMAND_NAMES:
        assert f"    {name} " in commands
    examples = result.stdout.split("examples:")[1]
    assert "  cnn-live serve" in examples
    assert "cnn-live COMMAND --help" in examples


@pytest.mark.parametrize("command", COMMAND_NAMES)
def test_every_subcommand_has_help_with_examples_of_itself(capsys, command):
    assert app_cli.main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: cnn-live {command}")
    examples = out.split("examples:\n")[1].splitlines()
    assert examples and all(f" cnn-live {command}" in line for line in examples)


@pytest.mark.parametrize("argv, message", [
    (["serve", "--port", "0"], "--port must be from 1 to 65535, got 0"),
    (["serve", "--port", "http"], "argument --port: invalid int value: 'http'"),
    (["serve", "--log-level", "loud"], "argument --log-level: invalid choice: 'loud'"),
])
def test_bad_serve_arguments_exit_2_with_a_one_line_message(capsys, argv, message):
    assert app_cli.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnn-live: error: ")
    assert message in lines[0]


def test_a_bad_log_level_from_the_environment_is_a_one_line_error(capsys, monkeypatch):
    monkeypatch.setenv("CNN_LIVE_LOG_LEVEL", "loud")
    assert app_cli.main(["serve"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "cnn-live: error: CNN_LIVE_LOG_LEVEL must be one of critical, error, warning, info, "
        "debug, got 'loud'"]
