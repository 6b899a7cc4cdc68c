"""The page loads its JavaScript as one file, static/dist/app.js, that `make bundle`
makes from static/js (and uPlot) with esbuild, pinned in the Makefile. A slow phone
spent 0.4-0.6 s fetching and setting up 54 separate modules (issue 13).

The bundle is in the checkout (the page runs from a checkout, a wheel and the Docker
image without Node), so it must be exactly what the modules make now: rebuilt here and
compared. esbuild is installed by `make esbuild` (from the npm registry, as .ci/run
does); without npm this is skipped, except in CI (CNN_LIVE_REQUIRE_BROWSER=1)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "static" / "dist" / "app.js"
SOURCE_MAP = BUNDLE.with_name("app.js.map")


def make(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", *arguments], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def esbuild() -> None:
    installed = shutil.which("make") and make("esbuild")
    if not installed or installed.returncode != 0:
        why = f"esbuild could not be installed: {installed.stderr[-500:] if installed else 'no make'}"
        if os.environ.get("CNN_LIVE_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)


def resolved_sources(source_map: Path) -> list[Path]:
    """The files a source map names, resolved from its own folder (the paths in it are
    relative to the bundle, so they differ between two folders)."""
    sources = json.loads(source_map.read_text())["sources"]
    return [(source_map.parent / name).resolve() for name in sources]


def test_the_bundle_is_what_the_modules_make_now(esbuild, tmp_path):
    rebuilt = tmp_path / "app.js"
    done = make("bundle", f"BUNDLE={rebuilt}")
    assert done.returncode == 0, done.stderr
    assert rebuilt.read_bytes() == BUNDLE.read_bytes(), (
        "static/dist/app.js is stale: run `make bundle` after editing static/js")
    rebuilt_map, shipped_map = (json.loads(p.read_text()) for p in (rebuilt.with_name("app.js.map"), SOURCE_MAP))
    assert rebuilt_map["mappings"] == shipped_map["mappings"]
    assert rebuilt_map["names"] == shipped_map["names"]
    assert resolved_sources(rebuilt.with_name("app.js.map")) == resolved_sources(SOURCE_MAP)


def test_the_source_map_points_at_every_module_of_the_page():
    """DevTools shows the modules themselves: every module main.js imports, directly or
    not, is in the source map, which the bundle names."""
    js = ROOT / "static" / "js"
    reachable, todo = set(), ["main.js"]
    while todo:
        name = todo.pop()
        if name not in reachable:
            reachable.add(name)
            todo += re.findall(r"from '\./([\w-]+\.js)'", (js / name).read_text())
    mapped = {path.name for path in resolved_sources(SOURCE_MAP) if path.parent == js}
    assert mapped == reachable
    assert all(path.is_file() for path in resolved_sources(SOURCE_MAP))
    assert BUNDLE.read_text().rstrip().endswith("//# sourceMappingURL=app.js.map")


def test_the_page_loads_the_bundle_and_no_module_of_its_own():
    template = (ROOT / "templates" / "index.html").read_text()
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', template)
    # The theme is applied before anything is drawn (a classic script); the rest is the bundle.
    assert scripts == ["/static/js/theme-boot.js", "/static/dist/app.js"]
    assert 'type="module" src="/static/dist/app.js"' in template
    assert "modulepreload" not in template
