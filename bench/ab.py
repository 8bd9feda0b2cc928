"""In-process A/B experiments of the CPU kernels: `python bench/ab.py --what NAME`. Each alternates
the variants of one kernel choice in one process (`spin`: one process per variant), so that every
variant sees the same machine, whose speed drifts by more than the differences within minutes.
Medians of --runs pairs (rounds: one call of each variant) after a warm-up; a ratio column is the
median of the per-pair ratios where it gives a range. Results, under each command:
bench/ab_results.md. The experiments and their default --runs are listed below.

What they run on:
- norms, linear, softmax, keys, tf_cache, attention_blas (and spin, given --inputs and --weights):
  the benchmark's transformer on bench/tf_prepare.py's inputs and weights (--layers as prepared),
      .venv/bin/python bench/tf_prepare.py --inputs /tmp/tf.npz --weights /tmp/tf.safetensors --layers 1
      .venv/bin/python bench/ab.py --what norms --inputs /tmp/tf.npz --weights /tmp/tf.safetensors --layers 1
- winograd, tile, wide1d, taps, vocoder, vae_cache, frames, gemm and spin: the random real-width
  VAE-side weights and inputs bench/vae_bench.py writes (--cache; run it once first);
- floor, activation, layout, pack and `gemm --gemms-only`: inputs of their own.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ENVIRON = dict(os.environ)  # before ltx sets its thread variables: spin's processes start from it

import common  # noqa: E402  (bench/, the script's own directory; ltx before numpy)

from ltx import backend  # noqa: E402  (MKL before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from ltx import ops  # noqa: E402
from ltx.kernels import activations, blas, conv  # noqa: E402
from ltx.kernels import attention as attention_kernels  # noqa: E402
from ltx.kernels import linear as linear_kernels  # noqa: E402
from ltx.kernels import winograd as winograd_kernels  # noqa: E402

# name -> (function of the parsed arguments, its default --runs, its help: the function's docstring)
EXPERIMENTS: dict[str, tuple[Callable, int, str]] = {}


def experiment(runs: int):
    """Register the function as `--what <its name>`, with `runs` as its default --runs."""

    def register(fn):
        EXPERIMENTS[fn.__name__] = (fn, runs, inspect.cleandoc(fn.__doc__))
        return fn

    return register


# ---- shared pieces ----------------------------------------------------------------------------------
def setting(*targets: tuple[object, str]):
    """(use, restore) for the attributes `targets` ((object, name) pairs): use(value) sets the one
    target, or with several use(values) sets each to its value; restore() puts back what they held."""
    saved = [getattr(obj, name) for obj, name in targets]

    def put(values) -> None:
        for (obj, name), value in zip(targets, values if len(targets) > 1 else [values], strict=True):
            setattr(obj, name, value)

    return put, lambda: put(saved if len(targets) > 1 else saved[0])


def table(columns: list[str], rows: list[list[str]]) -> None:
    """A markdown table: the first column left-aligned, the others right-aligned."""
    print("| " + " | ".join(columns) + " |\n|---|" + "---:|" * (len(columns) - 1))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def pair_ratios(times: dict[str, list[float]], first: str, second: str) -> str:
    """The per-pair ratios first / second of common.alternate's times: 'median (min-max)'."""
    r = [x / y for x, y in zip(times[first], times[second], strict=True)]
    return f"{statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f})"


def need(ok: bool, what: str) -> None:
    if not ok:
        raise SystemExit(f"this experiment needs {what}")


def mean_ms(fn, runs: int) -> float:
    """Milliseconds per call of fn: the mean of `runs` calls after one warm-up call."""
    fn()
    t0 = time.perf_counter()
    for _ in range(runs):
        fn()
    return (time.perf_counter() - t0) / runs * 1e3


def vae_components(a, only: tuple[str, ...] | None = None) -> dict:
    """common.vae_components on --cache (without the video decoder with --no-decode), those in `only`."""
    need(blas.gemm() is not None, "MKL or numpy's OpenBLAS (ltx.kernels.blas.gemm found neither)")
    decode = not a.no_decode and (only is None or "vae_decode" in only)
    fns = common.vae_components(Path(a.cache), decode=decode)
    return fns if only is None else {name: fn for name, fn in fns.items() if name in only}


def vae_ab(a, fns: dict, variants: dict, use, restore, base: str, label: str = "component", ms: bool = False):
    """common.interleaved_ab over fns, then one row per fn: each variant's median (seconds, or with
    ms milliseconds), and every other variant's / base's."""
    try:
        med = common.interleaved_ab(fns, variants, use, a.runs)
    finally:
        restore()
    unit, scale, digits = ("milliseconds", 1e3, 2) if ms else ("seconds", 1.0, 3)
    print(f"Medians of {a.runs} interleaved rounds (one call of each variant) after a warm-up, {unit}.\n")
    others = [v for v in variants if v != base]
    head = f"{others[0]} / {base}" if len(others) == 1 else f"/ {base}"
    rows = [
        [
            name,
            *(f"{m[v] * scale:.{digits}f}" for v in variants),
            ", ".join(f"{m[v] / m[base]:.2f}" for v in others),
        ]
        for name, m in med.items()
    ]
    table([label, *variants, head], rows)


def need_transformer(a) -> None:
    if not (a.inputs and a.weights):
        raise SystemExit(f"--what {a.what} needs --inputs and --weights (bench/tf_prepare.py writes them)")


