"""This machine's float32 GEMM peak, measured: a 4,096^3 sgemm on every core, on each BLAS this
project can run its GEMMs on (MKL through MLX's matmul, numpy's OpenBLAS), the faster one's median
of --runs after a warm-up. bench/run.py reports the transformer's GFLOP/s as a fraction of it: no
BLAS on the machine multiplies faster in practice. Run with .venv: `python bench/peak.py`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from ltx import backend  # noqa: E402  (MKL before mlx)
from ltx.kernels import blas as cpu_blas

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402


def gflops(fn, n: int, runs: int) -> float:
    times = []
    for _ in range(runs + 1):  # the first is a warm-up
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / common.median(times[1:]) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", type=int, default=4096)
    a = ap.parse_args()
    n = a.size
    rng = np.random.default_rng(0)
    x, y = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    found = {}
    if backend.BLAS == "mkl":
        xm, ym = mx.array(x), mx.array(y)
        mx.eval(xm, ym)
        found["MKL (MLX matmul)"] = gflops(lambda: mx.eval(xm @ ym), n, a.runs)
    if cpu_blas.library("openblas") is not None:
        found["numpy's OpenBLAS"] = gflops(lambda: x @ y, n, a.runs)
    if not found:
        found["MLX matmul"] = gflops(lambda: mx.eval(mx.array(x) @ mx.array(y)), n, a.runs)
    best = max(found, key=found.get)
    for name, g in found.items():
        print(f"{n}^3 sgemm, {name}: {g:.0f} GFLOP/s")
    common.emit({"gflops": found[best], "blas": best, "all": found})


if __name__ == "__main__":
    main()
