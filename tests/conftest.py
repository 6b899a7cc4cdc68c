"""Shared fixtures: the real MNIST files (read-only) and an offline, isolated environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cnn.data import find_mnist, load_mnist

# Read at import, before the autouse fixture below clears the variable for each test.
SHARED_MNIST = Path(
    os.environ.get("CNN_LIVE_DATA_DIR")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
)
# Nothing listens here: any download attempt fails at once instead of going online.
CLOSED_PORT_MIRROR = "http://127.0.0.1:9/"


@pytest.fixture(autouse=True)
def offline_and_isolated(monkeypatch, tmp_path):
    """No test downloads, reads the caller's data settings or writes to the real cache."""
    monkeypatch.setenv("CNN_LIVE_MNIST_MIRRORS", CLOSED_PORT_MIRROR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("CNN_LIVE_DATA_DIR", raising=False)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The shared MNIST folder; never write into it."""
    if find_mnist(SHARED_MNIST) is None:
        message = (f"real MNIST not found in {SHARED_MNIST} "
                   "(set CNN_LIVE_DATA_DIR to a folder holding the four MNIST files)")
        # In CI (.ci/run sets the data directory), or wherever a folder was named, a
        # test that skipped for want of data would check nothing: fail instead.
        if os.environ.get("CI") or os.environ.get("CNN_LIVE_DATA_DIR"):
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_MNIST


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    """The real MNIST arrays, loaded once for the whole session."""
    return load_mnist(mnist_dir, download=False)
