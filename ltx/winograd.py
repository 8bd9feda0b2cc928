"""Winograd F(2x2, 3x3) convolutions for the CPU backend: the VAEs' 3x3(x3) convs with 16 GEMMs per
2x2 block of outputs where the per-tap kernel (cpu_kernels.conv_taps) runs 36.

A stride-1 conv whose last two kernel axes are 3x3 (the video VAE's 3x3x3 convs, the audio VAE's
3x3) computes each 2x2 block of outputs (per leading kernel tap, e.g. each temporal one) as

  Y = A^T [ (G g G^T) * (B^T d B) ] A      d: the 4x4 input patch, g: the 3x3 filter

(Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015). Over all blocks and
channels the elementwise product is 16 matmuls, one per position of the 4x4 transformed patch, of
(blocks, C) transformed inputs with (C, O) transformed filters: 16 multiplies for 4 outputs where
the direct conv takes 36, so 2.25x fewer GEMM flops at the same GEMM shape (K = C). The price is
two numpy passes, the input transform (B^T d B: adds and subtracts only) and the output transform
(A^T m A), and the transformed input and products held per chunk of frames.

The transforms' coefficients are 0, +-1 and +-1/2, so float32 rounding stays within a few times
the direct conv's (tests/test_cpu_kernels.py compares with MLX's conv; the VAEs' goldens with the
reference at 1e-4).
"""

from __future__ import annotations

import itertools
import math
import threading

from ltx import backend, cpu_blas  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

# The filter transform G of F(2, 3); the input (B^T) and output (A^T) transforms are written out
# as adds below.
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]], np.float32)
# G g G^T as one (16, 9) matrix on the 9 flattened taps of g
_GG = np.einsum("ai,bj->abij", _G, _G).reshape(16, 9)
# Values of a transformed-input row block handled while it sits in the core's cache.
BLOCK_ELEMENTS = 1 << 15
# At most this many values of transformed inputs and products at once (64 MB, kept between calls):
# larger and smaller chunks both ran the 128-channel decoder conv slower (GEMMs out of cache, or
# thinner GEMMs and more numpy calls)
CHUNK_ELEMENTS = 1 << 24


def applies(kernel: tuple[int, ...], dilation: int, channels: int) -> bool:
    """Whether a stride-1 conv with this kernel, reading this many channels, runs as a Winograd conv:
    F(2x2, 3x3) where its last two kernel axes are 3x3 and there is no dilation; the 1-D F(4, 3) /
    F(4, 4) (conv1d) for 1-D kernels of 3 taps or more of MIN_CHANNELS_1D to MAX_CHANNELS_1D input
    channels."""
    if len(kernel) == 1:
        return kernel[0] >= 3 and MIN_CHANNELS_1D <= channels <= MAX_CHANNELS_1D
    return len(kernel) >= 2 and tuple(kernel[-2:]) == (3, 3) and dilation == 1


def transform_weight(weight: mx.array) -> np.ndarray:
    """(O, K1, .., Kn-2, 3, 3, C) conv weight -> (16, T, O, C) filters G g G^T, T = K1 * .. * Kn-2:
    component 4 i + j of leading tap t is row i, column j of the 4x4 transformed filter. A 1-D
    (O, K, C) weight -> conv1d's (n, J, O, C) filters (transform_weight_1d)."""
    if weight.ndim == 3:
        return transform_weight_1d(weight)
    o, *kernel, c = weight.shape
    n = len(kernel)
    # tap-major (K1, .., Kn, O, C): free for cpu_kernels.taps_layout weights
    taps = mx.contiguous(weight.astype(mx.float32).transpose(*range(1, n + 1), 0, n + 1))
    mx.eval(taps)
    t = math.prod(kernel[:-2])
    g = np.array(taps, copy=False).reshape(t, 9, o * c)
    out = np.empty((16, t, o * c), np.float32)
    for i in range(t):
        np.matmul(_GG, g[i], out=out[:, i])  # one (16, 9) x (9, O C) product per leading tap
    return out.reshape(16, t, o, c)


