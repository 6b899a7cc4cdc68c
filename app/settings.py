"""The server's settings, read from the environment in this one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping


class SettingsError(ValueError):
    """An environment variable with a value the server cannot use."""


@dataclass(frozen=True)
class Settings:
    data_dir: str | None = None      # CNN_LIVE_DATA_DIR; else the per-user cache
    host: str = "127.0.0.1"          # CNN_LIVE_HOST
    port: int = 8000                 # CNN_LIVE_PORT
    download: bool = True            # CNN_LIVE_DOWNLOAD=0: never fetch MNIST
    history_limit: int = 20_000      # events of the current run kept for late browsers
    subscriber_backlog: int = 2_000  # events queued for one slow browser before it is dropped
    log_level: str = "info"          # CNN_LIVE_LOG_LEVEL

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        env = os.environ if environ is None else environ
        values = {
            "data_dir": env.get("CNN_LIVE_DATA_DIR") or None,
            "host": env.get("CNN_LIVE_HOST", cls.host),
            "port": _int(env, "CNN_LIVE_PORT", cls.port),
            "download": env.get("CNN_LIVE_DOWNLOAD", "1").strip().lower() not in ("0", "false", "no"),
            "history_limit": _int(env, "CNN_LIVE_HISTORY_LIMIT", cls.history_limit),
            "subscriber_backlog": _int(env, "CNN_LIVE_SUBSCRIBER_BACKLOG", cls.subscriber_backlog),
            "log_level": env.get("CNN_LIVE_LOG_LEVEL", cls.log_level).lower(),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0 or value > 10_000_000:
        raise SettingsError(f"{name} must be from 1 to 10000000, got {value}")
    return value
