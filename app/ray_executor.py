"""RayExecutor (`CNN_LIVE_EXECUTOR=ray`): each run trains in a Ray actor on a cluster.

Ray is an optional extra (`pip install "cnn-live[ray]"`, ray==2.60.0); this module is
imported only when the ray executor is chosen. The server connects, at its first run,
to an existing cluster (CNN_LIVE_RAY_ADDRESS: "auto", the cluster started on this
machine with `ray start --head`, or the head's "host:port"); it never starts one.

- One actor per run (1 CPU, spread over the nodes), holding the run's `Worker`
  (worker.py). It trains in a thread of its own, so that its methods (commands, pulls)
  answer while it trains. Every node needs cnn-live installed, the server's version.
- The worker's messages wait in the actor's outbox; ONE poller thread of the server
  pulls every run's outbox in one remote call per run every POLL_INTERVAL s and
  hands the messages on in order. Of the model snapshots (each up to the model's
  size) only the newest of a pull crosses the network.
- Commands go to the actor as they come, numbered: the actor applies them in the
  server's order (a threaded actor may run two calls out of order).
- A run that ends by itself ("ended", its last message): its actor is killed, its
  CPU freed, and `ended(None)`. An actor that dies (its process or its node killed)
  ends the run as "worker died: <Ray's reason>".

Data and files on a cluster:
- MNIST is never shipped through the server. Each actor keeps the server's data
  directory (CNN_LIVE_DATA_DIR) if that folder holds the four MNIST files on the
  actor's node (one machine, or a shared mount at the same path); otherwise it reads
  its node's own: the CNN_LIVE_DATA_DIR of the node's `ray start` environment, else
  its cache (~/.cache/cnn-live/mnist), downloading there if the server allows
  downloads (CNN_LIVE_DOWNLOAD).
- Checkpoints are written by the actor to the path the server chose in its runs
  directory (CNN_LIVE_RUNS_DIR). On one machine that is the server's file; on a
  cluster of several machines the runs directory must be a folder shared by every
  node at the same path (NFS or the like). Without it a checkpoint lands on the
  node's own disk: the server sees no file, reports a checkpoint error for the run
  (which trains on) and cannot step or continue it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import socket
import threading
import time

# Two of Ray's defaults that do not fit a server, set (unless set already) before ray
# is imported, which reads them:
# - Ray's C++ core catches SIGTERM in a driver to print a stack dump that reads like a
#   crash, on every `docker stop` (uvicorn's own handler still shuts the server down).
# - A driver that loses the cluster's head (its GCS) for 60 s terminates its process:
#   the whole server would go with a cluster's head. Instead the server lives on: the
#   runs of a lost cluster fail (their pulls fail, or stay unanswered UNREACHABLE_LIMIT
#   s), new ones fail after PLACEMENT_TIMEOUT s, everything else answers as before.
os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", str(365 * 24 * 3600))

import ray  # noqa: E402
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError

from cnn.data import find_mnist, resolve_data_dir  # noqa: E402

from .executors import STOP_GRACE, Deliver, Ended  # noqa: E402
from .worker import Job, Worker  # noqa: E402

log = logging.getLogger("cnn_live.executors")

POLL_INTERVAL = 0.15      # seconds between two pulls of a run's messages
PLACEMENT_TIMEOUT = 30.0  # seconds for a run's actor to be placed and started
UNREACHABLE_LIMIT = 60.0  # seconds an actor may stay unreachable before it counts as dead
CONNECT_TIMEOUT = 5.0     # seconds to reach an explicit head address before ray.init
NAMESPACE = "cnn-live"

START_CLUSTER_HINT = (
    "start one on this machine with `ray start --head --num-cpus N` (and "
    "`ray start --address HEAD_IP:6379` on each other machine), or set "
    "CNN_LIVE_RAY_ADDRESS to the head's host:port")


class RayUnavailable(RuntimeError):
    """No Ray cluster could be reached; the message says how to start one."""


# -- in the actor, on a node of the cluster -------------------------------------------------

def node_data_dir(data_dir: str | None) -> str | None:
    """The server's data directory if it holds MNIST on this node, else None: the
    node's own (its CNN_LIVE_DATA_DIR, else its cache)."""
    if data_dir and find_mnist(resolve_data_dir(data_dir)) is not None:
        return data_dir
    return None