def forward_ab(a, variants: dict, use, restore, labels: dict, settle: int = 0) -> None:
    """The benchmark transformer's forward with each of two variants (common.forward_pairs): a table of
    the medians and the per-pair ratio first / second."""
    try:
        times = common.forward_pairs(a, variants, use, settle)
    finally:
        restore()
    first, second = variants
    print(
        f"Medians of {a.runs} interleaved pairs after a warm-up, {a.layers} layer(s), seconds per forward.\n"
    )
    table(
        [a.what, "forward", f"{first} / {second} (per-pair median, range)"],
        [
            [labels[first], f"{statistics.median(times[first]):.3f}", pair_ratios(times, first, second)],
            [labels[second], f"{statistics.median(times[second]):.3f}", ""],
        ],
    )


SCORES = {"bounded: no max shift": 1.0, "shifted by the running max": 3.0}


def attention_alone(variants: dict, use, scores: dict = SCORES, runs: int = 6, heads: int = 8) -> None:
    """The video self-attention alone (8 heads x 6,144 tokens x 128, random q/k/v laid out as the
    projections lay them out) through the blocked attention, each of two variants in turn, runs pairs
    after a warm-up, for each of `scores` (label: the scale of q and k): by default scores whose bound
    lets exp skip the max shift (q, k, v standard normal) and scores that need it (q and k 3x larger:
    the running max per block of keys)."""
    rng, tokens, d = np.random.default_rng(0), 6144, 128

    def heads_of(scale):
        x = rng.standard_normal((1, tokens, heads * d), dtype=np.float32) * scale
        return mx.array(x).reshape(1, tokens, heads, d).transpose(0, 2, 1, 3)

    first, second = variants
    rows = []
    for label, scale in scores.items():
        q, k, v = heads_of(scale), heads_of(scale), heads_of(1.0)
        mx.eval(q, k, v)
        fn = lambda q=q, k=k, v=v: attention_kernels._attention_blocked(q, k, v, d**-0.5, None)  # noqa: E731
        times = common.alternate(fn, variants, use, runs)
        med = [f"{statistics.median(times[name]):.3f}" for name in variants]
        rows.append([label, *med, pair_ratios(times, first, second)])
    print(f"The video self-attention alone ({heads} heads x {tokens} tokens x {d}), medians of {runs} "
          "pairs after a warm-up, seconds:\n")  # fmt: skip
    table(["scores", first, second, f"{first} / {second} (per-pair median, range)"], rows)


# ---- the transformer ---------------------------------------------------------------------------------
@experiment(runs=8)
def norms(a):
    """The transformer's block norms, their AdaLN modulation and the q/k norms without RoPE
    (ops.rms_norm_modulate, ops.rms_norm) as ltx.kernels.norms' numpy passes (`numpy`, what runs)
    against MLX's mx.fast.rms_norm plus the compiled modulation (`mlx`, what ran before, and what
    GPUs run)."""
    need_transformer(a)

    def mlx_modulate(x, eps, scale=None, shift=None):
        xn = mx.fast.rms_norm(x, None, eps)
        return xn if scale is None else ops.modulate(xn, scale, shift)

    use, restore = setting((ops, "rms_norm_modulate"), (ops, "rms_norm"))
    variants = {
        "numpy": (ops.rms_norm_modulate, ops.rms_norm),
        "mlx": (mlx_modulate, lambda x, weight, eps: ops.compiled_norms(eps)[0](x, weight)),
    }
    labels = {"numpy": "numpy (kernels.norms)", "mlx": "mlx (mx.fast.rms_norm + compiled modulation)"}
    forward_ab(a, variants, use, restore, labels)


@experiment(runs=8)
def linear(a):
    """The transformer's large linear layers as ltx.kernels.linear.linear on numpy's OpenBLAS
    (`openblas`, what runs on non-Intel CPUs) against MLX's own matmul on MKL (`mlx`)."""
    need_transformer(a)
    openblas = blas.library("openblas")
    need(openblas is not None, "numpy's OpenBLAS")
    use, restore = setting((linear_kernels, "linear_applies"), (blas, "gemm"))
    variants = {  # (linear_applies, the library of the linear kernel: OpenBLAS on any CPU)
        "openblas": (linear_kernels.linear_applies, lambda: openblas),
        "mlx": (lambda x, w: False, lambda: openblas),
    }
    labels = {"openblas": "kernels.linear (numpy's OpenBLAS)", "mlx": "MLX matmul (MKL)"}
    forward_ab(a, variants, use, restore, labels)


def softmax_passes(mkl, rows: int = 170, keys: int = 6144, runs: int = 200) -> None:
    """The passes alone on one block of scores (170 rows x 6,144 keys: the blocked attention's block
    when this was measured, before KEY_BLOCK), one thread: numpy's exp against its exp2, numpy's row
    sum against MKL's sgemv with ones."""
    s = (np.random.default_rng(0).random((rows, keys), np.float32) - 0.5) * 20
    out, ones, total = np.empty_like(s), np.ones(keys, np.float32), np.empty(rows, np.float32)

    def gemv():
        mkl.sgemv(
            blas.ROW_MAJOR, blas.NO_TRANS, rows, keys, 1.0, s.ctypes.data, keys, ones.ctypes.data,
            1, 0.0, total.ctypes.data, 1,
        )  # fmt: skip

    mkl.set_threads(1)  # as in the attention's worker threads
    exp, exp2 = mean_ms(lambda: np.exp(s, out=out), runs), mean_ms(lambda: np.exp2(s, out=out), runs)
    rowsum, sgemv = mean_ms(lambda: s.sum(axis=1), runs), mean_ms(gemv, runs)
    print(f"One {rows} x {keys} block, one thread, ms (means of {runs}):\n")
    table(
        ["pass", "numpy", "instead", "instead / numpy"],
        [
            ["exp -> exp2", f"{exp:.3f}", f"{exp2:.3f}", f"{exp2 / exp:.2f}"],
            ["row sums -> MKL sgemv with ones", f"{rowsum:.3f}", f"{sgemv:.3f}", f"{sgemv / rowsum:.2f}"],
        ],
    )


