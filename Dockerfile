# cnn-live: the dashboard server with MNIST inside, so that
#   docker build -t cnn-live . && docker run --rm -p 8000:8000 cnn-live
# serves http://127.0.0.1:8000 with no network at run time.
#
# Build arguments:
#   BASE_IMAGE              any Debian-like image with python3 and its venv module
#   PIP_NO_INDEX, PIP_FIND_LINKS
#                           read by pip from the environment: to build offline, put the
#                           wheels in ./wheelhouse (and allow it in .dockerignore), then
#                           --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/src/wheelhouse
#   CNN_LIVE_MNIST_MIRRORS  comma-separated base URLs to download MNIST from (default: the
#                           public mirrors in cnn/data.py)

ARG BASE_IMAGE=python:3.12-slim

# --- builder: the cnn-live wheel, built from the source, installed in a venv --------------
FROM ${BASE_IMAGE} AS builder
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# Venvs, because some bases' python is "externally managed" (Debian's refuses pip).
RUN python3 -m venv /opt/build-venv
COPY . /src
# The wheel of cnn-live and of every dependency, then /opt/venv with them alone (no
# index): the image gets this venv whole, without the wheels, pip or setuptools.
RUN /opt/build-venv/bin/pip wheel --wheel-dir /dist /src \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-index --find-links /dist cnn-live \
    && /opt/venv/bin/pip uninstall --yes pip setuptools

# --- the image: the venv, MNIST, a non-root user ---------------------------------------
FROM ${BASE_IMAGE}
ARG CNN_LIVE_MNIST_MIRRORS
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CNN_LIVE_HOST=0.0.0.0 \
    CNN_LIVE_PORT=8000 \
    CNN_LIVE_DATA_DIR=/opt/cnn-live/mnist \
    CNN_LIVE_RUNS_DIR=/var/lib/cnn-live/runs

# The same base, so the venv's python (a link to the base's) is there at the same path.
COPY --from=builder /opt/venv /opt/venv

# MNIST, checked against its published MD5s, owned by root: the server only reads it.
RUN cnn-live --version \
    && cnn-live download --data-dir "$CNN_LIVE_DATA_DIR"

# The server runs as this user; checkpoints of runs are the only files it writes.
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /var/lib/cnn-live \
        --shell /usr/sbin/nologin cnn \
    && mkdir -p "$CNN_LIVE_RUNS_DIR" \
    && chown -R cnn:cnn /var/lib/cnn-live
USER cnn
WORKDIR /var/lib/cnn-live

EXPOSE 8000
# python, not curl: the slim bases have no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, sys, urllib.request; port = os.environ.get('CNN_LIVE_PORT', '8000'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status != 200)"]
# Exec form: cnn-live is PID 1 and gets SIGTERM itself (docker stop); it stops the run
# between batches (its last completed epoch is already saved) and exits with status 0.
STOPSIGNAL SIGTERM
CMD ["cnn-live", "serve"]