_local = threading.local()


def _scratch(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """This thread's float32 buffer `name` viewed as shape, grown as needed and kept between calls:
    fresh pages for every call's transformed inputs and products would each cost a page fault."""
    n = math.prod(shape)
    buf = getattr(_local, name, None)
    if buf is None or buf.size < n:
        buf = np.empty(n, np.float32)
        setattr(_local, name, buf)
    return buf[:n].reshape(shape)


def release_scratch() -> None:
    """Free this thread's scratch buffers (the next conv allocates them again)."""
    _local.__dict__.clear()


class Filters:
    """A conv module's transformed filters, made from its weight at first use and remade if the
    weight array is replaced (a plain attribute, so not one of the module's parameters)."""

    def __init__(self):
        self.source: mx.array | None = None
        self.filters: np.ndarray | None = None

    def of(self, weight: mx.array) -> np.ndarray:
        if self.source is not weight:
            self.filters, self.source = transform_weight(weight), weight
        return self.filters


def _input_rows(tasks: list, xv: np.ndarray, u: np.ndarray, tw: int) -> None:
    # xv (S, 2 th + 2, 2 tw + 2, C) padded slabs; u (16, S', band, tw, C); a task is (slab in xv, slab in
    # u, first tile row in xv, first tile row in u, number of tile rows)
    for s, su, r0, ru, n in tasks:
        x = xv[s, 2 * r0 : 2 * r0 + 2 * n + 2]  # (2n + 2, W, C)
        d = [x[j : j + 2 * n : 2] for j in range(4)]  # (n, W, C)
        rows = np.empty((4, *d[0].shape), np.float32)
        _bt(d, rows)
        for i in range(4):
            e = [rows[i, :, j : j + 2 * tw : 2] for j in range(4)]  # (n, tw, C)
            _bt(e, [u[4 * i + j, su, ru : ru + n] for j in range(4)])


def _bt(d: list, out) -> None:
    # B^T d for F(2, 3): (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
    np.subtract(d[0], d[2], out=out[0])
    np.add(d[1], d[2], out=out[1])
    np.subtract(d[2], d[1], out=out[2])
    np.subtract(d[1], d[3], out=out[3])


def _at(m: list, out0: np.ndarray, out1: np.ndarray) -> None:
    # A^T m for F(2, 3): (m0 + m1 + m2, m1 - m2 - m3)
    np.add(m[0], m[1], out=out0)
    out0 += m[2]
    np.subtract(m[1], m[2], out=out1)
    out1 -= m[3]


def _output_rows(tasks: list, m: np.ndarray, ov: np.ndarray, bias: np.ndarray | None) -> None:
    # m (16, S', band, tw, O) products; ov (S, 2 th, 2 tw, O) output slabs; a task is (slab in ov, slab
    # in m, first tile row in ov, first tile row in m, number of tile rows)
    for s, sm, r0, rm, n in tasks:
        tw, o = m.shape[3], m.shape[4]
        if bias is not None:
            m[5, sm, rm : rm + n] += bias  # A^T m A adds component (1, 1) to all four outputs
        z = np.empty((2, 4, n, tw, o), np.float32)  # A^T along the rows, per column component
        for j in range(4):
            _at([m[4 * i + j, sm, rm : rm + n] for i in range(4)], z[0, j], z[1, j])
        for p in range(2):
            dst = ov[s, 2 * r0 + p : 2 * (r0 + n) : 2]  # (n, 2 tw, O)
            _at(list(z[p]), dst[:, 0::2], dst[:, 1::2])


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
    over the threads. The leading kernel axes (all but the last two) are taps as in conv_taps: each
    of the 16 GEMMs per tap reads the transformed input at that tap's row offset."""
    b, *padded, c = x.shape
    o = filters.shape[2]
    lead, (h, w) = padded[:-2], padded[-2:]
    th, tw = -(-(h - 2) // 2), -(-(w - 2) // 2)  # 2x2 output blocks
    if (2 * th + 2, 2 * tw + 2) != (h, w):  # an odd output size reads one zero row / column more
        x = mx.pad(x, [(0, 0)] * (1 + len(lead)) + [(0, 2 * th + 2 - h), (0, 2 * tw + 2 - w), (0, 0)])
    lead_k = kernel[:-2]
    out = mx.zeros((b, *lead, 2 * th, 2 * tw, o), mx.float32)
    mx.eval(x, out, *([] if bias is None else [bias]))
    slabs = b * math.prod(lead)
    xv = np.array(x, copy=False).reshape(slabs, 2 * th + 2, 2 * tw + 2, c)  # views (numpy 2: no copy)
    ov = np.array(out, copy=False).reshape(slabs, 2 * th, 2 * tw, o)
    bv = None if bias is None else np.array(bias, copy=False).astype(np.float32, copy=False)
    # leading taps as slab offsets (conv_taps' rows, over the grid of slabs)
    strides = [math.prod(lead[d + 1 :]) for d in range(len(lead))]
    offsets = [sum(k * s for k, s in zip(ks, strides, strict=True)) for ks in np.ndindex(*lead_k)]
    reach = offsets[-1]  # output slab s reads input slabs s .. s + reach
    # slabs whose leading position has an output (the others, in the border, are computed and dropped)
    valid = np.ones((b, *lead), bool)
    for d, (p, k) in enumerate(zip(lead, lead_k, strict=True)):
        valid[(slice(None),) * (1 + d) + (slice(p - k + 1, None),)] = False
    valid = valid.reshape(-1)
    # Chunks of (slabs, tile rows): all slabs and a band of tile rows when one tile row of every slab
    # fits CHUNK_ELEMENTS (no input is transformed twice), else bands of one row over runs of slabs
    # (the `reach` slabs after a run are transformed for it and again for the next).
    per_row = 16 * tw * (c + o)  # transformed input and products of one tile row of one slab
    if slabs * per_row <= CHUNK_ELEMENTS:
        step, band = slabs - reach, min(th, CHUNK_ELEMENTS // (slabs * per_row))
    else:
        step, band = max(1, CHUNK_ELEMENTS // per_row - reach), 1
    u = _scratch("winograd_u", (16, step + reach, band, tw, c))
    m = _scratch("winograd_m", (16, step, band, tw, o))
    split = max(1, BLOCK_ELEMENTS // ((2 * tw + 2) * max(c, o)))  # tile rows per numpy task
    for s0, r0 in itertools.product(range(0, slabs - reach, step), range(0, th, band)):
        s1, r1 = min(slabs - reach, s0 + step), min(th, r0 + band)
        # output slabs s0..s1-1, tile rows r0..r1-1, from input slabs s0..s1+reach-1
        pieces = [(r, r - r0, min(split, r1 - r)) for r in range(r0, r1, split)]
        run(
            lambda part: _input_rows(part, xv, u, tw),
            [(s, s - s0, *p) for s in range(s0, s1 + reach) for p in pieces],
        )
        rows, tile = (s1 - s0) * band * tw, band * tw
        for k in range(16):
            uk, mk = u[k].reshape(-1, c), m[k].reshape(-1, o)
            for t, off in enumerate(offsets):
                gemm.sgemm(
                    _ROW_MAJOR, _NO_TRANS, _TRANS, rows, o, c, 1.0, uk[off * tile :].ctypes.data, c,
                    filters[k, t].ctypes.data, c, 1.0 if t else 0.0, mk.ctypes.data, o,
                )  # fmt: skip
        tasks = [(s, s - s0, *p) for s in range(s0, s1) if valid[s] for p in pieces]
        if tasks:  # none where the run is all border slabs
            run(lambda part: _output_rows(part, m, ov, bv), tasks)
    out = out.reshape(b, *lead, 2 * th, 2 * tw, o)
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
# Above this the kept filters (~2x the weight) would cost more memory than the conv's time is worth:
# LTX-2.3's 768-channel vocoder level would add ~0.6 GB; those convs run one GEMM per tap
MAX_CHANNELS_1D = 512


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