@experiment(runs=8)
def softmax(a):
    """The blocked attention's softmax passes with its scores in base 2 (numpy's exp2) and its row
    sums as a BLAS matrix-vector product (`base 2`, what runs: kernels.attention.SOFTMAX_BASE2) against
    numpy's exp and sum (`exp`), in the transformer's forward; first the passes alone on one block of
    scores (MKL's sgemv)."""
    need_transformer(a)
    mkl = blas.mkl()
    need(mkl is not None and attention_kernels.blocked_attention(), "MKL and the blocked attention")
    softmax_passes(mkl)
    use, restore = setting((attention_kernels, "SOFTMAX_BASE2"))
    labels = {"base 2": "exp2 + sgemv row sums", "exp": "exp + numpy's sum"}
    forward_ab(a, {"base 2": True, "exp": False}, use, restore, labels)


@experiment(runs=8)
def keys(a):
    """The blocked attention on blocks of rows x kernels.attention.KEY_BLOCK keys (`key blocks`, what
    runs) against blocks of whole rows of keys (`whole rows`: ~170 rows x 6,144 keys, what ran
    before), in the transformer's forward; first the video self-attention alone."""
    need_transformer(a)
    need(attention_kernels.blocked_attention(), "the blocked attention (MKL or numpy's OpenBLAS)")
    use, restore = setting((attention_kernels, "KEY_BLOCK"), (attention_kernels, "SCORE_BLOCK_ELEMENTS"))
    now = attention_kernels.KEY_BLOCK, attention_kernels.SCORE_BLOCK_ELEMENTS
    variants = {"key blocks": now, "whole rows": (1 << 30, 1 << 20)}
    try:
        attention_alone(variants, use)
    finally:
        restore()
    labels = {
        "key blocks": f"{now[0]} keys x {now[1] // now[0]} rows per block",
        "whole rows": "whole rows of keys, 2^20 scores per block",
    }
    forward_ab(a, variants, use, restore, labels)


@experiment(runs=8)
def attention_blas(a):
    """The blocked attention's GEMMs on numpy's OpenBLAS, single-threaded sgemm calls from each worker
    (`openblas`, what runs where the conv GEMMs use OpenBLAS: non-Intel CPUs), against MKL's packed
    GEMMs (`mkl`, what runs on Intel CPUs, and what ran everywhere before), in the transformer's
    forward; first the video self-attention alone."""
    need_transformer(a)
    need(blas.mkl() is not None and blas.serial_openblas() is not None, "MKL and numpy's OpenBLAS")
    use, restore = setting((attention_kernels, "library"))
    variants = {"openblas": lambda: "openblas", "mkl": lambda: "mkl"}
    try:
        attention_alone(variants, use)
    finally:
        restore()
    labels = {
        "openblas": "numpy's OpenBLAS (single-threaded sgemm calls per worker)",
        "mkl": "MKL (K and V packed once per head)",
    }
    forward_ab(a, variants, use, restore, labels)


def allocation_times(limits: dict, runs: int = 6) -> None:
    """One 100 MB MLX allocation (6,144 x 4,096 float32 zeros, evaluated, then freed) under each cache
    limit, medians of runs after a first one: freed back to the OS (page-faulted in again) or reused."""
    rows = []
    for label, limit in limits.items():
        mx.set_cache_limit(limit)
        times = []
        for _ in range(runs + 1):
            t0 = time.perf_counter()
            x = mx.zeros((6144, 4096))
            mx.eval(x)
            times.append(time.perf_counter() - t0)
            del x
        rows.append([label, f"{statistics.median(times[1:]) * 1e3:.1f}"])
    print(f"One 6,144 x 4,096 float32 allocation (100 MB), ms (medians of {runs}):\n")
    table(["cache limit", "allocate + fill"], rows)


@experiment(runs=8)
def tf_cache(a):
    """MLX's buffer cache on the CPU at ltx.backend's limit (`cache`, what runs: a fraction of the
    machine's memory) against MLX's default 32 MB (`32 MB`), which returns every larger freed buffer
    to the OS, in the transformer's forward; each timed forward follows an untimed one with the same
    limit (the cache fills over a run's steps). First the cost of one large allocation under each.
    (vae_cache: the same on the VAE side.)"""
    need_transformer(a)
    now = backend.cpu_cache_bytes()
    allocation_times({f"{now >> 20} MB (ltx.backend)": now, "32 MB (MLX's default)": 1 << 25})
    labels = {
        "cache": f"cache limit {now >> 20} MB (ltx.backend)",
        "32 MB": "cache limit 32 MB (MLX's default)",
    }
    forward_ab(
        a, {"cache": now, "32 MB": 1 << 25}, mx.set_cache_limit, lambda: mx.set_cache_limit(now), labels, 1
    )


