"""The one door between the model code and the compute kernels.

Model modules call these ops and layers and never ask which device they run on. On MLX's CPU
backend each one picks the CPU kernel of ltx.kernels where that kernel is the faster (float32 and
large enough; the thresholds live with the kernels), elsewhere (GPUs, bf16, small inputs) MLX's own
fused ops. Both compute the same function: the tests run every model with each set (the "cpu"
and "mlx" kernels of tests/conftest.py).

The layers are drop-in nn layers with the same parameters (so checkpoint keys and quantization are
unchanged); `lay_out(model)` gives the convs that will run as CPU kernels the weight layout those
read without a per-call copy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402

from ltx.kernels import activations, blas, conv, norms, threads, winograd  # noqa: E402
from ltx.kernels import attention as attention_kernels  # noqa: E402
from ltx.kernels import linear as linear_kernels  # noqa: E402

# The CPU backend has no fused attention kernel: without a BLAS for the blocked attention it
# materialises (B, H, Tq, Tk) scores. Above this many score elements the queries are processed in
# chunks (24,576 video tokens x 32 heads would otherwise need 77 GB in float32); ltx/memory.py
# models the same bound.
ATTENTION_CHUNK_ELEMENTS = 1 << 27


# ---- linear layers and attention -------------------------------------------------------------------
class Linear(nn.Linear):
    """nn.Linear (same parameters, quantizable) that runs as one sgemm of numpy's OpenBLAS where that
    applies (large float32 layers on a non-Intel CPU: ltx.kernels.linear); MLX's matmul elsewhere."""

    def __call__(self, x: mx.array) -> mx.array:
        if linear_kernels.linear_applies(x, self.weight):
            return linear_kernels.linear(x, self.weight, self.bias if "bias" in self else None)
        return super().__call__(x)


def attention(q: mx.array, k: mx.array, v: mx.array, scale: float, mask: mx.array | None = None) -> mx.array:
    """Scaled dot-product attention on (B, H, T, Dh); mask is an additive bias broadcastable to
    (B, H, Tq, Tk). On the CPU all but the smallest run blocked per core (ltx.kernels.attention; with
    no BLAS, chunked over queries with a numpy softmax); elsewhere MLX's fused kernel."""
    b, h, tq, _ = q.shape
    tk = k.shape[2]
    if attention_kernels.attention_applies(b * h * tq * tk):
        return attention_kernels.attention(q, k, v, scale, mask, ATTENTION_CHUNK_ELEMENTS)
    return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)


_GELU_C = 2.0 * math.sqrt(2.0 / math.pi)


@mx.compile
def _gelu_tanh(x: mx.array) -> mx.array:
    # x * sigmoid(2z) = x / (1 + exp(-2z)), z = sqrt(2/pi)(x + 0.044715 x^3): nn.gelu_approx's function,
    # ~2x faster on MLX's CPU backend (its tanh is slower than exp); one fused kernel
    return x / (1.0 + mx.exp(-_GELU_C * (x + 0.044715 * x * x * x)))


def gelu_tanh(x: mx.array) -> mx.array:
    """GELU, tanh approximation: numpy passes on the CPU for large float32 inputs, else one compiled
    MLX kernel."""
    if x.dtype == mx.float32 and threads.applies(x.size):
        return activations.gelu_tanh(x)
    return _gelu_tanh(x)


# ---- norms and RoPE ---------------------------------------------------------------------------------
def apply_rope(x: mx.array, pe: tuple[mx.array, mx.array]) -> mx.array:
    """Rotate x (B, T, D) with a table from ltx.model.rope.precompute_rope; the layout picks the variant:
    split (cos/sin (B, T, H, Dh/2)) rotates the two halves of every head, interleaved (B, T, D) pairs."""
    cos, sin = pe
    b, t, d = x.shape
    if cos.ndim == 4:  # split: (B, T, H, Dh/2)
        h = cos.shape[2]
        xs = x.reshape(b, t, h, 2, -1)  # (B, T, H, 2, Dh/2)
        x1, x2 = xs[:, :, :, 0], xs[:, :, :, 1]
        out = mx.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=3)
        return out.reshape(b, t, d)
    xs = x.reshape(b, t, -1, 2)  # interleaved pairs
    rot = mx.stack([-xs[..., 1], xs[..., 0]], axis=-1).reshape(b, t, d)
    return x * cos + rot * sin