@ray.remote(num_cpus=1, max_concurrency=4, max_restarts=0, max_task_retries=0)
class RunActor:
    """One run on a node: its Worker trains in a thread; the server pulls the messages
    and sends the commands."""

    def __init__(self, job: Job) -> None:
        self._job = dataclasses.replace(job, data_dir=node_data_dir(job.data_dir))
        self._lock = threading.Lock()
        self._outbox: list[tuple | None] = []
        self._snapshot_at: int | None = None  # the outbox's pending snapshot, if any
        self._worker = Worker(self._job, self._post)
        self._thread = threading.Thread(target=self._worker.run, daemon=True,
                                        name=f"training-{job.run_id}")
        self._commands: dict[int, tuple] = {}  # come out of order: applied in order
        self._next_command = 0

    def begin(self) -> tuple[str, str, int]:
        """Start training; where: (node id, host name, pid)."""
        if self._thread.ident is None:
            self._thread.start()
        return (ray.get_runtime_context().get_node_id(), socket.gethostname(), os.getpid())

    def _post(self, message: tuple) -> None:
        with self._lock:
            if message[0] == "snapshot":  # only the newest one waiting is worth sending
                if self._snapshot_at is not None:
                    self._outbox[self._snapshot_at] = None
                self._snapshot_at = len(self._outbox)
            self._outbox.append(message)

    def pull(self) -> list[tuple]:
        """Every message waiting, oldest first."""
        with self._lock:
            messages, self._outbox, self._snapshot_at = self._outbox, [], None
        return [message for message in messages if message is not None]

    def command(self, number: int, name: str, *args) -> None:
        with self._lock:
            self._commands[number] = (name, *args)
            ready = []
            while self._next_command in self._commands:
                ready.append(self._commands.pop(self._next_command))
                self._next_command += 1
        for name, *args in ready:
            try:
                self._worker.command(name, *args)
            except ValueError as exc:  # checked by the server already
                log.warning("run %s: command %s refused: %s", self._job.run_id, name, exc)


# -- in the server ----------------------------------------------------------------------------

def describe_death(error: Exception) -> str:
    """A run's message for a dead actor, from Ray's (long) description: "worker died:
    its node has died (node 1a2b3c4d5e6f): the actor's node was terminated
    unexpectedly: health check failed due to missing too many heartbeats"."""
    text = getattr(error, "error_msg", None) or str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.startswith("The actor died because"):
            reason = ": ".join(lines[index:index + 2])
            break
    else:
        reason = lines[0] if lines else type(error).__name__
    reason = reason.replace("The actor died because ", "", 1)
    reason = re.sub(r"\.? ?Node Id: ([0-9a-f]{12})[0-9a-f]+:?", r" (node \1):", reason)
    reason = re.sub(r"\b([0-9a-f]{12})[0-9a-f]{20,}\b", r"\1", reason)  # Ray's long ids
    return f"worker died: {reason.rstrip(':. ')[:400]}"


