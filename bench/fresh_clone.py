"""A newcomer's first ten minutes: clone the repository (its committed HEAD) into a
temporary folder, make a fresh venv, run the README's quick-start commands literally,
check that the server answers and the tests pass, and print how long each step took.

    python bench/fresh_clone.py [--keep] [--data-dir DIR]

The commands are read from README.md: the first fenced block under the "Quick start"
heading that needs no container engine (a `docker ...` block is skipped: no engine
runs here; tests/test_docker.py covers the image). Each runs in the clone, with the
venv first on PATH, in order. A command that keeps running while the server answers
on CNN_LIVE_PORT is the server: the script checks /healthz and the page, then stops it
with SIGTERM. Every other command must exit with status 0. The environment adds only
what the README itself tells a user to set: CNN_LIVE_DATA_DIR (a local MNIST copy;
default ../shared/data/mnist) and a free CNN_LIVE_PORT (8000 may be taken here).

Slow (it installs everything into a new venv and runs the whole suite): not part of
the default test run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICK_START_HEADING = "Quick start"  # README.md's section holding the two commands
CONTAINER_ENGINES = ("docker", "podman")
COMMAND_TIMEOUT = 30 * 60  # each; the server's may install everything before it starts


# --- reading the README ---------------------------------------------------------------------


def quick_start_commands(readme: str) -> list[str]:
    """The commands of the first fenced block under the quick-start heading that runs
    without a container engine; comments and blank lines dropped."""
    section = quick_start_section(readme)
    for block in re.findall(r"^```[\w-]*\n(.*?)^```", section, flags=re.M | re.S):
        commands = [strip_comment(line) for line in block.splitlines()]
        commands = [command for command in commands if command]
        if commands and not any(command.split()[0] in CONTAINER_ENGINES
                                for command in commands):
            return commands
    raise SystemExit(f"fresh_clone: no fenced block of commands under "
                     f"'{QUICK_START_HEADING}' in README.md")


def quick_start_section(readme: str) -> str:
    heading = re.search(rf"^(#+)\s*{re.escape(QUICK_START_HEADING)}\b.*$", readme,
                        flags=re.M | re.I)
    if heading is None:
        raise SystemExit(f"fresh_clone: README.md has no '{QUICK_START_HEADING}' heading")
    level = len(heading.group(1))
    rest = readme[heading.end():]
    following = re.search(rf"^#{{1,{level}}}\s", rest, flags=re.M)
    return rest[:following.start()] if following else rest


def strip_comment(line: str) -> str:
    """`make run     # installs ...` -> `make run`; a `#` inside a word stays."""
    line = line.strip()
    if line.startswith("#"):
        return ""
    return re.split(r"\s+#\s", line, maxsplit=1)[0].strip().removeprefix("$ ")


# --- running ---------------------------------------------------------------------------------


class Steps:
    """Times each step and prints it as it ends."""

    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []

    def run(self, name: str, action):
        print(f"... {name}", flush=True)
        started = time.perf_counter()
        result = action()
        seconds = time.perf_counter() - started
        self.times.append((name, seconds))
        print(f"{seconds:8.1f} s  {name}", flush=True)
        return result

    def summary(self) -> None:
        print("\nsteps:")
        for name, seconds in self.times:
            print(f"{seconds:8.1f} s  {name}")
        print(f"{sum(seconds for _, seconds in self.times):8.1f} s  in all")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def answers(port: int) -> bool:
    try:
        return get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def run_command(command: str, clone: Path, env: dict, port: int, log: Path) -> str:
    """Run one README command; returns "server" or "exited". Raises on failure."""
    with open(log, "ab") as output:
        output.write(f"\n$ {command}\n".encode())
        output.flush()
        process = subprocess.Popen(command, shell=True, cwd=clone, env=env, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while process.poll() is None:
            if answers(port):
                check_server(port)
                stop(process)
                return "server"
            if time.monotonic() > deadline:
                stop(process)
                raise SystemExit(f"fresh_clone: `{command}` timed out; see {log}")
            time.sleep(0.5)
    if process.returncode != 0:
        raise SystemExit(f"fresh_clone: `{command}` exited with {process.returncode}; "
                         f"see {log}:\n{tail(log)}")
    return "exited"


def check_server(port: int) -> None:
    status, page = get(f"http://127.0.0.1:{port}/")
    if status != 200 or b"cnn-live" not in page:
        raise SystemExit(f"fresh_clone: the page answered {status}")
    print(f"          the server answers on port {port}: /healthz ok, the page "
          f"{len(page):,} bytes", flush=True)


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM to the command's whole process group (make and the server it started),
    then wait until every process of the group has ended, not only the first."""
    os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while group_alive(process):
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
        time.sleep(0.1)


def group_alive(process: subprocess.Popen) -> bool:
    process.poll()  # reaps the leader once it has exited
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


def tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def pytest_summary(log: Path) -> str | None:
    """pytest's closing line, e.g. `312 passed, 2 skipped in 81.2s`."""
    found = re.findall(r"^=*\s*(\d+ (?:passed|failed).*? in [\d.]+s.*?)\s*=*$",
                       log.read_text(errors="replace"), flags=re.M)
    return found[-1] if found else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("CNN_LIVE_DATA_DIR")
                        or str(ROOT.parent / "shared" / "data" / "mnist"),
                        help="a local copy of MNIST (CNN_LIVE_DATA_DIR for the commands)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="cnn-live-fresh-clone-"))
    clone, venv, log = workdir / "cnn-live", workdir / "venv", workdir / "commands.log"
    steps = Steps()
    try:
        steps.run("git clone (committed HEAD)", lambda: subprocess.run(
            ["git", "clone", "--quiet", str(ROOT), str(clone)], check=True))
        commands = quick_start_commands((clone / "README.md").read_text())
        print(f"          the README's commands: {commands}", flush=True)
        steps.run("python3 -m venv", lambda: subprocess.run(
            [sys.executable, "-m", "venv", str(venv)], check=True))
        port = free_port()
        env = {**os.environ, "VIRTUAL_ENV": str(venv),
               "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
               "CNN_LIVE_DATA_DIR": str(Path(args.data_dir).resolve()),
               "CNN_LIVE_PORT": str(port)}
        env.pop("PYTHONPATH", None)
        outcomes = {}
        for command in commands:
            outcomes[command] = steps.run(
                f"`{command}`", lambda: run_command(command, clone, env, port, log))
        if "server" not in outcomes.values():
            raise SystemExit("fresh_clone: no README command started a server")
        summary = pytest_summary(log)
        if summary is None or " passed" not in summary:
            raise SystemExit(f"fresh_clone: no README command ran the tests; see {log}")
        print(f"\ntests: {summary}")
        steps.summary()
    finally:
        if args.keep:
            print(f"kept {workdir} (the commands' output: {log})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