@lru_cache(maxsize=8)
def compiled_norms(eps: float):
    """(RMSNorm, RMSNorm + RoPE) as compiled MLX graphs: the rotation's elementwise ops fuse into one pass."""

    def norm(x, w):
        return mx.fast.rms_norm(x, w, eps)

    def norm_rope(x, w, cos, sin):
        return apply_rope(mx.fast.rms_norm(x, w, eps), (cos, sin))

    return mx.compile(norm), mx.compile(norm_rope)


def rms_norm(x: mx.array, weight: mx.array, eps: float) -> mx.array:
    """RMSNorm(x) * weight: one numpy pass on the CPU for large float32 (B, T, D), else MLX."""
    if norms.norm_applies(x):
        return norms.rms_norm_modulate(x, eps, weight)
    return compiled_norms(eps)[0](x, weight)


def rms_norm_rope(x: mx.array, weight: mx.array, pe: tuple[mx.array, mx.array], eps: float) -> mx.array:
    """RoPE of RMSNorm(x) * weight: numpy on the CPU for large float32 inputs in the split layout,
    else one compiled MLX graph."""
    cos, sin = pe
    if cos.ndim == 4 and norms.norm_applies(x):
        return norms.rms_norm_rope(x, weight, cos, sin, eps)
    return compiled_norms(eps)[1](x, weight, cos, sin)


@mx.compile
def modulate(xn: mx.array, scale: mx.array, shift: mx.array) -> mx.array:
    """AdaLN modulation xn * (1 + scale) + shift in one fused pass (scale/shift broadcast per batch)."""
    return xn * (1 + scale) + shift


def rms_norm_modulate(
    x: mx.array, eps: float, scale: mx.array | None = None, shift: mx.array | None = None
) -> mx.array:
    """RMSNorm (no weight), then the AdaLN modulation if scale and shift are given: one numpy pass
    on the CPU for large float32 (B, T, D), else MLX."""
    if norms.norm_applies(x):
        return norms.rms_norm_modulate(x, eps, scale=scale, shift=shift)
    xn = mx.fast.rms_norm(x, None, eps)
    return xn if scale is None else modulate(xn, scale, shift)


def pixel_norm_silu(
    x: mx.array, eps: float, scale: mx.array | None = None, shift: mx.array | None = None
) -> mx.array:
    """silu(x / sqrt(mean_c(x^2) + eps) * (1 + scale) + shift) of channels-last (B, ..., C) (pixel norm
    over the channel axis, scale / shift modulation, SiLU); scale, shift (B, C) or None. Float32
    inputs on the CPU go through the numpy kernel (one pass instead of MLX's six)."""
    if x.dtype == mx.float32 and x.ndim >= 3 and threads.applies(x.size, norms.NORM_MIN_ELEMENTS):
        return norms.pixel_norm_silu(x, eps, scale, shift)
    h = x * mx.rsqrt(mx.mean(x * x, axis=-1, keepdims=True) + eps)
    if scale is not None:
        bcast = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
        h = h * (1 + scale.reshape(bcast)) + shift.reshape(bcast)
    return nn.silu(h)


def group_norm_silu(norm: nn.GroupNorm, x: mx.array, residual: mx.array | None = None) -> mx.array:
    """silu(norm(x) (+ residual)); on the CPU in numpy (2 passes against MLX's many)."""
    if x.dtype == mx.float32 and threads.applies(x.size, norms.NORM_MIN_ELEMENTS):
        return norms.group_norm_silu(x, norm.num_groups, norm.weight, norm.bias, norm.eps, residual)
    y = norm(x)
    return nn.silu(y if residual is None else y + residual)


