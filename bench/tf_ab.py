"""One transformer forward on the CPU with one of ltx's kernels on or off, alternated in one process
so that both variants see the same machine: the benchmark's transformer (bench/tf_prepare.py's
inputs and weights). Medians of --runs pairs after a warm-up, seconds per forward; the ratio is the
median of the per-pair ratios.

--what norms: the block norms, their AdaLN modulation and the q/k norms without RoPE in
  ltx.kernels.norms.rms_norm_modulate (`numpy`, what runs) against MLX's mx.fast.rms_norm plus the
  compiled modulation (`mlx`, what ran before, and what GPUs run).
--what linear: the large linear layers as ltx.kernels.linear.linear on numpy's OpenBLAS (`openblas`,
  what runs on non-Intel CPUs) against MLX's own matmul on MKL (`mlx`).
--what softmax: the blocked attention's softmax passes with its scores in base 2 (numpy's exp2) and
  its row sums as an MKL matrix-vector product (`base 2`, what runs: attention_kernels.SOFTMAX_BASE2)
  against numpy's exp and sum (`exp`); first it times the passes alone on one block of scores.
--what keys: the blocked attention on blocks of rows x attention_kernels.KEY_BLOCK keys (`key blocks`,
  what runs) against blocks of whole rows of keys (`whole rows`: ~170 rows x 6,144 keys, what ran
  before); first it times the video self-attention alone.
--what cache: MLX's buffer cache on the CPU at ltx.backend's limit (`cache`, what runs: a fraction
  of the machine's memory) against MLX's default 32 MB (`32 MB`), which returns every larger freed
  buffer to the OS; each timed forward follows an untimed one with the same limit.
--what floor: the video self-attention alone, its shifted scores raised to attention_kernels.EXP2_FLOOR
  before numpy's exp2 or not (no forward pairs).
--what attention_blas: the blocked attention's GEMMs on numpy's OpenBLAS, single-threaded sgemm
  calls from each worker (`openblas`, what runs where the conv GEMMs use OpenBLAS: non-Intel CPUs),
  against MKL's packed GEMMs (`mkl`, what runs on Intel CPUs, and what ran everywhere before); first
  it times the video self-attention alone.

    .venv/bin/python bench/tf_prepare.py --inputs /tmp/tf.npz --weights /tmp/tf.safetensors --layers 1
    .venv/bin/python bench/tf_ab.py --what norms --inputs /tmp/tf.npz --weights /tmp/tf.safetensors --layers 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ltx import backend  # noqa: E402  (MKL before mlx)

# isort: split

import common  # noqa: E402
import mlx.core as mx  # noqa: E402

from ltx.kernels import attention as attention_kernels
from ltx.kernels import blas
from ltx.kernels import blas as cpu_blas
from ltx.kernels import linear as linear_kernels
from ltx.model import attention  # noqa: E402
from ltx.model import block as transformer_block


def norms():
    """(variants, use, restore, labels): the numpy norms against MLX's."""
    tb = transformer_block
    variants = {
        "numpy": (tb._rms, tb._rms_modulate, attention._norm_any),
        "mlx": (
            lambda x, eps: mx.fast.rms_norm(x, None, eps),
            lambda x, eps, scale, shift: tb._modulate(mx.fast.rms_norm(x, None, eps), scale, shift),
            lambda compiled, x, weight, eps: compiled(x, weight),
        ),
    }

    def use(fns):
        tb._rms, tb._rms_modulate, attention._norm_any = fns

    labels = {"numpy": "numpy (rms_norm_modulate)", "mlx": "mlx (mx.fast.rms_norm + compiled modulation)"}
    return variants, use, lambda: use(variants["numpy"]), labels


