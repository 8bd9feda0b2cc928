"""What packing K and V once per head buys the blocked CPU attention (ltx.kernels): the two
GEMMs of one head's blocks of query rows (S = q K^T, then P V) at the benchmark's shapes (6,144 keys,
head size 128), MKL single-threaded in each worker thread as there, with cblas_sgemm (which packs K
or V again on every call) against cblas_sgemm_compute on K and V packed once with cblas_sgemm_pack
(what ltx.kernels does; the packing is counted). On one core, and on every core at once (one
head each, as the attention's thread pool runs them), where the repacking's memory traffic is shared.
Run with .venv: `python bench/gemm_pack.py`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ltx.kernels import blas  # noqa: E402  (loads MKL before anything else)

# isort: split

import numpy as np  # noqa: E402

ROW_MAJOR, NO_TRANS, TRANS, B_MATRIX, PACKED = 101, 111, 112, 162, 151


def head(blas, q, k, v, rows: int, packed: tuple | None) -> float:
    """Seconds for every block of `rows` query rows of one head: S = q K^T, then S V."""
    tq, d = q.shape
    tk = k.shape[0]
    s, o = np.empty((rows, tk), np.float32), np.empty((rows, d), np.float32)
    t0 = time.perf_counter()
    for r in range(0, tq - rows + 1, rows):
        qp = q[r].ctypes.data
        if packed is None:
            blas.sgemm(
                ROW_MAJOR, NO_TRANS, TRANS, rows, tk, d, 1.0, qp, d, k.ctypes.data, d, 0.0, s.ctypes.data, tk
            )
            blas.sgemm(
                ROW_MAJOR,
                NO_TRANS,
                NO_TRANS,
                rows,
                d,
                tk,
                1.0,
                s.ctypes.data,
                tk,
                v.ctypes.data,
                d,
                0.0,
                o.ctypes.data,
                d,
            )
        else:
            pk, pv = packed
            blas.compute(
                ROW_MAJOR, NO_TRANS, PACKED, rows, tk, d, qp, d, pk.ctypes.data, d, 0.0, s.ctypes.data, tk
            )
            blas.compute(
                ROW_MAJOR,
                NO_TRANS,
                PACKED,
                rows,
                d,
                tk,
                s.ctypes.data,
                tk,
                pv.ctypes.data,
                tk,
                0.0,
                o.ctypes.data,
                d,
            )
    return time.perf_counter() - t0


def one_head(blas, rows: int, qkv: tuple, packed: bool) -> float:
    blas.set_threads(1)  # per thread
    q, k, v = qkv
    tk, d = k.shape
    if not packed:
        return head(blas, q, k, v, rows, None)
    pk = np.empty(-(-blas.pack_size(B_MATRIX, rows, tk, d) // 4), np.float32)
    pv = np.empty(-(-blas.pack_size(B_MATRIX, rows, d, tk) // 4), np.float32)
    t0 = time.perf_counter()
    blas.pack(ROW_MAJOR, B_MATRIX, TRANS, rows, tk, d, 1.0, k.ctypes.data, d, pk.ctypes.data)
    blas.pack(ROW_MAJOR, B_MATRIX, NO_TRANS, rows, d, tk, 1.0, v.ctypes.data, d, pv.ctypes.data)
    return time.perf_counter() - t0 + head(blas, q, k, v, rows, (pk, pv))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    mkl = blas.mkl()
    if mkl is None:
        raise SystemExit("needs MKL (ltx.backend loads it from the mkl wheel)")
    cores = os.cpu_count() or 1
    pool = ThreadPoolExecutor(cores)
    rng = np.random.default_rng(0)
    heads = [
        tuple(rng.standard_normal((6144, 128), dtype=np.float32) for _ in range(3)) for _ in range(cores)
    ]
    flops_head = 4 * 6144 * 6144 * 128
    print(f"Medians of {a.runs} interleaved runs after a warm-up; GFLOP/s summed over the cores used.\n")
    print("| cores | rows per block | cblas_sgemm GFLOP/s | packed once GFLOP/s | packed / sgemm time |")
    print("|---:|---:|---:|---:|---:|")
    for n in sorted({1, cores}):
        for rows in (170, 256, 512):
            times = {False: [], True: []}
            for _ in range(a.runs + 1):  # the first of each is a warm-up
                for packed in (False, True):
                    t0 = time.perf_counter()
                    jobs = [pool.submit(one_head, blas, rows, heads[i], packed) for i in range(n)]
                    for job in jobs:
                        job.result()
                    times[packed].append(time.perf_counter() - t0)
            med = {p: statistics.median(ts[1:]) for p, ts in times.items()}
            flops = n * flops_head * (6144 // rows) * rows / 6144
            print(
                f"| {n} | {rows} | {flops / med[False] / 1e9:.0f} | {flops / med[True] / 1e9:.0f} | "
                f"{med[True] / med[False]:.2f} |"
            )


if __name__ == "__main__":
    main()