# ---- convolutions -----------------------------------------------------------------------------------
def _pad_spatial(x: mx.array, mode: str) -> mx.array:
    """Pad H and W of (B, F, H, W, C) by one on each side: zeros, or reflect (the edge's neighbour)."""
    if mode == "zeros":
        return mx.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1), (0, 0)])
    x = mx.concatenate([x[:, :, 1:2], x, x[:, :, -2:-1]], axis=2)
    return mx.concatenate([x[:, :, :, 1:2], x, x[:, :, :, -2:-1]], axis=3)


PADDING_MODES = ("zeros", "reflect")


class Conv3d(nn.Conv3d):
    """The VAE's 3x3x3 conv, padded by one in H and W with `padding_mode` (zeros or reflect) and not in
    time (the caller pads frames causally). On the CPU, stride 1: one GEMM per tap or Winograd
    (ltx.kernels.conv.conv_taps, on filters it keeps) up to TAPS_MAX_CHANNELS input channels, Winograd
    on per-call filters above that for large inputs; elsewhere MLX's conv3d."""

    def __init__(self, in_channels: int, out_channels: int, stride=(1, 1, 1), padding_mode: str = "zeros"):
        if padding_mode not in PADDING_MODES:
            raise ValueError(
                f"spatial_padding_mode {padding_mode!r} is not supported; use one of {PADDING_MODES}"
            )
        super().__init__(in_channels, out_channels, kernel_size=3, stride=tuple(stride), bias=True)
        self.padding_mode = padding_mode
        self.filters = winograd.Filters()  # a plain attribute, not a parameter

    def uses_taps(self) -> bool:
        return tuple(self.stride) == (1, 1, 1) and conv.conv_taps_applies(self.weight.shape[-1])

    def lay_out(self) -> None:
        if self.uses_taps():
            self.weight = conv.taps_layout(self.weight)  # lazy: made at first use

    def __call__(self, x: mx.array) -> mx.array:  # (B, F + 2, H, W, C) -> (B, F, H, W, O) at stride 1
        if self.uses_taps():
            return conv.conv_taps(
                _pad_spatial(x, self.padding_mode), self.weight, self.bias, filters=self.filters
            )
        voxels = (x.shape[1] - 2) * (x.shape[2] * x.shape[3])  # the output's, per batch item
        f32 = x.dtype == self.weight.dtype == mx.float32
        if tuple(self.stride) == (1, 1, 1) and f32 and conv.winograd_wide_applies(voxels, x.dtype):
            return conv.conv_taps(
                _pad_spatial(x, self.padding_mode), self.weight, self.bias
            )  # filters per call
        if self.padding_mode == "zeros":
            y = mx.conv3d(x, self.weight, stride=self.stride, padding=(0, 1, 1))
        else:
            y = mx.conv3d(_pad_spatial(x, self.padding_mode), self.weight, stride=self.stride)
        return y + self.bias


class FrameConv3d(nn.Conv3d):
    """nn.Conv3d (zero padding, stride 1); float32 on the CPU with a BLAS as one GEMM per temporal tap
    (ltx.kernels.conv.conv3d_frames), which skips the taps that read zero padding frames: the
    upsampler takes 0.57x the time of MLX's conv3d at 2 latent frames and 0.73x at 8
    (bench/vae_results.md)."""

    def lay_out(self) -> None:
        if conv.conv3d_frames_applies(self.weight.dtype):
            self.weight = conv.frames_layout(self.weight)  # lazy: made at first use

    def __call__(self, x: mx.array) -> mx.array:
        if conv.conv3d_frames_applies(x.dtype) and self.weight.dtype == mx.float32:
            return conv.conv3d_frames(x, self.weight, self.get("bias"), self.padding)
        return super().__call__(x)