class RayJob:
    """A run's actor, as the manager sees it (executors.JobHandle)."""

    def __init__(self, executor: "RayExecutor", actor, job: Job, deliver: Deliver,
                 ended: Ended, node: str) -> None:
        self._executor, self.actor, self.job = executor, actor, job
        self._deliver, self._ended = deliver, ended
        self.node = node
        self._lock = threading.Lock()
        self._commands = 0
        self._done = threading.Event()
        self._kill_reason: str | None = None
        self._kill_timer: threading.Timer | None = None
        self.pending = None  # the pull in flight (the poller's)
        self.unreachable_since: float | None = None

    def command(self, name: str, *args) -> None:
        with self._lock:
            if self._done.is_set():
                return
            number, self._commands = self._commands, self._commands + 1
            self.actor.command.remote(number, name, *args)

    def stop(self) -> None:
        self.command("stop")
        with self._lock:
            if self._kill_timer is None and not self._done.is_set():
                self._kill_timer = threading.Timer(self._executor.stop_grace, self._kill_late)
                self._kill_timer.daemon = True
                self._kill_timer.start()

    def _kill_late(self) -> None:
        if not self._done.is_set():
            log.warning("run %s: its actor did not stop within %g s: killed", self.job.run_id,
                        self._executor.stop_grace)
            self.kill(f"worker died: it did not stop within {self._executor.stop_grace:g} s "
                      "and was killed")

    def kill(self, reason: str = "worker died: killed") -> None:
        if self._done.is_set():
            return
        self._kill_reason = self._kill_reason or reason
        _kill_actor(self.actor)  # the next pull finds it dead and ends the run

    def is_alive(self) -> bool:
        return not self._done.is_set()

    def join(self, timeout: float | None = None) -> None:
        self._done.wait(timeout)

    # -- the poller's side ---------------------------------------------------------------

    def received(self, messages: list[tuple]) -> bool:
        """Hand the messages on; True after the run's last one ("ended")."""
        for message in messages:
            if message[0] == "checkpoint":
                message = self._checkpoint_seen(message)
            try:
                self._deliver(message)
            except Exception:  # one message the server could not take must not lose the rest
                log.exception("run %s: a worker's message %r could not be handled",
                              self.job.run_id, message[:1])
            if message[0] == "ended":
                return True
        return False

    def _checkpoint_seen(self, message: tuple) -> tuple:
        """A checkpoint the actor wrote on a node that is not this machine and not
        on a shared folder is no checkpoint for the server: say so."""
        _, epoch, path = message
        folder, name = os.path.split(path)
        if os.path.isfile(path) or (os.path.isdir(folder) and name in os.listdir(folder)):
            return message
        return ("checkpoint_error", epoch,
                f"the checkpoint was written on {self.node} to {path}, which is not on the "
                "server's file system: make the runs directory (CNN_LIVE_RUNS_DIR) a folder "
                "shared by every node of the Ray cluster, at the same path")

    def finish(self, reason: str | None) -> None:
        """The actor is done (or dead): free it, then tell the manager, once."""
        with self._lock:
            if self._done.is_set():
                return
            self._done.set()
            if self._kill_timer is not None:
                self._kill_timer.cancel()
        _kill_actor(self.actor)
        if reason is not None and self._kill_reason is not None:
            reason = self._kill_reason
        # Not in the poller: the manager may start the next queued run from `ended`.
        threading.Thread(target=self._ended, args=(reason,), daemon=True,
                         name=f"ended-{self.job.run_id}").start()


def _kill_actor(actor) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception as exc:  # already gone, or the driver disconnected
        log.debug("ray.kill: %s", exc)


