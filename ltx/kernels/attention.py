"""Softmax attention on MLX's CPU backend, with a BLAS it can call single-threaded (numpy's OpenBLAS
where it runs the conv GEMMs, non-Intel CPUs; else MKL, which ltx.backend loads on Linux), per block of query rows of one head,
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

from contextlib import nullcontext

from ltx.kernels import blas, threads  # noqa: F401  (ltx.backend: the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

_ROW_MAJOR, _NO_TRANS, _TRANS = blas.ROW_MAJOR, blas.NO_TRANS, blas.TRANS
_B_MATRIX, _PACKED = blas.B_MATRIX, blas.PACKED


# The blocked attention beats mx.fast.scaled_dot_product_attention from ~16K scores up: 2x at 127K
# (the audio self-attention), 4x at 1M (audio to text); below, its thread hand-offs cost more.
BLOCKED_MIN_ELEMENTS = 1 << 15


# The blocked attention works on blocks of query rows x KEY_BLOCK keys: each block's scores go
# through the two GEMMs and the softmax passes before the next block of keys. Rows per block =
# SCORE_BLOCK_ELEMENTS // keys per block, within ATTENTION_ROWS: 1,024 rows x 512 keys at 6,144 keys.
# Against whole rows of keys (170 rows x 6,144, what ran before) the GEMMs run on taller blocks (a
# GEMM's cost per flop falls with its rows) whose scores still sit in the core's cache: the video
# self-attention alone takes 0.91x the time, a forward 0.94x (`python bench/ab.py --what keys`;
# 0.99x where the scores need the max shift, which adds a pass per block). Few keys take one block of
# keys and taller blocks of rows: 2,048 rows x 126 audio keys run 0.82x the time of 512-row blocks,
# while each worker still gets ATTENTION_TASKS_PER_WORKER blocks to balance.
KEY_BLOCK = 512


SCORE_BLOCK_ELEMENTS = 1 << 19


ATTENTION_ROWS = (16, 2048)


ATTENTION_TASKS_PER_WORKER = 4


def attention_applies(scores: int) -> bool:
    """Whether an attention with this many scores (B * H * Tq * Tk) runs here rather than as MLX's
    fused kernel: from BLOCKED_MIN_ELEMENTS blocked (with MKL or numpy's OpenBLAS), from threads.MIN_ELEMENTS
    without (chunked)."""
    return threads.applies(scores, BLOCKED_MIN_ELEMENTS if blocked_attention() else threads.MIN_ELEMENTS)


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
    step = max(1, threads.BLOCK_ELEMENTS // tk)
    tasks = [(i, j, r, min(c, r + step)) for i in range(b) for j in range(h) for r in range(0, c, step)]
    threads.run(lambda part: _exp_rows(part, s, sums, mask), tasks)
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


def library() -> str | None:
    """The library of the blocked attention's GEMMs: numpy's OpenBLAS where it runs the conv kernels'
    GEMMs (ltx.kernels.blas.gemm: non-Intel CPUs, or LTX_CPU_GEMM=openblas), else MKL; None with neither.
    On an AMD EPYC (Zen 4 class), where MKL's GEMMs stay below the machine's peak, a transformer
    forward takes 0.96x the time with the attention on OpenBLAS (8 pairs, 0.89-0.99), though the
    video self-attention alone measured the same on both (`python bench/ab.py --what
    attention_blas`, bench/ab_results.md)."""
    gemm = blas.gemm()
    if gemm is not None and gemm.name == "openblas" and blas.serial_openblas() is not None:
        return "openblas"
    return "mkl" if blas.mkl() is not None else None


def blocked_attention() -> bool:
    """Whether attention runs blocked here (the CPU backend with MKL or numpy's OpenBLAS): no score
    matrix is allocated."""
    return threads.cpu_backend() and library() is not None


# exp(s) of a score with |s| <= this is a normal float32 and a row of 2^31 of them sums without
# overflow, so the softmax needs no max subtraction (exp(80) = 5.5e34; float32 max 3.4e38)
EXP_SAFE = 64.0


# numpy's float32 exp2 takes ~16-20x its time on a block where some scores fall below -126 (results
# in or below float32's subnormals, or masked keys: a slow path for those lanes), which a peaked
# softmax's shifted scores do. So blocks whose scores are not bounded below (shifted or masked ones)
# are raised to this floor first, one pass: a term of 2^-125 (~2e-38) next to a shifted row's
# largest, 1 (with scores in base e the floor is -125 ln 2, the same value). The video self-attention with 5x larger q and k takes 0.35x
# the time with it, 0.99x with 3x (`python bench/ab.py --what floor`).
EXP2_FLOOR = -125.0


# The blocked attention's scores are made in base 2 (times scale x log2(e)): numpy's float32
# exp2 takes ~0.48x the time of its exp; and its row sums are one BLAS matrix-vector product with a
# vector of ones, 0.48-0.64x the time of numpy's sum over rows (170 rows x 6,144 keys). Off: exp and
# numpy's sum, what ran before (`python bench/ab.py --what softmax`)
SOFTMAX_BASE2 = True


LOG2E = float(np.log2(np.e))


def _base() -> float:
    """The factor of the blocked attention's scores: log2(e) in base 2 (SOFTMAX_BASE2), else 1."""
    return LOG2E if SOFTMAX_BASE2 else 1.0


class _PackedHead:
    """The blocked attention's GEMMs on MKL: one head's K (times the softmax scale) and V in MKL's
    packed GEMM layout, one packed matrix per block of keys, made once per head and reused by every
    block of query rows. cblas_sgemm repacks them on every call: with both cores busy that costs up
    to ~7% of the GEMMs' time at 6,144 keys x 128 (`python bench/ab.py --what pack`)."""

    def __init__(self, blas: blas.Mkl, rows: int, tk: int, d: int, keys: int):
        self.blas, self.shape, self.head = blas, (rows, tk, d, keys), None
        self.sgemv = blas.sgemv
        self.blocks = [(c, min(tk, c + keys)) for c in range(0, tk, keys)]
        self.k_size = -(-blas.pack_size(_B_MATRIX, rows, keys, d) // 4)  # floats per block
        self.v_size = -(-blas.pack_size(_B_MATRIX, rows, d, keys) // 4)
        n = len(self.blocks)
        self.k = threads.scratch_floats("packed_k", n * self.k_size)
        self.v = threads.scratch_floats("packed_v", n * self.v_size)

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
    blas.SerialOpenBlas.single_threaded()): K and V read in place, where the projections put
    them, by plain sgemm calls (OpenBLAS has no packed-GEMM API and packs inside each call)."""

    def __init__(self, blas: blas.SerialOpenBlas, tk: int, keys: int):
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
    # library: "mkl" or "openblas" (library()); q (B, H, Tq, D), k/v (B, H, Tk, D), o (B,
    # Tq, H, D) numpy views with contiguous rows; mask in the scores' base (times _base()); bounds
    # (B, H, Tq): an upper bound of |score| (natural units) per query row; keys: keys per block; a
    # task is (b, h, first row, end row)
    ldq, ldo = q.strides[-2] // q.itemsize, o.strides[-3] // o.itemsize
    tk, d = k.shape[2], k.shape[3]
    most = max(r1 - r0 for *_, r0, r1 in tasks)
    if library == "mkl":
        mkl = blas.mkl()
        mkl.set_threads(1)  # this thread's MKL calls run on this core only; the pool spreads the tasks
        head: _PackedHead | _StridedHead = _PackedHead(mkl, most, tk, d, keys)
    else:
        head = _StridedHead(blas.serial_openblas(), tk, keys)
    buf = threads.scratch_floats("scores", most * keys)
    ones = threads.scratch_floats("ones", keys)[:keys]
    ones.fill(1.0)
    sums, shift, top = (threads.scratch_floats(name, most) for name in ("sums", "shift", "top"))
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
    time of copying the heads contiguous first (`python bench/ab.py --what layout`,
    bench/ab_results.md). Other layouts are copied."""
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
    balanced = -(-b * h * tq // (ATTENTION_TASKS_PER_WORKER * threads.workers()))
    keys = min(tk, KEY_BLOCK)
    step = min(tq, max(lo, min(hi, SCORE_BLOCK_ELEMENTS // keys, balanced)))
    tasks = [(i, j, r, min(tq, r + step)) for i in range(b) for j in range(h) for r in range(0, tq, step)]
    lib = library()
    with blas.serial_openblas().single_threaded() if lib == "openblas" else nullcontext():
        threads.run(lambda part: _attention_rows(part, lib, *views, m, bounds, scale, keys), tasks)
    # (B, H, Tq, D) as a view of the (B, Tq, H, D) result: the caller's transpose back is free
    return out.transpose(0, 2, 1, 3).astype(dtype)