class Conv2d(nn.Conv2d):
    """nn.Conv2d (stride 1) with padding ((top, bottom), (left, right)) that may differ per side (the
    audio VAE's causal convs pad time in front only). On the CPU, 1xK and 3x3 kernels up to
    TAPS_MAX_CHANNELS input channels run as conv_taps (Winograd for 3x3); elsewhere MLX's conv2d."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: tuple):
        super().__init__(in_channels, out_channels, kernel_size)
        self.pads = tuple(tuple(p) for p in padding)
        self.filters = winograd.Filters()  # a plain attribute, not a parameter

    def uses_taps(self) -> bool:
        _, k, _, c = self.weight.shape
        return k in (1, 3) and conv.conv_taps_applies(c)

    def lay_out(self) -> None:
        if self.uses_taps():
            self.weight = conv.taps_layout(self.weight)  # lazy: made at first use

    def __call__(self, x: mx.array) -> mx.array:  # (B, H, W, C)
        bias = self.bias if "bias" in self else None
        if self.uses_taps():
            if any(any(p) for p in self.pads):
                x = mx.pad(x, [(0, 0), *self.pads, (0, 0)])
            return conv.conv_taps(x, self.weight, bias, filters=self.filters)
        symmetric = tuple(min(p) for p in self.pads)  # through the conv's padding, the rest explicitly
        rest = [(lo - s, hi - s) for (lo, hi), s in zip(self.pads, symmetric, strict=True)]
        if any(any(p) for p in rest):
            x = mx.pad(x, [(0, 0), *rest, (0, 0)])
        y = mx.conv2d(x, self.weight, padding=symmetric)
        return y if bias is None else y + bias


def conv1d_mm(x: mx.array, w: mx.array, bias: mx.array | None, padding: int, dilation: int) -> mx.array:
    """A stride-1 1-D conv of x (B, L, C) with w (O, K, C) as one im2col matmul over K shifted slices."""
    o, k, c = w.shape
    if padding:
        x = mx.pad(x, [(0, 0), (padding, padding), (0, 0)])
    b, length, _ = x.shape
    out = length - dilation * (k - 1)
    cols = (
        x if k == 1 else mx.concatenate([x[:, j * dilation : j * dilation + out] for j in range(k)], axis=-1)
    )
    y = cols.reshape(b * out, k * c) @ w.reshape(o, k * c).T
    y = y.reshape(b, out, o)
    return y if bias is None else y + bias


class Conv1d(nn.Conv1d):
    """nn.Conv1d (same parameters and layout (O, K, I), stride 1) computed with matmuls: on the CPU one
    per tap over shifted views, or as a Winograd conv (conv_taps, at any width), elsewhere one over K
    shifted slices (conv1d_mm).

    MLX's CPU conv1d is 50-180x slower than a BLAS matmul of the same FLOPs at the vocoder's widths
    (bench/vae_results.md, conv1d `native` rows), in particular with dilation; off the CPU the (L, K*C)
    column matrix is small (<= ~40 MB)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters = winograd.Filters()  # a plain attribute, not a parameter

    def lay_out(self) -> None:
        if conv.conv1d_taps_applies():
            self.weight = conv.taps_layout(self.weight)  # lazy: made at first use

    def __call__(self, x: mx.array) -> mx.array:  # (B, L, C) -> (B, L', O)
        bias = self.bias if "bias" in self else None
        if conv.conv1d_taps_applies():
            x = mx.pad(x, [(0, 0), (self.padding, self.padding), (0, 0)]) if self.padding else x
            return conv.conv_taps(x, self.weight, bias, self.dilation, self.filters)
        return conv1d_mm(x, self.weight, bias, self.padding, self.dilation)


