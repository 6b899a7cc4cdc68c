"""Keeping the server's resident memory flat from one run to the next.

A run allocates and frees hundreds of megabytes of NumPy arrays in its training
thread while the event loop allocates small objects for every browser. glibc's malloc
keeps freed memory in per-thread arenas, and after a large free it raises its mmap
threshold so that arrays of up to 32 MB come from those arenas too: with 200 browsers
connected the server grew by about 60 MB a run (bench/bench_load.py), though nothing
was leaked. Two arenas, and giving freed memory back after each run, keep it flat.

glibc only (through ctypes); elsewhere these do nothing.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import logging

log = logging.getLogger("cnn_live.memory")

M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h
ARENAS = 2


@functools.cache
def _glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def limit_arenas(count: int = ARENAS) -> bool:
    """At start-up, before threads allocate: at most `count` malloc arenas. False
    where this cannot be done."""
    libc = _glibc()
    return bool(libc) and libc.mallopt(M_ARENA_MAX, count) == 1


def return_freed_memory() -> bool:
    """Give the memory freed by a finished run back to the system. False where this
    cannot be done.

    A collection first: a run's arrays caught in a reference cycle (a trainer, its
    callbacks and events refer to each other) are otherwise freed only when the
    collector happens to run, and the trim comes too early for them: CI saw one run in
    a few end ~30 MB high (MNIST's test images as float32 are 31 MB)."""
    gc.collect()
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)  # returns whether it could release anything: either is fine
    return True
