"""How much a bfloat16 matmul would buy on this CPU: MKL's float32 sgemm (what every CPU matmul here
runs, MLX's and ltx.kernels' attention) against MKL's bf16 x bf16 -> float32 GEMM
(cblas_gemm_bf16bf16f32, Intel AMX where the CPU has it), at the transformer's shapes. Not used by
the pipeline: the CPU backend computes in float32 (the goldens' precision); this measures the
headroom of a bf16 CPU mode. Run with .venv: `python bench/amx.py` (writes bench/amx_results.md).
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ltx import backend  # noqa: E402  (MKL before anything else)

# isort: split

import numpy as np  # noqa: E402

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
SHAPES = {  # (M, N, K, transpose B)
    "linear 6144x1024 -> 4096 (feed-forward in)": (6144, 4096, 1024, False),
    "linear 6144x4096 -> 1024 (feed-forward out)": (6144, 1024, 4096, False),
    "attention QK^T block, 256 rows x 6144 keys, Dh 128": (256, 6144, 128, True),
    "attention PV block, 256 rows x 6144 keys, Dh 128": (256, 128, 6144, False),
}


def to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (round to nearest even), as uint16."""
    u = x.view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--output", default=str(Path(__file__).resolve().parent / "amx_results.md"))
    a = ap.parse_args()
    path = backend.blas_library()
    if backend.BLAS != "mkl" or path is None:
        sys.exit("bench/amx.py needs MKL (pip install mkl) on Linux x86_64")
    lib = ctypes.CDLL(path)
    i, f, p = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    for fn in (lib.cblas_sgemm, lib.cblas_gemm_bf16bf16f32):
        fn.argtypes, fn.restype = [i, i, i, i, i, i, f, p, i, p, i, f, p, i], None
    version = ctypes.create_string_buffer(256)
    lib.MKL_Get_Version_String(version, 256)
    threads = lib.MKL_Get_Max_Threads()
    rng = np.random.default_rng(0)
    rows = []
    for name, (m, n, k, tb) in SHAPES.items():
        x = rng.standard_normal((m, k), dtype=np.float32)
        y = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        want = x.astype(np.float64) @ (y.T if tb else y).astype(np.float64)
        ldb = k if tb else n
        out = {}
        for kind, fn, xs, ys in (
            ("float32", lib.cblas_sgemm, x, y),
            ("bf16", lib.cblas_gemm_bf16bf16f32, to_bf16(x), to_bf16(y)),
        ):
            c = np.empty((m, n), np.float32)
            args = (ROW_MAJOR, NO_TRANS, TRANS if tb else NO_TRANS, m, n, k, 1.0)
            args += (xs.ctypes.data, k, ys.ctypes.data, ldb, 0.0, c.ctypes.data, n)
            fn(*args)  # warm-up
            times = []
            for _ in range(a.runs):
                t0 = time.perf_counter()
                fn(*args)
                times.append(time.perf_counter() - t0)
            err = float(np.abs(c - want).max() / np.abs(want).max())
            out[kind] = (2.0 * m * n * k / sorted(times)[len(times) // 2] / 1e9, err)
        rows.append((name, out["float32"], out["bf16"]))
        print(
            f"{name}: float32 {out['float32'][0]:.0f} GFLOP/s, bf16 {out['bf16'][0]:.0f} GFLOP/s", flush=True
        )
    amx = sorted(fl for fl in cpu_flags() if fl.startswith("amx"))
    lines = [
        "# float32 vs bfloat16 GEMM on this CPU (MKL)",
        "",
        f"Command: `python bench/amx.py --runs {a.runs}` ({time.strftime('%Y-%m-%d %H:%M')}; "
        f"{version.value.decode().strip()}, {threads} threads; CPU flags: {', '.join(amx) or 'no AMX'}).",
        "Medians after a warm-up; error = max |C - C_float64| / max |C_float64| on standard normal inputs.",
        "",
        "| shape | float32 sgemm | bf16 GEMM | bf16 / float32 speed | float32 error | bf16 error |",
        "|---|---|---|---|---|---|",
    ]
    for name, (g32, e32), (g16, e16) in rows:
        lines.append(
            f"| {name} | {g32:.0f} GFLOP/s | {g16:.0f} GFLOP/s | {g16 / g32:.2f}x | {e32:.1e} | {e16:.1e} |"
        )
    Path(a.output).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
