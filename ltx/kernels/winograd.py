"""Winograd F(4x4, 3x3) and F(2x2, 3x3) convolutions for the CPU backend: the VAEs' 3x3(x3) convs with
36 GEMMs per 4x4 block of outputs (16 per 2x2) where the per-tap kernel (conv.conv_taps)
runs 144 (36); and the vocoders' 1-D convs (F(4, 3), F(4, 4), below).

A stride-1 conv whose last two kernel axes are 3x3 (the video VAE's 3x3x3 convs, the audio VAE's
3x3) computes each m x m block of outputs (per leading kernel tap, e.g. each temporal one) as

  Y = A^T [ (G g G^T) * (B^T d B) ] A      d: the (m+2) x (m+2) input tile, g: the 3x3 filter

(Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015), with F(m, 3)'s 1-D
matrices from Toom-Cook on the points 0, +-1 (+-2 for m = 4) and infinity (_toom_cook). Over all
tiles and channels the elementwise product is n^2 matmuls (n = m + 2), one per position of the
transformed tile, of (tiles, C) transformed inputs with (C, O) transformed filters: 2.25 multiplies
per output for m = 4 (4 for m = 2) where the direct conv takes 9, at the same GEMM shape (K = C).
The transforms are GEMMs too, on Kronecker squares of the 1-D matrices: numpy copies every tile's
n^2 input values out (one task per component), one GEMM with (B^T kron B^T) transforms a whole
chunk, and after the products one GEMM with (A^T kron A^T) makes the outputs, which numpy
scatters into place. Chunks of frames and tile rows bound what is held (CHUNK_ELEMENTS).

F(4x4)'s transforms have coefficients up to 4 (F(2x2)'s: 0, +-1, +-1/2), so its float32 rounding
is ~20x F(2x2)'s: ~1e-5 of the largest output at the real widths against ~5e-7 (both far inside
the reference goldens' 1e-4; tests/test_cpu_kernels.py compares both with MLX's conv).
"""

from __future__ import annotations

import itertools
import math
from functools import cache

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)
from ltx.kernels import blas as cpu_blas
from ltx.kernels import threads

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

# Output tile of the kept filters' convs of up to TILE_MAX_CHANNELS input channels: F(4x4, 3x3), 36
# GEMMs per 4x4 block of outputs (2.25 per output where F(2x2, 3x3) runs 4 and the taps 9), and
# 36 / 16 of the input per transformed tile where F(2x2) holds 4x. Wider convs, and convs whose
# filters are made at every call (conv.winograd_wide_applies: the 1,024-channel level), use
# F(2x2, 3x3): their filters are 16 / 36 the size, and at 512 channels F(4x4) measured within the
# machine's noise of F(2x2) on both decoders (`python bench/ab.py --what tile`).
TILE = 4
TILE_MAX_CHANNELS = 256
TILE_WIDE = 2


def tile_for(channels: int) -> int:
    """The output tile m of F(m x m, 3x3) for kept filters of a conv reading this many channels."""
    return TILE if channels <= TILE_MAX_CHANNELS else TILE_WIDE


# At most this many values of a chunk's input tiles, transformed inputs, products and outputs at
# once (64 MB, kept between calls)
CHUNK_ELEMENTS = 1 << 24


def applies(kernel: tuple[int, ...], dilation: int, channels: int) -> bool:
    """Whether a stride-1 conv with this kernel, reading this many channels, runs as a Winograd conv:
    F(m x m, 3x3) where its last two kernel axes are 3x3 and there is no dilation; the 1-D F(4, 3) /
    F(4, 4) (conv1d) for 1-D kernels of 3 taps or more of MIN_CHANNELS_1D to MAX_CHANNELS_1D input
    channels."""
    if len(kernel) == 1:
        return kernel[0] >= 3 and MIN_CHANNELS_1D <= channels <= MAX_CHANNELS_1D
    return len(kernel) >= 2 and tuple(kernel[-2:]) == (3, 3) and dilation == 1


