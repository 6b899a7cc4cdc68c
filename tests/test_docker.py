"""The Docker image, built and run for real with podman (no Docker engine runs here):
../shared/docs/TESTING.md, "Containers".

The build follows what a user's `docker build` does, offline: a Debian bookworm base with
python3 made by debootstrap (built once, kept as localhost/bookworm-py), the wheels of
the dependencies built on the host and handed to the builder stage as a wheelhouse,
MNIST served to `cnn-live download` by a local HTTP server. Then the container answers
/healthz, the page, a prediction and a short training run through its published port,
and `podman stop` (SIGTERM) ends it with status 0.

Marked `container`. Without podman the tests skip, except in CI (CI=true or
CNN_LIVE_REQUIRE_CONTAINER=1), where that is a failure. `pytest -s` prints the build time,
the image size and how long the stop took.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from http_folder import serve_folder

pytestmark = pytest.mark.container

REPO_ROOT = Path(__file__).resolve().parents[1]
BASE_IMAGE = "localhost/bookworm-py"
IMAGE = "localhost/cnn-live:test"
CONTAINER = f"cnn-live-test-{os.getpid()}"
WHEELHOUSE_IN_IMAGE = "/src/wheelhouse"  # the builder stage copies the context to /src
BUILD_TIMEOUT = 900
# Every file of the context gets this modification time (2020-01-01; wheels refuse
# times before 1980), so that an unchanged checkout builds from podman's layer cache.
CONTEXT_MTIME = 1_577_836_800
# The mirror's port is part of the build arguments, hence of the layer cache's keys:
# this one when it is free, else any.
PREFERRED_MIRROR_PORT = 18_777
STOP_TIMEOUT = 10  # podman stop's grace period; past it podman kills (status 137)
# Short enough to finish in a few seconds; long enough to be stopped mid-run.
SHORT_RUN = {"preset": "seed", "epochs": 2, "train_size": 500, "test_size": 100, "seed": 0}
LONG_RUN = {"preset": "seed", "epochs": 30, "train_size": 1000, "seed": 0}


# --- podman, or a skip (a failure in CI) ------------------------------------------------------


def container_tests_required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("CNN_LIVE_REQUIRE_CONTAINER") == "1"


def find_tool(name: str) -> str | None:
    """On PATH, or in the sbin folders where Debian puts runc and debootstrap."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""),
                                                    "/usr/sbin", "/sbin"]))


def why_podman_cannot_run() -> str | None:
    if find_tool("podman") is None:
        return "podman is not installed (apt-get install podman runc debootstrap)"
    if find_tool("runc") is None:
        return "runc is not installed (apt-get install runc)"
    info = podman("info", check=False)
    if info.returncode != 0:
        return f"podman does not work here: {info.stderr.strip()[:300]}"
    return None


