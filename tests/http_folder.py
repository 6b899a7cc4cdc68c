"""A quiet HTTP server on 127.0.0.1 serving a folder: a local MNIST mirror for the
download tests and for the Docker image's build."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # keep test output clean
        pass


@contextlib.contextmanager
def serve_folder(directory: str | Path, preferred_port: int = 0) -> Iterator[str]:
    """Serve `directory` (on `preferred_port` when it is free, else any port); yields
    the base URL, ending in a slash."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    try:
        server = ThreadingHTTPServer(("127.0.0.1", preferred_port), handler)
    except OSError:  # taken
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # A short poll interval keeps shutdown() (and so each test) fast.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