def exp2_lanes(rows: int = 1024, keys: int = 512, runs: int = 50) -> None:
    """numpy's float32 exp2 on one block of the blocked attention's scores (1,024 rows x 512 keys):
    standard normal scores, scores of which ~7% give subnormal results, the same raised to
    EXP2_FLOOR first (the pass included), and hidden keys (-3.4e38)."""
    rng = np.random.default_rng(0)
    low = rng.standard_normal((rows, keys), dtype=np.float32) * 36 - 80
    blocks = {
        "standard normal": rng.standard_normal((rows, keys), dtype=np.float32),
        "~7% subnormal results": low,
        "hidden keys": np.full((rows, keys), np.finfo(np.float32).min, np.float32),
    }
    out, floor = np.empty((rows, keys), np.float32), np.float32(attention_kernels.EXP2_FLOOR)
    cells = [[label, f"{mean_ms(lambda s=s: np.exp2(s, out=out), runs):.3f}"] for label, s in blocks.items()]
    raised = lambda: np.exp2(np.maximum(low, floor, out=out), out=out)  # noqa: E731
    cells.append(["~7% subnormal results, raised to the floor first", f"{mean_ms(raised, runs):.3f}"])
    print(f"numpy's exp2 on one {rows} x {keys} block, one thread, ms (means of {runs}):\n")
    table(["scores", "exp2"], cells)


@experiment(runs=6)
def floor(a):
    """The video self-attention alone with its shifted scores raised to kernels.attention.EXP2_FLOOR
    before numpy's exp2 (`floor`, what runs) and not (`no floor`: the same pass with -inf, so only the
    slow lanes of numpy's exp2 differ), on scores that need the shift: q and k 3x and 5x larger (a
    peaked softmax); first numpy's exp2 alone on such blocks. No forward: the benchmark's weights keep
    every score bounded."""
    need(attention_kernels.blocked_attention(), "the blocked attention (MKL or numpy's OpenBLAS)")
    exp2_lanes()
    use, restore = setting((attention_kernels, "EXP2_FLOOR"))
    try:
        attention_alone(
            {"floor": attention_kernels.EXP2_FLOOR, "no floor": -float("inf")},
            use,
            {"q, k 3x: shifted": 3.0, "q, k 5x: shifted, peaked": 5.0},
            a.runs,
        )
    finally:
        restore()


# ---- the attention kernel's GEMMs and layout ------------------------------------------------------------
# (what, query tokens, key tokens, head size): one layer's attention calls at the benchmark's sizes
ATTENTION_CALLS = [
    ("video self-attention", 6144, 6144, 128),
    ("video to text", 6144, 1024, 128),
    ("audio to video", 126, 6144, 64),
    ("video to audio", 6144, 126, 64),
    ("audio to text", 126, 1024, 64),
    ("audio self-attention", 126, 126, 64),
]


@experiment(runs=7)
def layout(a):
    """Every attention of one layer of the benchmark transformer (8 heads, 6,144 video, 126 audio and
    1,024 text tokens), on q, k and v laid out as the projections make them ((B, T, H * D) viewed as
    (B, H, T, D)), through ops.attention with the BLAS reading each head's rows at their stride
    (`in place`, what runs: kernels.attention._head_rows) and with the heads first copied contiguous
    (`contiguous`, what ran before)."""
    need(attention_kernels.blocked_attention(), "the blocked attention (MKL or numpy's OpenBLAS)")
    heads, rng = 8, np.random.default_rng(0)
    use, restore = setting((attention_kernels, "_head_rows"))
    in_place = attention_kernels._head_rows
    layouts = {"in place": in_place, "contiguous": lambda x: in_place(mx.contiguous(x))}
    totals = {name: [0.0] * a.runs for name in layouts}
    rows = []
    try:
        for what, tq, tk, d in ATTENTION_CALLS:
            q, k, v = (
                mx.array(rng.standard_normal((1, t, heads * d), dtype=np.float32) * 0.5)
                .reshape(1, t, heads, d)
                .transpose(0, 2, 1, 3)
                for t in (tq, tk, tk)
            )
            mx.eval(q, k, v)
            outs: dict = {}
            fn = lambda q=q, k=k, v=v, d=d: ops.attention(q, k, v, d**-0.5)  # noqa: E731
            times = common.alternate(fn, layouts, use, a.runs, swap=True, outputs=outs)
            if not mx.array_equal(outs["in place"], outs["contiguous"]):
                raise SystemExit(f"{what}: the two layouts disagree")
            for name in layouts:
                totals[name] = [t + x for t, x in zip(totals[name], times[name], strict=True)]
            med = [f"{statistics.median(times[name]):.3f}" for name in layouts]
            rows.append([what, f"{heads * tq * tk / 1e6:.1f}M", *med, pair_ratios(times, *layouts)])
    finally:
        restore()
    med = [f"{statistics.median(totals[name]):.3f}" for name in layouts]
    rows.append(["one layer's attentions", "", *med, pair_ratios(totals, *layouts)])
    print(f"Medians of {a.runs} interleaved pairs after a warm-up, seconds.\n")
    table(["attention", "scores", *layouts, "in place / contiguous (per-pair median, range)"], rows)


