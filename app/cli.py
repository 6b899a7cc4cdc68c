"""`cnn-live`: the engine's command line plus `serve`, which starts the server.
It lives here, not in cnn/, because the engine never imports the server."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from cnn import cli as engine_cli

from .settings import Settings, SettingsError


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1, "
                        "or CNN_LIVE_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (default 8000, or CNN_LIVE_PORT)")
    parser.add_argument("--data-dir", default=None, help="folder holding MNIST (default: "
                        "CNN_LIVE_DATA_DIR, else the per-user cache)")
    parser.add_argument("--log-level", default=None,
                        choices=["critical", "error", "warning", "info", "debug"],
                        help="default info, or CNN_LIVE_LOG_LEVEL")


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .main import create_app

    try:
        settings = Settings.from_env(host=args.host, port=args.port, data_dir=args.data_dir,
                                     log_level=args.log_level)
    except SettingsError as exc:
        raise engine_cli.CliError(str(exc)) from None
    if not 0 < settings.port < 65536:
        raise engine_cli.CliError(f"--port must be from 1 to 65535, got {settings.port}")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=settings.log_level, timeout_graceful_shutdown=3)
    return 0


SERVE = engine_cli.Command("serve", "start the live dashboard server", """\
  cnn-live serve
  cnn-live serve --port 8080 --data-dir ~/data/mnist
  CNN_LIVE_DATA_DIR=../shared/data/mnist cnn-live serve --host 0.0.0.0""",
                           add_serve_arguments, run_serve)


def main(argv: Sequence[str] | None = None) -> int:
    return engine_cli.main(argv, commands=(*engine_cli.COMMANDS, SERVE))


if __name__ == "__main__":
    sys.exit(main())
