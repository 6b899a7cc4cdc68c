"""The Ray executor (issue 12) on a real two-node Ray cluster on this machine: a
`cnn-live serve` with CNN_LIVE_EXECUTOR=ray trains each run in an actor; two runs land
on the two nodes; the 2017 `seed` run reaches the blog's accuracy through the API;
pause, resume, step and a learning-rate change go through Ray and show in the run's
records and events; a node killed mid-run (SIGKILL to its raylet and everything under
it) fails that run only, as "worker died", while the server answers and the other run
finishes.

The cluster is ray.cluster_utils.Cluster (TESTING.md, "Ray"): a head and a second
node of 1 CPU each, every process on loopback (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0).
`ray start --address` refuses to add a node with that setting, and without it Ray
advertises the machine's interface address. Its health checks are made fast, so that
a dead node is declared dead in about 2 s, not Ray's default 15-30 s.

Skipped when Ray is not installed, unless CNN_LIVE_REQUIRE_RAY is set (.ci/run sets it
and installs the extra: pip install ".[ray]")."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

# Read by Ray when it is imported: every Ray process of this test on 127.0.0.1.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

try:
    import ray  # noqa: F401
except ImportError:
    if os.environ.get("CNN_LIVE_REQUIRE_RAY"):
        raise
    pytest.skip("Ray is not installed: pip install '.[ray]' (CNN_LIVE_REQUIRE_RAY=1 makes "
                "this a failure, as in CI)", allow_module_level=True)

import httpx  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from serve_process import Serve  # noqa: E402

CLOSED_PORT_MIRROR = "http://127.0.0.1:9/"
# The cluster and the server agree whatever ~/.ray/auth_token holds (Ray 2.60 turns
# token authentication on when that file exists, and a driver holding a token other
# than its cluster's is refused): no token, on a cluster only loopback reaches.
RAY_AUTH = {"RAY_AUTH_MODE": "disabled"}
FAST_HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_timeout_ms": 1000,
                      "health_check_failure_threshold": 3}


@contextlib.contextmanager
def environment(**values: str):
    """os.environ with `values`, restored after: what the nodes' processes inherit."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def cluster(mnist_dir):
    """A head and a second node, 1 CPU each; `ray stop --force` whatever happens."""
    from ray.cluster_utils import Cluster

    from ray._common.utils import get_default_ray_temp_dir

    # The head's address goes to <system temp>/ray/ray_current_cluster whatever the
    # nodes' temp_dir, and Cluster fails on a machine where that folder is not there yet.
    os.makedirs(get_default_ray_temp_dir(), exist_ok=True)
    # Short temp dirs: Ray's socket paths under them must stay within 107 bytes.
    head_dir, node_dir = tempfile.mkdtemp(prefix="rh"), tempfile.mkdtemp(prefix="rn")
    cache = tempfile.mkdtemp(prefix="ray-cache")
    cluster = None
    try:
        # Inherited by every node's workers: their own MNIST (never downloaded here).
        with environment(CNN_LIVE_DATA_DIR=str(mnist_dir),
                         CNN_LIVE_MNIST_MIRRORS=CLOSED_PORT_MIRROR, XDG_CACHE_HOME=cache,
                         **RAY_AUTH):
            cluster = Cluster(initialize_head=True, connect=False, head_node_args={
                "num_cpus": 1, "include_dashboard": False, "temp_dir": head_dir,
                "_system_config": FAST_HEALTH_CHECKS})
            second = cluster.add_node(num_cpus=1, temp_dir=node_dir)
            cluster.wait_for_nodes()
        yield {"address": cluster.address, "second": second, "second_dir": node_dir}
    finally:
        try:
            if cluster is not None:
                cluster.shutdown()
        finally:
            subprocess.run(["ray", "stop", "--force"], capture_output=True, timeout=60)
            for folder in (head_dir, node_dir, cache):
                shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def server(cluster, mnist_dir, tmp_path_factory):
    serve = Serve(tmp_path_factory.mktemp("serve"), mnist_dir, CNN_LIVE_EXECUTOR="ray",
                  CNN_LIVE_RAY_ADDRESS=cluster["address"], CNN_LIVE_MAX_CONCURRENT_RUNS="2",
                  CNN_LIVE_STOP_GRACE="5", CNN_LIVE_MNIST_MIRRORS=CLOSED_PORT_MIRROR,
                  RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", **RAY_AUTH)
    with serve:
        try:
            yield serve
        finally:
            if serve.process.poll() is None:
                serve.terminate()  # SIGTERM: runs stopped, the server leaves the cluster


# -- helpers ------------------------------------------------------------------------------

def start(server: Serve, **request) -> str:
    status, body = server.request("POST", "/api/runs", request)
    assert status == 201, body
    return body["run_id"]


def run_info(server: Serve, run_id: str) -> dict:
    status, body = server.request("GET", f"/api/runs/{run_id}")
    assert status == 200, body
    return body


def live(server: Serve, run_id: str) -> dict:
    """The run's live fields (step, state) from /api/status."""
    runs = server.request("GET", "/api/status")[1]["runs"]
    return next((run for run in runs if run["run_id"] == run_id), None) or {}


def wait_for_end(server: Serve, run_id: str, timeout: float = 180) -> dict:
    return server.wait_until(
        lambda: (info := run_info(server, run_id))["state"] in ("finished", "failed") and info,
        f"run {run_id} to end", timeout)


def wait_for_batches(server: Serve, run_id: str) -> dict:
    return server.wait_until(lambda: (run := live(server, run_id)).get("step", 0) > 0 and run,
                             f"run {run_id}'s first batches", 60)


def metrics(server: Serve, run_id: str) -> dict:
    status, body = server.request("GET", f"/api/runs/{run_id}/metrics.json")
    assert status == 200, body
    return body


def find_event(server: Serve, run_id: str, name: str, predicate, timeout: float = 30) -> dict:
    """The first `name` event of the run's stream (its history, then live) that
    satisfies `predicate`."""
    url = f"http://127.0.0.1:{server.port}/api/runs/{run_id}/events"
    deadline = time.monotonic() + timeout
    event = None
    with httpx.stream("GET", url, timeout=httpx.Timeout(timeout, read=timeout)) as response:
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == name:
                data = json.loads(line.split(":", 1)[1])
                if predicate(data):
                    return data
            assert time.monotonic() < deadline, f"no {name} event as asked within {timeout} s"
    raise AssertionError(f"the stream ended before a {name} event")


def node_processes(node_dir: str) -> list[int]:
    """The second node's raylet (found by its temp dir) and every process under it
    (its workers, whose command lines Ray rewrites, and its agents)."""
    parents: dict[int, int] = {}
    raylets = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        if command[0].endswith(b"/raylet") and any(node_dir.encode() in part
                                                   for part in command):
            raylets.append(int(entry.name))
    assert len(raylets) == 1, f"the second node's raylet: {raylets}"
    found = list(raylets)
    for pid in found:
        found += [child for child, parent in parents.items() if parent == pid]
    return found


def ray_executor():
    """app.ray_executor, imported without leaving its Ray settings (for the server's
    process) in this one's environment, which the cluster's processes inherit."""
    before = set(os.environ)
    import app.ray_executor as module
    for name in set(os.environ) - before:
        del os.environ[name]
    return module


# -- without a cluster ------------------------------------------------------------------------

def test_no_cluster_at_the_address_says_how_to_start_one():
    from app.worker import Job
    RayExecutor, RayUnavailable = ray_executor().RayExecutor, ray_executor().RayUnavailable

    job = Job("r1", "seed", {}, {}, "/nonexistent/run-r1.npz")
    with pytest.raises(RayUnavailable, match="no Ray cluster answers at 127.0.0.1:9 .*"
                                             "ray start --head"):
        RayExecutor("127.0.0.1:9", 5).start(job, lambda message: None, lambda reason: None)
    assert not ray.is_initialized()


def test_where_an_actor_reads_mnist_and_what_a_remote_checkpoint_becomes(mnist_dir, tmp_path):
    from app.worker import Job
    module = ray_executor()
    RayJob, describe_death, node_data_dir = (module.RayJob, module.describe_death,
                                             module.node_data_dir)

    # The server's data directory if MNIST is there on the node, else the node's own.
    assert node_data_dir(str(mnist_dir)) == str(mnist_dir)
    assert node_data_dir(str(tmp_path)) is None and node_data_dir(None) is None

    # A checkpoint written where the server cannot see it is reported as not written.
    delivered = []
    handle = RayJob(None, None, Job("r1", "seed", {}, {}, str(tmp_path / "run-r1.npz")),
                    delivered.append, lambda reason: None, "ray node 1a2b3c4d5e6f")
    (tmp_path / "seen.npz").write_bytes(b"")
    assert not handle.received([("checkpoint", 1, str(tmp_path / "seen.npz")),
                                ("checkpoint", 2, str(tmp_path / "run-r1.npz"))])
    assert delivered[0] == ("checkpoint", 1, str(tmp_path / "seen.npz"))
    assert delivered[1][:2] == ("checkpoint_error", 2)
    assert "ray node 1a2b3c4d5e6f" in delivered[1][2] and "shared" in delivered[1][2]
    assert handle.received([("ended", "finished", None, None)])

    class Died(Exception):
        error_msg = ("The actor died unexpectedly before finishing this task.\n\tpid: 9218\n"
                     "The actor died because its node has died. Node Id: "
                     "24b4fa01dfda3d59210a3081aa79b1164e83e22f60a7ac283211c2eb\n\tthe actor's "
                     "node was terminated unexpectedly: health check failed")
    assert describe_death(Died()) == ("worker died: its node has died (node 24b4fa01dfda): the "
                                      "actor's node was terminated unexpectedly: health check "
                                      "failed")


# -- on the cluster ---------------------------------------------------------------------------

def test_runs_on_two_nodes_and_the_seed_run_reaches_the_blogs_accuracy(server, cluster):
    # The 2017 blog's run and a short one beside it: one on each node.
    seed_run, short_run = start(server, preset="seed"), start(server, preset="seed", epochs=5)
    nodes = [run_info(server, run_id)["node"] for run_id in (seed_run, short_run)]
    assert all(node.startswith("ray node ") for node in nodes), nodes
    assert nodes[0].split()[2] != nodes[1].split()[2], f"both runs on one node: {nodes}"
    assert cluster["second"].node_id[:12] in {node.split()[2] for node in nodes}, nodes

    for run_id, epochs in ((short_run, 5), (seed_run, 37)):
        info = wait_for_end(server, run_id)
        assert (info["state"], info["outcome"]) == ("finished", "finished"), info
        assert len(info["epochs"]) == epochs
        # Written by the actor, wherever it ran: this machine's runs directory.
        assert info["checkpoint_epoch"] == epochs and Path(info["checkpoint"]).is_file(), info
    assert info["epochs"][-1]["test_correct"] >= 88, info["epochs"][-1]
    assert server.request("GET", "/healthz")[0] == 200


def test_pause_resume_step_and_learning_rate_through_ray(server):
    run_id = start(server, preset="seed", epochs=1000)
    wait_for_batches(server, run_id)

    assert server.request("POST", f"/api/runs/{run_id}/pause")[1]["state"] == "paused"
    time.sleep(1.0)  # a batch event already on its way may still come
    before = metrics(server, run_id)["batches"][-1]["global_step"]
    time.sleep(0.8)
    assert metrics(server, run_id)["batches"][-1]["global_step"] == before, "paused, it trained"

    status, body = server.request("POST", f"/api/runs/{run_id}/hyperparameters",
                                  {"learning_rate": 0.5})
    assert status == 200, body
    assert server.request("POST", f"/api/runs/{run_id}/resume")[1]["state"] == "running"
    server.wait_until(lambda: metrics(server, run_id)["batches"][-1]["global_step"] > before,
                      "training again after resume", 60)
    change = find_event(server, run_id, "hyperparameters",
                        lambda data: data["learning_rate"] == 0.5)
    assert change["momentum"] == 0.0
    server.wait_until(lambda: any(batch["learning_rate"] == 0.5
                                  for batch in metrics(server, run_id)["batches"]),
                      "a batch at learning rate 0.5", 60)
    record = metrics(server, run_id)
    assert [c["learning_rate"] for c in record["hyperparameter_changes"]] == [0.5]

    # Step: from a pause, to the end of the epoch, then paused again by the trainer.
    assert server.request("POST", f"/api/runs/{run_id}/pause")[1]["state"] == "paused"
    time.sleep(0.3)
    epochs = len(run_info(server, run_id)["epochs"])
    assert server.request("POST", f"/api/runs/{run_id}/step")[1]["state"] == "running"
    server.wait_until(lambda: len(run_info(server, run_id)["epochs"]) > epochs
                      and live(server, run_id)["state"] == "paused",
                      "the stepped epoch, then a pause", 60)
    time.sleep(0.5)
    assert len(run_info(server, run_id)["epochs"]) == epochs + 1
    assert live(server, run_id)["state"] == "paused"
    assert run_info(server, run_id)["epochs"][-1]["learning_rate"] == 0.5

    assert server.request("POST", f"/api/runs/{run_id}/stop")[1]["state"] == "stopping"
    info = wait_for_end(server, run_id, 60)
    assert (info["state"], info["outcome"]) == ("finished", "stopped"), info


def test_a_killed_node_fails_its_run_only(server, cluster):
    # Two runs, one on each node; the second node is killed as soon as both train.
    epochs = 12
    runs = [start(server, preset="seed", epochs=epochs) for _ in range(2)]
    second_node = cluster["second"].node_id[:12]
    nodes = {run_id: run_info(server, run_id)["node"].split()[2] for run_id in runs}
    assert sorted(nodes.values()) != [second_node] * 2 and second_node in nodes.values(), nodes
    victim = next(run_id for run_id in runs if nodes[run_id] == second_node)
    survivor = next(run_id for run_id in runs if run_id != victim)
    for run_id in runs:
        wait_for_batches(server, run_id)

    for pid in node_processes(cluster["second_dir"]):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()

    info = wait_for_end(server, victim, 60)
    assert info["state"] == "failed", info
    assert info["message"].startswith("worker died"), info["message"]
    assert len(info["epochs"]) < epochs, "the run ended before its node was killed"
    print(f"\nthe victim failed {time.monotonic() - killed_at:.1f} s after the kill: "
          f"{info['message']}")
    assert server.request("GET", "/healthz")[0] == 200

    info = wait_for_end(server, survivor)
    assert (info["state"], info["outcome"]) == ("finished", "finished"), info
    assert len(info["epochs"]) == epochs
    assert server.request("GET", "/healthz")[0] == 200
    assert run_info(server, victim)["state"] == "failed"