def linear():
    """(variants, use, restore, labels): the linear layers on numpy's OpenBLAS against MLX's matmul."""
    if cpu_blas.library("openblas") is None:
        raise SystemExit("numpy's OpenBLAS is not loaded here")
    real, gemm = linear_kernels.linear_applies, blas.gemm
    blas.gemm = lambda: cpu_blas.library("openblas")  # the linear kernel's library, on any CPU

    def use(applies):
        linear_kernels.linear_applies = applies

    def restore():
        linear_kernels.linear_applies, blas.gemm = real, gemm

    labels = {"openblas": "linear_kernels.linear (numpy's OpenBLAS)", "mlx": "MLX matmul (MKL)"}
    return {"openblas": real, "mlx": lambda x, w: False}, use, restore, labels


def _mean_ms(fn, runs: int) -> float:
    """Milliseconds per call of fn: the mean of `runs` calls after one warm-up call."""
    import time

    fn()
    t0 = time.perf_counter()
    for _ in range(runs):
        fn()
    return (time.perf_counter() - t0) / runs * 1e3


def softmax_passes(rows: int = 170, keys: int = 6144, runs: int = 200) -> None:
    """The passes alone on one block of scores (170 rows x 6,144 keys: the blocked attention's block
    when this was measured, before attention_kernels.KEY_BLOCK): numpy's exp against its exp2, numpy's row
    sum against MKL's sgemv with ones."""

    import numpy as np

    blas = cpu_blas.mkl()
    s = (np.random.default_rng(0).random((rows, keys), np.float32) - 0.5) * 20
    out, ones, total = np.empty_like(s), np.ones(keys, np.float32), np.empty(rows, np.float32)

    def gemv():
        blas.sgemv(
            cpu_blas.ROW_MAJOR, cpu_blas.NO_TRANS, rows, keys, 1.0, s.ctypes.data, keys, ones.ctypes.data,
            1, 0.0, total.ctypes.data, 1,
        )  # fmt: skip

    def ms(fn) -> float:
        return _mean_ms(fn, runs)

    blas.set_threads(1)  # as in the attention's worker threads
    exp, exp2 = ms(lambda: np.exp(s, out=out)), ms(lambda: np.exp2(s, out=out))
    rowsum, sgemv = ms(lambda: s.sum(axis=1)), ms(gemv)
    print(f"One {rows} x {keys} block, one thread, ms (means of {runs}):\n")
    print("| pass | numpy | instead | instead / numpy |\n|---|---:|---:|---:|")
    print(f"| exp -> exp2 | {exp:.3f} | {exp2:.3f} | {exp2 / exp:.2f} |")
    print(f"| row sums -> MKL sgemv with ones | {rowsum:.3f} | {sgemv:.3f} | {sgemv / rowsum:.2f} |\n")


def softmax():
    """(variants, use, restore, labels): the base-2 softmax passes against exp and numpy's sum."""
    if cpu_blas.mkl() is None:
        raise SystemExit("the blocked attention needs MKL, which is not loaded here")
    softmax_passes()

    def use(on):
        attention_kernels.SOFTMAX_BASE2 = on

    labels = {"base 2": "exp2 + MKL sgemv row sums", "exp": "exp + numpy's sum"}
    return {"base 2": True, "exp": False}, use, lambda: use(True), labels


SCORES = {"bounded: no max shift": 1.0, "shifted by the running max": 3.0}


