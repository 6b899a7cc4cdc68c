"""The README's screenshots, taken anew from a real server and a real run: the page on a
1280x800 desktop mid-training with a drawing answered (light and dark), the phone's
Draw section (390x844, touch, dark), and the Evaluate panel after an epoch.

Not a benchmark (it prints no figures): it lives beside them because it drives the same
server and browser (bench/server.py, the system Chromium). Writes PNGs to --out (the
README's docs/ by default; pass another folder to compare before and after).

    python bench/screenshots.py [--out docs] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]
from server import Server  # noqa: E402

CHROMIUM = "/usr/lib/chromium/chromium"
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True}
# A "3" in two strokes, as fractions of the pad.
THREE = [[(0.3, 0.2), (0.65, 0.2), (0.7, 0.35), (0.45, 0.5)],
         [(0.45, 0.5), (0.7, 0.62), (0.68, 0.8), (0.3, 0.85)]]


def draw_three(page) -> None:
    """Draws on the pad with the mouse (a desktop) or a finger (touch), then waits for
    the answer's probabilities."""
    canvas = page.locator("#draw-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    for stroke in THREE:
        points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
                  for fx, fy in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=8)
        page.mouse.up()
    page.wait_for_function("() => document.querySelector('#prediction')?.textContent.trim()")
    page.wait_for_timeout(600)  # the feature maps and the explanation follow the answer


def open_page(browser, url: str, view: dict, scheme: str, fragment: str = ""):
    context = browser.new_context(**view, color_scheme=scheme)
    page = context.new_page()
    page.goto(f"{url}/{'#' + fragment if fragment else ''}")
    page.wait_for_selector("#draw-canvas")
    return context, page


def wait_for_epochs(api: httpx.Client, run_id: str, epochs: int) -> None:
    while len(api.get(f"/api/runs/{run_id}").json()["epochs"]) < epochs:
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    runs_dir = tempfile.mkdtemp(prefix="cnn-live-screenshots-")
    server = Server(args.data_dir, env={"CNN_LIVE_RUNS_DIR": runs_dir,
                                        "CNN_LIVE_LOG_LEVEL": "warning"})
    server.wait_ready()
    api = httpx.Client(base_url=server.url, timeout=30)
    try:
        run = api.post("/api/runs", json={"preset": "default", "epochs": 4}).json()
        wait_for_epochs(api, run["run_id"], 1)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                 args=["--no-sandbox", "--disable-gpu"])
            shots = [("dashboard.png", DESKTOP, "light", ""),
                     ("dashboard-dark.png", DESKTOP, "dark", ""),
                     ("dashboard-phone-dark.png", PHONE, "dark", "draw")]
            for name, view, scheme, fragment in shots:
                context, page = open_page(browser, server.url, view, scheme, fragment)
                page.wait_for_timeout(1500)  # the replayed history drawn
                draw_three(page)
                page.evaluate("() => window.scrollTo(0, 0)")
                page.screenshot(path=str(args.out / name))
                context.close()
                print(f"wrote {args.out / name}")
            context, page = open_page(browser, server.url, DESKTOP, "light", "evaluate")
            panel = page.locator("#evaluate")
            panel.scroll_into_view_if_needed()
            page.locator("#evaluate .confusion-table button").first \
                .wait_for(timeout=20_000)
            page.wait_for_timeout(1000)
            panel.screenshot(path=str(args.out / "insight-evaluate.png"))
            print(f"wrote {args.out / 'insight-evaluate.png'}")
            context.close()
            browser.close()
        api.post(f"/api/runs/{run['run_id']}/stop", json={})
    finally:
        api.close()
        server.close()


if __name__ == "__main__":
    main()
