"""Executors: where a run trains. Each starts a `Job` (worker.py) and hands the
worker's messages to `deliver`, in order, from one thread of its own; when the worker
is gone it calls `ended(reason)` once: None after a worker that ended by itself, else
why it did not ("worker died: signal 9").

- ProcessExecutor (`process`, the default): each run in a worker process of its own,
  forked from multiprocessing's fork server, a clean process started once that has
  imported NumPy and the engine already (nothing of the server's threads or sockets
  is inherited, and a run starts without a second of imports). The server does no training math, so its event loop and its
  predictions never wait for the training's GIL. A worker whose server is gone (its
  command pipe closes) stops; one that does not honour a stop within `stop_grace`
  seconds is killed.
- ThreadExecutor (`thread`): the same Worker in a thread of the server. For tests and
  for embedding the app in a process that must not fork; it shares the server's GIL.
- RayExecutor (`ray`, ray_executor.py): each run a Ray actor on a cluster.

A started job is a `JobHandle`: send it commands, stop it (a stop, then a kill after
the grace period), ask whether it is alive, join it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing import forkserver
from typing import Callable, Protocol

from .memory import return_freed_memory
from .worker import PRELOAD_VARIABLE, Job, Worker

log = logging.getLogger("cnn_live.executors")

STOP_GRACE = 10.0  # seconds a worker has to honour a stop before it is killed

Deliver = Callable[[tuple], None]
Ended = Callable[[str | None], None]


class JobHandle(Protocol):
    node: str  # where the run trains, for its record ("pid 1234", a Ray node id)

    def command(self, name: str, *args) -> None: ...
    def stop(self) -> None: ...
    def kill(self) -> None: ...
    def is_alive(self) -> bool: ...
    def join(self, timeout: float | None = None) -> None: ...


class Executor(Protocol):
    name: str

    def prepare(self) -> None: ...  # at the server's start: make the first run quick
    def start(self, job: Job, deliver: Deliver, ended: Ended) -> JobHandle: ...
    def shutdown(self) -> None: ...


def describe_exit(exitcode: int | None) -> str | None:
    """Why a worker process ended, as a run's message; None for a clean exit."""
    if exitcode == 0:
        return None
    if exitcode is None:
        return "worker died: it no longer answers"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = str(-exitcode)
        return f"worker died: signal {-exitcode} ({name})"
    return f"worker died: exit code {exitcode}"


# -- in worker processes ----------------------------------------------------------------------

# A worker trains at this much lower a priority than the server (Unix nice). Training
# takes every cycle it is given; the server's event loop, its predictions and, on one
# machine, the browser watching must not wait behind it. On a 2-core machine a page
# opened at epoch 9 of a `default` run (bench/bench_render.py, a phone's CPU throttled
# 4x, on the same cores) took 3.5 s to be complete beside a worker at the server's
# priority. With nothing else to run, a niced worker trains as fast as before.
WORKER_NICENESS = 10


