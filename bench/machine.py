"""What every benchmark does first: run as users run the code, and say on what.

Some of these machines set OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE for old OpenBLAS
builds; they slow a current NumPy down. `use_fast_blas()` restarts the process
without them (before NumPy loads; child processes inherit the cleaned environment)
unless --keep-blas-env is given, and `describe()` prints the BLAS kernel in use.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

SLOW_BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def use_fast_blas() -> None:
    if any(v in os.environ for v in SLOW_BLAS_VARIABLES) and "--keep-blas-env" not in sys.argv:
        env = {k: v for k, v in os.environ.items() if k not in SLOW_BLAS_VARIABLES}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def add_blas_argument(parser) -> None:
    """The flag `use_fast_blas` looks for, so that --help shows it."""
    parser.add_argument("--keep-blas-env", action="store_true",
                        help="keep OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE as they are")


def add_data_argument(parser) -> None:
    """--data-dir: CNN_LIVE_DATA_DIR, else the shared MNIST beside the checkout if there."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
    parser.add_argument("--data-dir", default=os.environ.get("CNN_LIVE_DATA_DIR")
                        or (str(shared) if shared.is_dir() else None))


def describe_with_load() -> None:
    """`describe()`, and the load average: other busy processes skew any figure."""
    describe()
    print(f"load average before the runs: {os.getloadavg()[0]:.1f} "
          "(other busy processes skew the figures)", flush=True)


def describe(prefix: str = "") -> None:
    import numpy as np
    print(f"{prefix}python {platform.python_version()}, numpy {np.__version__}, "
          f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}", flush=True)
    try:
        from threadpoolctl import threadpool_info
        for pool in threadpool_info():
            print(f"{prefix}  {pool.get('internal_api')}: {pool.get('version')}, "
                  f"kernel {pool.get('architecture')}, {pool.get('num_threads')} threads",
                  flush=True)
    except ImportError:
        print(f"{prefix}  (pip install threadpoolctl to see the BLAS kernel)", flush=True)
    for name in SLOW_BLAS_VARIABLES:
        print(f"{prefix}  {name}={os.environ.get(name, '(unset)')}", flush=True)
