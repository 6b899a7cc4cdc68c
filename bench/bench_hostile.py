"""Issue 11's attacks against a real `cnn-live serve`, each while a run trains: how the
server answers and what it costs it.

For each attack it prints the answer (status, milliseconds, bytes), the server's
resident memory at the start, its peak and after (lowest over 2 s), the slowest of the
/healthz checks a second client made every 50 ms meanwhile, and how many batches the
run in progress trained during the attack (it must keep training). The bounds the
tests hold these to: peak under 800 MB, back within 50 MB, health within 100 ms.

    python bench/bench_hostile.py [--data-dir DIR] [--repeats 3]

The hostile files and the server harness are the tests' own (tests/hostile_files.py,
tests/serve_process.py), so the figures are of the very attacks the tests make.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests"), str(HERE.parent)]

import machine  # noqa: E402

LONG_RUN = {"preset": "seed", "epochs": 400, "train_size": 1000}
JSON = {"Content-Type": "application/json"}
OCTETS = {"Content-Type": "application/octet-stream"}


def upload(name, build):
    return name, "POST", "/api/model", build, OCTETS


def json_body(name, path, text):
    return name, "POST", path, lambda: text.encode(), JSON


def attacks():
    import hostile_files as hostile
    return [
        upload("upload: deflate bomb, 1.9 GiB in 1.9 MB", hostile.deflate_bomb),
        upload("upload: bzip2 member, 2 GiB in 1.8 KB", hostile.bzip2_bomb),
        upload("upload: two bzip2 members", lambda: hostile.bzip2_bomb(2)),
        upload("upload: spec of 20 dense layers of 4096", hostile.wide_dense_spec_file),
        upload("upload: .npy header of 10^12 elements", hostile.huge_array_header),
        upload("upload: spec nested 30,000 deep", hostile.nested_spec_file),
        upload("upload: 5000-digit integer in the spec", hostile.long_integer_spec_file),
        upload("upload: weights near 1e38", hostile.overflowing_weights),
        upload("upload: a valid model during a run", hostile.small_model_bytes),
        json_body("predict: width 1e309", "/api/predict", '{"pixels":"AAAA","width":1e309}'),
        json_body("runs: learning_rate NaN", "/api/runs", '{"learning_rate":NaN}'),
        json_body("hyperparameters: NaN", "/api/runs/current/hyperparameters",
                  '{"learning_rate":NaN}'),
        json_body("runs: 100,000 unknown keys (1.1 MB)", "/api/runs",
                  "{" + ",".join(f'"k{i}":{i}' for i in range(100_000)) + "}"),
        json_body("runs: filters [512, 512]", "/api/runs", '{"filters":[512,512]}'),
        json_body("runs: filters [4096, 4096]", "/api/runs", '{"filters":[4096,4096]}'),
        json_body("runs: batch_size 60000", "/api/runs", '{"batch_size":60000}'),
        ("cross-site: form POST to stop", "POST", "/api/runs/current/stop",
         lambda: b"x=1", {"Content-Type": "application/x-www-form-urlencoded",
                          "Origin": "http://attacker.example", "Sec-Fetch-Site": "cross-site"}),
        ("DNS rebinding: Host evil.example", "POST", "/api/runs/current/stop",
         lambda: b"{}", {**JSON, "Host": "evil.example"}),
    ]


def header_flood(server, seconds: float = 2.0) -> tuple[int, int]:
    """Connections each sending an endless header, for `seconds`: (connections, the
    largest number of bytes one got in before the server cut it)."""
    deadline, count, most = time.monotonic() + seconds, 0, 0
    chunk = b"X-Flood: " + b"a" * 65_000 + b"\r\n"
    while time.monotonic() < deadline:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            sent = 0
            try:
                while sent < 300 * 2**20 and time.monotonic() < deadline:
                    sock.sendall(chunk)
                    sent += len(chunk)
            except OSError:  # cut by the server: what it was meant to do
                pass
            count, most = count + 1, max(most, sent)
    return count, most


def batches(server) -> int:
    status = server.request("GET", "/api/status")[1]
    return status["epoch"] * status["steps"] + status["step"]


def measure(server, name, method, path, build, headers) -> str:
    from serve_process import Watch
    body = build()
    before = batches(server)
    with Watch(server) as watch:
        began = time.perf_counter()
        status, answer = server.send(method, path, body, headers, timeout=60)
        took = time.perf_counter() - began
        time.sleep(0.3)  # a few health checks after the answer too
    after = watch.end_rss(settle=2.0)
    trained = batches(server) - before
    detail = json.loads(answer).get("detail", "") if answer[:1] == b"{" else ""
    return (f"{name:44s} {status:4d} {1000 * took:7.1f} ms {len(answer):6d} B  "
            f"rss {watch.start_rss / 2**20:4.0f}->{watch.peak_rss / 2**20:4.0f}->"
            f"{after / 2**20:4.0f} MB  health max {1000 * max(watch.health_seconds):5.1f} ms "
            f"({len(watch.health_seconds)})  run +{trained} batches  {str(detail)[:60]}")


def main() -> None:
    machine.use_fast_blas()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    machine.add_data_argument(parser)
    machine.add_blas_argument(parser)
    parser.add_argument("--repeats", type=int, default=1, help="each attack this many times")
    args = parser.parse_args()
    machine.describe_with_load()
    from serve_process import Serve, Watch

    with tempfile.TemporaryDirectory() as tmp, \
            Serve(Path(tmp), Path(args.data_dir), "--log-level", "warning") as server:
        assert server.request("POST", "/api/runs", LONG_RUN)[0] == 201
        server.wait_until(lambda: batches(server) > 0, "the run's first batches")
        print(f"{'attack':44s} code   answer       bytes  memory (start->peak->after)   "
              f"health checks meanwhile  the run in progress")
        for _ in range(args.repeats):
            for attack in attacks():
                print(measure(server, *attack), flush=True)
            with Watch(server) as watch:
                count, most = header_flood(server)
            print(f"{'connections: endless headers, 2 s':44s} {count} connections, each cut "
                  f"after at most {most / 2**20:.1f} MB sent; rss {watch.start_rss / 2**20:.0f}"
                  f"->{watch.peak_rss / 2**20:.0f}->{watch.end_rss(2.0) / 2**20:.0f} MB, "
                  f"health max {1000 * max(watch.health_seconds):.1f} ms", flush=True)
        state = server.request("GET", "/api/status")[1]["state"]
        print(f"the run in progress after every attack: {state}")
        server.request("POST", "/api/runs/current/stop", {})
        assert server.terminate() == 0


if __name__ == "__main__":
    main()
