"""ltx.kernels' convolutions and VAE norm against MLX's own ops (the models' parity with the
reference, through these kernels, is in test_video_vae.py and test_audio.py)."""

from __future__ import annotations

import mlx.core as mx
import pytest

from ltx.kernels import activations, blas, conv, norms, threads, winograd
from ltx.kernels import attention as attention_kernels
from ltx.kernels import blas as cpu_blas
from ltx.kernels import linear as linear_kernels


def _use_gemm(name: str, monkeypatch) -> None:
    """Run the conv kernels' GEMMs on `name` (mkl, openblas) or on neither (mlx)."""
    if name == "mlx":
        monkeypatch.setattr(blas, "gemm", lambda: None)
        return
    gemm = cpu_blas.library(name)
    assert gemm is not None, f"{name} is there on Linux (MKL a dependency, OpenBLAS in numpy's wheel)"
    monkeypatch.setattr(blas, "gemm", lambda: gemm)


@pytest.mark.parametrize(
    "batch, spatial, kernel, dilation",
    [
        (1, (9,), (3,), 1),
        (2, (23,), (7,), 3),  # the vocoder's dilated convs, two batch items
        (2, (5, 6), (3, 3), 1),  # the audio VAE
        (2, (3, 4, 5), (3, 3, 3), 1),  # the video VAE
        (1, (1 + 2, 4, 3), (3, 3, 3), 1),  # a single frame
    ],
)
@pytest.mark.parametrize("layout", ["mlx", "taps"])
@pytest.mark.parametrize("gemm", ["mkl", "openblas", "mlx"])
def test_conv_taps_equals_mlx_conv(batch, spatial, kernel, dilation, layout, gemm, monkeypatch):
    """Every GEMM path: MKL's or numpy's OpenBLAS's sgemm adding every tap into the output in place,
    and (with neither) MLX's addmm chain; the 3x3(x3) convs with one GEMM per tap here (Winograd
    off), as Winograd F(m x m, 3x3) below."""
    _use_gemm(gemm, monkeypatch)
    monkeypatch.setattr(conv, "WINOGRAD", False)
    c, o = 6, 5
    x = mx.random.normal((batch, *spatial, c), key=mx.random.key(1))
    w = mx.random.normal((o, *kernel, c), key=mx.random.key(2))
    bias = mx.random.normal((o,), key=mx.random.key(3))
    want = mx.conv_general(x, w, kernel_dilation=dilation) + bias
    if layout == "taps":
        w = conv.taps_layout(w)
        assert w.shape == (o, *kernel, c)
    got = conv.conv_taps(x, w, bias, dilation)
    assert got.shape == want.shape
    assert float(mx.abs(got - want).max()) <= 1e-5 * float(mx.abs(want).max())
    nobias = conv.conv_taps(x, w, None, dilation)
    assert float(mx.abs(nobias + bias - want).max()) <= 1e-5 * float(mx.abs(want).max())


@pytest.mark.parametrize(
    "batch, spatial, kernel, dilation, c, o",
    [
        (1, (7, 9), (3, 3), 1, 24, 2),  # the audio decoder's conv_out (128 -> 2)
        (2, (30,), (7,), 3, 16, 2),  # a vocoder's conv_post, dilated, two batch items
        (1, (4, 5, 6), (3, 3, 3), 1, 27, 1),  # taps x O = C exactly
    ],
)
@pytest.mark.parametrize("gemm", ["mkl", "openblas"])
def test_narrow_conv_equals_mlx_conv(batch, spatial, kernel, dilation, c, o, gemm, monkeypatch):
    """conv_taps with all taps' outputs no wider than the input (one GEMM with every tap's weights,
    then shifted adds) against MLX's conv, with and without bias; it runs even where Winograd would."""
    _use_gemm(gemm, monkeypatch)
    monkeypatch.setattr(winograd, "conv", None)  # the other paths would raise if called
    monkeypatch.setattr(conv, "_conv_taps_blas", None)
    x = mx.random.normal((batch, *spatial, c), key=mx.random.key(1))
    w = conv.taps_layout(mx.random.normal((o, *kernel, c), key=mx.random.key(2)))
    bias = mx.random.normal((o,), key=mx.random.key(3))
    want = mx.conv_general(x, w, kernel_dilation=dilation) + bias
    got = conv.conv_taps(x, w, bias, dilation)
    assert got.shape == want.shape
    assert float(mx.abs(got - want).max()) <= 1e-5 * float(mx.abs(want).max())
    nobias = conv.conv_taps(x, w, None, dilation)
    assert float(mx.abs(nobias + bias - want).max()) <= 1e-5 * float(mx.abs(want).max())


