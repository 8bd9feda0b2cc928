"""Kernels for the hot spots of MLX's CPU backend: attention's softmax, GELU and the VAE's norm + SiLU
in numpy; convolutions as one matmul per kernel tap (conv_taps, below).

MLX's CPU elementwise kernels are scalar code: `exp` over the attention scores and GELU run 13-19x
slower than torch's (bench/results.md, micro rows), where numpy's vectorised ufuncs keep up, and at
video token counts they are most of a layer's time. On the CPU an evaluated MLX array's buffer is ordinary host memory, so numpy works on
it in place through the buffer protocol, with no copy either way, a cache-sized block at a time and
split over threads (numpy releases the GIL). The GPU backends keep MLX's own kernels.

Attention, per query chunk:

  S = (scale q) K^T                    MLX matmul (the optimised BLAS)
  P = exp(S + mask - rowmax)           numpy, in place, a cache-sized block of rows at a time
  O = (P V) / rowsum(P)                MLX matmul; normalising O instead of P saves a pass over P

The result equals softmax attention up to float32 rounding (tests/test_transformer.py).
"""

from __future__ import annotations

import itertools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

# Below this many elements MLX's lazy kernels are as fast and keep the graph lazy.
MIN_ELEMENTS = 1 << 20
# The VAE's norm + SiLU is six MLX passes against numpy's one: numpy wins from a few blocks up.
NORM_MIN_ELEMENTS = 1 << 15
# Elements processed through every pass of a kernel while they sit in the core's cache.
BLOCK_ELEMENTS = 1 << 16


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    # numpy releases the GIL inside ufuncs and reductions, so threads split the rows across cores
    return ThreadPoolExecutor(max(1, os.cpu_count() or 1), thread_name_prefix="ltx-cpu-kernels")


def applies(elements: int, minimum: int | None = None) -> bool:
    return mx.default_device() == mx.cpu and elements >= (MIN_ELEMENTS if minimum is None else minimum)


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
    """Softmax attention on (B, H, T, Dh), chunked over queries so at most chunk_elements scores
    exist at once; mask is an additive bias broadcastable to (B, H, Tq, Tk)."""
    b, h, tq, _ = q.shape
    tk = k.shape[2]
    q = (q * scale).astype(mx.float32)
    kt = k.astype(mx.float32).swapaxes(-1, -2)  # (B, H, Dh, Tk)
    v32 = v.astype(mx.float32)
    if mask is not None:
        mask = mask.astype(mx.float32)
        mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
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


# A conv as one shifted matmul per kernel tap runs 2-3x faster than MLX's CPU conv1d/2d/3d (and than
# an im2col matmul) with up to 512 channels; with more input channels MLX's conv3d is faster, and with
# more output channels only (a decoder level's depth-to-space conv) it is ~10% faster but holds a 27x
# im2col copy of its input, the decode's peak (bench/vae_results.md, conv rows).
TAPS_MAX_CHANNELS = 512


def conv_taps_applies(in_channels: int) -> bool:
    """Whether a conv reading in_channels runs as conv_taps here (at any output width: see above)."""
    return mx.default_device() == mx.cpu and in_channels <= TAPS_MAX_CHANNELS


def taps_layout(weight: mx.array) -> mx.array:
    """The same (O, K1, .., Kn, C) weight with its memory laid out tap-major, (K1, .., Kn, O, C):
    each tap's (O, C) matrix is then contiguous and conv_taps reads it with no per-call copy (mx.conv*
    copies it back)."""
    n = weight.ndim - 2
    tap_major = mx.contiguous(weight.transpose(*range(1, n + 1), 0, n + 1))
    return tap_major.transpose(n, *range(n), n + 1)


def conv_taps(x: mx.array, weight: mx.array, bias: mx.array | None = None, dilation: int = 1) -> mx.array:
    """Stride-1 conv of an already padded x (B, P1, .., Pn, C) with an MLX conv weight
    (O, K1, .., Kn, C) -> (B, P1 - e1, .., Pn - en, O), e = dilation * (K - 1).

    With x flattened to rows of C channels, the input of tap (k1, .., kn) for output row r is row
    r + dilation * sum_d k_d * stride_d (stride_d = P_{d+1} * .. * P_n): every tap is one matmul of
    a contiguous slice of x (a view, no copy) with that tap's (C, O) weight, accumulated with addmm.
    Rows are computed on the padded grid and the border rows dropped: no im2col copy is made.
    """
    b, *padded, c = x.shape
    o, *kernel = weight.shape[:-1]
    n = len(padded)
    ext = [dilation * (k - 1) for k in kernel]
    strides = [math.prod(padded[d + 1 :]) for d in range(n)]
    # one past the last valid output row, (b*P1 - e1 - 1, P2 - e2 - 1, ..); rows between batch items
    # or in the border are computed and dropped
    rows = (b * padded[0] - ext[0] - 1) * strides[0] + 1
    rows += sum((p - e - 1) * st for p, e, st in zip(padded[1:], ext[1:], strides[1:], strict=True))
    flat = x.reshape(-1, c)
    taps = weight.transpose(*range(1, n + 1), 0, n + 1).reshape(-1, o, c)  # free if tap-major
    out = None
    for i, ks in enumerate(itertools.product(*(range(k) for k in kernel))):
        off = dilation * sum(k * st for k, st in zip(ks, strides, strict=True))
        a, wi = flat[off : off + rows], taps[i].T
        if out is None:
            out = a @ wi if bias is None else mx.addmm(bias, a, wi)
        else:
            out = mx.addmm(out, a, wi)
    out = mx.pad(out, [(0, b * math.prod(padded) - rows), (0, 0)]).reshape(b, *padded, o)
    return out[(slice(None), *(slice(0, p - e) for p, e in zip(padded, ext, strict=True)))]


def _norm_silu_blocks(tasks: list, x: np.ndarray, out: np.ndarray, scale, shift, eps: float) -> None:
    # x, out (B, ..., H, W, C) (x may be a strided view); a task is (leading index, first row, end row)
    c = x.shape[-1]
    for lead, r0, r1 in tasks:
        blk, o = x[lead][r0:r1], out[lead][r0:r1]
        ms = np.einsum("...c,...c->...", blk, blk)[..., None]
        ms *= 1.0 / c
        ms += eps
        np.sqrt(ms, out=ms)
        np.divide(blk, ms, out=o)
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
