"""`cnn-live`: the engine's command line plus `serve`, which starts the server.
It lives here, not in cnn/, because the engine never imports the server."""

from __future__ import annotations

import argparse
import copy
import signal
import sys
from typing import Sequence

from cnn import cli as engine_cli

from .settings import Settings, SettingsError


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
# The server's own loggers ("cnn_live.training": a line per run event; "cnn.data":
# downloads), printed like uvicorn's lines, at the level of --log-level.
APP_LOGGERS = ("cnn_live", "cnn")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, metavar="ADDRESS",
                        help="address to listen on (default 127.0.0.1, or CNN_LIVE_HOST; "
                             "0.0.0.0 opens it to the network: set CNN_LIVE_TOKEN first)")
    parser.add_argument("--port", type=int, default=None, metavar="N",
                        help="port (default 8000, or CNN_LIVE_PORT)")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="folder holding MNIST (default: CNN_LIVE_DATA_DIR, else the "
                             "per-user cache; downloaded there when missing)")
    parser.add_argument("--log-level", default=None,
                        choices=LOG_LEVELS,
                        help="info (the default, or CNN_LIVE_LOG_LEVEL) logs a line per "
                             "request and per run event; warning only problems")


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .connections import uvicorn_options

    try:
        settings = Settings.from_env(host=args.host, port=args.port, data_dir=args.data_dir,
                                     log_level=args.log_level)
    except SettingsError as exc:
        raise engine_cli.CliError(str(exc)) from None
    # Only now: importing app.main builds its module-level app from the environment,
    # which would raise the same SettingsError as a traceback.
    from .main import create_app
    if not 0 < settings.port < 65536:
        raise engine_cli.CliError(f"--port must be from 1 to 65535, got {settings.port}")
    if settings.log_level not in LOG_LEVELS:
        raise engine_cli.CliError(f"CNN_LIVE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, "
                                  f"got {settings.log_level!r}")
    exit_cleanly_on_sigterm()
    try:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                    log_level=settings.log_level, log_config=logging_config(settings.log_level),
                    timeout_graceful_shutdown=3,
                    # idle, head and body deadlines, head size and connection caps
                    **uvicorn_options(settings.max_connections))
    except SystemExit as exc:
        if exc.code not in (None, 0):  # uvicorn's own failures (port in use, ...)
            raise
    return 0


def logging_config(level: str) -> dict:
    """uvicorn's logging setup, plus the server's own loggers on the same handler, and
    the access log's query strings without their tokens (EventSource sends ?token=)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_tokens"] = {"()": "app.security.RedactTokens"}
    config["handlers"]["access"].setdefault("filters", []).append("redact_tokens")
    for name in APP_LOGGERS:
        config["loggers"][name] = {"handlers": ["default"], "level": level.upper(),
                                   "propagate": False}
    return config


def exit_cleanly_on_sigterm() -> None:
    """SIGTERM (docker stop, systemd, kill) is how a server is asked to stop, so it ends
    with status 0, not death by signal (143). uvicorn handles it first: it stops
    serving, the app stops the run, and then it re-raises the signal, which this
    handler, restored by uvicorn by then, turns into a normal exit. Before uvicorn
    starts, the same handler stops the program at once."""
    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)


SERVE = engine_cli.Command("serve", "start the live dashboard server", """\
  cnn-live serve                        # http://127.0.0.1:8000
  cnn-live serve --port 8080 --data-dir ~/data/mnist
  cnn-live serve --log-level warning    # problems only, no line per request
  CNN_LIVE_TOKEN=a-long-secret cnn-live serve --host 0.0.0.0""",
                           add_serve_arguments, run_serve)

ABOUT = engine_cli.About(
    description="Train a NumPy-only CNN on MNIST and watch it learn, live in the browser.",
    examples="""\
examples:
  cnn-live serve                        # the dashboard on http://127.0.0.1:8000
  cnn-live download
  cnn-live train --preset seed --save seed.npz
  cnn-live evaluate seed.npz
  cnn-live presets
  cnn-live spec --preset default > net.json   # edit it, then:
  cnn-live spec --check net.json && cnn-live train --spec net.json

`cnn-live COMMAND --help` shows each command's options.""")


def main(argv: Sequence[str] | None = None) -> int:
    return engine_cli.main(argv, commands=(*engine_cli.COMMANDS, SERVE), about=ABOUT)


if __name__ == "__main__":
    sys.exit(main())