def attention_alone(
    use, variants: dict, scores: dict = SCORES, runs: int = 6, heads: int = 8, tokens: int = 6144
) -> None:
    """The video self-attention alone (8 heads x 6,144 tokens x 128, random q/k/v laid out as the
    projections lay them out), each variant in turn, runs pairs after a warm-up, for each of
    `scores` (label: the scale of q and k): by default with scores whose bound lets exp skip the max
    shift (q, k, v standard normal) and with scores that need it (q and k 3x larger: the running max
    per block of keys)."""
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    d = 128

    def heads_of(scale):
        x = rng.standard_normal((1, tokens, heads * d), dtype=np.float32) * scale
        return mx.array(x).reshape(1, tokens, heads, d).transpose(0, 2, 1, 3)

    print(f"The video self-attention alone ({heads} heads x {tokens} tokens x {d}), medians of {runs} "
          "pairs after a warm-up, seconds:\n")  # fmt: skip
    first, second = variants
    print(f"| scores | {first} | {second} | {first} / {second} (per-pair median, range) |")
    print("|---|---:|---:|---:|")
    for label, scale in scores.items():
        q, k, v = heads_of(scale), heads_of(scale), heads_of(1.0)
        mx.eval(q, k, v)
        times = {name: [] for name in variants}
        for n in range(runs + 1):
            for name, value in variants.items():
                use(value)
                t0 = time.perf_counter()
                mx.eval(attention_kernels._attention_blocked(q, k, v, d**-0.5, None))
                if n:  # the first of each is a warm-up
                    times[name].append(time.perf_counter() - t0)
        ratios = [x / y for x, y in zip(times[first], times[second], strict=True)]
        print(f"| {label} | {statistics.median(times[first]):.3f} | {statistics.median(times[second]):.3f} "
              f"| {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) |")  # fmt: skip
    print()


def keys():
    """(variants, use, restore, labels): blocks of KEY_BLOCK keys against blocks of whole rows."""
    if cpu_blas.mkl() is None:
        raise SystemExit("the blocked attention needs MKL, which is not loaded here")
    now = attention_kernels.KEY_BLOCK, attention_kernels.SCORE_BLOCK_ELEMENTS

    def use(blocks):
        attention_kernels.KEY_BLOCK, attention_kernels.SCORE_BLOCK_ELEMENTS = blocks

    attention_alone(use, {"key blocks": now, "whole rows": (1 << 30, 1 << 20)})
    use(now)

    labels = {
        "key blocks": f"{now[0]} keys x {now[1] // now[0]} rows per block",
        "whole rows": "whole rows of keys, 2^20 scores per block",
    }
    return {"key blocks": now, "whole rows": (1 << 30, 1 << 20)}, use, lambda: use(now), labels


def attention_blas():
    """(variants, use, restore, labels): the blocked attention on numpy's OpenBLAS against MKL."""
    if cpu_blas.mkl() is None or cpu_blas.serial_openblas() is None:
        raise SystemExit("this needs both MKL and numpy's OpenBLAS with its thread control")
    real = attention_kernels.library

    def use(name):
        attention_kernels.library = lambda: name

    def restore():
        attention_kernels.library = real

    variants = {"openblas": "openblas", "mkl": "mkl"}
    try:
        attention_alone(use, variants)
    finally:
        restore()
    labels = {
        "openblas": "numpy's OpenBLAS (single-threaded sgemm calls per worker)",
        "mkl": "MKL (K and V packed once per head)",
    }
    return variants, use, restore, labels


def allocation_times(limits: dict, runs: int = 6) -> None:
    """One 100 MB MLX allocation (6,144 x 4,096 float32 zeros, evaluated, then freed) under each cache
    limit, medians of runs after a first one: freed back to the OS (page-faulted in again) or reused."""
    import time

    print(f"One 6,144 x 4,096 float32 allocation (100 MB), ms (medians of {runs}):\n")
    print("| cache limit | allocate + fill |\n|---|---:|")
    for label, limit in limits.items():
        mx.set_cache_limit(limit)
        times = []
        for _ in range(runs + 1):
            t0 = time.perf_counter()
            x = mx.zeros((6144, 4096))
            mx.eval(x)
            times.append(time.perf_counter() - t0)
            del x
        print(f"| {label} | {statistics.median(times[1:]) * 1e3:.1f} |")
    print()


def cache():
    """(variants, use, restore, labels): ltx.backend's MLX cache limit against MLX's default; first
    the cost of one large allocation under each."""
    now = backend.cpu_cache_bytes()
    allocation_times({f"{now >> 20} MB (ltx.backend)": now, "32 MB (MLX's default)": 1 << 25})

    def use(limit):
        mx.set_cache_limit(limit)  # (lowering it frees cached buffers down to the new limit)

    labels = {
        "cache": f"cache limit {now >> 20} MB (ltx.backend)",
        "32 MB": "cache limit 32 MB (MLX's default)",
    }
    return {"cache": now, "32 MB": 1 << 25}, use, lambda: use(now), labels


