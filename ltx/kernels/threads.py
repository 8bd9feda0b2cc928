"""The CPU kernels' worker threads (numpy releases the GIL inside its ufuncs, so threads split the
rows across cores), per-thread scratch buffers, and the size from which a CPU kernel applies.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from ltx import backend  # noqa: F401  (ltx.backend: the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

# Below this many elements MLX's lazy kernels are as fast and keep the graph lazy.
MIN_ELEMENTS = 1 << 20


# Elements processed through every pass of a kernel while they sit in the core's cache.
BLOCK_ELEMENTS = 1 << 16


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    # numpy releases the GIL inside ufuncs and reductions, so threads split the rows across cores
    return ThreadPoolExecutor(max(1, os.cpu_count() or 1), thread_name_prefix="ltx-cpu-kernels")


def cpu_backend() -> bool:
    """Whether MLX computes on the CPU here (where these kernels replace MLX's)."""
    return mx.default_device() == mx.cpu


def applies(elements: int, minimum: int | None = None) -> bool:
    return cpu_backend() and elements >= (MIN_ELEMENTS if minimum is None else minimum)


def workers() -> int:
    """The number of worker threads the kernels split their tasks over."""
    return _pool()._max_workers


def run(fn, tasks: list) -> None:
    """fn(tasks[i:j]) on each worker thread, over contiguous slices of the task list."""
    pool = _pool()
    per = -(-len(tasks) // pool._max_workers)
    jobs = [pool.submit(fn, tasks[n : n + per]) for n in range(0, len(tasks), per)]
    for job in jobs:
        job.result()


# (thread id, name) -> that thread's buffer: every thread's buffers in one place, so that
# release_scratch frees the pool workers' too (distinct keys per thread: no lock needed under the GIL)
_scratch: dict[tuple[int, str], np.ndarray] = {}


def scratch_floats(name: str, n: int) -> np.ndarray:
    """This thread's float32 scratch buffer `name` with at least n elements (grown, never shrunk;
    pages the BLAS or numpy never touch are never resident)."""
    key = (threading.get_ident(), name)
    buf = _scratch.get(key)
    if buf is None or buf.size < n:
        buf = np.empty(n, np.float32)
        _scratch[key] = buf
    return buf


def release_scratch() -> None:
    """Free every thread's scratch buffers (the next kernel call allocates them again)."""
    _scratch.clear()


def scratch_rows(name: str, rows: int, c: int) -> np.ndarray:
    """This thread's scratch buffer `name` as a (rows, c) float32 array (kept between calls)."""
    return scratch_floats(name, rows * c)[: rows * c].reshape(rows, c)