class ConvTranspose1d(nn.ConvTranspose1d):
    """nn.ConvTranspose1d (weights (O, K, I), PyTorch semantics) as one matmul and an overlap-add:
    z[n, t] = x[n] @ W[:, t] lands on output row n * stride + t, then `padding` is cropped on both sides.
    On the CPU with a BLAS, GEMMs that add into the output in place (ltx.kernels.conv.conv_transpose1d)."""

    def lay_out(self) -> None:  # the CPU kernel reads the weight tap-major
        if conv.conv_transpose1d_applies(self.weight.dtype):
            self.weight = conv.taps_layout(self.weight)  # lazy: made at first use

    def __call__(self, x: mx.array) -> mx.array:  # (B, N, C) -> (B, (N - 1) u + K - 2p, O)
        bias = self.bias if "bias" in self else None
        if x.dtype == mx.float32 and conv.conv_transpose1d_applies(self.weight.dtype):
            return conv.conv_transpose1d(x, self.weight, bias, self.stride, self.padding)
        w = self.weight
        o, k, c = w.shape
        b, n, _ = x.shape
        u, p = self.stride, self.padding
        z = (
            (x.reshape(b * n, c) @ w.reshape(o * k, c).T).reshape(b, n, o, k).transpose(0, 1, 3, 2)
        )  # (B, N, K, O)
        j = -(-k // u)
        if j * u != k:
            z = mx.pad(z, [(0, 0), (0, 0), (0, j * u - k), (0, 0)])
        z = z.reshape(b, n, j, u, o)
        y = None
        for i in range(j):
            part = mx.pad(z[:, :, i].reshape(b, n * u, o), [(0, 0), (i * u, (j - 1 - i) * u), (0, 0)])
            y = part if y is None else y + part
        y = y[:, p : p + (n - 1) * u + k - 2 * p]
        return y if bias is None else y + bias


_KERNEL_LAYERS = (Conv1d, Conv2d, Conv3d, ConvTranspose1d, FrameConv3d)


def lay_out(model: nn.Module) -> None:
    """Give every conv of `model` that will run as a CPU kernel the weight layout that kernel reads
    without a per-call copy (tap-major; lazy: made at first use). Call once, after loading."""
    for m in model.modules():
        if isinstance(m, _KERNEL_LAYERS):
            m.lay_out()


# ---- BigVGAN's anti-aliased activation ----------------------------------------------------------------
def snake_beta_resampled(
    x: mx.array,
    alpha: mx.array,
    beta: mx.array,
    up_filter: mx.array,
    down_filter: mx.array,
    geometry: tuple[int, int, int, int, int],
    mlx_path: Callable[[mx.array], mx.array],
) -> mx.array:
    """downsample(SnakeBeta(upsample(x))) of x (B, L, C): on the CPU as numpy passes over chunks of
    rows on both cores (ltx.kernels.activations.snake_resampled; MLX's grouped convs took ~20x
    longer), elsewhere `mlx_path(x)`. geometry = (upsampling ratio, its replicate pad, its left crop,
    the low-pass filter's stride, its left pad); alpha, beta SnakeBeta's log-scale parameters."""
    if not (x.dtype == mx.float32 and activations.resampling_applies(x.dtype)):
        return mlx_path(x)
    filters = (np.array(f, copy=False).astype(np.float32).tobytes() for f in (up_filter, down_filter))
    taps = _resampling(*filters, *geometry)
    scale = mx.exp(alpha)
    gain = 1.0 / (mx.exp(beta) + 1e-9)
    x = mx.contiguous(x)
    out = mx.zeros(x.shape, mx.float32)  # written in place
    mx.eval(x, scale, gain, out)
    xv, ov, scale, gain = (np.array(a, copy=False) for a in (x, out, scale, gain))
    for item, dst in zip(xv, ov, strict=True):
        activations.snake_resampled(item, taps, scale, gain, dst)
    return out


@lru_cache(maxsize=16)
def _resampling(
    up: bytes, down: bytes, ratio: int, pad: int, crop_left: int, stride: int, pad_left: int
) -> activations.Resampling:
    """The upsampling and low-pass filters (float32 bytes) as activations.Resampling taps, shared by
    every activation with the same filter values (the checkpoint's are all one kaiser-sinc).

    Upsampled row m = u q + p is u sum f[t] x[(m + crop_left - t) / u - pad] over the t for which
    that divides evenly; output row r is sum g[t] upsampled[s r - pad_left + t], which with s = u
    is phase (t - pad_left) mod u, row r + (t - pad_left) // u."""
    if stride != ratio:
        raise ValueError(f"anti-aliased activation: downsampling stride {stride} != upsampling ratio {ratio}")
    f, g = np.frombuffer(up, np.float32), np.frombuffer(down, np.float32)
    phases = tuple(
        tuple(
            ((p + crop_left - t) // ratio - pad, ratio * float(f[t]))
            for t in range(f.size)
            if (p + crop_left - t) % ratio == 0
        )
        for p in range(ratio)
    )
    taps = tuple(((t - pad_left) % ratio, (t - pad_left) // ratio, float(g[t])) for t in range(g.size))
    return activations.Resampling(ratio, phases, taps)


# ---- what runs here ------------------------------------------------------------------------------------
def describe() -> dict[str, str]:
    """Which kernels these ops pick on this machine, for `ltx info` and `--verbose`."""
    dtype = backend.default_dtype()
    cpu = threads.cpu_backend()
    if not cpu:
        convs = "MLX's"
    elif conv.winograd_applies(dtype):
        wide = f"those over {conv.TAPS_MAX_CHANNELS} channels from {conv.WINOGRAD_WIDE_MIN_VOXELS:,} voxels"
        tiles = f"F(4x4, 3x3) up to {winograd.TILE_MAX_CHANNELS} channels, F(2x2, 3x3) above"
        convs = f"Winograd {tiles} ({wide})"
    else:
        convs = "one matmul per tap up to 512 channels"
    if not cpu:
        vocoder = "MLX's matmuls"
    elif conv.winograd_applies(dtype):
        lo, hi = winograd.MIN_CHANNELS_1D, winograd.MAX_CHANNELS_1D
        vocoder = f"Winograd F(4, 3) / F(4, 4) at {lo}-{hi} channels, one matmul per tap otherwise"
    else:
        vocoder = "one matmul per tap"
    if cpu and conv.conv_transpose1d_applies(dtype):
        vocoder += "; transposed convs as in-place GEMMs"
    if cpu and activations.resampling_applies(dtype):
        vocoder += "; anti-aliased activations as numpy passes on both cores"
    if not cpu:
        attention_path = "MLX's fused kernel (mx.fast.scaled_dot_product_attention)"
    elif attention_kernels.blocked_attention():
        library = {"mkl": "MKL (packed K and V)", "openblas": "numpy's OpenBLAS (single-threaded per core)"}
        attention_path = (
            f"blocked on {library[attention_kernels.library()]} from "
            f"{attention_kernels.BLOCKED_MIN_ELEMENTS:,} scores (blocks of query rows x "
            f"{attention_kernels.KEY_BLOCK} keys on each core, softmax in base "
            f"{2 if attention_kernels.SOFTMAX_BASE2 else 'e'} with numpy), MLX's fused kernel below"
        )
    else:
        attention_path = f"chunked from {threads.MIN_ELEMENTS:,} scores (MLX matmuls, numpy softmax), MLX's fused kernel below"
    return {
        **backend.describe(),
        "conv_gemm": blas.describe() if cpu else "none (GPU)",
        "vae_convs": convs,
        "vocoder_convs": vocoder,
        "attention": attention_path,
    }


def memory_paths(itemsize: int) -> dict[str, bool]:
    """The kernel choices that change ltx.memory's estimates, for a compute dtype of `itemsize` bytes."""
    f32 = itemsize == 4
    return {
        "blocked_attention": attention_kernels.blocked_attention(),
        "cpu_norms": threads.cpu_backend(),
        "frame_convs": f32 and conv.conv3d_frames_applies(mx.float32),
        "winograd": f32 and conv.winograd_applies(mx.float32),
        "resampling": f32 and activations.resampling_applies(mx.float32),
    }