def exp2_lanes(rows: int = 1024, keys: int = 512, runs: int = 50) -> None:
    """numpy's float32 exp2 on one block of the blocked attention's scores (1,024 rows x 512 keys):
    standard normal scores, scores of which ~7% give subnormal results, the same raised to
    EXP2_FLOOR first (the pass included), and hidden keys (-3.4e38)."""

    import numpy as np

    rng = np.random.default_rng(0)
    low = rng.standard_normal((rows, keys), dtype=np.float32) * 36 - 80
    blocks = {
        "standard normal": rng.standard_normal((rows, keys), dtype=np.float32),
        "~7% subnormal results": low,
        "hidden keys": np.full((rows, keys), np.finfo(np.float32).min, np.float32),
    }
    out = np.empty((rows, keys), np.float32)

    def ms(fn) -> float:
        return _mean_ms(fn, runs)

    floor = np.float32(attention_kernels.EXP2_FLOOR)
    print(f"numpy's exp2 on one {rows} x {keys} block, one thread, ms (means of {runs}):\n")
    print("| scores | exp2 |\n|---|---:|")
    for label, s in blocks.items():
        print(f"| {label} | {ms(lambda s=s: np.exp2(s, out=out)):.3f} |")
    raised = lambda: np.exp2(np.maximum(low, floor, out=out), out=out)  # noqa: E731
    print(f"| ~7% subnormal results, raised to the floor first | {ms(raised):.3f} |\n")


def floor():
    """The attention alone with the shifted scores raised to attention_kernels.EXP2_FLOOR before exp2
    (`floor`, what runs) and not (`no floor`: the same pass with -inf, so only the slow lanes of
    numpy's exp2 differ), on scores that need the shift: q and k 3x and 5x larger (a peaked softmax).
    No forward pairs: the benchmark's weights keep every score bounded."""
    exp2_lanes()
    now = attention_kernels.EXP2_FLOOR

    def use(value):
        attention_kernels.EXP2_FLOOR = value

    variants = {"floor": now, "no floor": -float("inf")}
    try:
        attention_alone(use, variants, {"q, k 3x: shifted": 3.0, "q, k 5x: shifted, peaked": 5.0})
    finally:
        use(now)
    return None, use, lambda: use(now), {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.transformer_args(ap, layers=1)
    ap.add_argument(
        "--what",
        choices=("norms", "linear", "softmax", "keys", "floor", "cache", "attention_blas"),
        required=True,
    )
    ap.add_argument("--runs", type=int, default=8)
    a = ap.parse_args()
    variants = {
        "norms": norms,
        "linear": linear,
        "softmax": softmax,
        "keys": keys,
        "floor": floor,
        "cache": cache,
        "attention_blas": attention_blas,
    }[a.what]
    variants, use, restore, labels = variants()
    if variants is None:  # that comparison printed its own table
        return
    try:
        # the cache fills over a run's steps: one untimed forward after each switch
        times = common.forward_pairs(a, variants, use, settle=1 if a.what == "cache" else 0)
    finally:
        restore()
    first, second = variants
    med = {name: statistics.median(t) for name, t in times.items()}
    ratios = [x / y for x, y in zip(times[first], times[second], strict=True)]
    print(f"{common.machine()}.\n")
    print(
        f"Medians of {a.runs} interleaved pairs after a warm-up, {a.layers} layer(s), seconds per forward.\n"
    )
    print(f"| {a.what} | forward | {first} / {second} (per-pair median, range) |")
    print("|---|---:|---:|")
    print(f"| {labels[first]} | {med[first]:.3f} | {statistics.median(ratios):.2f} "
          f"({min(ratios):.2f}-{max(ratios):.2f}) |")  # fmt: skip
    print(f"| {labels[second]} | {med[second]:.3f} | |")


if __name__ == "__main__":
    main()
