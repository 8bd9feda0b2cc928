"""MKL against numpy's OpenBLAS as the library of ltx.kernels' conv GEMMs (ltx.kernels.blas.gemm), on
this machine, alternated in one process so that both see the same machine:

1. single GEMMs at the conv kernels' shapes (both cores inside each call, as the kernels call them),
   C (M x N) += A (M x K) B^T: GFLOP/s of each library;
2. the real-width VAE-side components with every conv GEMM on one library or the other (the video
   decoder untiled, the upsampler, the audio decoder, the vocoder).

Needs the random real-width weights and inputs bench/vae_bench.py writes (run it once first):

    .venv/bin/python bench/gemm_ab.py              # ~5 min; --no-decode skips the video decoder
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402  (bench/, the script's own directory)

from ltx.kernels import blas as cpu_blas  # noqa: E402  (loads MKL before mlx)

# isort: split

import numpy as np  # noqa: E402

# (what, M, N, K): the video decoder's taps GEMMs per level (rows of the padded grid of the bench
# video, K = N = channels), the upsampler's frame GEMMs (K = 9 x 1,024), the vocoder's first two
# levels, and a square one and a transformer linear layer for scale. The two im2col rows ask whether
# a deeper K would pay for an im2col copy at 128 channels (it would have to beat K = C by more than
# the copy costs)
SHAPES = [
    ("decoder taps, 128 ch", 11 * 66 * 98, 128, 128),
    ("the same as a width im2col, K = 3 x 128", 11 * 66 * 98, 128, 3 * 128),
    ("the same as a spatial im2col, K = 9 x 128", 11 * 66 * 98, 128, 9 * 128),
    ("decoder taps, 256 ch", 7 * 34 * 50, 256, 256),
    ("decoder taps, 512 ch", 5 * 18 * 26, 512, 512),
    ("upsampler frame GEMM", 2 * 8 * 12, 1024, 9 * 1024),
    ("vocoder taps, 512 ch", 606, 512, 512),
    ("vocoder taps, 256 ch", 3030, 256, 256),
    ("square 2048", 2048, 2048, 2048),
    ("linear 1024 -> 4096, 6,144 rows", 6144, 4096, 1024),
]


def gemm_rows(libs: dict, runs: int, blocks: bool = False) -> list[tuple[str, dict[str, float]]]:
    rng = np.random.default_rng(0)
    rows = []
    for what, m, n, k in SHAPES:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((n, k), dtype=np.float32)
        c = np.zeros((m, n), np.float32)
        reps = max(1, int(2e9 // (2 * m * n * k)))  # ~2 GFLOP a timing
        times = {name: [] for name in libs}
        # alternated call by call, or (blocks) all of one library's rounds, a pause, then the other's
        order = (
            [(i, n) for n in libs for i in range(runs + 1)]
            if blocks
            else [(i, n) for i in range(runs + 1) for n in libs]
        )
        for i, name in order:
            g = libs[name]
            if blocks and i == 0:
                time.sleep(1.0)  # the other library's idle threads stop spinning
            t0 = time.perf_counter()
            for _ in range(reps):
                g.sgemm(
                    cpu_blas.ROW_MAJOR, cpu_blas.NO_TRANS, cpu_blas.TRANS, m, n, k, 1.0,
                    a.ctypes.data, k, b.ctypes.data, k, 1.0, c.ctypes.data, n,
                )  # fmt: skip
            if i:
                times[name].append((time.perf_counter() - t0) / reps)
        rows.append(
            (
                f"{what} ({m}x{n}x{k})",
                {name: 2 * m * n * k / statistics.median(t) / 1e9 for name, t in times.items()},
            )
        )
    return rows


def main() -> None:
    ap = common.vae_ab_parser(__doc__)
    ap.add_argument("--no-decode", action="store_true", help="skip the video decoder (~8 s a call)")
    ap.add_argument("--gemms-only", action="store_true", help="only the GEMM rows")
    ap.add_argument(
        "--blocks", action="store_true", help="GEMM rows: each library's rounds in one block, not alternated"
    )
    a = ap.parse_args()
    libs = {name: cpu_blas.library(name) for name in ("mkl", "openblas")}
    missing = [name for name, g in libs.items() if g is None]
    if missing:
        raise SystemExit(f"needs both libraries; not loaded here: {', '.join(missing)}")
    components = {} if a.gemms_only else common.vae_components(Path(a.cache), decode=not a.no_decode)
    print(f"{common.machine()}; auto picks {cpu_blas.describe()}.\n")
    how = "rounds in one block per library, 1 s apart" if a.blocks else "interleaved rounds"
    print(f"GEMMs, C += A B^T, both cores: GFLOP/s, medians of {a.runs} {how} after a warm-up.\n")
    print("| GEMM (M x N x K) | MKL | OpenBLAS | OpenBLAS / MKL time |")
    print("|---|---:|---:|---:|")
    for what, r in gemm_rows(libs, a.runs, a.blocks):
        print(f"| {what} | {r['mkl']:.0f} | {r['openblas']:.0f} | {r['mkl'] / r['openblas']:.2f} |")
    if a.gemms_only:
        return
    print(
        f"\nComponents, every conv GEMM on one library: medians of {a.runs} interleaved pairs after a warm-up, seconds.\n"
    )
    mkl, openblas = libs["mkl"], libs["openblas"]
    common.conv_gemm_ab(
        components, {"MKL": lambda: mkl, "OpenBLAS": lambda: openblas}, a.runs, ("OpenBLAS", "MKL")
    )


if __name__ == "__main__":
    main()