def worker_main(job: Job, commands, events) -> None:
    """A worker process's life: commands read in a thread, training in this one."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server; it stops us
    # First: Linux sets a thread's niceness, and the threads started later (the command
    # reader, BLAS's) take this one's.
    os.nice(WORKER_NICENESS)
    lock = threading.Lock()

    def send(message: tuple) -> None:
        with lock:
            events.send(message)

    worker = Worker(job, send)

    def listen() -> None:
        while True:
            try:
                name, *args = commands.recv()
            except (EOFError, OSError):  # the server is gone: nobody to train for
                worker.command("stop")
                return
            try:
                worker.command(name, *args)
            except ValueError as exc:
                log.warning("run %s: command %s refused: %s", job.run_id, name, exc)

    threading.Thread(target=listen, name="commands", daemon=True).start()
    try:
        worker.run()
    except (BrokenPipeError, EOFError, OSError):
        pass  # the server went away while we reported: the run ends with it
    finally:
        events.close()


class ProcessJob:
    def __init__(self, process, commands, stop_grace: float) -> None:
        self.process, self._commands, self._stop_grace = process, commands, stop_grace
        self._lock = threading.Lock()
        # One thread at a time asks after the process: two waitpid() at once on its exit
        # may leave one of them a wrong exit code.
        self._reap_lock = threading.Lock()
        self._kill_timer: threading.Timer | None = None
        self.killed_because: str | None = None  # why the server killed it, if it did
        self.node = f"pid {process.pid}"

    def command(self, name: str, *args) -> None:
        with self._lock:
            try:
                self._commands.send((name, *args))
            except (BrokenPipeError, OSError):  # the worker is ending: its reader says how
                pass

    def stop(self) -> None:
        self.command("stop")
        with self._lock:
            if self._kill_timer is None:
                self._kill_timer = threading.Timer(self._stop_grace, self._kill_if_alive)
                self._kill_timer.daemon = True
                self._kill_timer.start()

    def _kill_if_alive(self) -> None:
        if self.is_alive():
            log.warning("worker %s did not stop within %g s: killed", self.process.pid,
                        self._stop_grace)
            self.kill(f"worker killed: it did not stop within {self._stop_grace:g} s of "
                      "being asked")

    def kill(self, reason: str | None = None) -> None:
        with self._reap_lock:
            if self.process.exitcode is None:
                self.killed_because = self.killed_because or reason
                self.process.kill()

    def exitcode(self) -> int | None:
        with self._reap_lock:
            return self.process.exitcode

    def is_alive(self) -> bool:
        return self.exitcode() is None

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_alive():
            if deadline is not None and time.monotonic() > deadline:
                return
            time.sleep(0.02)

    def closed(self) -> None:
        with self._lock:
            if self._kill_timer is not None:
                self._kill_timer.cancel()
            self._commands.close()

    def exit_reason(self) -> str | None:
        """Why the worker ended, for its run: None if by itself, cleanly."""
        return self.killed_because or describe_exit(self.exitcode())


class ProcessExecutor:
    name = "process"

    def __init__(self, stop_grace: float = STOP_GRACE, data_dir: str | None = None) -> None:
        self.stop_grace, self.data_dir = stop_grace, data_dir
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["app.worker"])

    def prepare(self) -> None:
        """Start the fork server now: in the background it imports NumPy and the
        engine and reads MNIST (~1.5 s), which every worker forked from it then shares
        (a run's first batch comes without a second of imports and decompression)."""
        os.environ[PRELOAD_VARIABLE] = self.data_dir or ""  # the fork server inherits it
        try:
            forkserver.ensure_running()
        finally:  # for it alone: not for other programs this server may start
            del os.environ[PRELOAD_VARIABLE]

    def start(self, job: Job, deliver: Deliver, ended: Ended) -> ProcessJob:
        commands_in, commands_out = self._context.Pipe(duplex=False)
        events_in, events_out = self._context.Pipe(duplex=False)
        process = self._context.Process(target=worker_main, args=(job, commands_in, events_out),
                                        name=f"cnn-live-run-{job.run_id}", daemon=True)
        process.start()
        commands_in.close()  # the worker's ends: ours closed, so that EOF means it is gone
        events_out.close()
        handle = ProcessJob(process, commands_out, self.stop_grace)
        threading.Thread(target=self._read, args=(handle, events_in, deliver, ended),
                         name=f"worker-{job.run_id}", daemon=True).start()
        return handle

    @staticmethod
    def _read(handle: ProcessJob, events, deliver: Deliver, ended: Ended) -> None:
        try:
            while True:
                try:
                    message = events.recv()
                except (EOFError, OSError):
                    break
                _deliver_safely(deliver, message)
        finally:
            reason = "worker lost: its end could not be told"
            try:
                events.close()
                handle.join(timeout=5)
                if handle.is_alive():  # closed its pipe but did not exit: it will not now
                    handle.kill("worker killed: it closed its pipe but did not exit")
                    handle.join(timeout=5)
                handle.closed()
                reason = handle.exit_reason()
            finally:  # whatever happened: the run ends and its place in the queue is freed
                ended(reason)

    def shutdown(self) -> None:
        pass  # each job's stop and kill is the manager's, run by run


def _deliver_safely(deliver: Deliver, message: tuple) -> None:
    try:
        deliver(message)
    except Exception:  # one message the server could not take must not lose the rest
        log.exception("a worker's message %r could not be handled", message[:1])


# -- in threads of the server ---------------------------------------------------------------

class ThreadJob:
    def __init__(self, worker: Worker, thread: threading.Thread) -> None:
        self.worker: Worker | None = worker  # None once its run ended
        self.thread = thread
        self.node = "server thread"

    def command(self, name: str, *args) -> None:
        worker = self.worker
        if worker is not None:
            worker.command(name, *args)

    def stop(self) -> None:
        self.worker.command("stop")

    def kill(self) -> None:
        self.stop()  # a thread cannot be killed: it stops between two batches

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)


class ThreadExecutor:
    name = "thread"

    def prepare(self) -> None:
        pass

    def start(self, job: Job, deliver: Deliver, ended: Ended) -> ThreadJob:
        worker = Worker(job, lambda message: _deliver_safely(deliver, message))
        handle = ThreadJob(worker, None)
        handle.thread = threading.Thread(target=self._run, args=(handle, ended),
                                         name=f"training-{job.run_id}", daemon=True)
        handle.thread.start()
        return handle

    @staticmethod
    def _run(handle: ThreadJob, ended: Ended) -> None:
        try:
            handle.worker.run()
        finally:
            handle.worker = None  # the run's model and data go now, not with the handle
            ended(None)
            return_freed_memory()

    def shutdown(self) -> None:
        pass


def make_executor(name: str, stop_grace: float = STOP_GRACE, ray_address: str = "auto",
                  data_dir: str | None = None):
    if name == "process":
        return ProcessExecutor(stop_grace, data_dir)
    if name == "thread":
        return ThreadExecutor()
    if name == "ray":
        from .ray_executor import RayExecutor  # Ray is an optional extra
        return RayExecutor(ray_address, stop_grace)
    raise ValueError(f"unknown executor {name!r}: choose process, thread or ray")
