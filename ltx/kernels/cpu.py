"""Kernels for the hot spots of MLX's CPU backend: attention blocked per core (BLAS GEMMs and a numpy
softmax), GELU, the RMSNorms (q/k ones with RoPE, the blocks' with their AdaLN modulation) and the
VAE's norm + SiLU in numpy; convolutions as one matmul per kernel tap (conv_taps, below), and
the upsampler's zero-padded 3-D convs as one matmul per temporal tap (conv3d_frames).

MLX's CPU elementwise kernels are scalar code: `exp` over the attention scores and GELU run 13-19x
slower than torch's (bench/results.md, micro rows), where numpy's vectorised ufuncs keep up, and at
video token counts they are most of a layer's time. On the CPU an evaluated MLX array's buffer is
ordinary host memory, so numpy works on it in place through the buffer protocol, with no copy
either way, a cache-sized block at a time and split over threads (numpy releases the GIL). The GPU backends keep MLX's own kernels.

Attention, with a BLAS it can call single-threaded (numpy's OpenBLAS where it runs the conv GEMMs,
non-Intel CPUs; else MKL, which ltx.backend loads on Linux), per block of query rows of one head,
on one core, with the block's scores held in that core's cache (a flash-attention-like schedule;
each worker thread runs the BLAS single-threaded):

  S = scale q K^T                      GEMM into a per-thread scratch block
  P = exp(S + mask - rowmax)           numpy, in place
  O = (P V) / rowsum(P)                GEMM, written straight into the output's rows

On MKL, K and V enter both GEMMs in its packed layout (cblas_sgemm_pack), packed once per head and
reused by all of that head's row blocks: cblas_sgemm would repack them on every call. OpenBLAS has
no packed API: its sgemm reads them in place.

A bound on the scores (Cauchy-Schwarz, see _attention_blocked) usually lets exp skip the row-max
shift: two passes over each block of scores (exp, sum) instead of four. Without either BLAS, per
query chunk: S with an MLX matmul, P in numpy in place in S's buffer, O with an MLX matmul; the scores
then make three trips through main memory. Either way the result equals softmax attention up to
float32 rounding (tests/test_transformer.py).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from functools import lru_cache
from typing import NamedTuple

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)
from ltx.kernels import blas as cpu_blas
from ltx.kernels import winograd

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

# Below this many elements MLX's lazy kernels are as fast and keep the graph lazy.
MIN_ELEMENTS = 1 << 20
# The blocked attention beats mx.fast.scaled_dot_product_attention from ~16K scores up: 2x at 127K
# (the audio self-attention), 4x at 1M (audio to text); below, its thread hand-offs cost more.
BLOCKED_MIN_ELEMENTS = 1 << 15
# The VAE's norm + SiLU is six MLX passes against numpy's one: numpy wins from a few blocks up.
NORM_MIN_ELEMENTS = 1 << 15
# Elements processed through every pass of a kernel while they sit in the core's cache.
BLOCK_ELEMENTS = 1 << 16
# The blocked attention works on blocks of query rows x KEY_BLOCK keys: each block's scores go
# through the two GEMMs and the softmax passes before the next block of keys. Rows per block =
# SCORE_BLOCK_ELEMENTS // keys per block, within ATTENTION_ROWS: 1,024 rows x 512 keys at 6,144 keys.
# Against whole rows of keys (170 rows x 6,144, what ran before) the GEMMs run on taller blocks (a
# GEMM's cost per flop falls with its rows) whose scores still sit in the core's cache: the video
# self-attention alone takes 0.91x the time, a forward 0.94x (`python bench/tf_ab.py --what keys`;
# 0.99x where the scores need the max shift, which adds a pass per block). Few keys take one block of
# keys and taller blocks of rows: 2,048 rows x 126 audio keys run 0.82x the time of 512-row blocks,
# while each worker still gets ATTENTION_TASKS_PER_WORKER blocks to balance.
KEY_BLOCK = 512
SCORE_BLOCK_ELEMENTS = 1 << 19
ATTENTION_ROWS = (16, 2048)
ATTENTION_TASKS_PER_WORKER = 4


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    # numpy releases the GIL inside ufuncs and reductions, so threads split the rows across cores
    return ThreadPoolExecutor(max(1, os.cpu_count() or 1), thread_name_prefix="ltx-cpu-kernels")


def cpu_backend() -> bool:
    """Whether MLX computes on the CPU here (where these kernels replace MLX's)."""
    return mx.default_device() == mx.cpu


def applies(elements: int, minimum: int | None = None) -> bool:
    return cpu_backend() and elements >= (MIN_ELEMENTS if minimum is None else minimum)


def norm_applies(x: mx.array) -> bool:
    """Whether the numpy RMSNorms (rms_norm_modulate, rms_norm_rope) take x: float32 (B, T, D) on the
    CPU backend, from NORM_MIN_ELEMENTS."""
    return x.dtype == mx.float32 and x.ndim == 3 and applies(x.size, NORM_MIN_ELEMENTS)


def attention_applies(scores: int) -> bool:
    """Whether an attention with this many scores (B * H * Tq * Tk) runs here rather than as MLX's
    fused kernel: from BLOCKED_MIN_ELEMENTS blocked (with MKL or numpy's OpenBLAS), from MIN_ELEMENTS
    without (chunked)."""
    return applies(scores, BLOCKED_MIN_ELEMENTS if blocked_attention() else MIN_ELEMENTS)


def _run(fn, tasks: list) -> None:
    """fn(tasks[i:j]) on each worker thread, over contiguous slices of the task list."""
    pool = _pool()
    per = -(-len(tasks) // pool._max_workers)
    jobs = [pool.submit(fn, tasks[n : n + per]) for n in range(0, len(tasks), per)]
    for job in jobs:
        job.result()


def _exp_rows(tasks: list, s: np.ndarray, sums: np.ndarray, mask: np.ndarray | None) -> None:
    # s (B, H, c, Tk) scores, updated in place to exp(s + mask - rowmax); sums (B, H, c, 1) the row
    # sums; mask broadcastable to s; a task is (b, h, first row, end row)
    for b, h, r0, r1 in tasks:
        blk = s[b, h, r0:r1]
        if mask is not None:
            mb = mask[min(b, mask.shape[0] - 1), min(h, mask.shape[1] - 1)]
            np.add(blk, mb if mb.shape[0] == 1 else mb[r0:r1], out=blk)
        np.subtract(blk, blk.max(axis=1, keepdims=True), out=blk)
        np.exp(blk, out=blk)
        np.sum(blk, axis=1, keepdims=True, out=sums[b, h, r0:r1])


def _softmax_numerators(s: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """s (B, H, c, Tk) in place -> unnormalised probabilities; returns the row sums (B, H, c, 1)."""
    b, h, c, tk = s.shape
    sums = np.empty((b, h, c, 1), s.dtype)
    step = max(1, BLOCK_ELEMENTS // tk)
    tasks = [(i, j, r, min(c, r + step)) for i in range(b) for j in range(h) for r in range(0, c, step)]
    _run(lambda part: _exp_rows(part, s, sums, mask), tasks)
    return sums


def attention(
    q: mx.array, k: mx.array, v: mx.array, scale: float, mask: mx.array | None, chunk_elements: int
) -> mx.array:
    """Softmax attention on (B, H, T, Dh); mask is an additive bias broadcastable to (B, H, Tq, Tk).
    Without either BLAS, chunked over queries so at most chunk_elements scores exist at once."""
    if mask is not None:
        mask = mask.astype(mx.float32)
        mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
    if blocked_attention():
        return _attention_blocked(q, k, v, scale, mask)
    b, h, tq, _ = q.shape
    tk = k.shape[2]
    q = (q * scale).astype(mx.float32)
    kt = k.astype(mx.float32).swapaxes(-1, -2)  # (B, H, Dh, Tk)
    v32 = v.astype(mx.float32)
    step = max(1, chunk_elements // (b * h * tk))
    outs = []
    for i in range(0, tq, step):
        s = q[:, :, i : i + step] @ kt  # (B, H, c, Tk)
        m = None if mask is None else mask if mask.shape[2] == 1 else mask[:, :, i : i + step]
        mx.eval(s, *([] if m is None else [m]))
        # a view of s's buffer (numpy 2: copy=False never copies): numpy writes the numerators into s
        scores = np.array(s, copy=False)
        sums = _softmax_numerators(scores, None if m is None else np.asarray(m))
        out = (s @ v32) / mx.array(sums)  # (B, H, c, Dh)
        mx.eval(out)
        outs.append(out)
    out = outs[0] if len(outs) == 1 else mx.concatenate(outs, axis=2)
    return out.astype(v.dtype)


_ROW_MAJOR, _NO_TRANS, _TRANS = cpu_blas.ROW_MAJOR, cpu_blas.NO_TRANS, cpu_blas.TRANS
_B_MATRIX, _PACKED = cpu_blas.B_MATRIX, cpu_blas.PACKED


def _cblas() -> cpu_blas.Mkl | None:
    """MKL's entry points (the blocked attention's packed GEMMs and per-thread thread counts), or None."""
    return cpu_blas.mkl()


def _gemm() -> cpu_blas.Gemm | None:
    """The conv kernels' GEMM (MKL or numpy's OpenBLAS: ltx.kernels.blas.gemm), or None."""
    return cpu_blas.gemm()


def _attention_library() -> str | None:
    """The library of the blocked attention's GEMMs: numpy's OpenBLAS where it runs the conv kernels'
    GEMMs (ltx.kernels.blas.gemm: non-Intel CPUs, or LTX_CPU_GEMM=openblas), else MKL; None with neither.
    On an AMD EPYC (Zen 4 class), where MKL's GEMMs stay below the machine's peak, a transformer
    forward takes 0.96x the time with the attention on OpenBLAS (8 pairs, 0.89-0.99), though the
    video self-attention alone measured the same on both (`python bench/tf_ab.py --what
    attention_blas`, bench/ab_results.md)."""
    gemm = _gemm()
    if gemm is not None and gemm.name == "openblas" and cpu_blas.serial_openblas() is not None:
        return "openblas"
    return "mkl" if _cblas() is not None else None


def blocked_attention() -> bool:
    """Whether attention runs blocked here (the CPU backend with MKL or numpy's OpenBLAS): no score
    matrix is allocated."""
    return cpu_backend() and _attention_library() is not None


_scratch = threading.local()


# exp(s) of a score with |s| <= this is a normal float32 and a row of 2^31 of them sums without
# overflow, so the softmax needs no max subtraction (exp(80) = 5.5e34; float32 max 3.4e38)
EXP_SAFE = 64.0
# numpy's float32 exp2 takes ~16-20x its time on a block where some scores fall below -126 (results
# in or below float32's subnormals, or masked keys: a slow path for those lanes), which a peaked
# softmax's shifted scores do. So blocks whose scores are not bounded below (shifted or masked ones)
# are raised to this floor first, one pass: a term of 2^-125 (~2e-38) next to a shifted row's
# largest, 1 (with scores in base e the floor is -125 ln 2, the same value). The video self-attention with 5x larger q and k takes 0.35x
# the time with it, 0.99x with 3x (`python bench/tf_ab.py --what floor`).
EXP2_FLOOR = -125.0
# The blocked attention's scores are made in base 2 (times scale x log2(e)): numpy's float32
# exp2 takes ~0.48x the time of its exp; and its row sums are one BLAS matrix-vector product with a
# vector of ones, 0.48-0.64x the time of numpy's sum over rows (170 rows x 6,144 keys). Off: exp and
# numpy's sum, what ran before (`python bench/tf_ab.py --what softmax`)
SOFTMAX_BASE2 = True
LOG2E = float(np.log2(np.e))


def _scratch_floats(name: str, n: int) -> np.ndarray:
    """This thread's float32 scratch buffer `name` with at least n elements (grown, never shrunk;
    pages the BLAS or numpy never touch are never resident)."""
    buf = getattr(_scratch, name, None)
    if buf is None or buf.size < n:
        buf = np.empty(n, np.float32)
        setattr(_scratch, name, buf)
    return buf


def scratch_rows(name: str, rows: int, c: int) -> np.ndarray:
    """This thread's scratch buffer `name` as a (rows, c) float32 array (kept between calls)."""
    return _scratch_floats(name, rows * c)[: rows * c].reshape(rows, c)


def _base() -> float:
    """The factor of the blocked attention's scores: log2(e) in base 2 (SOFTMAX_BASE2), else 1."""
    return LOG2E if SOFTMAX_BASE2 else 1.0


class _PackedHead:
    """The blocked attention's GEMMs on MKL: one head's K (times the softmax scale) and V in MKL's
    packed GEMM layout, one packed matrix per block of keys, made once per head and reused by every
    block of query rows. cblas_sgemm repacks them on every call: with both cores busy that costs up
    to ~7% of the GEMMs' time at 6,144 keys x 128 (`python bench/gemm_pack.py`)."""

    def __init__(self, blas: cpu_blas.Mkl, rows: int, tk: int, d: int, keys: int):
        self.blas, self.shape, self.head = blas, (rows, tk, d, keys), None
        self.sgemv = blas.sgemv
        self.blocks = [(c, min(tk, c + keys)) for c in range(0, tk, keys)]
        self.k_size = -(-blas.pack_size(_B_MATRIX, rows, keys, d) // 4)  # floats per block
        self.v_size = -(-blas.pack_size(_B_MATRIX, rows, d, keys) // 4)
        n = len(self.blocks)
        self.k = _scratch_floats("packed_k", n * self.k_size)
        self.v = _scratch_floats("packed_v", n * self.v_size)

    def load(self, head: tuple[int, int], k: np.ndarray, v: np.ndarray, scale: float) -> None:
        if head != self.head:
            rows, _, d, _ = self.shape
            ldk, ldv = (x.strides[0] // x.itemsize for x in (k, v))
            for i, (c0, c1) in enumerate(self.blocks):
                self.blas.pack(
                    _ROW_MAJOR, _B_MATRIX, _TRANS, rows, c1 - c0, d, scale * _base(), k[c0].ctypes.data,
                    ldk, self.k[i * self.k_size :].ctypes.data,
                )  # fmt: skip
                self.blas.pack(
                    _ROW_MAJOR, _B_MATRIX, _NO_TRANS, rows, d, c1 - c0, 1.0, v[c0].ctypes.data, ldv,
                    self.v[i * self.v_size :].ctypes.data,
                )  # fmt: skip
            self.head = head

    def scores(self, i: int, rows: int, q: np.ndarray, ldq: int, s: np.ndarray) -> None:
        """s = scale x base x q K_i^T for key block i (q: the first of `rows` query rows ldq apart)."""
        n, d = s.shape[1], self.shape[2]
        self.blas.compute(
            _ROW_MAJOR, _NO_TRANS, _PACKED, rows, n, d, q.ctypes.data, ldq,
            self.k[i * self.k_size :].ctypes.data, d, 0.0, s.ctypes.data, n,
        )  # fmt: skip

    def values(self, i: int, s: np.ndarray, out: np.ndarray, ldo: int, beta: float) -> None:
        """out = s V_i + beta out (out: `s`'s rows of D floats, ldo apart)."""
        rows, n = s.shape
        d = self.shape[2]
        self.blas.compute(
            _ROW_MAJOR, _NO_TRANS, _PACKED, rows, d, n, s.ctypes.data, n,
            self.v[i * self.v_size :].ctypes.data, n, beta, out.ctypes.data, ldo,
        )  # fmt: skip


class _StridedHead:
    """The blocked attention's GEMMs on numpy's OpenBLAS (single-threaded: the caller holds
    cpu_blas.SerialOpenBlas.single_threaded()): K and V read in place, where the projections put
    them, by plain sgemm calls (OpenBLAS has no packed-GEMM API and packs inside each call)."""

    def __init__(self, blas: cpu_blas.SerialOpenBlas, tk: int, keys: int):
        self.blas, self.sgemv = blas, blas.sgemv
        self.blocks = [(c, min(tk, c + keys)) for c in range(0, tk, keys)]

    def load(self, head: tuple[int, int], k: np.ndarray, v: np.ndarray, scale: float) -> None:
        self.k, self.v, self.alpha = k, v, scale * _base()  # (head: unused, nothing is packed)
        self.ldk, self.ldv = (x.strides[0] // x.itemsize for x in (k, v))

    def scores(self, i: int, rows: int, q: np.ndarray, ldq: int, s: np.ndarray) -> None:
        n, d = s.shape[1], self.k.shape[1]
        self.blas.sgemm(
            _ROW_MAJOR, _NO_TRANS, _TRANS, rows, n, d, self.alpha, q.ctypes.data, ldq,
            self.k[self.blocks[i][0]].ctypes.data, self.ldk, 0.0, s.ctypes.data, n,
        )  # fmt: skip

    def values(self, i: int, s: np.ndarray, out: np.ndarray, ldo: int, beta: float) -> None:
        rows, n = s.shape
        d = self.v.shape[1]
        self.blas.sgemm(
            _ROW_MAJOR, _NO_TRANS, _NO_TRANS, rows, d, n, 1.0, s.ctypes.data, n,
            self.v[self.blocks[i][0]].ctypes.data, self.ldv, beta, out.ctypes.data, ldo,
        )  # fmt: skip


def _attention_rows(tasks: list, library: str, q, k, v, o, mask, bounds, scale: float, keys: int) -> None:
    # library: "mkl" or "openblas" (_attention_library); q (B, H, Tq, D), k/v (B, H, Tk, D), o (B,
    # Tq, H, D) numpy views with contiguous rows; mask in the scores' base (times _base()); bounds
    # (B, H, Tq): an upper bound of |score| (natural units) per query row; keys: keys per block; a
    # task is (b, h, first row, end row)
    ldq, ldo = q.strides[-2] // q.itemsize, o.strides[-3] // o.itemsize
    tk, d = k.shape[2], k.shape[3]
    most = max(r1 - r0 for *_, r0, r1 in tasks)
    if library == "mkl":
        blas = _cblas()
        blas.set_threads(1)  # this thread's MKL calls run on this core only; the pool spreads the tasks
        head: _PackedHead | _StridedHead = _PackedHead(blas, most, tk, d, keys)
    else:
        head = _StridedHead(cpu_blas.serial_openblas(), tk, keys)
    buf = _scratch_floats("scores", most * keys)
    ones = _scratch_floats("ones", keys)[:keys]
    ones.fill(1.0)
    sums, shift, top = (_scratch_floats(name, most) for name in ("sums", "shift", "top"))
    exp = np.exp2 if SOFTMAX_BASE2 else np.exp
    floor = np.float32(EXP2_FLOOR if SOFTMAX_BASE2 else EXP2_FLOOR / LOG2E)  # in the scores' base
    for b, h, r0, r1 in tasks:
        rows = r1 - r0
        total, m, m_block = sums[:rows, None], shift[:rows, None], top[:rows, None]
        head.load((b, h), k[b, h], v[b, h], scale)
        out = o[b, r0:r1, h]  # (rows, D), row stride ldo
        mb = None
        if mask is not None:
            mb = mask[min(b, mask.shape[0] - 1), min(h, mask.shape[1] - 1)]
            mb = mb if mb.shape[0] == 1 else mb[r0:r1]
        for exact in (bounds[b, h, r0:r1].max() > EXP_SAFE, True):
            for i, (c0, c1) in enumerate(head.blocks):
                n, first = c1 - c0, 0.0 if i == 0 else 1.0  # (GEMMs' beta: the first block overwrites)
                s = buf[: rows * n].reshape(rows, n)
                head.scores(i, rows, q[b, h, r0], ldq, s)
                if mb is not None:
                    np.add(s, mb[:, c0:c1], out=s)
                if exact:  # online softmax: shift each row by its running max, rescale what came before
                    np.max(s, axis=1, keepdims=True, out=m_block)
                    if i == 0:
                        m[...] = m_block
                    else:
                        np.maximum(m, m_block, out=m_block)
                        np.subtract(m, m_block, out=m)
                        exp(m, out=m)  # the earlier blocks' factor
                        np.multiply(total, m, out=total)
                        np.multiply(out, m, out=out)
                        m[...] = m_block
                    np.subtract(s, m, out=s)
                if exact or mb is not None:
                    np.maximum(s, floor, out=s)
                exp(s, out=s)
                if SOFTMAX_BASE2:
                    head.sgemv(
                        _ROW_MAJOR, _NO_TRANS, rows, n, 1.0, s.ctypes.data, n, ones.ctypes.data, 1,
                        first, total.ctypes.data, 1,
                    )  # fmt: skip
                elif i == 0:
                    np.sum(s, axis=1, keepdims=True, out=total)
                else:
                    total += s.sum(axis=1, keepdims=True)
                head.values(i, s, out, ldo, first)
            # (a row the mask hides entirely sums to its keys x 2^-125 unshifted: shifted, its keys
            # weigh the same, as in torch's softmax of equally hidden scores)
            if exact or total.min() > tk * 2.0**EXP2_FLOOR:
                break
        np.divide(out, total, out=out)


def _row_norms(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("bhtd,bhtd->bht", x, x))


def _head_rows(x: mx.array) -> np.ndarray:
    """A numpy view of (B, H, T, D) whose heads the BLAS reads in place: rows of D contiguous floats a
    fixed stride apart, as the (B, T, H * D) projections lay them out (the GEMMs take the stride as
    their leading dimension, and K and V are packed anyway): one layer's attentions take 0.94x the
    time of copying the heads contiguous first (`python bench/attn_layout_ab.py`, bench/ab_results.md). Other layouts are
    copied."""
    view = np.array(x, copy=False)  # numpy 2: copy=False never copies
    row, col = view.strides[-2:]
    if col != view.itemsize or row < view.shape[-1] * view.itemsize or row % view.itemsize:
        x = mx.contiguous(x)
        mx.eval(x)
        view = np.array(x, copy=False)
    return view


def _attention_blocked(q: mx.array, k: mx.array, v: mx.array, scale: float, mask) -> mx.array:
    """Cauchy-Schwarz bounds every score, |scale q.k| <= scale |q| max|k| (+ the mask's largest
    value): a block of rows whose bound is at most EXP_SAFE takes exp of its scores directly, two
    passes over them (exp, sum) instead of four (max, subtract, exp, sum)."""
    b, h, tq, d = q.shape
    tk, dtype = k.shape[2], v.dtype
    q, k, v = (x.astype(mx.float32) for x in (q, k, v))
    out = mx.zeros((b, tq, h, d), mx.float32)
    mx.eval(q, k, v, out, *([] if mask is None else [mask]))
    views = [_head_rows(x) for x in (q, k, v)] + [np.array(out, copy=False)]
    m = None if mask is None else np.array(mask, copy=False)
    bounds = _row_norms(views[0]) * (scale * _row_norms(views[1]).max(axis=2, keepdims=True))
    if m is not None:
        bounds += max(0.0, float(m.max()))
        big = np.finfo(np.float32).max  # (a "hide this key" bias near float32's min stays finite)
        with np.errstate(over="ignore"):
            m = np.clip(m * np.float32(_base()), -big, big)  # in the scores' base
    lo, hi = ATTENTION_ROWS
    balanced = -(-b * h * tq // (ATTENTION_TASKS_PER_WORKER * _pool()._max_workers))
    keys = min(tk, KEY_BLOCK)
    step = min(tq, max(lo, min(hi, SCORE_BLOCK_ELEMENTS // keys, balanced)))
    tasks = [(i, j, r, min(tq, r + step)) for i in range(b) for j in range(h) for r in range(0, tq, step)]
    library = _attention_library()
    with cpu_blas.serial_openblas().single_threaded() if library == "openblas" else nullcontext():
        _run(lambda part: _attention_rows(part, library, *views, m, bounds, scale, keys), tasks)
    # (B, H, Tq, D) as a view of the (B, Tq, H, D) result: the caller's transpose back is free
    return out.transpose(0, 2, 1, 3).astype(dtype)


_GELU_C = float(np.sqrt(2.0 / np.pi))


def _gelu_blocks(spans: list, x: np.ndarray) -> None:
    # x flat, in place: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), one cached block at a time
    for lo, hi in spans:
        blk = x[lo:hi]
        t = blk * blk
        t *= 0.044715 * _GELU_C
        t += _GELU_C
        t *= blk
        np.tanh(t, out=t)
        t += 1.0
        t *= 0.5
        blk *= t


def gelu_tanh(x: mx.array) -> mx.array:
    """GELU (tanh approximation) of a float32 array, computed in place in x's buffer; x must be a
    fresh result nothing else reads (here: the feed-forward's hidden projection)."""
    mx.eval(x)
    flat = np.array(x, copy=False).reshape(-1)  # a view (numpy 2: copy=False never copies)
    step = BLOCK_ELEMENTS
    _run(
        lambda part: _gelu_blocks(part, flat),
        [(i, min(flat.size, i + step)) for i in range(0, flat.size, step)],
    )
    return x


# Linear layers from this many multiply-adds (rows x in x out) take linear() when it applies
LINEAR_MIN_MACS = 1 << 24


def linear_applies(x: mx.array, weight: mx.array) -> bool:
    """Whether x @ weight.T (+ bias) runs as linear() here: float32 on the CPU backend when the conv
    GEMMs run on numpy's OpenBLAS (non-Intel CPUs, ltx.kernels.blas), where it is faster than the MKL that
    MLX's own matmuls call; from LINEAR_MIN_MACS (smaller ones stay lazy in MLX's graph)."""
    if not cpu_backend() or x.dtype != mx.float32 or weight.dtype != mx.float32 or weight.ndim != 2:
        return False
    gemm = _gemm()
    return gemm is not None and gemm.name == "openblas" and x.size * weight.shape[0] >= LINEAR_MIN_MACS


def linear(x: mx.array, weight: mx.array, bias: mx.array | None) -> mx.array:
    """x (..., C) @ weight (O, C).T + bias as one sgemm of the conv kernels' library, written into a
    fresh MLX array (bias first, then beta = 1)."""
    gemm = _gemm()
    o, c = weight.shape
    flat = mx.contiguous(x.reshape(-1, c))
    weight = mx.contiguous(weight)  # a no-op for loaded weights
    out = mx.zeros((flat.shape[0], o), mx.float32)
    mx.eval(flat, weight, out, *([] if bias is None else [bias]))
    xv, wv, ov = (np.array(a, copy=False) for a in (flat, weight, out))  # views (numpy 2: never copies)
    beta = 0.0
    if bias is not None:
        ov[...] = np.array(bias, copy=False).astype(np.float32, copy=False)
        beta = 1.0
    gemm.sgemm(
        _ROW_MAJOR, _NO_TRANS, _TRANS, flat.shape[0], o, c, 1.0, xv.ctypes.data, c, wv.ctypes.data, c,
        beta, ov.ctypes.data, o,
    )  # fmt: skip
    return out.reshape(*x.shape[:-1], o)


# A conv as one shifted matmul per kernel tap runs 2-3x faster than MLX's CPU conv1d/2d/3d (and than
# an im2col matmul) with up to 512 channels; with more input channels MLX's conv3d is faster, and with
# more output channels only (a decoder level's depth-to-space conv) it is ~10% faster but holds a 27x
# im2col copy of its input, the decode's peak (bench/vae_results.md, conv rows).
TAPS_MAX_CHANNELS = 512
# Off: 3x3(x3) convs run one GEMM per tap too (the tests' and benches' other path)
WINOGRAD = True


def conv_taps_applies(in_channels: int) -> bool:
    """Whether a conv reading in_channels runs as conv_taps here (at any output width: see above)."""
    return mx.default_device() == mx.cpu and in_channels <= TAPS_MAX_CHANNELS


# Off: 1-D convs run as MLX's im2col matmul (the tests' "mlx" kernels)
TAPS_1D = True


def conv1d_taps_applies() -> bool:
    """Whether 1-D convs (the vocoder's) run as conv_taps here: on the CPU, at any width. MLX's CPU
    conv1d is 50-180x slower (bench/vae_results.md, native rows), and above 512 channels the im2col
    matmul (ltx.audio.vocoder.conv1d_mm) still took 1.1x the taps' time at 768 channels and runs on MKL,
    whose threads spin on after it while the next OpenBLAS or numpy kernel wants the cores."""
    return TAPS_1D and mx.default_device() == mx.cpu


def winograd_applies(dtype: mx.Dtype) -> bool:
    """Whether conv_taps runs 3x3(x3) convs computing in dtype as Winograd convs here: float32
    on the CPU with MKL or OpenBLAS (ltx.kernels.blas)."""
    return WINOGRAD and dtype == mx.float32 and cpu_backend() and _gemm() is not None


# Wider convs (the video decoder's 1,024-channel level) run as Winograd convs too from this many
# output voxels per batch item, on filters transformed at every call (kept, they would add 16/9 of
# the level's ~1.6 GB of float32 weights). The transform is paid back on large inputs only: at a
# default 512 px tile's latent (2,304 voxels) the conv takes 0.53-0.64x MLX's conv3d's time, at 192
# voxels 1.3-3.5x (bench/vae_results.md's `winograd_percall` rows, its last two runs)
WINOGRAD_WIDE_MIN_VOXELS = 1024


def winograd_wide_applies(voxels: int, dtype: mx.Dtype) -> bool:
    """Whether a stride-1 3x3x3 conv wider than TAPS_MAX_CHANNELS with this many output voxels per
    batch item runs as a Winograd conv (conv_taps with per-call filters) rather than MLX's conv3d."""
    return voxels >= WINOGRAD_WIDE_MIN_VOXELS and winograd_applies(dtype)


def taps_layout(weight: mx.array) -> mx.array:
    """The same (O, K1, .., Kn, C) weight with its memory laid out tap-major, (K1, .., Kn, O, C):
    each tap's (O, C) matrix is then contiguous and conv_taps reads it with no per-call copy (mx.conv*
    copies it back)."""
    n = weight.ndim - 2
    tap_major = mx.contiguous(weight.transpose(*range(1, n + 1), 0, n + 1))
    return tap_major.transpose(n, *range(n), n + 1)


def conv_taps(
    x: mx.array,
    weight: mx.array,
    bias: mx.array | None = None,
    dilation: int = 1,
    filters: winograd.Filters | None = None,
) -> mx.array:
    """Stride-1 conv of an already padded x (B, P1, .., Pn, C) with an MLX conv weight
    (O, K1, .., Kn, C) -> (B, P1 - e1, .., Pn - en, O), e = dilation * (K - 1).

    With x flattened to rows of C channels, the input of tap (k1, .., kn) for output row r is row
    r + dilation * sum_d k_d * stride_d (stride_d = P_{d+1} * .. * P_n): every tap is one matmul of
    a contiguous slice of x (a view, no copy) with that tap's (C, O) weight, all accumulated into one
    output. Rows are computed on the padded grid and the border rows dropped: no im2col copy is made.
    With a BLAS (MKL or numpy's OpenBLAS: ltx.kernels.blas.gemm) each tap is one sgemm adding into the
    output's buffer in place (beta = 1); else an MLX addmm chain, which copies the running sum on
    every tap: the in-place path takes 0.91x the vocoder's time, 0.96x the audio decoder's, 0.98x
    the video decoder's (`python bench/taps_ab.py`, MKL).

    Where the last two kernel axes are 3x3 (the VAEs' convs) and a BLAS is there, the conv runs as
    Winograd F(4x4, 3x3) or F(2x2, 3x3) instead (ltx.kernels.winograd: 36 GEMMs per 4x4 outputs where the
    taps take 144), on the transformed filters that `filters` keeps for this weight (made here, as
    F(2x2), if None). Where all taps' outputs together are no wider than the input (a conv_out to a
    few channels) it runs as one GEMM with every tap's weights (_conv_taps_narrow).
    """
    b, *padded, c = x.shape
    o, *kernel = weight.shape[:-1]
    gemm = _gemm()
    blas = gemm is not None and cpu_backend() and x.dtype == weight.dtype == mx.float32
    narrow = blas and narrow_applies(math.prod(kernel), o, c)
    if blas and not narrow and WINOGRAD and winograd.applies(kernel, dilation, c):  # winograd_applies
        g = winograd.transform_weight(weight, winograd.TILE_WIDE) if filters is None else filters.of(weight)
        if len(kernel) == 1:
            return winograd.conv1d(gemm, x, g, kernel[0], dilation, bias)
        return winograd.conv(gemm, _run, x, g, tuple(kernel), bias)
    n = len(padded)
    ext = [dilation * (k - 1) for k in kernel]
    strides = [math.prod(padded[d + 1 :]) for d in range(n)]
    # one past the last valid output row, (b*P1 - e1 - 1, P2 - e2 - 1, ..); rows between batch items
    # or in the border are computed and dropped
    rows = (b * padded[0] - ext[0] - 1) * strides[0] + 1
    rows += sum((p - e - 1) * st for p, e, st in zip(padded[1:], ext[1:], strides[1:], strict=True))
    taps = weight.transpose(*range(1, n + 1), 0, n + 1).reshape(-1, o, c)  # free if tap-major
    offsets = [
        dilation * sum(k * st for k, st in zip(ks, strides, strict=True))
        for ks in itertools.product(*(range(k) for k in kernel))
    ]
    if narrow:
        out = _conv_taps_narrow(gemm, x.reshape(-1, c), taps, bias, offsets, rows)
    elif blas:
        out = _conv_taps_blas(gemm, x.reshape(-1, c), taps, bias, offsets, rows)
    else:
        flat = x.reshape(-1, c)
        out = None
        for i, off in enumerate(offsets):
            a, wi = flat[off : off + rows], taps[i].T
            if out is None:
                out = a @ wi if bias is None else mx.addmm(bias, a, wi)
            else:
                out = mx.addmm(out, a, wi)
        out = mx.pad(out, [(0, b * math.prod(padded) - rows), (0, 0)])
    out = out.reshape(b, *padded, o)
    return out[(slice(None), *(slice(0, p - e) for p, e in zip(padded, ext, strict=True)))]


def _conv_taps_blas(
    gemm: cpu_blas.Gemm, flat: mx.array, taps: mx.array, bias, offsets: list[int], rows: int
) -> mx.array:
    """conv_taps' matmuls with MKL or OpenBLAS (both cores inside each call): out[:rows] = bias +
    sum_i flat[off_i : off_i + rows] @ taps[i].T, every tap added into out's buffer in place."""
    o, c = taps.shape[1:]
    flat, taps = mx.contiguous(flat), mx.contiguous(taps)  # no-ops for a fresh input, tap-major weights
    out = mx.zeros((flat.shape[0], o), mx.float32)
    mx.eval(flat, taps, out, *([] if bias is None else [bias]))
    xv, wv, ov = (np.array(a, copy=False) for a in (flat, taps, out))  # views (numpy 2: never copies)
    beta = 0.0
    if bias is not None:
        ov[:rows] = np.array(bias, copy=False).astype(np.float32, copy=False)
        beta = 1.0
    for i, off in enumerate(offsets):
        gemm.sgemm(
            _ROW_MAJOR, _NO_TRANS, _TRANS, rows, o, c, 1.0, xv[off].ctypes.data, c,
            wv[i].ctypes.data, c, beta, ov.ctypes.data, o,
        )  # fmt: skip
        beta = 1.0
    return out


def narrow_applies(taps: int, out_channels: int, in_channels: int) -> bool:
    """Whether a conv with this many taps runs as _conv_taps_narrow (with a BLAS): more than one tap,
    all taps' outputs together no wider than its input. Such convs keep no Winograd filters."""
    return 1 < taps and taps * out_channels <= in_channels


def _conv_taps_narrow(
    gemm: cpu_blas.Gemm, flat: mx.array, taps: mx.array, bias, offsets: list[int], rows: int
) -> mx.array:
    """conv_taps where all taps' outputs together are no wider than the input (taps x O <= C: a
    conv_out to a few channels, the audio decoder's 128 -> 2): one GEMM of every input row with every
    tap's weights, prod = flat @ taps^T (P, taps x O), then out[r] = bias + sum_i prod[r + off_i, tap
    i's O columns]. Per tap (or per Winograd component) each GEMM would be O wide, where no BLAS is
    efficient, and Winograd would transform the whole C-wide input for O outputs."""
    t, o, c = taps.shape
    flat, taps = mx.contiguous(flat), mx.contiguous(taps)  # no-ops for a fresh input, tap-major weights
    out = mx.zeros((flat.shape[0], o), mx.float32)
    mx.eval(flat, taps, out, *([] if bias is None else [bias]))
    xv, wv, ov = (np.array(a, copy=False) for a in (flat, taps, out))  # views (numpy 2: never copies)
    prod = np.empty((flat.shape[0], t * o), np.float32)  # at most the input's size
    gemm.sgemm(
        _ROW_MAJOR, _NO_TRANS, _TRANS, flat.shape[0], t * o, c, 1.0, xv.ctypes.data, c,
        wv.ctypes.data, c, 0.0, prod.ctypes.data, t * o,
    )  # fmt: skip
    acc = ov[:rows]
    if bias is not None:
        acc[...] = np.array(bias, copy=False).astype(np.float32, copy=False)
    for i, off in enumerate(offsets):
        acc += prod[off : off + rows, i * o : (i + 1) * o]
    return out


# Off: transposed 1-D convs run as MLX's matmul and overlap-add (the tests' "mlx" kernels)
TRANSPOSED_CONV = True


def conv_transpose1d_applies(dtype: mx.Dtype) -> bool:
    """Whether a transposed 1-D conv computing in dtype runs as conv_transpose1d here: float32 on the
    CPU with MKL or OpenBLAS (ltx.kernels.blas)."""
    return TRANSPOSED_CONV and dtype == mx.float32 and cpu_backend() and _gemm() is not None


def conv_transpose1d(
    x: mx.array, weight: mx.array, bias: mx.array | None, stride: int, padding: int
) -> mx.array:
    """PyTorch's conv_transpose1d of x (B, N, C) with an MLX weight (O, K, C) -> (B, (N - 1) u + K - 2 p,
    O), u = stride, p = padding. Input row n adds x[n] @ W[:, t]^T to output row n u + t: each block
    of u taps is one GEMM whose (N, u O) output rows are the output's rows from i u on (ldc = u O),
    added in place, so no (N, K, O) product or overlap-add pass is made. With a tap-major weight
    (taps_layout) its (K O, C) rows are read with no copy."""
    gemm = _gemm()
    b, n, c = x.shape
    o, k, _ = weight.shape
    u, blocks = stride, -(-k // stride)
    x = mx.contiguous(x)
    taps = mx.contiguous(weight.transpose(1, 0, 2))  # (K, O, C): free if tap-major
    out = mx.zeros((b, (n + blocks - 1) * u, o), mx.float32)
    mx.eval(x, taps, out, *([] if bias is None else [bias]))
    xv, wv, ov = (np.array(a, copy=False) for a in (x, taps, out))  # views (numpy 2: never copies)
    if bias is not None:
        ov[...] = np.array(bias, copy=False).astype(np.float32, copy=False)
    for bi, i in itertools.product(range(b), range(blocks)):
        width = min(u, k - i * u) * o  # the last block may hold fewer than u taps
        gemm.sgemm(
            _ROW_MAJOR, _NO_TRANS, _TRANS, n, width, c, 1.0, xv[bi].ctypes.data, c,
            wv[i * u].ctypes.data, c, 1.0, ov[bi, i * u].ctypes.data, u * o,
        )  # fmt: skip
    return out[:, padding : padding + (n - 1) * u + k - 2 * padding]


# Off: BigVGAN's anti-aliased activations run as MLX's grouped convs (the tests' "mlx" kernels)
RESAMPLING = True
# snake_resampled computes about this many output values (rows x channels) per task, every pass of
# a task over arrays that stay in the core's cache (bench/ab_results.md, `--what activation`)
RESAMPLE_CHUNK_VALUES = 1 << 16


def resampling_applies(dtype: mx.Dtype) -> bool:
    """Whether BigVGAN's anti-aliased activations computing in dtype run as snake_resampled here:
    float32 on the CPU backend."""
    return RESAMPLING and dtype == mx.float32 and cpu_backend()


class Resampling(NamedTuple):
    """An anti-aliased activation's two filters as taps over rows, for snake_resampled. The signal
    upsampled `ratio` times is kept as its ratio phases: phase p row q is upsampled row ratio q + p,
    sum(coefficient * x[q + offset]) over up[p]'s (offset, coefficient), rows outside x reading its
    nearest edge row. Output row r is sum(coefficient * phase[r + offset]) over down's (phase, offset,
    coefficient): the downsampling filter's stride equals the ratio."""

    ratio: int
    up: tuple[tuple[tuple[int, float], ...], ...]
    down: tuple[tuple[int, int, float], ...]


def snake_resampled(
    x: np.ndarray, taps: Resampling, scale: np.ndarray, gain: np.ndarray, out: np.ndarray
) -> None:
    """out = downsample(SnakeBeta(upsample(x))) for x and out (L, C) float32, SnakeBeta being
    y + gain sin^2(y scale) per channel: BigVGAN's anti-aliased activation (ltx.audio.vocoder.Activation1d).
    The upsampled signal, where the activation runs, is clamped to its own edges, as the downsampling
    filter's replicate padding reads it.

    Both filters are the same for every channel, so each tap is one multiply-add over contiguous
    rows x channels; the rows are split into tasks of RESAMPLE_CHUNK_VALUES that run on both cores,
    each through every pass while its few arrays sit in the core's cache. No pass over the whole
    upsampled signal: it exists one task's rows at a time."""
    if not all(a.dtype == np.float32 and a.flags.c_contiguous for a in (x, out)) or out.shape != x.shape:
        raise ValueError("snake_resampled: x and out must be C-contiguous float32 arrays of one (L, C) shape")
    length, c = x.shape
    rows = min(length, max(1, RESAMPLE_CHUNK_VALUES // c))
    lo = min(offset for _, offset, _ in taps.down)
    hi = max(offset for _, offset, _ in taps.down)
    n = rows + hi - lo  # phase rows a task computes, at most
    scale_rows = np.tile(scale.astype(np.float32, copy=False), n)  # per-channel factors of n rows:
    gain_rows = np.tile(gain.astype(np.float32, copy=False), n)  # flat passes, not broadcasts
    tasks = [(r, min(length, r + rows)) for r in range(0, length, rows)]
    _run(lambda part: _snake_resampled_rows(part, x, taps, scale_rows, gain_rows, out, lo, hi), tasks)


def _snake_resampled_rows(
    tasks: list, x, taps: Resampling, scale_rows, gain_rows, out, lo: int, hi: int
) -> None:
    length, c = x.shape
    u = taps.ratio
    x_lo = min(offset for phase in taps.up for offset, _ in phase)
    x_hi = max(offset for phase in taps.up for offset, _ in phase)
    for r0, r1 in tasks:
        q0, q1 = r0 + lo, r1 + hi  # the phase rows this task's output rows read
        n = (q1 - q0) * c
        a0, a1 = q0 + x_lo, q1 + x_hi  # the input rows those read
        if 0 <= a0 and a1 <= length:
            window = x[a0:a1].reshape(-1)
        else:  # replicate padding: each row index clamped into [0, L)
            window = scratch_rows("snake_x", a1 - a0, c)
            np.take(x, np.clip(np.arange(a0, a1), 0, length - 1), axis=0, out=window)
            window = window.reshape(-1)
        phases = _scratch_floats("snake_phases", u * n)[: u * n].reshape(u, n)
        tmp = _scratch_floats("snake_tmp", n)[:n]
        for acc, phase_taps in zip(phases, taps.up, strict=True):
            for i, (offset, coefficient) in enumerate(phase_taps):
                src = window[(offset - x_lo) * c :][:n]
                if i == 0:
                    np.multiply(src, coefficient, out=acc)
                else:
                    np.multiply(src, coefficient, out=tmp)
                    acc += tmp
            np.multiply(acc, scale_rows[:n], out=tmp)  # SnakeBeta in place
            np.sin(tmp, out=tmp)
            np.multiply(tmp, tmp, out=tmp)
            np.multiply(tmp, gain_rows[:n], out=tmp)
            acc += tmp
        if q0 < 0 or q1 > length:  # upsampled rows outside [0, u L) read its nearest edge row
            grid = phases.reshape(u, q1 - q0, c)
            for q in [*range(q0, min(0, q1)), *range(max(length, q0), q1)]:
                for p in range(u):
                    m = min(max(q * u + p, 0), u * length - 1)
                    grid[p, q - q0] = grid[m % u, m // u - q0]
        m = (r1 - r0) * c
        dst, tmp = out[r0:r1].reshape(-1), tmp[:m]
        for i, (p, offset, coefficient) in enumerate(taps.down):
            src = phases[p, (offset - lo) * c :][:m]
            if i == 0:
                np.multiply(src, coefficient, out=dst)
            else:
                np.multiply(src, coefficient, out=tmp)
                dst += tmp


# conv3d_frames keeps at most this many im2col values at once (128 MB): a chunk of input frames
FRAME_COLS_ELEMENTS = 1 << 25
# Off: zero-padded 3-D convs run as MLX's conv3d (the tests' "mlx" kernels)
FRAMES_CONV = True


def conv3d_frames_applies(dtype: mx.Dtype) -> bool:
    """Whether a zero-padded 3-D conv computing in dtype runs as conv3d_frames here: float32 on the
    CPU with MKL or OpenBLAS (ltx.kernels.blas)."""
    return FRAMES_CONV and dtype == mx.float32 and cpu_backend() and _gemm() is not None


def frames_layout(weight: mx.array) -> mx.array:
    """The same (O, Kt, Kh, Kw, C) weight with its memory laid out (Kt, O, Kh, Kw, C): each temporal
    tap's (O, Kh * Kw * C) matrix is then contiguous, read by conv3d_frames with no per-call copy."""
    return mx.contiguous(weight.transpose(1, 0, 2, 3, 4)).transpose(1, 0, 2, 3, 4)


def _im2col_frames(tasks: list, xp: np.ndarray, cols: np.ndarray, kh: int, kw: int) -> None:
    # xp (F, H + kh - 1, W + kw - 1, C) spatially padded frames; cols (F', H, W, kh * kw * C); a task
    # is (frame in cols, frame in xp)
    h, w, c = cols.shape[1], cols.shape[2], xp.shape[-1]
    for dst, src in tasks:
        for i, j in itertools.product(range(kh), range(kw)):
            t = i * kw + j
            np.copyto(cols[dst, :, :, t * c : (t + 1) * c], xp[src, i : i + h, j : j + w])


def conv3d_frames(
    x: mx.array, weight: mx.array, bias: mx.array | None, padding: tuple[int, int, int]
) -> mx.array:
    """Stride-1 conv3d of x (B, F, H, W, C) with zero padding (pt, ph, pw) and an MLX weight
    (O, Kt, Kh, Kw, C) -> (B, F + 2 pt - Kt + 1, .., O), as one GEMM per temporal tap over a spatial
    im2col of the input frames (Kh Kw C values per output position, one chunk of frames at a time).

    A temporal tap that would read a zero padding frame is skipped rather than multiplied: with
    F frames and Kt = 3, pt = 1, that is 2 of 3F frame-taps (a third of the work at F = 2, the
    upsampler's short clips). The GEMMs' inner dimension K = Kh Kw C (9,216 in the upsampler) is
    deep enough for the BLAS's best kernels; the im2col is 9x a chunk's input, at most
    FRAME_COLS_ELEMENTS values (whole frames, at least one)."""
    gemm = _gemm()
    b, f, h, w, c = x.shape
    o, kt, kh, kw, _ = weight.shape
    pt, ph, pw = padding
    fo, ho, wo = f + 2 * pt - kt + 1, h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    k, hw = kh * kw * c, ho * wo
    xp = mx.pad(x, [(0, 0), (0, 0), (ph, ph), (pw, pw), (0, 0)]) if ph or pw else x
    taps = mx.contiguous(weight.transpose(1, 0, 2, 3, 4))  # (Kt, O, Kh, Kw, C): free if frames_layout
    out = mx.zeros((b, fo, ho, wo, o), mx.float32)
    mx.eval(xp, taps, out, *([] if bias is None else [bias]))
    xv, wv, ov = (np.array(a, copy=False) for a in (xp, taps, out))  # views (numpy 2: never copies)
    if bias is not None:
        ov[...] = np.array(bias, copy=False).astype(np.float32, copy=False)
    per = max(1, FRAME_COLS_ELEMENTS // (hw * k))
    cols = np.empty((min(per, f), ho, wo, k), np.float32)
    for bi, g0 in itertools.product(range(b), range(0, f, per)):
        g1 = min(f, g0 + per)  # input frames g0..g1-1; output frame fr reads input fr - pt + dt
        src = xv[bi]
        _run(
            lambda part, src=src: _im2col_frames(part, src, cols, kh, kw),
            [(g - g0, g) for g in range(g0, g1)],
        )
        for dt in range(kt):
            f0, f1 = max(0, g0 + pt - dt), min(fo, g1 + pt - dt)
            if f1 > f0:
                gemm.sgemm(
                    _ROW_MAJOR, _NO_TRANS, _TRANS, (f1 - f0) * hw, o, k, 1.0,
                    cols[f0 - pt + dt - g0].ctypes.data, k, wv[dt].ctypes.data, k,
                    1.0, ov[bi, f0].ctypes.data, o,
                )  # fmt: skip
    return out


def _rms_into(x: np.ndarray, out: np.ndarray, eps: float) -> None:
    """out = x / sqrt(mean(x^2 over the last axis) + eps), one cache-sized block."""
    ms = np.einsum("...c,...c->...", x, x)[..., None]
    ms *= 1.0 / x.shape[-1]
    ms += eps
    np.sqrt(ms, out=ms)
    np.divide(x, ms, out=out)


def _rows_kernel(x: mx.array, kernel) -> mx.array:
    """A new float32 array shaped like x (B, T, D), filled by kernel(tasks, x, out) (numpy views) over
    cache-sized blocks of rows, a task (b, first row, end row), split over the threads."""
    b, t, d = x.shape
    out = mx.zeros(x.shape, mx.float32)
    mx.eval(x, out)
    src, dst = np.array(x, copy=False), np.array(out, copy=False)  # views (numpy 2: copy=False never copies)
    step = max(1, BLOCK_ELEMENTS // d)
    tasks = [(i, r, min(t, r + step)) for i in range(b) for r in range(0, t, step)]
    _run(lambda part: kernel(part, src, dst), tasks)
    return out


def _norm_silu_blocks(tasks: list, x: np.ndarray, out: np.ndarray, scale, shift, eps: float) -> None:
    # x, out (B, ..., H, W, C) (x may be a strided view); a task is (leading index, first row, end row)
    for lead, r0, r1 in tasks:
        blk, o = x[lead][r0:r1], out[lead][r0:r1]
        _rms_into(blk, o, eps)
        if scale is not None:
            o *= scale[lead[0]]
            o += shift[lead[0]]
        t = np.negative(o)  # silu(o) = o / (1 + exp(-o))
        np.exp(t, out=t)
        t += 1.0
        np.divide(o, t, out=o)


def pixel_norm_silu(
    x: mx.array, eps: float, scale: mx.array | None = None, shift: mx.array | None = None
) -> mx.array:
    """silu(x / sqrt(mean_c(x^2) + eps) * (1 + scale) + shift) of a float32 (B, ..., H, W, C) array
    into a new array; scale and shift are (B, C) (both or neither)."""
    *lead, h, w, c = x.shape
    out = mx.zeros(x.shape, mx.float32)
    mx.eval(x, out, *([] if scale is None else [scale, shift]))
    src = np.array(x, copy=False)  # a view, strided if x is (a conv's cropped output)
    dst = np.array(out, copy=False)
    sc = None if scale is None else 1.0 + np.array(scale, dtype=np.float32)
    sh = None if shift is None else np.array(shift, dtype=np.float32)
    step = max(1, BLOCK_ELEMENTS // (w * c))
    tasks = [(i, r, min(h, r + step)) for i in np.ndindex(*lead) for r in range(0, h, step)]
    _run(lambda part: _norm_silu_blocks(part, src, dst, sc, sh, eps), tasks)
    return out


def _norm_rope_rows(tasks: list, x, out, w, cos, sin, eps: float) -> None:
    # x, out (B, T, D); cos/sin (B or 1, T, H, Dh/2) of the split layout; a task is (b, first, end row)
    heads, half = cos.shape[2], cos.shape[3]
    for b, r0, r1 in tasks:
        y = out[b, r0:r1]
        _rms_into(x[b, r0:r1], y, eps)
        y *= w
        pairs = y.reshape(r1 - r0, heads, 2, half)
        y1, y2 = pairs[:, :, 0], pairs[:, :, 1]
        c, s = cos[min(b, cos.shape[0] - 1), r0:r1], sin[min(b, sin.shape[0] - 1), r0:r1]
        t = y1 * s  # (y1, y2) -> (y1 c - y2 s, y2 c + y1 s)
        y1 *= c
        y1 -= y2 * s
        y2 *= c
        y2 += t


def rms_norm_rope(x: mx.array, weight: mx.array, cos: mx.array, sin: mx.array, eps: float) -> mx.array:
    """RoPE (the split layout: cos/sin (B or 1, T, H, Dh/2)) of RMSNorm(x) * weight, x float32
    (B, T, H * Dh), into a new array: one numpy pass per cache-sized block of rows where MLX's
    compiled graph makes several."""
    w = np.array(weight, dtype=np.float32)
    c, s = (np.array(a.astype(mx.float32), copy=False) for a in (cos, sin))
    return _rows_kernel(x, lambda tasks, src, dst: _norm_rope_rows(tasks, src, dst, w, c, s, eps))


def _rms_rows(tasks: list, x, out, w, scale, shift, eps: float) -> None:
    # x, out (B, T, D); w (D,) or None; scale (1 + scale) and shift (B, 1 or T, D) or None; a task
    # is (b, first row, end row)
    for b, r0, r1 in tasks:
        y = out[b, r0:r1]
        _rms_into(x[b, r0:r1], y, eps)
        if w is not None:
            y *= w
        if scale is not None:
            rows = slice(None) if scale.shape[1] == 1 else slice(r0, r1)
            y *= scale[b, rows]
            y += shift[b, rows]


def rms_norm_modulate(
    x: mx.array,
    eps: float,
    weight: mx.array | None = None,
    scale: mx.array | None = None,
    shift: mx.array | None = None,
) -> mx.array:
    """RMSNorm(x) [* weight] [* (1 + scale) + shift] of a float32 (B, T, D) array into a new array, one
    numpy pass per cache-sized block of rows: MLX's CPU rms_norm alone takes ~4x torch's time, and
    the AdaLN modulation is another pass. scale and shift (both or neither) broadcast to (B, T, D)
    from (B, 1, D) or (B, T, D)."""
    b = x.shape[0]
    w = None if weight is None else np.array(weight, dtype=np.float32)
    sc = sh = None
    if scale is not None:
        sc = 1.0 + np.broadcast_to(np.array(scale, dtype=np.float32), (b,) + scale.shape[1:])
        sh = np.broadcast_to(np.array(shift, dtype=np.float32), (b,) + shift.shape[1:])
    return _rows_kernel(x, lambda tasks, src, dst: _rms_rows(tasks, src, dst, w, sc, sh, eps))


def _group_stats_blocks(tasks: list, x, groups: int, stats: list) -> None:
    # x (B, N, C); a task is (b, first row, end row); stats[i] <- (b, rows, per-group mean, M2)
    for i, (b, r0, r1) in tasks:
        v = x[b, r0:r1].reshape(r1 - r0, groups, -1)
        mean = v.mean(axis=(0, 2))
        d = v - mean[:, None]
        stats[i] = (b, r1 - r0, mean.astype(np.float64), np.einsum("ngc,ngc->g", d, d).astype(np.float64))


def _group_apply_blocks(tasks: list, x, out, scale, shift, residual) -> None:
    # out = silu(x * scale[b] + shift[b] (+ residual)); scale/shift (B, C); a task is (b, first, end row)
    for b, r0, r1 in tasks:
        o = out[b, r0:r1]
        np.multiply(x[b, r0:r1], scale[b], out=o)
        o += shift[b]
        if residual is not None:
            o += residual[b, r0:r1]
        t = np.negative(o)  # silu(o) = o / (1 + exp(-o))
        np.exp(t, out=t)
        t += 1.0
        np.divide(o, t, out=o)


def group_norm_silu(
    x: mx.array, groups: int, weight: mx.array, bias: mx.array, eps: float, residual: mx.array | None = None
) -> mx.array:
    """silu(GroupNorm(x) (+ residual)) of a float32 channels-last (B, ..., C) array into a new array:
    GroupNorm as torch's (biased variance over each group's channels and every position), affine.
    Two passes of cache-sized blocks over both cores: per-block means and squared deviations
    (combined exactly, Chan et al.), then normalise, scale, shift, add and SiLU in one."""
    b, c = x.shape[0], x.shape[-1]
    out = mx.zeros(x.shape, mx.float32)
    mx.eval(x, out, weight, bias, *([] if residual is None else [residual]))
    src = np.array(x, copy=False).reshape(b, -1, c)  # views (numpy 2: copy=False never copies)
    dst = np.array(out, copy=False).reshape(b, -1, c)
    res = None if residual is None else np.array(residual, copy=False).reshape(b, -1, c)
    n = src.shape[1]
    step = max(1, BLOCK_ELEMENTS // c)
    blocks = [(i, r, min(n, r + step)) for i in range(b) for r in range(0, n, step)]
    stats: list = [None] * len(blocks)
    _run(lambda part: _group_stats_blocks(part, src, groups, stats), list(enumerate(blocks)))
    per = c // groups
    scale, shift = np.empty((b, c), np.float32), np.empty((b, c), np.float32)
    w, bb = np.array(weight, dtype=np.float32), np.array(bias, dtype=np.float32)
    for i in range(b):
        parts = [s for s in stats if s[0] == i]
        count = sum(s[1] for s in parts) * per
        mean = sum(s[1] * s[2] for s in parts) / sum(s[1] for s in parts)
        m2 = sum(s[3] + s[1] * per * (s[2] - mean) ** 2 for s in parts)
        inv = 1.0 / np.sqrt(m2 / count + eps)
        scale[i] = w * np.repeat(inv, per)
        shift[i] = bb - np.repeat(mean * inv, per) * w
    _run(lambda part: _group_apply_blocks(part, src, dst, scale, shift, res), blocks)
    return out
