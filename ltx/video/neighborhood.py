"""3D neighbourhood attention (NATTEN's `na3d`, non-causal) from MLX ops, for the diffusion video decoder.

Each query attends to the kernel-sized box of keys around it; at a border the box shifts inward (it is
never cut), as NATTEN and the reference's eager fallback (ltx_core/.../fallback_na/eager.py) do.

Queries are cut into small tiles; a tile attends densely to the union of its queries' boxes under a
0/-inf mask. Along each axis the tiles fall into runs of identical geometry (the interior, each border
tile), so each product of runs is one batched attention call over all its tiles, whatever the volume's
size: the key regions come from one strided view (`mx.as_strided`), the queries from one reshape. The
tiles are small (about the kernel), so the work per query is a few times the kernel's volume, where the
reference's eager fallback attends whole tiles of up to 2**25 scores.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from ltx import ops  # noqa: E402

# Bytes of stacked key/value regions one attention call may build (chunked over tiles beyond it).
REGION_BUDGET_BYTES = 256 << 20


class Run(NamedTuple):
    """Consecutive query tiles along one axis with the same geometry."""

    q0: int  # first query of the run
    n: int  # tiles in the run
    size: int  # queries per tile
    k0: int  # first key of the first tile's region (tile i's region starts at k0 + i * size)
    region: int  # keys per tile
    visible: np.ndarray  # (size, region) bool: which keys of the region each query sees


def window_starts(length: int, kernel: int) -> list[int]:
    """The first key each query attends to along one axis (the box shifts inward at the borders)."""
    kernel = min(kernel, length)
    return [min(max(i - kernel // 2, 0), length - kernel) for i in range(length)]


def tile_size(kernel: int) -> int:
    # a tile about the kernel's size: its key region is about twice the kernel, so a query pays ~2x per axis
    return 2 if kernel <= 3 else kernel + 1


def axis_runs(length: int, kernel: int, size: int | None = None) -> list[Run]:
    kernel = min(kernel, length)
    size = min(length, size or tile_size(kernel))
    starts = window_starts(length, kernel)
    runs: list[Run] = []
    for q0 in range(0, length, size):
        q1 = min(q0 + size, length)
        k0, k1 = starts[q0], starts[q1 - 1] + kernel
        rel = np.array([s - k0 for s in starts[q0:q1]])
        visible = (np.arange(k1 - k0)[None, :] >= rel[:, None]) & (
            np.arange(k1 - k0)[None, :] < rel[:, None] + kernel
        )
        last = runs[-1] if runs else None
        if (
            last is not None
            and last.size == q1 - q0
            and last.region == k1 - k0
            and last.k0 + last.n * last.size == k0
            and np.array_equal(last.visible, visible)
        ):
            runs[-1] = last._replace(n=last.n + 1)
        else:
            runs.append(Run(q0, 1, q1 - q0, k0, k1 - k0, visible))
    return runs


def _mask(runs: tuple[Run, Run, Run], dtype: mx.Dtype) -> mx.array:
    a, b, c = (r.visible for r in runs)
    vis = a[:, None, None, :, None, None] & b[None, :, None, None, :, None] & c[None, None, :, None, None, :]
    nq, nk = a.shape[0] * b.shape[0] * c.shape[0], a.shape[1] * b.shape[1] * c.shape[1]
    return mx.array(np.where(vis.reshape(nq, nk), 0.0, -np.inf).astype(np.float32)).astype(dtype)


def _regions(x: mx.array, runs: tuple[Run, Run, Run], nt: tuple[int, int], heads: int) -> mx.array:
    """Key regions of tiles [nt[0], nt[1]) of run 0 x all of runs 1, 2: (B * tiles, heads, region, Dh)."""
    b, t, h, w, c = x.shape
    st, sh, sw = h * w * c, w * c, c
    rt, rh, rw = runs
    n0 = nt[1] - nt[0]
    shape = (b, n0, rh.n, rw.n, rt.region, rh.region, rw.region, c)
    strides = (t * st, rt.size * st, rh.size * sh, rw.size * sw, st, sh, sw, 1)
    offset = (rt.k0 + nt[0] * rt.size) * st + rh.k0 * sh + rw.k0 * sw
    view = mx.as_strided(x, shape, strides, offset)
    nk = rt.region * rh.region * rw.region
    view = view.reshape(b * n0 * rh.n * rw.n, nk, heads, c // heads)
    return view.transpose(0, 2, 1, 3)


def _queries(q: mx.array, runs: tuple[Run, Run, Run], nt: tuple[int, int], heads: int) -> mx.array:
    b, _, _, _, c = q.shape
    rt, rh, rw = runs
    n0 = nt[1] - nt[0]
    t0 = rt.q0 + nt[0] * rt.size
    x = q[:, t0 : t0 + n0 * rt.size, rh.q0 : rh.q0 + rh.n * rh.size, rw.q0 : rw.q0 + rw.n * rw.size]
    x = x.reshape(b, n0, rt.size, rh.n, rh.size, rw.n, rw.size, heads, c // heads)
    x = x.transpose(0, 1, 3, 5, 7, 2, 4, 6, 8)  # (B, n0, nh, nw, heads, st, sh, sw, Dh)
    return x.reshape(b * n0 * rh.n * rw.n, heads, rt.size * rh.size * rw.size, c // heads)


def _untile(o: mx.array, b: int, runs: tuple[Run, Run, Run], n0: int, heads: int) -> mx.array:
    rt, rh, rw = runs
    dh = o.shape[-1]
    o = o.reshape(b, n0, rh.n, rw.n, heads, rt.size, rh.size, rw.size, dh)
    o = o.transpose(0, 1, 5, 2, 6, 3, 7, 4, 8)  # (B, n0, st, nh, sh, nw, sw, heads, Dh)
    return o.reshape(b, n0 * rt.size, rh.n * rh.size, rw.n * rw.size, heads * dh)


def na3d(
    q: mx.array, k: mx.array, v: mx.array, kernel: tuple[int, int, int], heads: int, scale: float = 1.0
) -> mx.array:
    """Neighbourhood attention on channels-last (B, T, H, W, heads * Dh) -> (B, T, H, W, heads * Dh)."""
    b, t, h, w, c = q.shape
    if any(d < kk for d, kk in zip((t, h, w), kernel, strict=True)):
        raise ValueError(
            f"neighbourhood attention needs (T, H, W) = {(t, h, w)} >= its kernel {tuple(kernel)}"
        )
    k, v = mx.contiguous(k), mx.contiguous(v)
    plans = [axis_runs(d, kk) for d, kk in zip((t, h, w), kernel, strict=True)]
    rows = []
    for rt in plans[0]:
        cols = []
        for rh in plans[1]:
            parts = []
            for rw in plans[2]:
                runs = (rt, rh, rw)
                mask = _mask(runs, q.dtype)
                per_tile = b * rh.n * rw.n * rt.region * rh.region * rw.region * c * q.dtype.size * 2
                step = max(1, REGION_BUDGET_BYTES // max(1, per_tile))
                outs = []
                for i in range(0, rt.n, step):
                    nt = (i, min(rt.n, i + step))
                    o = ops.attention(
                        _queries(q, runs, nt, heads),
                        _regions(k, runs, nt, heads),
                        _regions(v, runs, nt, heads),
                        scale,
                        mask,
                    )
                    outs.append(_untile(o, b, runs, nt[1] - nt[0], heads))
                parts.append(outs[0] if len(outs) == 1 else mx.concatenate(outs, axis=1))
            cols.append(parts[0] if len(parts) == 1 else mx.concatenate(parts, axis=3))
        rows.append(cols[0] if len(cols) == 1 else mx.concatenate(cols, axis=2))
    return rows[0] if len(rows) == 1 else mx.concatenate(rows, axis=1)


def na3d_reference(q, k, v, kernel, heads: int, scale: float = 1.0) -> np.ndarray:
    """The definition, one query at a time in numpy (float64): for tests."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    b, t, h, w, c = q.shape
    dh = c // heads
    starts = [window_starts(d, kk) for d, kk in zip((t, h, w), kernel, strict=True)]
    out = np.zeros_like(q)
    for i in range(t):
        for j in range(h):
            for l in range(w):  # noqa: E741
                st, sh, sw = starts[0][i], starts[1][j], starts[2][l]
                kk = k[:, st : st + kernel[0], sh : sh + kernel[1], sw : sw + kernel[2]].reshape(
                    b, -1, heads, dh
                )
                vv = v[:, st : st + kernel[0], sh : sh + kernel[1], sw : sw + kernel[2]].reshape(
                    b, -1, heads, dh
                )
                qq = q[:, i, j, l].reshape(b, heads, dh)
                s = np.einsum("bhd,bnhd->bhn", qq, kk) * scale
                p = np.exp(s - s.max(-1, keepdims=True))
                p /= p.sum(-1, keepdims=True)
                out[:, i, j, l] = np.einsum("bhn,bnhd->bhd", p, vv).reshape(b, c)
    return out


def cost(shape: tuple[int, int, int], kernel: tuple[int, int, int]) -> int:
    """Scores computed per head for one call (the memory model's and the benchmark's measure)."""
    total = 0
    for rt in axis_runs(shape[0], kernel[0]):
        for rh in axis_runs(shape[1], kernel[1]):
            for rw in axis_runs(shape[2], kernel[2]):
                total += (
                    math.prod((rt.n, rh.n, rw.n))
                    * rt.size
                    * rh.size
                    * rw.size
                    * rt.region
                    * rh.region
                    * rw.region
                )
    return total