def one_head(mkl, rows: int, qkv: tuple, packed: bool) -> float:
    """Seconds for every block of `rows` query rows of one head, S = q K^T then S V, on one thread:
    cblas_sgemm, or (packed) cblas_sgemm_compute on K and V packed first (counted)."""
    mkl.set_threads(1)  # per thread
    q, k, v = qkv
    (tq, d), tk = q.shape, k.shape[0]
    rm, nt, t, p, b = blas.ROW_MAJOR, blas.NO_TRANS, blas.TRANS, blas.PACKED, blas.B_MATRIX
    s, o = np.empty((rows, tk), np.float32), np.empty((rows, d), np.float32)
    if packed:
        pk = np.empty(-(-mkl.pack_size(b, rows, tk, d) // 4), np.float32)
        pv = np.empty(-(-mkl.pack_size(b, rows, d, tk) // 4), np.float32)
    t0 = time.perf_counter()
    if packed:
        mkl.pack(rm, b, t, rows, tk, d, 1.0, k.ctypes.data, d, pk.ctypes.data)
        mkl.pack(rm, b, nt, rows, d, tk, 1.0, v.ctypes.data, d, pv.ctypes.data)
    for r in range(0, tq - rows + 1, rows):
        qp = q[r].ctypes.data
        if packed:
            mkl.compute(rm, nt, p, rows, tk, d, qp, d, pk.ctypes.data, d, 0.0, s.ctypes.data, tk)
            mkl.compute(rm, nt, p, rows, d, tk, s.ctypes.data, tk, pv.ctypes.data, tk, 0.0, o.ctypes.data, d)
        else:
            mkl.sgemm(rm, nt, t, rows, tk, d, 1.0, qp, d, k.ctypes.data, d, 0.0, s.ctypes.data, tk)
            mkl.sgemm(
                rm, nt, nt, rows, d, tk, 1.0, s.ctypes.data, tk, v.ctypes.data, d, 0.0, o.ctypes.data, d
            )
    return time.perf_counter() - t0


@experiment(runs=7)
def pack(a):
    """What packing K and V once per head buys the blocked attention on MKL: the two GEMMs of one
    head's blocks of query rows (S = q K^T, then P V) at the benchmark's shapes (6,144 keys, head size
    128), MKL single-threaded in each worker thread as there, with cblas_sgemm (which packs K or V
    again on every call) against cblas_sgemm_compute on K and V packed once with cblas_sgemm_pack (what
    kernels.attention does; the packing counted). On one core, and on every core at once (one head
    each, as the attention's thread pool runs them), where the repacking's memory traffic is shared."""
    mkl = blas.mkl()
    need(mkl is not None, "MKL (ltx.backend loads it from the mkl wheel)")
    cores = os.cpu_count() or 1
    pool, rng = ThreadPoolExecutor(cores), np.random.default_rng(0)
    heads = [
        tuple(rng.standard_normal((6144, 128), dtype=np.float32) for _ in range(3)) for _ in range(cores)
    ]
    rows_out = []
    for n in sorted({1, cores}):
        for rows in (170, 256, 512):
            times = {False: [], True: []}
            for _ in range(a.runs + 1):  # the first of each is a warm-up
                for packed in (False, True):
                    t0 = time.perf_counter()
                    for job in [pool.submit(one_head, mkl, rows, heads[i], packed) for i in range(n)]:
                        job.result()
                    times[packed].append(time.perf_counter() - t0)
            med = {p: statistics.median(ts[1:]) for p, ts in times.items()}
            flops = n * 4 * 6144 * 128 * (6144 // rows) * rows
            rows_out.append(
                [str(n), str(rows), f"{flops / med[False] / 1e9:.0f}", f"{flops / med[True] / 1e9:.0f}",
                 f"{med[True] / med[False]:.2f}"]
            )  # fmt: skip
    print(f"Medians of {a.runs} interleaved runs after a warm-up; GFLOP/s summed over the cores used.\n")
    table(
        ["cores", "rows per block", "cblas_sgemm GFLOP/s", "packed once GFLOP/s", "packed / sgemm time"],
        rows_out,
    )


# ---- the VAE side --------------------------------------------------------------------------------------
@experiment(runs=5)
def winograd(a):
    """The VAEs' 3x3(x3) convs as Winograd F(2x2, 3x3) / F(4x4, 3x3) and the vocoder's 1-D convs as
    F(4, 3) / F(4, 4) (ltx.kernels.winograd) against one GEMM per tap (kernels.conv.WINOGRAD off),
    both on the BLAS ltx.kernels.blas.gemm picks, on every VAE-side component."""
    use, restore = setting((conv, "WINOGRAD"))
    vae_ab(a, vae_components(a), {"winograd": True, "per tap": False}, use, restore, "per tap")


@experiment(runs=5)
def tile(a):
    """The Winograd convs' output tile on the video and audio decoders: F(4x4, 3x3) up to
    kernels.winograd.TILE_MAX_CHANNELS (what runs), F(4x4) at every width the kept filters serve (up to
    512 channels), and F(2x2, 3x3) everywhere, all with the same GEMM transforms; each variant's
    filters are made once and kept."""
    kept: dict[tuple[int, int], tuple] = {}

    def of(self, weight):  # a Filters per (module, tile), so that switching tiles remakes none
        key = (id(self), winograd_kernels.tile_for(weight.shape[-1]) if weight.ndim > 3 else 0)
        if key not in kept or kept[key][0] is not weight:
            kept[key] = (weight, winograd_kernels.transform_weight(weight))
        return kept[key][1]

    use, restore = setting((winograd_kernels, "TILE_MAX_CHANNELS"), (winograd_kernels.Filters, "of"))
    now = winograd_kernels.TILE_MAX_CHANNELS
    variants = {f"F(4x4) to {now} ch": (now, of), "F(4x4) to 512 ch": (512, of), "F(2x2)": (-1, of)}
    vae_ab(a, vae_components(a, ("vae_decode", "audio_decoder")), variants, use, restore, "F(2x2)")


@experiment(runs=5)
def wide1d(a):
    """LTX-2.3's vocoder + BWE with its 768-channel level's 1-D convs as Winograd convs
    (kernels.winograd.MAX_CHANNELS_1D = 768, what runs) against one GEMM per tap there (512)."""
    use, restore = setting((winograd_kernels, "MAX_CHANNELS_1D"))
    vae_ab(a, vae_components(a, ("vocoder_bwe",)), {"768 ch": 768, "512 ch": 512}, use, restore, "512 ch")


@experiment(runs=5)
def taps(a):
    """ltx.kernels.conv.conv_taps with every tap's GEMM added into the output in place by the BLAS's
    sgemm (`in place`: MKL or numpy's OpenBLAS) against MLX's addmm chain (`addmm`, what runs with
    neither), Winograd off in both, on every VAE-side component."""
    use, restore = setting((blas, "gemm"), (conv, "WINOGRAD"))
    variants = {"in place": (blas.gemm, False), "addmm": (lambda: None, False)}
    vae_ab(a, vae_components(a), variants, use, restore, "addmm")


@experiment(runs=5)
def vocoder(a):
    """The LTX-2.0 vocoder alone, three ways: its 1-D convs as Winograd F(4, 3) / F(4, 4) (from
    kernels.winograd.MIN_CHANNELS_1D input channels) and its transposed convs as in-place GEMMs
    (kernels.conv.conv_transpose1d), what runs; the 1-D convs one GEMM per tap; and both that and the
    transposed convs as MLX's matmul + overlap-add (what ran before either)."""
    use, restore = setting((winograd_kernels, "MIN_CHANNELS_1D"), (conv, "TRANSPOSED_CONV"))
    wide = winograd_kernels.MIN_CHANNELS_1D
    variants = {
        "winograd, in-place transposed": (wide, True),
        "per tap, in-place transposed": (1 << 30, True),
        "per tap, overlap-add": (1 << 30, False),
    }
    vae_ab(a, vae_components(a, ("vocoder",)), variants, use, restore, "per tap, overlap-add")


@experiment(runs=5)
def activation(a):
    """One BigVGAN anti-aliased activation (ltx.audio.vocoder.Activation1d, random filters) at the
    channels x samples of LTX-2.3's vocoder and BWE levels on 101 mel frames, three ways:
    kernels.activations.snake_resampled in tasks of RESAMPLE_CHUNK_VALUES on both cores (what runs),
    the same as one task over the whole signal (one core, every pass over arrays larger than its
    cache), and MLX's grouped convs. Needs no bench weights."""
    from ltx.audio.vocoder import Activation1d

    use, restore = setting((activations, "RESAMPLE_CHUNK_VALUES"), (activations, "RESAMPLING"))
    chunk = activations.RESAMPLE_CHUNK_VALUES
    variants = {
        "chunks, both cores": (chunk, True),
        "one task": (1 << 62, True),
        "MLX grouped convs": (chunk, False),
    }
    rng, fns = np.random.default_rng(0), {}
    # (channels, samples) of the LTX-2.3 vocoder's levels (1,536 initial channels, 160 samples per
    # mel frame) and its BWE generator's (512, 480 per frame), 101 mel frames
    for c, n in ((768, 505), (384, 1010), (96, 4040), (48, 8080), (24, 16160), (256, 1212), (64, 12120),
                 (32, 24240), (16, 48480)):  # fmt: skip
        act = Activation1d(c)
        act.upsample.filter = mx.array(rng.standard_normal((1, 1, 12)).astype(np.float32))
        act.downsample.lowpass.filter = mx.array(rng.standard_normal((1, 1, 12)).astype(np.float32))
        x = mx.array(rng.standard_normal((1, n, c)).astype(np.float32))
        fns[f"{c} x {n}"] = lambda act=act, x=x: act(x)
    vae_ab(a, fns, variants, use, restore, "one task", "activation (channels x samples)", ms=True)


@experiment(runs=5)
def vae_cache(a):
    """Not a conv choice but MLX's buffer cache on the CPU: ltx.backend's limit (a fraction of the
    machine's memory, what the denoising loops run in) against MLX's default 32 MB, on every VAE-side
    component. (tf_cache: the same on the transformer.)"""
    now = backend.cpu_cache_bytes()
    variants = {f"cache limit {now >> 20} MB": now, "32 MB": 1 << 25}
    vae_ab(a, vae_components(a), variants, mx.set_cache_limit, lambda: mx.set_cache_limit(now), "32 MB")


def frames_memory(models: dict, clips: dict, use) -> None:
    rows = []
    for frames, z in clips.items():
        for name, model in models.items():
            use(name == "frames")
            mx.eval(model(z))  # the first run lays out the weights
            mx.clear_cache()
            base = mx.get_active_memory()
            mx.reset_peak_memory()
            tracemalloc.start()
            mx.eval(model(z))
            numpy_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            peak = mx.get_peak_memory() - base
            per_voxel = (peak + numpy_peak) / (frames * 16 * 24 * 1024 * 4)
            rows.append(
                [
                    f"{frames} x 8 x 12",
                    name,
                    f"{peak / 1e6:.0f}",
                    f"{numpy_peak / 1e6:.0f}",
                    f"{per_voxel:.1f}C",
                ]
            )
    table(
        ["upsampler input (F x H x W latent)", "path", "MLX peak MB", "numpy peak MB", "total per voxel"],
        rows,
    )


@experiment(runs=5)
def frames(a):
    """What kernels.conv.conv3d_frames buys the latent upsampler: its 3-D convs as one GEMM per
    temporal tap over a spatial im2col, the taps that read zero padding frames skipped (`frames`, what
    runs on the CPU with a BLAS), against MLX's conv3d (`mlx`), on two clips at the real width (1024):
    the bench's 2 latent frames, where the skipped taps are a third of the conv work, and 8 frames,
    where they are 1/12. With --memory instead each path's peak memory over one run per clip, after a
    first run that lays out the weights: MLX's peak allocation plus numpy's (the im2col), as
    tracemalloc sees it, in units of C = 1024 floats per upsampled voxel."""
    from ltx.video.upsampler import load_upsampler

    path = Path(a.cache) / "upsampler.safetensors"
    if not path.exists():
        raise SystemExit(f"no weights in {a.cache}: run `python bench/vae_bench.py` first (or pass --cache)")
    need(conv.conv3d_frames_applies(mx.float32), "MLX's CPU backend and a BLAS (ltx.kernels.blas.gemm)")
    use, restore = setting((conv, "FRAMES_CONV"))
    models = {"frames": load_upsampler(path)}  # weights laid out per temporal tap
    use(False)
    models["mlx"] = load_upsampler(path)  # MLX's own layout, as loaded without a BLAS
    rng = np.random.default_rng(0)
    clips = {n: mx.array(rng.standard_normal((1, n, 8, 12, 128)).astype(np.float32)) for n in (2, 8)}
    current: list = []

    def pick(name: str) -> None:
        use(name == "frames")
        current[:] = [models[name]]

    rows = []
    try:
        if a.memory:
            return frames_memory(models, clips, use)
        for n, z in clips.items():
            outs: dict = {}
            times = common.alternate(
                lambda z=z: current[0](z), {p: p for p in models}, pick, a.runs, outputs=outs
            )
            err = float(mx.abs(outs["frames"] - outs["mlx"]).max() / mx.abs(outs["mlx"]).max())
            assert err < 1e-4, f"the two paths disagree: max rel err {err:.1e}"
            med = {p: statistics.median(t) for p, t in times.items()}
            rows.append(
                [
                    f"{n} x 8 x 12",
                    f"{med['frames']:.3f}",
                    f"{med['mlx']:.3f}",
                    f"{med['frames'] / med['mlx']:.2f}",
                ]
            )
    finally:
        restore()
    print(f"Medians of {a.runs} interleaved pairs after a warm-up, seconds.\n")
    table(["upsampler input (F x H x W latent)", "frames", "mlx", "frames / mlx"], rows)


# (what, M, N, K): the video decoder's taps GEMMs per level (rows of the padded grid of the bench
# video, K = N = channels), the upsampler's frame GEMMs (K = 9 x 1,024), the vocoder's first two
# levels, and a square one and a transformer linear layer for scale. The two im2col rows ask whether
# a deeper K would pay for an im2col copy at 128 channels (it would have to beat K = C by more than
# the copy costs)
GEMM_SHAPES = [
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


def gemm_rows(libs: dict, runs: int, blocks: bool) -> list[list[str]]:
    """GFLOP/s of each library on every GEMM_SHAPES GEMM (C += A B^T, ~2 GFLOP a timing), its calls
    alternated library by library, or (blocks) all of one library's rounds, a pause, then the other's."""
    rng, rows = np.random.default_rng(0), []
    for what, m, n, k in GEMM_SHAPES:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((n, k), dtype=np.float32)
        c = np.zeros((m, n), np.float32)
        reps = max(1, int(2e9 // (2 * m * n * k)))
        times = {name: [] for name in libs}
        rounds = range(runs + 1)
        order = (
            [(i, lib) for lib in libs for i in rounds]
            if blocks
            else [(i, lib) for i in rounds for lib in libs]
        )
        for i, name in order:
            if blocks and i == 0:
                time.sleep(1.0)  # the other library's idle threads stop spinning
            t0 = time.perf_counter()
            for _ in range(reps):
                libs[name].sgemm(
                    blas.ROW_MAJOR, blas.NO_TRANS, blas.TRANS, m, n, k, 1.0,
                    a.ctypes.data, k, b.ctypes.data, k, 1.0, c.ctypes.data, n,
                )  # fmt: skip
            if i:
                times[name].append((time.perf_counter() - t0) / reps)
        rate = {name: 2 * m * n * k / statistics.median(t) / 1e9 for name, t in times.items()}
        rows.append([f"{what} ({m}x{n}x{k})", f"{rate['mkl']:.0f}", f"{rate['openblas']:.0f}",
                     f"{rate['mkl'] / rate['openblas']:.2f}"])  # fmt: skip
    return rows


@experiment(runs=5)
def gemm(a):
    """MKL against numpy's OpenBLAS as the library of ltx.kernels' conv GEMMs (ltx.kernels.blas.gemm):
    1. single GEMMs at the conv kernels' shapes (both cores inside each call, as the kernels call
    them), C (M x N) += A (M x K) B^T: GFLOP/s of each library, alternated call by call (--blocks:
    each library's rounds in one block); 2. (unless --gemms-only) the real-width VAE-side components
    with every conv GEMM on one library or the other."""
    libs = {name: blas.library(name) for name in ("mkl", "openblas")}
    missing = [name for name, lib in libs.items() if lib is None]
    need(not missing, f"both libraries; not loaded here: {', '.join(missing)}")
    fns = {} if a.gemms_only else vae_components(a)
    how = "rounds in one block per library, 1 s apart" if a.blocks else "interleaved rounds"
    print(f"auto picks {blas.describe()}.\n")
    print(f"GEMMs, C += A B^T, both cores: GFLOP/s, medians of {a.runs} {how} after a warm-up.\n")
    table(["GEMM (M x N x K)", "MKL", "OpenBLAS", "OpenBLAS / MKL time"], gemm_rows(libs, a.runs, a.blocks))
    if fns:
        print("Components, every conv GEMM on one library:\n")
        use, restore = setting((blas, "gemm"))
        mkl, openblas = libs["mkl"], libs["openblas"]
        vae_ab(a, fns, {"MKL": lambda: mkl, "OpenBLAS": lambda: openblas}, use, restore, "MKL")


# ---- one process per variant -------------------------------------------------------------------------
def spin_child(a) -> None:
    fns = common.vae_components(Path(a.cache), decode=not a.no_decode)
    if a.inputs and a.weights:
        import tf_ours

        model, video, audio = tf_ours.load(a.weights, a.inputs, a.layers, a.heads)
        fns["transformer"] = lambda: model(video, audio)
    out = {}
    for name, fn in fns.items():
        mx.eval(fn())
        times = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            mx.eval(fn())
            times.append(time.perf_counter() - t0)
        out[name] = times
    print("@@" + json.dumps(out), flush=True)


@experiment(runs=2)
def spin(a):
    """How long the BLAS libraries let their idle threads spin, on the VAE-side components (and, with
    --inputs and --weights, the transformer forward). After a call, OpenBLAS's worker threads
    busy-wait for 2^OPENBLAS_THREAD_TIMEOUT cycles (28 by default: ~0.1 s) and MKL's OpenMP threads
    for KMP_BLOCKTIME ms (200 by default) before they sleep; ltx sets OPENBLAS_THREAD_TIMEOUT=16
    (ltx/__init__.py) and KMP_BLOCKTIME=0 (ltx/backend.py) unless they are set. Both are read once,
    when the library loads, so each variant (--timeouts, or --variants) runs in its own process:
    every one of --rounds starts one process per variant (the order swapped every round), each
    times every component --runs times after a warm-up; the table gives the medians over all
    rounds."""
    if a.child:
        return spin_child(a)
    args = [sys.executable, __file__, "--what", "spin", "--child", "--cache", a.cache, "--runs", str(a.runs)]
    args += ["--layers", str(a.layers), "--heads", str(a.heads)] + ["--no-decode"] * a.no_decode
    args += ["--inputs", a.inputs, "--weights", a.weights] if a.inputs and a.weights else []
    times: dict[str, dict[str, list[float]]] = {}
    variants = a.variants or [f"OPENBLAS_THREAD_TIMEOUT={t}" for t in a.timeouts.split(",")]
    for r in range(a.rounds):
        for variant in variants if r % 2 == 0 else variants[::-1]:
            env = {**ENVIRON, **dict(kv.split("=", 1) for kv in variant.split())}
            proc = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
            line = next(x for x in proc.stdout.splitlines() if x.startswith("@@"))
            for name, ts in json.loads(line[2:]).items():
                times.setdefault(name, {}).setdefault(variant, []).extend(ts)
            print(f"round {r + 1}/{a.rounds}: {variant} done", file=sys.stderr, flush=True)
    print(f"Medians of {a.rounds} rounds x {a.runs} calls, seconds (and / the first column's);")
    print("one process per environment and round.\n")
    columns = ["component", *(f"`{v}`" for v in variants)]
    rows = []
    for name, per in times.items():
        m = [statistics.median(per[v]) for v in variants]
        rows.append([name, f"{m[0]:.3f}", *(f"{x:.3f} ({x / m[0]:.2f})" for x in m[1:])])
    table(columns, rows)
    print("Range (fastest - slowest call), seconds:\n")
    table(
        columns,
        [[name, *(f"{min(per[v]):.3f}-{max(per[v]):.3f}" for v in variants)] for name, per in times.items()],
    )


def main() -> None:
    listing = "\n\n".join(
        f"--what {name} (--runs {runs}):\n{textwrap.indent(doc, '  ')}"
        for name, (_, runs, doc) in EXPERIMENTS.items()
    )
    ap = argparse.ArgumentParser(
        description=__doc__, epilog=listing, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--what", required=True, choices=EXPERIMENTS, metavar="NAME", help="the experiment (below)"
    )
    ap.add_argument("--runs", type=int, help="pairs (rounds) after the warm-up; default: the experiment's")
    tf = ap.add_argument_group("the transformer (bench/tf_prepare.py's files)")
    tf.add_argument("--inputs", help="the inputs (.npz)")
    tf.add_argument("--weights", help="the weights (.safetensors)")
    tf.add_argument("--layers", type=int, default=2, help="as prepared (default 2)")
    tf.add_argument("--heads", type=int, default=8)
    vae = ap.add_argument_group("the VAE side (bench/vae_bench.py's files)")
    vae.add_argument("--cache", default=str(common.VAE_BENCH_CACHE), help="default %(default)s")
    vae.add_argument("--no-decode", action="store_true", help="skip the video decoder (~8 s a call)")
    vae.add_argument(
        "--memory", action="store_true", help="frames: peak memory of each path instead of times"
    )
    vae.add_argument("--gemms-only", action="store_true", help="gemm: only the GEMM rows")
    vae.add_argument("--blocks", action="store_true", help="gemm: each library's rounds in one block")
    sp = ap.add_argument_group("spin")
    sp.add_argument(
        "--timeouts", default="28,16", help="OPENBLAS_THREAD_TIMEOUT values, the first the baseline"
    )
    sp.add_argument(
        "--variants",
        nargs="+",
        help="environments instead of --timeouts, each 'NAME=VALUE NAME=VALUE', the first the baseline",
    )
    sp.add_argument("--rounds", type=int, default=3)
    sp.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    fn, runs, _ = EXPERIMENTS[a.what]
    a.runs = runs if a.runs is None else a.runs
    if not a.child:
        print(f"{common.machine()}.\n")
    fn(a)


if __name__ == "__main__":
    main()
