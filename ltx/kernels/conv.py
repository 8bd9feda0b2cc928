"""Convolutions on the CPU: one GEMM per kernel tap over shifted views of the padded input (conv_taps,
Winograd where the kernel is 3x3), transposed 1-D convs as GEMMs adding into the output in place,
and the upsampler's zero-padded 3-D convs as one GEMM per temporal tap (conv3d_frames).
"""

from __future__ import annotations

import itertools
import math

from ltx.kernels import blas, threads, winograd  # noqa: F401  (ltx.backend: the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

_ROW_MAJOR, _NO_TRANS, _TRANS = blas.ROW_MAJOR, blas.NO_TRANS, blas.TRANS


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
    return WINOGRAD and dtype == mx.float32 and threads.cpu_backend() and blas.gemm() is not None


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
    the video decoder's (`python bench/ab.py --what taps`, MKL).

    Where the last two kernel axes are 3x3 (the VAEs' convs) and a BLAS is there, the conv runs as
    Winograd F(4x4, 3x3) or F(2x2, 3x3) instead (ltx.kernels.winograd: 36 GEMMs per 4x4 outputs where the
    taps take 144), on the transformed filters that `filters` keeps for this weight (made here, as
    F(2x2), if None). Where all taps' outputs together are no wider than the input (a conv_out to a
    few channels) it runs as one GEMM with every tap's weights (_conv_taps_narrow).
    """
    b, *padded, c = x.shape
    o, *kernel = weight.shape[:-1]
    gemm = blas.gemm()
    with_blas = gemm is not None and threads.cpu_backend() and x.dtype == weight.dtype == mx.float32
    narrow = with_blas and narrow_applies(math.prod(kernel), o, c)
    if with_blas and not narrow and WINOGRAD and winograd.applies(kernel, dilation, c):  # winograd_applies
        g = winograd.transform_weight(weight, winograd.TILE_WIDE) if filters is None else filters.of(weight)
        if len(kernel) == 1:
            return winograd.conv1d(gemm, x, g, kernel[0], dilation, bias)
        return winograd.conv(gemm, threads.run, x, g, tuple(kernel), bias)
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
    elif with_blas:
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
    gemm: blas.Gemm, flat: mx.array, taps: mx.array, bias, offsets: list[int], rows: int
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
    gemm: blas.Gemm, flat: mx.array, taps: mx.array, bias, offsets: list[int], rows: int
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
    return TRANSPOSED_CONV and dtype == mx.float32 and threads.cpu_backend() and blas.gemm() is not None


def conv_transpose1d(
    x: mx.array, weight: mx.array, bias: mx.array | None, stride: int, padding: int
) -> mx.array:
    """PyTorch's conv_transpose1d of x (B, N, C) with an MLX weight (O, K, C) -> (B, (N - 1) u + K - 2 p,
    O), u = stride, p = padding. Input row n adds x[n] @ W[:, t]^T to output row n u + t: each block
    of u taps is one GEMM whose (N, u O) output rows are the output's rows from i u on (ldc = u O),
    added in place, so no (N, K, O) product or overlap-add pass is made. With a tap-major weight
    (taps_layout) its (K O, C) rows are read with no copy."""
    gemm = blas.gemm()
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


# conv3d_frames keeps at most this many im2col values at once (128 MB): a chunk of input frames
FRAME_COLS_ELEMENTS = 1 << 25


# Off: zero-padded 3-D convs run as MLX's conv3d (the tests' "mlx" kernels)
FRAMES_CONV = True


def conv3d_frames_applies(dtype: mx.Dtype) -> bool:
    """Whether a zero-padded 3-D conv computing in dtype runs as conv3d_frames here: float32 on the
    CPU with MKL or OpenBLAS (ltx.kernels.blas)."""
    return FRAMES_CONV and dtype == mx.float32 and threads.cpu_backend() and blas.gemm() is not None


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
    gemm = blas.gemm()
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
        threads.run(
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