class RayExecutor:
    name = "ray"

    def __init__(self, address: str = "auto", stop_grace: float = STOP_GRACE) -> None:
        self.address, self.stop_grace = address or "auto", stop_grace
        self._lock = threading.Lock()
        self._jobs: list[RayJob] = []
        self._wake = threading.Event()
        self._closing = False
        self._poller: threading.Thread | None = None

    # -- the cluster -------------------------------------------------------------------

    def _connect(self) -> None:
        """ray.init, once: to the cluster at `address` (never a new local one)."""
        if ray.is_initialized():
            return
        address = self.address
        if address != "auto" and not address.startswith("ray://"):
            _check_reachable(address)
        # ray.init warns that it leaves SIGTERM alone outside the main thread: as it should.
        quiet = logging.getLogger("ray._private.worker")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            ray.init(address=address, include_dashboard=False, namespace=NAMESPACE,
                     logging_level=logging.WARNING)
        except ConnectionError as exc:
            if address == "auto":
                raise RayUnavailable(f"no Ray cluster is running on this machine ({exc}): "
                                     f"{START_CLUSTER_HINT}") from None
            raise RayUnavailable(f"the Ray cluster at {address} could not be reached ({exc}): "
                                 f"{START_CLUSTER_HINT}") from None
        finally:
            quiet.setLevel(level)
        resources = ray.cluster_resources()
        log.info("connected to the Ray cluster at %s: %d nodes, %g CPUs", address,
                 len([node for node in ray.nodes() if node.get("Alive")]),
                 resources.get("CPU", 0))

    # -- runs ----------------------------------------------------------------------------

    def prepare(self) -> None:
        pass  # the cluster is joined at the first run: a server starts without one

    def start(self, job: Job, deliver: Deliver, ended: Ended) -> RayJob:
        with self._lock:
            if self._closing:
                raise RuntimeError("the server is shutting down")
            self._connect()
        actor = RunActor.options(scheduling_strategy="SPREAD").remote(job)
        try:
            node_id, host, pid = ray.get(actor.begin.remote(), timeout=PLACEMENT_TIMEOUT)
        except GetTimeoutError:
            _kill_actor(actor)
            raise RuntimeError(f"no node of the Ray cluster took the run within "
                               f"{PLACEMENT_TIMEOUT:g} s ({_free_cpus()}; a run needs 1 CPU): add "
                               "nodes, or set CNN_LIVE_MAX_CONCURRENT_RUNS to at most the "
                               "cluster's CPUs; if the cluster's head was restarted, restart "
                               "the server") from None
        except RayActorError as exc:
            _kill_actor(actor)
            raise RuntimeError(f"its Ray actor could not start ({describe_death(exc)}); every "
                               "node needs cnn-live installed, the server's version") from None
        handle = RayJob(self, actor, job, deliver, ended,
                        f"ray node {node_id[:12]} ({host}, pid {pid})")
        with self._lock:
            self._jobs.append(handle)
            if self._poller is None:
                self._poller = threading.Thread(target=self._poll, name="ray-poller",
                                                daemon=True)
                self._poller.start()
        self._wake.set()
        return handle

    def _poll(self) -> None:
        """The one poller: every run's outbox pulled every POLL_INTERVAL s."""
        while True:
            with self._lock:
                if self._closing:
                    return
                jobs = [job for job in self._jobs if job.is_alive()]
                self._jobs = jobs
            if not jobs:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            began = time.monotonic()
            try:
                for job in jobs:
                    if job.pending is None:
                        job.pending = job.actor.pull.remote()
                pending = {job.pending: job for job in jobs}
                ready, _ = ray.wait(list(pending), num_returns=len(pending),
                                    timeout=POLL_INTERVAL)
                for ref in ready:
                    self._pulled(pending[ref], ref)
            except Exception:  # Ray itself failed: never the end of the poller
                log.exception("pulling the runs' messages from Ray failed")
                time.sleep(1.0)
            time.sleep(max(0.0, POLL_INTERVAL - (time.monotonic() - began)))

    def _pulled(self, job: RayJob, ref) -> None:
        job.pending = None
        try:
            messages = ray.get(ref)
        except ActorUnavailableError as exc:  # maybe a passing network fault: try again
            now = time.monotonic()
            job.unreachable_since = job.unreachable_since or now
            if now - job.unreachable_since > UNREACHABLE_LIMIT:
                job.finish(f"worker died: unreachable for {UNREACHABLE_LIMIT:g} s "
                           f"({describe_death(exc)[len('worker died: '):]})")
            return
        except RayActorError as exc:
            job.finish(describe_death(exc))
            return
        except Exception as exc:  # the pull failed some other way: the run cannot go on
            log.exception("run %s: its messages could not be pulled", job.job.run_id)
            job.finish(f"worker died: its messages could not be pulled ({exc})")
            return
        job.unreachable_since = None
        if job.received(messages):
            job.finish(None)

    def shutdown(self) -> None:
        """The server is going down (its runs stopped or killed already): the poller
        ends, any actor left is killed, and the server leaves the cluster."""
        with self._lock:
            self._closing = True
            jobs, self._jobs = self._jobs, []
            poller = self._poller
        self._wake.set()
        if poller is not None:
            poller.join(5)
        for job in jobs:
            job.finish("worker died: the server shut down")
        if ray.is_initialized():
            ray.shutdown()


def _free_cpus() -> str:
    """The cluster's free CPUs, for a message; asked of the cluster's head, which may
    be gone (then Ray's answer never comes: not waited for)."""
    answer: list[str] = []

    def ask() -> None:
        free = ray.available_resources().get("CPU", 0)
        answer.append(f"{free:g} of {ray.cluster_resources().get('CPU', 0):g} CPUs free")

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    asking.join(5)
    return answer[0] if answer else "the cluster's head does not answer"


def _check_reachable(address: str) -> None:
    """Fail fast (ray.init would retry for minutes) when the head cannot be reached."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)),
                                      timeout=CONNECT_TIMEOUT):
            pass
    except ValueError:
        raise RayUnavailable(f"CNN_LIVE_RAY_ADDRESS {address!r} is not host:port (or "
                             "\"auto\")") from None
    except OSError as exc:
        raise RayUnavailable(f"no Ray cluster answers at {address} ({exc}): "
                             f"{START_CLUSTER_HINT}") from None
