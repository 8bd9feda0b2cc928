"""The norms in numpy, one pass per cache-sized block of rows on both cores: RMSNorm (with q/k RoPE,
with the blocks' AdaLN modulation), the VAEs' pixel norm + SiLU, the upsampler's GroupNorm + SiLU.
"""

from __future__ import annotations

from ltx.kernels import threads  # noqa: F401  (ltx.backend: the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

# The VAE's norm + SiLU is six MLX passes against numpy's one: numpy wins from a few blocks up.
NORM_MIN_ELEMENTS = 1 << 15


def norm_applies(x: mx.array) -> bool:
    """Whether the numpy RMSNorms (rms_norm_modulate, rms_norm_rope) take x: float32 (B, T, D) on the
    CPU backend, from NORM_MIN_ELEMENTS."""
    return x.dtype == mx.float32 and x.ndim == 3 and threads.applies(x.size, NORM_MIN_ELEMENTS)


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
    step = max(1, threads.BLOCK_ELEMENTS // d)
    tasks = [(i, r, min(t, r + step)) for i in range(b) for r in range(0, t, step)]
    threads.run(lambda part: kernel(part, src, dst), tasks)
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
    step = max(1, threads.BLOCK_ELEMENTS // (w * c))
    tasks = [(i, r, min(h, r + step)) for i in np.ndindex(*lead) for r in range(0, h, step)]
    threads.run(lambda part: _norm_silu_blocks(part, src, dst, sc, sh, eps), tasks)
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
    step = max(1, threads.BLOCK_ELEMENTS // c)
    blocks = [(i, r, min(n, r + step)) for i in range(b) for r in range(0, n, step)]
    stats: list = [None] * len(blocks)
    threads.run(lambda part: _group_stats_blocks(part, src, groups, stats), list(enumerate(blocks)))
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
    threads.run(lambda part: _group_apply_blocks(part, src, dst, scale, shift, res), blocks)
    return out