@cache
def _tile(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F(m x m, 3x3) as (A (m^2, n^2), G (n^2, 9), B^T (n^2, n^2)), n = m + 2: the Kronecker squares
    of F(m, 3)'s 1-D matrices (_toom_cook), acting on row-major flattened n x n input tiles, 3x3
    filters and m x m output tiles."""
    at, g, bt = _toom_cook(m, 3, _POINTS[m])
    return np.kron(at, at), np.kron(g.astype(np.float64), g).astype(np.float32), np.kron(bt, bt)


def transform_weight(weight: mx.array, m: int | None = None) -> np.ndarray:
    """(O, K1, .., Kn-2, 3, 3, C) conv weight -> (n^2, T, O, C) filters of F(m x m, 3x3), n = m + 2
    (m: tile_for(C) if None), T = K1 * .. * Kn-2: component n i + j of leading tap t is row i,
    column j of the n x n transformed filter. A 1-D (O, K, C) weight -> conv1d's (n, J, O, C)
    filters (transform_weight_1d)."""
    if weight.ndim == 3:
        return transform_weight_1d(weight)
    o, *kernel, c = weight.shape
    n = len(kernel)
    # tap-major (K1, .., Kn, O, C): free for conv.taps_layout weights
    taps = mx.contiguous(weight.astype(mx.float32).transpose(*range(1, n + 1), 0, n + 1))
    mx.eval(taps)
    t = math.prod(kernel[:-2])
    g = np.array(taps, copy=False).reshape(t, 9, o * c)
    gg = _tile(tile_for(c) if m is None else m)[1]
    out = np.empty((gg.shape[0], t, o * c), np.float32)
    for i in range(t):
        np.matmul(gg, g[i], out=out[:, i])  # one (n^2, 9) x (9, O C) product per leading tap
    return out.reshape(gg.shape[0], t, o, c)


def _scratch(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """This thread's float32 buffer `name` viewed as shape, grown as needed and kept between calls:
    fresh pages for every call's transformed inputs and products would each cost a page fault."""
    n = math.prod(shape)
    return threads.scratch_floats("winograd_" + name, n)[:n].reshape(shape)


class Filters:
    """A conv module's transformed filters (transform_weight's tile), made from its weight at first
    use and remade if the weight array is replaced (a plain attribute, so not one of the module's
    parameters)."""

    def __init__(self):
        self.source: mx.array | None = None
        self.filters: np.ndarray | None = None

    def of(self, weight: mx.array) -> np.ndarray:
        if self.source is not weight:
            self.filters, self.source = transform_weight(weight), weight
        return self.filters


def _gather(ks: list, x: np.ndarray, tiles: np.ndarray, m: int) -> None:
    # x (S, m rows + 2, m tw + 2, C): a chunk's padded input slabs (a strided view); tiles (n^2, S',
    # band, tw, C); copies component k = n i + j of every n x n input tile, x[s, m r + i, m q + j],
    # to tiles[k, s, r, q]
    n = m + 2
    slabs, rows, tw = x.shape[0], (x.shape[1] - 2) // m, tiles.shape[3]
    st_slab, st_row, st_col, item = x.strides
    windows = np.lib.stride_tricks.as_strided(
        x,
        (n, n, slabs, rows, tw, x.shape[3]),
        (st_row, st_col, st_slab, m * st_row, m * st_col, item),
        writeable=False,
    )
    for k in ks:
        np.copyto(tiles[k, :slabs, :rows], windows[k // n, k % n])


def _scatter(ks: list, y: np.ndarray, ov: np.ndarray, m: int) -> None:
    # y (m^2, S', band, tw, O) output tiles; ov (S, m rows, m tw, O): a chunk's output slabs and
    # tile rows (a view); output (i, j) of every tile, component k = m i + j, to ov[s, m r + i, m q + j]
    slabs, rows = ov.shape[0], ov.shape[1] // m
    for k in ks:
        i, j = divmod(k, m)
        np.copyto(ov[:, i::m, j::m], y[k, :slabs, :rows])


def conv(
    gemm: cpu_blas.Gemm,
    run,
    x: mx.array,
    filters: np.ndarray,
    kernel: tuple[int, ...],
    bias: mx.array | None,
) -> mx.array:
    """Stride-1 conv of an already padded x (B, P1, .., Pn, C) with filters from transform_weight of
    an (O, *kernel, C) weight -> (B, P1 - K1 + 1, .., Pn - 2, O); `run(fn, tasks)` spreads numpy work
    over the threads. The tile size m follows from the filters (n^2 components, n = m + 2).

    Per chunk of slabs (a batch item's position on the leading axes) and tile rows: numpy tasks copy
    each n x n input tile's n^2 values out (tiles), one GEMM with B^T transforms them all (u), the
    n^2 GEMMs per leading tap make the products (each leading tap reads u at its slab offset, as
    conv_taps reads rows), one GEMM with A makes the m x m output tiles, and numpy tasks scatter
    them into the output."""
    b, *padded, c = x.shape
    nn, _, o, _ = filters.shape
    n = math.isqrt(nn)
    m = n - 2
    a_out, _, bt = _tile(m)
    lead, (h, w) = padded[:-2], padded[-2:]
    th, tw = -(-(h - 2) // m), -(-(w - 2) // m)  # m x m output tiles
    if (m * th + 2, m * tw + 2) != (h, w):  # outputs past the edge read zeros (and are dropped)
        x = mx.pad(x, [(0, 0)] * (1 + len(lead)) + [(0, m * th + 2 - h), (0, m * tw + 2 - w), (0, 0)])
    lead_k = kernel[:-2]
    out = mx.zeros((b, *lead, m * th, m * tw, o), mx.float32)
    mx.eval(x, out, *([] if bias is None else [bias]))
    slabs = b * math.prod(lead)
    xv = np.array(x, copy=False).reshape(slabs, m * th + 2, m * tw + 2, c)  # views (numpy 2: no copy)
    ov = np.array(out, copy=False).reshape(slabs, m * th, m * tw, o)
    bv = None if bias is None else np.array(bias, copy=False).astype(np.float32, copy=False)
    # leading taps as slab offsets (conv_taps' rows, over the grid of slabs)
    strides = [math.prod(lead[d + 1 :]) for d in range(len(lead))]
    offsets = [sum(k * s for k, s in zip(ks, strides, strict=True)) for ks in np.ndindex(*lead_k)]
    reach = offsets[-1]  # output slab s reads input slabs s .. s + reach
    # Chunks of (slabs, tile rows): all slabs and a band of tile rows when one tile row of every slab
    # fits CHUNK_ELEMENTS (no input is transformed twice), else bands of one row over runs of slabs
    # (the `reach` slabs after a run are transformed for it and again for the next).
    per_row = tw * (2 * nn * c + nn * o + m * m * o)  # tiles, u, products, outputs of one tile row
    if slabs * per_row <= CHUNK_ELEMENTS:
        step, band = slabs - reach, min(th, CHUNK_ELEMENTS // (slabs * per_row))
    else:
        step, band = max(1, CHUNK_ELEMENTS // per_row - reach), 1
    # one kept buffer (at most CHUNK_ELEMENTS whatever the convs' widths), carved into the input
    # tiles, the transformed inputs, the products and the output tiles
    shapes = [(nn, step + reach, band, tw, c)] * 2 + [(nn, step, band, tw, o), (m * m, step, band, tw, o)]
    sizes = [math.prod(sh) for sh in shapes]
    buf = _scratch("winograd", (sum(sizes),))
    bounds = np.cumsum([0, *sizes])
    tiles, u, prod, y = (
        buf[a:e].reshape(sh) for a, e, sh in zip(bounds[:-1], bounds[1:], shapes, strict=True)
    )
    span_u, span_m = u[0].size, prod[0].size
    for s0, r0 in itertools.product(range(0, slabs - reach, step), range(0, th, band)):
        s1, r1 = min(slabs - reach, s0 + step), min(th, r0 + band)
        # output slabs s0..s1-1, tile rows r0..r1-1, from input slabs s0..s1+reach-1; one numpy task
        # per component
        src = xv[s0 : s1 + reach, m * r0 : m * r1 + 2]
        run(lambda ks, src=src: _gather(ks, src, tiles, m), list(range(nn)))
        held = (s1 + reach - s0) * band * tw * c  # (rows past r1 in the band: stale, never output)
        gemm.sgemm(
            _ROW_MAJOR, _NO_TRANS, _NO_TRANS, nn, held, nn, 1.0, bt.ctypes.data, nn,
            tiles.ctypes.data, span_u, 0.0, u.ctypes.data, span_u,
        )  # fmt: skip
        rows, tile = (s1 - s0) * band * tw, band * tw
        for k in range(nn):
            uk, mk = u[k].reshape(-1, c), prod[k].reshape(-1, o)
            for t, off in enumerate(offsets):
                gemm.sgemm(
                    _ROW_MAJOR, _NO_TRANS, _TRANS, rows, o, c, 1.0, uk[off * tile :].ctypes.data, c,
                    filters[k, t].ctypes.data, c, 1.0 if t else 0.0, mk.ctypes.data, o,
                )  # fmt: skip
        if bv is not None:  # A's row for output (i, j) has a 1 at component (ONE, ONE): all get the bias
            prod[_ONE * n + _ONE, : s1 - s0] += bv
        gemm.sgemm(
            _ROW_MAJOR, _NO_TRANS, _NO_TRANS, m * m, rows * o, nn, 1.0, a_out.ctypes.data, nn,
            prod.ctypes.data, span_m, 0.0, y.ctypes.data, span_m,
        )  # fmt: skip
        # (the border slabs' outputs are written too, and cropped below)
        dst = ov[s0:s1, m * r0 : m * r1]
        run(lambda ks, dst=dst: _scatter(ks, y, dst, m), list(range(m * m)))
    out = out.reshape(b, *lead, m * th, m * tw, o)
    crop = [slice(0, p - k + 1) for p, k in zip(lead, lead_k, strict=True)]
    return out[(slice(None), *crop, slice(0, h - 2), slice(0, w - 2))]


# ---------------------------------------------------------------------------------------------- 1-D
# The vocoders' convs (kernels 3, 7, 11; dilations 1, 3, 5; up to 512 channels) as 1-D Winograd
# convs: F(4, 3) for 3 taps, F(4, 4) on chunks of 4 taps for longer kernels (7 and 11 taps as 2 and
# 3 chunks, zero-padded to 8 and 12). Per 4 outputs that is 6 GEMMs where the taps run 12, and
# 7 per chunk where they run 16 (14 / 28 for 7 taps, 21 / 44 for 11), all at K = C.
#
# With chunks as long as the output tile (r = m = 4), chunk j of output tile q reads the input
# tile of output tile q + j: the input is transformed once, and each chunk's GEMMs read the
# transformed input J - 1 tiles further on (conv_taps' shifted views, one level up). A dilation d
# interleaves d independent convs; tiles are ordered (tile, phase), so a shift of one tile is d rows.

# Below this many input channels the per-tap GEMMs (K = C) were as fast (`python bench/vae_bench.py
# --micro-only`, the conv1d `winograd` rows)
MIN_CHANNELS_1D = 128
# Up to LTX-2.3's 768-channel vocoder level, whose kept filters (~2x the weight) add ~0.6 GB to the
# vocode stage (well below the denoise stages' peak): its vocoder + BWE takes 0.94x the time with
# them (`python bench/ab.py --what wide1d`, bench/ab_results.md)
MAX_CHANNELS_1D = 768


def _toom_cook(m: int, r: int, points: tuple[float, ...]) -> tuple[np.ndarray, ...]:
    """F(m, r) on the finite `points` and infinity (n = m + r - 1 in all): (A^T (m, n), G (n, r),
    B^T (n, n)) with y = A^T [(G g) * (B^T d)] the m outputs y_i = sum_k g_k d_(i + k) of an n-sample
    input tile d.

    Toom-Cook's full product of an r- and an m-coefficient polynomial, c = V_n^-1 [(V_r g) * (V_m h)]
    (V_k: the k powers of each point, infinity giving the leading coefficient), is linear in h; its
    transpose in h is the correlation: y = V_m^T [(V_r g) * (V_n^-T d)]. B^T's rows are scaled to a
    largest entry of 1, with G's rows scaled back (the elementwise product does not see it)."""
    n = m + r - 1
    if len(points) != n - 1:
        raise ValueError(f"F({m}, {r}) needs {n - 1} finite points, got {points}")

    def vandermonde(k: int) -> np.ndarray:
        v = np.zeros((n, k))
        v[:-1] = np.array(points, np.float64)[:, None] ** np.arange(k)
        v[-1, -1] = 1.0
        return v

    bt = np.linalg.inv(vandermonde(n)).T
    scale = np.abs(bt).max(axis=1, keepdims=True)
    return tuple(a.astype(np.float32) for a in (vandermonde(m).T, vandermonde(r) * scale, bt / scale))


# (m, r) -> A^T, G, B^T on the points with the smallest products (0, +-1, +-2, then 1/2)
_F1D = {
    (4, 3): _toom_cook(4, 3, (0, 1, -1, 2, -2)),
    (4, 4): _toom_cook(4, 4, (0, 1, -1, 2, -2, 0.5)),
}
_ONE = 1  # the index of point 1: its A^T column is all ones (the bias goes on its products)
# the 2-D tiles' points, F(m, 3) for m = 2 and 4 (point 1 at index _ONE in both)
_POINTS = {2: (0, 1, -1), 4: (0, 1, -1, 2, -2)}


def _plan_1d(k: int) -> tuple[int, int, int]:
    """(m, r, J) for a k-tap kernel: output tile m, chunk r, J chunks."""
    return (4, 3, 1) if k == 3 else (4, 4, -(-k // 4))


def transform_weight_1d(weight: mx.array) -> np.ndarray:
    """(O, K, C) conv weight -> (n, J, O, C) filters: G applied to each chunk of r taps (the last
    chunk zero-padded), n = m + r - 1 (_plan_1d)."""
    o, k, c = weight.shape
    m, r, chunks = _plan_1d(k)
    g = _F1D[m, r][1]
    taps = mx.contiguous(weight.astype(mx.float32).transpose(1, 0, 2))  # (K, O, C): free if tap-major
    mx.eval(taps)
    padded = np.zeros((chunks * r, o * c), np.float32)
    padded[:k] = np.array(taps, copy=False).reshape(k, o * c)
    out = np.empty((g.shape[0], chunks, o * c), np.float32)
    for j in range(chunks):
        np.matmul(g, padded[j * r : (j + 1) * r], out=out[:, j])
    return out.reshape(g.shape[0], chunks, o, c)


def conv1d(
    gemm: cpu_blas.Gemm, x: mx.array, filters: np.ndarray, k: int, dilation: int, bias: mx.array | None
) -> mx.array:
    """Stride-1 conv of an already padded x (B, P, C) with transform_weight_1d's filters of a k-tap
    weight -> (B, P - dilation (k - 1), O).

    Per batch item and chunk of output tiles: the input tiles (n samples every m, per phase of the
    dilation) are copied out once (n / m of the input) and transformed by one matmul with B^T; the
    n x J GEMMs per chunk make the products; one matmul with A^T and a transposing copy make the
    outputs. Transformed inputs and products stay within CHUNK_ELEMENTS."""
    b, p, c = x.shape
    n, chunks, o, _ = filters.shape
    m, r, _ = _plan_1d(k)
    at, _, bt = _F1D[m, r]
    d = dilation
    length = p - d * (k - 1)
    tiles = -(-length // (m * d))  # output tiles per phase
    out = mx.zeros((b, tiles * m * d, o), mx.float32)
    x = mx.contiguous(x)
    mx.eval(x, out, *([] if bias is None else [bias]))
    xv, ov = np.array(x, copy=False), np.array(out, copy=False)  # views (numpy 2: never copies)
    bv = None if bias is None else np.array(bias, copy=False).astype(np.float32, copy=False)
    per_tile = d * (2 * n * c + (n + m) * o)  # transformed input (twice: copied tiles) and products
    step = max(1, CHUNK_ELEMENTS // per_tile - chunks + 1)
    dc = d * c
    for bi, q0 in itertools.product(range(b), range(0, tiles, step)):
        nq = min(step, tiles - q0)
        held = nq + chunks - 1  # input tiles: the chunks read J - 1 tiles on
        start, span = q0 * m * d, (held * m + n - m) * d  # input samples these tiles read
        src = xv[bi, start : start + span]
        if src.shape[0] < span:  # the last tiles read past the input: zeros (the outputs are dropped)
            tail = _scratch("winograd1d_tail", (span, c))
            tail[: src.shape[0]] = src
            tail[src.shape[0] :] = 0.0
            src = tail
        windows = np.lib.stride_tricks.as_strided(
            src, shape=(n, held, dc), strides=(dc * 4, m * dc * 4, 4), writeable=False
        )
        tiles_in = _scratch("winograd1d_in", (n, held, dc))
        np.copyto(tiles_in, windows)
        u = _scratch("winograd_u", (n, held * d, c))  # rows (tile, phase)
        np.matmul(bt, tiles_in.reshape(n, -1), out=u.reshape(n, -1))
        rows = nq * d
        prod = _scratch("winograd_m", (n, rows, o))
        for pt, j in itertools.product(range(n), range(chunks)):
            gemm.sgemm(
                _ROW_MAJOR, _NO_TRANS, _TRANS, rows, o, c, 1.0, u[pt, j * d :].ctypes.data, c,
                filters[pt, j].ctypes.data, c, 1.0 if j else 0.0, prod[pt].ctypes.data, o,
            )  # fmt: skip
        if bv is not None:
            prod[_ONE] += bv  # A^T's column of point 1 is all ones: every output gets the bias
        y = _scratch("winograd1d_out", (m, nq, d * o))
        np.matmul(at, prod.reshape(n, -1), out=y.reshape(m, -1))
        dst = ov[bi, start : start + nq * m * d].reshape(nq, m, d * o)
        np.copyto(dst, y.transpose(1, 0, 2))
    return out[:, :length]


_ROW_MAJOR, _NO_TRANS, _TRANS = cpu_blas.ROW_MAJOR, cpu_blas.NO_TRANS, cpu_blas.TRANS
