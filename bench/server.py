"""A cnn-live server in a child process, for the benchmarks that talk to it.

The listening socket is bound here, on port 0 (no race for a free port), and handed
to the child, which runs the real app with uvicorn on it:
    python bench/server.py --fd N [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def predict_body(drawing, explain: bool = False, as_rows: bool = False) -> bytes:
    """A POST /api/predict body for a drawing (H x W, 0..255): as the page sends it
    (its bytes in base64, with the width), or with `as_rows` as rows of numbers."""
    import numpy as np
    pixels = np.asarray(drawing, dtype=np.uint8)
    if as_rows:
        body = {"image": pixels.tolist(), "explain": explain}
    else:
        body = {"pixels": base64.b64encode(pixels.tobytes()).decode("ascii"),
                "width": pixels.shape[1], "explain": explain}
    return json.dumps(body, separators=(",", ":")).encode()


class Server:
    def __init__(self, data_dir: str | None, env: dict | None = None) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(128)
        self.url = "http://127.0.0.1:%d" % self.socket.getsockname()[1]
        command = [sys.executable, str(HERE / "server.py"), "--fd", str(self.socket.fileno())]
        if data_dir:
            command += ["--data-dir", data_dir]
        self.process = subprocess.Popen(command, pass_fds=[self.socket.fileno()], cwd=ROOT,
                                        env={**os.environ, **(env or {})})

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited with code {self.process.returncode}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise SystemExit("the server did not start")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.socket.close()


def serve(fd: int, data_dir: str | None) -> None:
    """The child: run the app with uvicorn on the listening socket inherited as `fd`."""
    sys.path[:0] = [str(HERE), str(ROOT)]
    import machine
    import uvicorn

    from app.connections import uvicorn_options
    from app.main import create_app
    from app.settings import Settings

    sock = socket.socket(fileno=fd)
    settings = Settings.from_env(data_dir=data_dir, download=False)
    app = create_app(settings)
    machine.describe("server: ")
    print(f"server: CNN_LIVE_TRAINING_BLAS_THREADS="
          f"{os.environ.get('CNN_LIVE_TRAINING_BLAS_THREADS', '(unset: the default)')}", flush=True)
    # The connection limits of `cnn-live serve` too: the benchmarks measure the product.
    uvicorn.Server(uvicorn.Config(app, timeout_graceful_shutdown=1, log_level="warning",
                                  **uvicorn_options(settings.max_connections))).run(
        sockets=[sock])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    serve(args.fd, args.data_dir)