def podman(*args: str, check: bool = True, timeout: float = 120, **kwargs):
    result = subprocess.run([find_tool("podman"), *args], capture_output=True, text=True,
                            timeout=timeout, env=podman_env(), **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@functools.cache
def podman_env() -> dict:
    """podman's environment: a containers.conf without default ulimits, which these
    machines refuse (unless the caller set CONTAINERS_CONF already)."""
    env = dict(os.environ)
    if "CONTAINERS_CONF" not in env:
        conf = Path(tempfile.mkdtemp(prefix="cnn-live-podman-")) / "containers.conf"
        conf.write_text("[containers]\ndefault_ulimits = []\n")
        env["CONTAINERS_CONF"] = str(conf)
    return env


# --- what the build needs -------------------------------------------------------------------


def ensure_base_image(workdir: Path) -> None:
    """Debian bookworm with python3 and venv, made by debootstrap once (about 45 s)."""
    if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return
    debootstrap = find_tool("debootstrap")
    if debootstrap is None:
        raise AssertionError(f"{BASE_IMAGE} is missing and debootstrap is not installed")
    rootfs = workdir / "rootfs"
    subprocess.run([debootstrap, "--variant=minbase",
                    "--include=python3,python3-venv,ca-certificates", "bookworm", str(rootfs)],
                   check=True, capture_output=True, timeout=BUILD_TIMEOUT)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    podman("import", "-", BASE_IMAGE, stdin=tar.stdout, timeout=BUILD_TIMEOUT)
    assert tar.wait() == 0
    shutil.rmtree(rootfs)


def make_context(context: Path) -> None:
    """The build context: the checkout's files (tracked, or new and not ignored) and a
    wheelhouse of every dependency, built on the host; .dockerignore, copied along,
    gets one more line to let the wheelhouse in."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=REPO_ROOT, check=True,
                            capture_output=True).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():  # a file deleted but not yet committed is still listed
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, context / name)
    with open(context / ".dockerignore", "a") as ignore:
        ignore.write("!wheelhouse/\n")
    shutil.copytree(dependency_wheelhouse(context / "pyproject.toml"), context / "wheelhouse")
    for path in context.rglob("*"):
        os.utime(path, (CONTEXT_MTIME, CONTEXT_MTIME), follow_symlinks=False)


# Wheelhouses of the dependencies, kept between sessions like the base image: building
# one (pip resolving every dependency against the index) took 25-40 s of each session.
WHEELHOUSE_CACHE = Path.home() / ".cache" / "cnn-live-tests" / "wheelhouses"
WHEELHOUSE_MAX_AGE = 7 * 24 * 3600  # then built afresh: new releases of the dependencies


def dependency_wheelhouse(pyproject: Path) -> Path:
    """A folder of wheels: every dependency pyproject.toml lists (with theirs), and
    setuptools, which the builder stage builds cnn-live's wheel with, offline; not
    cnn-live's own wheel, the builder stage's to build. Built with `pip wheel` when no
    wheelhouse of the same requirements (and Python, and machine) younger than
    WHEELHOUSE_MAX_AGE is kept."""
    import hashlib
    import tomllib

    project = tomllib.loads(pyproject.read_text())
    requirements = sorted({*project["project"]["dependencies"],
                           *project["build-system"]["requires"], "setuptools>=77"})
    key = hashlib.sha256(json.dumps([requirements, sys.version, os.uname().machine])
                         .encode()).hexdigest()[:16]
    kept = WHEELHOUSE_CACHE / key
    if kept.is_dir() and time.time() - kept.stat().st_mtime < WHEELHOUSE_MAX_AGE:
        return kept
    WHEELHOUSE_CACHE.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=WHEELHOUSE_CACHE))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir",
                    str(building), *requirements],
                   check=True, capture_output=True, timeout=BUILD_TIMEOUT)
    shutil.rmtree(kept, ignore_errors=True)
    try:
        building.rename(kept)  # whole or not at all
    except OSError:  # another session's, made meanwhile
        shutil.rmtree(building, ignore_errors=True)
    return kept


@pytest.fixture(scope="module")
def mnist_mirror(mnist_dir):
    """A local HTTP server on a free port serving the MNIST folder: the build's mirror."""
    with serve_folder(mnist_dir, PREFERRED_MIRROR_PORT) as url:
        yield url


@pytest.fixture(scope="module")
def image(mnist_mirror, tmp_path_factory) -> str:
    problem = why_podman_cannot_run()
    if problem:
        if container_tests_required():
            pytest.fail(problem)
        pytest.skip(problem)
    workdir = tmp_path_factory.mktemp("docker")
    started = time.monotonic()
    ensure_base_image(workdir)
    base_seconds = time.monotonic() - started
    context = workdir / "context"
    context.mkdir()
    make_context(context)
    build_started = time.monotonic()
    podman("build", "--isolation=chroot", "--network=host", "--format=docker",
           "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
           "--build-arg", "PIP_NO_INDEX=1",
           "--build-arg", f"PIP_FIND_LINKS={WHEELHOUSE_IN_IMAGE}",
           "--build-arg", f"CNN_LIVE_MNIST_MIRRORS={mnist_mirror}",
           "--file", str(REPO_ROOT / "Dockerfile"), "--tag", IMAGE, str(context),
           timeout=BUILD_TIMEOUT)
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    print(f"\nbase image {base_seconds:.1f} s, wheelhouse {build_started - started - base_seconds:.1f}"
          f" s, podman build {time.monotonic() - build_started:.1f} s, "
          f"image {size / 1e6:.0f} MB")
    return IMAGE


# --- the running container ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """The container's published port, spoken to over real HTTP."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def json(self, method: str, path: str, body: dict | None = None, expect: int = 200):
        status, content = self.request(method, path, body)
        assert status == expect, f"{method} {path}: {status} {content[:500]!r}"
        return json.loads(content)

    def wait_until(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = predicate()
            except (urllib.error.URLError, ConnectionError, OSError):
                value = None  # not listening yet
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def wait_for_state(self, states: tuple[str, ...], timeout: float = 60) -> dict:
        return self.wait_until(
            lambda: (status := self.json("GET", "/api/status"))["state"] in states and status,
            timeout, f"the run to be {' or '.join(states)}")


@pytest.fixture(scope="module")
def container(image):
    port = free_port()
    podman("run", "--detach", "--runtime", "runc", "--name", CONTAINER,
           "--publish", f"127.0.0.1:{port}:8000", image)
    server = Server(port)
    try:
        server.wait_until(lambda: server.request("GET", "/healthz")[0] == 200, 60,
                          "/healthz through the published port")
        yield server
    finally:
        podman("rm", "--force", "--time", "0", CONTAINER, check=False)


def container_logs() -> str:
    result = podman("logs", CONTAINER)
    return result.stdout + result.stderr


def container_state() -> dict:
    return json.loads(podman("inspect", "--format", "{{json .State}}", CONTAINER).stdout)


# --- the tests, in order: one container for all of them -------------------------------------


def test_the_image_runs_as_a_non_root_user_with_mnist_inside(image):
    config = json.loads(podman("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    assert config["User"] not in ("", "root", "0")
    assert config["Cmd"] == ["cnn-live", "serve"]  # exec form: the server gets SIGTERM itself
    assert "8000/tcp" in config["ExposedPorts"]
    script = ('id -u; ls "$CNN_LIVE_DATA_DIR"; echo --; '
              'for tool in gcc cc make pip pip3; do command -v "$tool"; done; true')
    output = podman("run", "--rm", "--runtime", "runc", "--network=none", image,
                    "sh", "-c", script).stdout
    found, tools = output.split("--\n")
    uid, *files = found.split()
    assert uid != "0"
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert name in files
    assert tools.split() == []  # no compilers, no pip: the image only runs the server


def test_healthz_and_the_docker_healthcheck_answer(container):
    assert container.json("GET", "/healthz") == {"status": "ok"}
    # The image's own HEALTHCHECK command, run in the container (kept by --format=docker).
    assert podman("healthcheck", "run", CONTAINER, check=False).returncode == 0


def test_the_page_is_served(container):
    status, page = container.request("GET", "/")
    assert status == 200
    assert b"<h1 class=\"brand-name\">cnn-live</h1>" in page


def test_a_drawn_mnist_digit_is_recognised(container, mnist):
    # The first test digits, as a drawing (ink high, 0..255): the bundled model knows them.
    for image, label in zip(mnist.test_images[:3], mnist.test_labels[:3]):
        answer = container.json("POST", "/api/predict", {"image": image.tolist()})
        assert answer["digit"] == int(label)
        assert answer["model"]["source"]


def test_a_short_training_run_finishes_and_writes_its_checkpoint(container):
    run = container.json("POST", "/api/runs", SHORT_RUN, expect=201)
    container.wait_for_state(("finished", "failed"))
    record = next(r for r in container.json("GET", "/api/runs") if r["run_id"] == run["run_id"])
    assert record["outcome"] == "finished", record
    assert [epoch["epoch"] for epoch in record["epochs"]] == [1, 2]
    assert record["epochs"][-1]["test_total"] == SHORT_RUN["test_size"]
    # Checkpoints go to CNN_LIVE_RUNS_DIR, which the non-root user can write.
    listing = podman("exec", CONTAINER, "sh", "-c", 'ls "$CNN_LIVE_RUNS_DIR"').stdout.split()
    assert f"run-{run['run_id']}.npz" in listing


def test_sigterm_mid_run_stops_the_run_as_interrupted_and_exits_with_status_0(container):
    run = container.json("POST", "/api/runs", LONG_RUN, expect=201)
    container.wait_for_state(("running",))
    started = time.monotonic()
    podman("stop", "--time", str(STOP_TIMEOUT), CONTAINER, timeout=STOP_TIMEOUT + 60)
    seconds = time.monotonic() - started
    state = container_state()
    logs = container_logs()
    print(f"\npodman stop took {seconds:.1f} s")
    assert state["Running"] is False
    # 0, not 143 (killed by SIGTERM) nor 137 (killed after the grace period).
    assert state["ExitCode"] == 0, logs[-3000:]
    assert f"run {run['run_id']} interrupted after" in logs  # to be continued
    assert "Finished server process" in logs
