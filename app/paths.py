"""Where the page's files are: beside the package in a checkout, inside it when
installed from a wheel (pyproject.toml maps templates/ and static/ into app/)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def web_dir(name: str) -> Path:
    checkout = _PACKAGE.parent / name
    return checkout if checkout.is_dir() else _PACKAGE / name
