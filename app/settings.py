"""The server's settings, read from the environment in this one place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from cnn.cost import ModelLimits
from cnn.data import user_cache_dir

from .hub import HISTORY_BYTES
from .security import parse_allowed_hosts, parse_allowed_origins


def checkpoint_dir(settings: "Settings") -> Path:
    """Where runs' checkpoints go: CNN_LIVE_RUNS_DIR, else beside the MNIST cache."""
    if settings.runs_dir:
        return Path(settings.runs_dir)
    return user_cache_dir().parent / "runs"


def drawings_dir(settings: "Settings") -> Path:
    """Where people's labelled drawings are kept: CNN_LIVE_DRAWINGS_DIR, else beside
    the runs directory."""
    if settings.drawings_dir:
        return Path(settings.drawings_dir)
    return checkpoint_dir(settings).parent / "drawings"


class SettingsError(ValueError):
    """An environment variable with a value the server cannot use."""


@dataclass(frozen=True)
class Settings:
    data_dir: str | None = None      # CNN_LIVE_DATA_DIR; else the per-user cache
    host: str = "127.0.0.1"          # CNN_LIVE_HOST
    port: int = 8000                 # CNN_LIVE_PORT
    download: bool = True            # CNN_LIVE_DOWNLOAD=0: never fetch MNIST
    history_limit: int = 20_000      # events of the current run kept for late browsers
    # CNN_LIVE_HISTORY_MB: and at most this many bytes of them (a late browser's replay;
    # also what one slow browser may have pending); epochs are kept whatever the bytes.
    history_bytes_limit: int = HISTORY_BYTES  # 8 MiB
    subscriber_backlog: int = 2_000  # events queued for one slow browser before it is dropped
    log_level: str = "info"          # CNN_LIVE_LOG_LEVEL
    runs_dir: str | None = None      # CNN_LIVE_RUNS_DIR: checkpoints; else the per-user cache
    drawings_dir: str | None = None  # CNN_LIVE_DRAWINGS_DIR: labelled drawings; else beside runs
    max_drawings: int = 10_000       # CNN_LIVE_MAX_DRAWINGS: past it a save or import is refused
    max_body_bytes: int = 2 * 1024 * 1024  # CNN_LIVE_MAX_BODY_BYTES: larger requests get a 413
    # CNN_LIVE_MAX_CONNECTIONS: open connections at once (SSE streams count); None: from
    # RLIMIT_NOFILE (app/connections.py: 208 under `ulimit -n 256`, at most 1024).
    max_connections: int | None = None
    # CNN_LIVE_TRAINING_BLAS_THREADS: BLAS threads while a run trains (threadpoolctl;
    # process-wide for OpenBLAS); 0 leaves the BLAS library's own choice (all cores).
    # 1 by default: on 2 cores with anything else busy (predictions at 50/s, other
    # processes), 2 OpenBLAS threads collapsed to 770-1,400 images/s against 7,500-8,200
    # with 1 (bench/bench_predict.py and alternating in-process runs), and predictions
    # answered faster. On an otherwise idle machine 2 threads train faster (README:
    # ~13,000 images/s): set 0 there if nothing else runs.
    training_blas_threads: int = 1
    # CNN_LIVE_TOKEN: when set, changing state (starting and steering runs) needs
    # `Authorization: Bearer <token>`; CNN_LIVE_TOKEN_READ=1: every /api/* route too.
    token: str | None = field(default=None, repr=False)
    token_read: bool = False                # CNN_LIVE_TOKEN_READ
    # CNN_LIVE_ALLOWED_HOSTS: host names the server answers to besides localhost, the
    # loopback addresses and its bind address ("*": any); others get a 403 (DNS
    # rebinding). CNN_LIVE_ALLOWED_ORIGINS: origins, besides the server's own, whose
    # pages may change state (a reverse proxy that rewrites Host). See security.py.
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    # What one network may cost, for runs and uploaded models alike (cnn/cost.py):
    # CNN_LIVE_MAX_LAYERS, _MAX_PARAMETERS, _MAX_MULTIPLY_ADDS, _MAX_VALUES_PER_IMAGE,
    # _MAX_RUN_MEMORY_MB, _MAX_RUN_MINUTES (the estimated time of a whole run).
    model_limits: ModelLimits = ModelLimits()
    # CNN_LIVE_CALIBRATION: how the estimates of seconds per epoch (and the run-time
    # limit) learn this machine's speed: "measure" it once (about a second, in a thread,
    # at the first request that needs it), "reference" (fixed figures: deterministic
    # tests) or the path of a JSON file (cnn.cost.Calibration.to_dict()).
    calibration: str = "measure"
    # Runs as jobs (runs.py, executors.py). CNN_LIVE_EXECUTOR: where runs train:
    # "process" (a worker process each), "thread" (in the server: tests, embedding) or
    # "ray" (actors on the Ray cluster at CNN_LIVE_RAY_ADDRESS, "auto": the local one).
    executor: str = "process"
    ray_address: str = "auto"
    # CNN_LIVE_MAX_CONCURRENT_RUNS: runs training at once (default: the cores);
    # CNN_LIVE_MAX_QUEUED_RUNS: runs waiting for a worker, past which a start gets 429.
    max_concurrent_runs: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_queued_runs: int = 16
    stop_grace: float = 10.0  # CNN_LIVE_STOP_GRACE: seconds before a worker that ignores a stop is killed

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        env = os.environ if environ is None else environ
        values = {
            "data_dir": env.get("CNN_LIVE_DATA_DIR") or None,
            "host": env.get("CNN_LIVE_HOST", cls.host),
            "port": _int(env, "CNN_LIVE_PORT", cls.port),
            "download": env.get("CNN_LIVE_DOWNLOAD", "1").strip().lower() not in ("0", "false", "no"),
            "history_limit": _int(env, "CNN_LIVE_HISTORY_LIMIT", cls.history_limit),
            "history_bytes_limit": _int(env, "CNN_LIVE_HISTORY_MB",
                                        cls.history_bytes_limit // 2**20, maximum=4096) * 2**20,
            "subscriber_backlog": _int(env, "CNN_LIVE_SUBSCRIBER_BACKLOG", cls.subscriber_backlog),
            "log_level": env.get("CNN_LIVE_LOG_LEVEL", cls.log_level).lower(),
            "runs_dir": env.get("CNN_LIVE_RUNS_DIR") or None,
            "drawings_dir": env.get("CNN_LIVE_DRAWINGS_DIR") or None,
            "max_drawings": _int(env, "CNN_LIVE_MAX_DRAWINGS", cls.max_drawings,
                                 maximum=1_000_000),
            "max_body_bytes": _int(env, "CNN_LIVE_MAX_BODY_BYTES", cls.max_body_bytes),
            "max_connections": _int(env, "CNN_LIVE_MAX_CONNECTIONS", None),
            "training_blas_threads": _int(env, "CNN_LIVE_TRAINING_BLAS_THREADS",
                                          cls.training_blas_threads, minimum=0),
            "token": _token(env),
            "token_read": env.get("CNN_LIVE_TOKEN_READ", "").strip().lower() in ("1", "true"),
            "model_limits": _model_limits(env),
            "calibration": env.get("CNN_LIVE_CALIBRATION", "").strip() or cls.calibration,
            "allowed_hosts": _listed(env, "CNN_LIVE_ALLOWED_HOSTS", parse_allowed_hosts),
            "allowed_origins": _listed(env, "CNN_LIVE_ALLOWED_ORIGINS", parse_allowed_origins),
            "executor": _choice(env, "CNN_LIVE_EXECUTOR", ("process", "thread", "ray"),
                                cls.executor),
            "ray_address": env.get("CNN_LIVE_RAY_ADDRESS", "").strip() or cls.ray_address,
            "max_concurrent_runs": _int(env, "CNN_LIVE_MAX_CONCURRENT_RUNS", os.cpu_count() or 1,
                                        maximum=256),
            "max_queued_runs": _int(env, "CNN_LIVE_MAX_QUEUED_RUNS", cls.max_queued_runs,
                                    minimum=0, maximum=10_000),
            "stop_grace": _int(env, "CNN_LIVE_STOP_GRACE", int(cls.stop_grace), maximum=3600),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _token(env: Mapping[str, str]) -> str | None:
    """CNN_LIVE_TOKEN, refused rather than mended when a browser could never send it
    back as it is: an HTTP header carries printable ASCII, and edge spaces are cut."""
    raw = env.get("CNN_LIVE_TOKEN")
    if raw is None or raw == "":
        return None
    if not raw.strip():
        raise SettingsError("CNN_LIVE_TOKEN is only whitespace: set a real secret, or unset "
                            "it to run without a token")
    if raw != raw.strip():
        raise SettingsError("CNN_LIVE_TOKEN starts or ends with whitespace, which no "
                            "Authorization header keeps: remove it")
    if not (raw.isascii() and raw.isprintable()):
        raise SettingsError("CNN_LIVE_TOKEN must be printable ASCII (letters, digits, "
                            "punctuation): it travels in an HTTP header")
    return raw


def _listed(env: Mapping[str, str], name: str, parse) -> tuple[str, ...]:
    raw = env.get(name, "")
    if not raw.strip():
        return ()
    try:
        return parse(raw)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _model_limits(env: Mapping[str, str]) -> ModelLimits:
    try:
        return ModelLimits.from_env(env)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = env.get(name, "").strip().lower() or default
    if raw not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1,
         maximum: int = 10_000_000) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum or value > maximum:
        raise SettingsError(f"{name} must be from {minimum} to {maximum}, got {value}")
    return value