def _chunk(tile: int, spatial: tuple[int, ...], c: int, o: int, tile_rows: int | None) -> int:
    """winograd.CHUNK_ELEMENTS holding tile_rows tile rows (None: all of them, 2^24)."""
    if tile_rows is None:
        return 1 << 24
    n2, tw = (tile + 2) ** 2, -(-(spatial[-1] - 2) // tile)
    return tile_rows * tw * (2 * n2 * c + n2 * o + tile * tile * o)  # winograd.conv's per_row


@pytest.mark.parametrize(
    "batch, spatial, kernel, tile_rows",
    [
        (2, (5, 6), (3, 3), None),  # the audio VAE: no leading taps, an odd output height
        (1, (103, 66), (3, 3), None),  # the audio decoder's mel: several numpy tasks per slab
        (2, (3, 4, 5), (3, 3, 3), None),  # the video VAE, two batch items, odd output width
        (1, (1 + 2, 4, 3), (3, 3, 3), None),  # a single frame
        (2, (6, 9, 10), (3, 3, 3), 12),  # one tile row of all 12 slabs per chunk
        (2, (6, 9, 10), (3, 3, 3), 5),  # runs of 3 slabs, the next 2 transformed twice
        (2, (4, 7, 6), (2, 3, 3), None),  # a leading kernel of 2
    ],
)
@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("gemm", ["mkl", "openblas"])
def test_winograd_conv_equals_mlx_conv(batch, spatial, kernel, tile_rows, tile, gemm, monkeypatch):
    """conv_taps as Winograd F(m x m, 3x3), m = tile (4 for kept filters, 2 for per-call ones),
    against MLX's conv, with and without bias, on both BLAS libraries, in chunks of tile rows and of
    slabs; the filters a module keeps are remade when its weight array is replaced."""
    _use_gemm(gemm, monkeypatch)
    c, o = 6, 5
    monkeypatch.setattr(winograd, "TILE", tile)
    monkeypatch.setattr(winograd, "TILE_WIDE", tile)
    monkeypatch.setattr(winograd, "CHUNK_ELEMENTS", _chunk(tile, spatial, c, o, tile_rows))
    x = mx.random.normal((batch, *spatial, c), key=mx.random.key(1))
    bias = mx.random.normal((o,), key=mx.random.key(3))
    filters = winograd.Filters()
    for key in (2, 4):
        w = conv.taps_layout(mx.random.normal((o, *kernel, c), key=mx.random.key(key)))
        want = mx.conv_general(x, w) + bias
        got = conv.conv_taps(x, w, bias, filters=filters)
        assert filters.filters.shape[0] == (tile + 2) ** 2
        assert got.shape == want.shape
        assert float(mx.abs(got - want).max()) <= 1e-5 * float(mx.abs(want).max())
        nobias = conv.conv_taps(x, w, None)  # filters made for this call
        assert float(mx.abs(nobias + bias - want).max()) <= 1e-5 * float(mx.abs(want).max())
    assert filters.source is w


def test_winograd_chunks_split_as_planned(monkeypatch):
    """The chunk sizes above give the plans their cases name: with one tile row of every slab per
    chunk, 2 tile-row bands; with 5 rows' worth, runs of 3 slabs (2 more read); each chunk one
    B^T GEMM."""
    shapes = []

    class Spy:
        name = "spy"

        def __init__(self, real):
            self.real = real

        def sgemm(self, *a):
            if a[3] == 36 and a[5] == 36:  # the input transform: (36, 36) x (36, held)
                shapes.append(a[4])
            self.real.sgemm(*a)

    real = cpu_blas.library("openblas")
    monkeypatch.setattr(blas, "gemm", lambda: Spy(real))
    x = mx.random.normal((2, 6, 9, 10, 6), key=mx.random.key(1))
    w = conv.taps_layout(mx.random.normal((5, 3, 3, 3, 6), key=mx.random.key(2)))
    want = mx.conv_general(x, w)
    tw = 2  # 8 output columns in 4 x 4 tiles
    for rows, chunks, slabs in ((12, 2, 12), (5, 4 * 2, 5)):
        shapes.clear()
        monkeypatch.setattr(winograd, "CHUNK_ELEMENTS", _chunk(4, (9, 10), 6, 5, rows))
        got = conv.conv_taps(x, w, filters=winograd.Filters())
        assert float(mx.abs(got - want).max()) <= 1e-5 * float(mx.abs(want).max())
        assert len(shapes) == chunks and max(shapes) == slabs * tw * 6, (rows, shapes)


@pytest.mark.parametrize(
    "batch, length, kernel, dilation, chunk",
    [
        (1, 9, 3, 1, 1 << 24),  # F(4, 3): 7 outputs, the last tile part-filled
        (2, 23, 7, 3, 1 << 24),  # F(4, 4) on 2 chunks of taps, dilated, two batch items
        (1, 61, 11, 5, 1 << 24),  # 3 chunks, the vocoder's largest dilation
        (2, 40, 11, 1, 1),  # one output tile per chunk: the last chunks read zeros past the input
        (1, 30, 5, 2, 1 << 24),  # a last chunk of one tap
        (1, 4, 4, 1, 1 << 24),  # a single output
    ],
)
@pytest.mark.parametrize("gemm", ["mkl", "openblas"])
def test_winograd_conv1d_equals_mlx_conv(batch, length, kernel, dilation, chunk, gemm, monkeypatch):
    """conv_taps' 1-D convs as Winograd F(4, 3) / F(4, 4) on chunks of taps against MLX's conv, with
    and without bias, on both BLAS libraries, dilated, in chunks of output tiles."""
    _use_gemm(gemm, monkeypatch)
    monkeypatch.setattr(winograd, "MIN_CHANNELS_1D", 1)
    monkeypatch.setattr(winograd, "CHUNK_ELEMENTS", chunk)
    c, o = 6, 5
    x = mx.random.normal((batch, length, c), key=mx.random.key(1))
    w = conv.taps_layout(mx.random.normal((o, kernel, c), key=mx.random.key(2)))
    bias = mx.random.normal((o,), key=mx.random.key(3))
    assert winograd.applies((kernel,), dilation, c)
    want = mx.conv1d(x, w, dilation=dilation) + bias
    filters = winograd.Filters()
    got = conv.conv_taps(x, w, bias, dilation, filters)
    assert filters.filters is not None and filters.filters.shape[:3] == (
        (6, 1, o) if kernel == 3 else (7, -(-kernel // 4), o)
    )
    assert got.shape == want.shape
    assert float(mx.abs(got - want).max()) <= 1e-5 * float(mx.abs(want).max())
    nobias = conv.conv_taps(x, w, None, dilation)  # filters made for this call
    assert float(mx.abs(nobias + bias - want).max()) <= 1e-5 * float(mx.abs(want).max())


@pytest.mark.parametrize(
    "kernel, stride, padding",
    [(16, 6, 5), (15, 5, 5), (8, 2, 3), (4, 2, 1), (3, 2, 0)],  # the vocoders' (and a ragged last block)
)
@pytest.mark.parametrize("gemm", ["mkl", "openblas"])
def test_conv_transpose1d_equals_mlx(kernel, stride, padding, gemm, monkeypatch):
    """The transposed conv as GEMMs adding into shifted output rows against MLX's conv_transpose1d."""
    _use_gemm(gemm, monkeypatch)
    assert conv.conv_transpose1d_applies(mx.float32)
    c, o = 6, 5
    x = mx.random.normal((2, 7, c), key=mx.random.key(1))
    w = mx.random.normal((o, kernel, c), key=mx.random.key(2))
    bias = mx.random.normal((o,), key=mx.random.key(3))
    want = mx.conv_transpose1d(x, w, stride=stride, padding=padding) + bias
    for weight in (w, conv.taps_layout(w)):
        got = conv.conv_transpose1d(x, weight, bias, stride, padding)
        assert got.shape == want.shape == (2, 6 * stride + kernel - 2 * padding, o)
        assert float(mx.abs(got - want).max()) <= 1e-5 * float(mx.abs(want).max())
    nobias = conv.conv_transpose1d(x, w, None, stride, padding)
    assert float(mx.abs(nobias + bias - want).max()) <= 1e-5 * float(mx.abs(want).max())


@pytest.mark.parametrize(
    "length, channels, chunk_values",
    [
        (1, 3, 1 << 16),  # one sample: every filter tap reads the replicate padding
        (2, 5, 1),  # one row per task: each task's window reads the padding at one end
        (7, 5, 10),  # two rows per task
        (40, 4, 1),  # tasks in the middle read their rows in place
        (300, 16, 1 << 16),  # one task, both edges
        (301, 16, 160),  # ten rows per task, a ragged last one
    ],
)
def test_snake_resampled_equals_mlx(length, channels, chunk_values, monkeypatch):
    """BigVGAN's anti-aliased SnakeBeta as numpy passes over chunks of rows (snake_resampled)
    against MLX's grouped transposed conv, SnakeBeta and grouped conv, two batch items, random
    (asymmetric) filters."""
    from ltx.audio.vocoder import Activation1d

    monkeypatch.setattr(activations, "RESAMPLE_CHUNK_VALUES", chunk_values)
    act = Activation1d(channels)
    act.upsample.filter = mx.random.normal((1, 1, 12), key=mx.random.key(4))
    act.downsample.lowpass.filter = mx.random.normal((1, 1, 12), key=mx.random.key(5))
    act.act.alpha = 0.3 * mx.random.normal((channels,), key=mx.random.key(6))
    act.act.beta = 0.3 * mx.random.normal((channels,), key=mx.random.key(7))
    x = mx.random.normal((2, length, channels), key=mx.random.key(1))
    monkeypatch.setattr(activations, "RESAMPLING", False)
    want = act(x)
    monkeypatch.setattr(activations, "RESAMPLING", True)
    assert activations.resampling_applies(mx.float32)
    got = act(x)
    assert got.shape == want.shape == x.shape
    assert float(mx.abs(got - want).max()) <= 1e-5 * float(mx.abs(want).max())


def test_snake_resampled_rejects_strided_arrays():
    """It writes through reshaped views, so a strided x or out (whose reshape would copy) is refused."""
    import numpy as np

    taps = activations.Resampling(2, (((0, 1.0),), ((0, 1.0),)), ((0, 0, 1.0),))
    x = np.zeros((8, 6), np.float32)
    ones = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="C-contiguous"):
        activations.snake_resampled(x[:, :3], taps, ones, ones, np.zeros((8, 3), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        activations.snake_resampled(x[:, :3].copy(), taps, ones, ones, x[:, :3])


@pytest.mark.parametrize(
    "batch, frames, padding, chunk",
    [
        (1, 1, (1, 1, 1), 1 << 25),  # a single frame: both outer temporal taps read only padding
        (1, 2, (1, 1, 1), 1 << 25),  # the upsampler's bench clip
        (2, 5, (1, 1, 1), 1),  # one input frame per im2col chunk, two batch items
        (1, 4, (0, 1, 1), 2 * 4 * 5 * 9 * 6),  # no temporal padding, two frames per chunk
    ],
)
@pytest.mark.parametrize("layout", ["mlx", "frames"])
@pytest.mark.parametrize("gemm", ["mkl", "openblas"])
def test_conv3d_frames_equals_mlx_conv3d(batch, frames, padding, chunk, layout, gemm, monkeypatch):
    """The frame convs (one GEMM per temporal tap over a spatial im2col, padding taps skipped)
    against mx.conv3d with the same zero padding, with and without bias, on both BLAS libraries."""
    _use_gemm(gemm, monkeypatch)
    assert conv.conv3d_frames_applies(mx.float32)
    monkeypatch.setattr(conv, "FRAME_COLS_ELEMENTS", chunk)
    c, o = 6, 5
    x = mx.random.normal((batch, frames, 4, 5, c), key=mx.random.key(1))
    w = mx.random.normal((o, 3, 3, 3, c), key=mx.random.key(2))
    bias = mx.random.normal((o,), key=mx.random.key(3))
    want = mx.conv3d(x, w, padding=padding) + bias
    if layout == "frames":
        w = conv.frames_layout(w)
        assert w.shape == (o, 3, 3, 3, c)
    got = conv.conv3d_frames(x, w, bias, padding)
    assert got.shape == want.shape
    assert float(mx.abs(got - want).max()) <= 1e-5 * float(mx.abs(want).max())
    nobias = conv.conv3d_frames(x, w, None, padding)
    assert float(mx.abs(nobias + bias - want).max()) <= 1e-5 * float(mx.abs(want).max())


@pytest.mark.parametrize("shape", [(2, 3, 6, 7, 16), (2, 6, 7, 16)])
def test_pixel_norm_silu_kernel_equals_mlx(shape, monkeypatch):
    from ltx.video.blocks import pixel_norm_silu

    full = mx.random.normal(shape, key=mx.random.key(5)) * 3
    x = full[..., 1:5, :5, :]  # a strided view, as a cropped conv output is
    scale, shift = (mx.random.normal((2, 16), key=mx.random.key(k)) for k in (6, 7))
    monkeypatch.setattr(threads, "BLOCK_ELEMENTS", 2 * 5 * 16)  # two rows per block
    for args in ((), (scale, shift)):
        monkeypatch.setattr(norms, "NORM_MIN_ELEMENTS", 1 << 62)
        want = pixel_norm_silu(x, *args, eps=1e-6)
        monkeypatch.setattr(norms, "NORM_MIN_ELEMENTS", 0)
        got = pixel_norm_silu(x, *args, eps=1e-6)
        assert got.shape == x.shape
        assert float(mx.abs(got - want).max()) <= 1e-5


@pytest.mark.parametrize("rows", [1, 9], ids=["per-sample", "per-token"])
def test_rms_norm_modulate_equals_mlx(rows, monkeypatch):
    """RMSNorm [* weight] [* (1 + scale) + shift] against mx.fast.rms_norm and the modulation, on a
    strided input, a batch of 2, AdaLN rows per sample or per token (conditioned frames), and a
    scale of batch 1 broadcast over the batch."""
    full = mx.random.normal((2, 9, 40), key=mx.random.key(8)) * 3
    x = full[:, :, 4:36]  # a strided view
    weight = mx.random.uniform(0.5, 1.5, (32,), key=mx.random.key(9))
    scale, shift = (mx.random.normal((2, rows, 32), key=mx.random.key(k)) for k in (10, 11))
    monkeypatch.setattr(threads, "BLOCK_ELEMENTS", 2 * 32)  # two rows per block, a ragged last one
    for kw in (
        {},
        {"weight": weight},
        {"scale": scale, "shift": shift},
        {"scale": scale[:1], "shift": shift[:1]},
    ):
        want = mx.fast.rms_norm(x, kw.get("weight"), 1e-6)
        if "scale" in kw:
            want = want * (1 + kw["scale"]) + kw["shift"]
        got = norms.rms_norm_modulate(x, 1e-6, **kw)
        assert got.shape == x.shape
        assert float(mx.abs(got - want).max()) <= 1e-5, sorted(kw)


@pytest.mark.parametrize("residual", [False, True])
def test_group_norm_silu_kernel_equals_mlx(residual, monkeypatch):
    """The upsampler's GroupNorm(32) + (residual) + SiLU in numpy against MLX's, batch 2, a strided
    input (a cropped view), an offset mean (the variance must not come from E[x^2] - E[x]^2), and
    several ragged row blocks whose statistics are combined."""
    import mlx.nn as nn

    from ltx.ops import group_norm_silu

    full = mx.random.normal((2, 3, 6, 7, 64), key=mx.random.key(8)) * 3 + 40
    x = full[:, :, 1:5, :5, :]
    res = mx.random.normal(x.shape, key=mx.random.key(9)) if residual else None
    norm = nn.GroupNorm(32, 64, eps=1e-5, pytorch_compatible=True)
    norm.weight = mx.random.uniform(0.5, 1.5, (64,), key=mx.random.key(10))
    norm.bias = mx.random.normal((64,), key=mx.random.key(11))
    monkeypatch.setattr(threads, "BLOCK_ELEMENTS", 7 * 64)  # 7 of a sample's 60 positions per block
    monkeypatch.setattr(norms, "NORM_MIN_ELEMENTS", 1 << 62)
    want = group_norm_silu(norm, x, res)
    monkeypatch.setattr(norms, "NORM_MIN_ELEMENTS", 0)
    got = group_norm_silu(norm, x, res)
    assert got.shape == x.shape
    assert float(mx.abs(got - want).max()) <= 1e-4


@pytest.mark.parametrize("gemm", ["mkl", "openblas"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_equals_mlx_matmul(gemm, bias, monkeypatch):
    """linear_kernels.linear on a (B, T, C) input that is a strided view (a transpose), on both libraries."""
    _use_gemm(gemm, monkeypatch)
    x = mx.random.normal((2, 6, 5), key=mx.random.key(1)).transpose(0, 2, 1)  # (2, 5, 6), not contiguous
    w = mx.random.normal((7, 6), key=mx.random.key(2))
    b = mx.random.normal((7,), key=mx.random.key(3)) if bias else None
    want = x @ w.T + (b if bias else 0)
    got = linear_kernels.linear(x, w, b)
    assert got.shape == (2, 5, 7)
    assert float(mx.abs(got - want).max()) <= 1e-5 * float(mx.abs(want).max())


@pytest.mark.parametrize("gemm, want", [("openblas", True), ("mkl", False), ("mlx", False)])
def test_linear_applies_only_on_openblas(gemm, want, monkeypatch):
    """MLX's own matmuls already run on MKL: the kernel only pays where the conv GEMMs use OpenBLAS."""
    from ltx.model.attention import Linear

    _use_gemm(gemm, monkeypatch)
    monkeypatch.setattr(linear_kernels, "LINEAR_MIN_MACS", 0)
    layer = Linear(6, 4)
    x = mx.random.normal((3, 6), key=mx.random.key(4))
    assert linear_kernels.linear_applies(x, layer.weight) is want
    assert linear_kernels.linear_applies(x.astype(mx.bfloat16), layer.weight) is False
    want_y = x @ layer.weight.T + layer.bias
    assert float(mx.abs(layer(x) - want_y).max()) <= 1e-5 * float(mx.abs(want_y).max())


@pytest.mark.parametrize(
    "gemm, serial, mkl, want",
    [
        ("openblas", True, True, "openblas"),
        ("openblas", False, True, "mkl"),  # an OpenBLAS without thread control: MKL's packed GEMMs
        ("mkl", True, True, "mkl"),
        ("mlx", True, True, "mkl"),
        ("openblas", True, False, "openblas"),
        ("mlx", True, False, None),  # neither: the chunked attention on MLX's matmuls
    ],
)
def test_attention_runs_on_the_conv_gemms_library(gemm, serial, mkl, want, monkeypatch):
    """The blocked attention's GEMMs run where the conv kernels' run when that is numpy's OpenBLAS
    (non-Intel CPUs), else on MKL; without either the attention is not blocked."""
    _use_gemm(gemm, monkeypatch)
    if not serial:
        monkeypatch.setattr(cpu_blas, "serial_openblas", lambda: None)
    if not mkl:
        monkeypatch.setattr(blas, "mkl", lambda: None)
    assert attention_kernels.library() == want
    assert attention_kernels.blocked_attention() is (want is not None)


def test_ops_name_the_kernels_they_pick(monkeypatch):
    """`ltx info` / --verbose say whether the VAE's 3x3 convs and the vocoder's convs run as Winograd
    convs here, how the transposed convs run, and which attention path runs."""
    from ltx import ops

    d = ops.describe()
    want = {"mkl": "blocked on MKL", "openblas": "blocked on numpy's OpenBLAS"}
    assert d["attention"].startswith(want[attention_kernels.library()]) and "512 keys" in d["attention"]
    assert d["vae_convs"].startswith("Winograd")
    assert d["vocoder_convs"].startswith("Winograd F(4, 3)") and d["vocoder_convs"].endswith(
        "numpy passes on both cores"
    )
    monkeypatch.setattr(conv, "WINOGRAD", False)
    monkeypatch.setattr(conv, "TRANSPOSED_CONV", False)
    monkeypatch.setattr(activations, "RESAMPLING", False)
    d = ops.describe()
    assert d["vae_convs"].startswith("one matmul per tap")
    assert d["vocoder_convs"] == "one matmul per tap"
    monkeypatch.setattr(attention_kernels, "library", lambda: "mkl")
    assert ops.describe()["attention"].startswith("blocked on MKL")
    monkeypatch.setattr(attention_kernels, "library", lambda: None)
    assert ops.describe()["attention"].startswith("chunked")
