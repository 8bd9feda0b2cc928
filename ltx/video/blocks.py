"""Building blocks of the LTX-2 video VAE (ltx_core/model/video_vae/{convolution,resnet,sampling,ops}.py) in MLX.

Everything is channels-last: video tensors are (B, F, H, W, C). Checkpoint attribute names are kept
(`conv1.conv`, `res_blocks`, `scale_shift_table`, `time_embedder.timestep_embedder`), so loading is
stripping a prefix and moving conv weights from PyTorch (O, I, D, H, W) to MLX (O, D, H, W, I).
"""

from __future__ import annotations

import math

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402

from ltx import ops  # noqa: E402

PIXEL_NORM_EPS = 1e-8


def pixel_norm_silu(
    x: mx.array,
    scale: mx.array | None = None,
    shift: mx.array | None = None,
    eps: float = PIXEL_NORM_EPS,
) -> mx.array:
    """silu(x / sqrt(mean_c(x^2) + eps) * (1 + scale) + shift) of channels-last (B, ..., C); scale,
    shift (B, C) or None."""
    return ops.pixel_norm_silu(x, eps, scale, shift)


class CausalConv3d(nn.Module):
    """3x3x3 conv; time is padded by replicating frames (causal: two copies of the first frame; otherwise
    one of the first and one of the last), H and W by one with the spatial padding mode."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: tuple[int, int, int] = (1, 1, 1),
        padding_mode: str = "zeros",
    ):
        super().__init__()
        self.conv = ops.Conv3d(in_channels, out_channels, stride, padding_mode)

    def __call__(self, x: mx.array, causal: bool = True) -> mx.array:
        # x: (B, F, H, W, C)
        first = x[:, :1]
        if causal:
            x = mx.concatenate([first, first, x], axis=1)
        else:
            x = mx.concatenate([first, x, x[:, -1:]], axis=1)
        return self.conv(x)


def timestep_features(t: mx.array, channels: int = 256, max_period: float = 10000.0) -> mx.array:
    """Sinusoidal features, cos first (flip_sin_to_cos=True, downscale_freq_shift=0): (N,) -> (N, channels)."""
    half = channels // 2
    freqs = mx.exp(-math.log(max_period) * mx.arange(half, dtype=mx.float32) / half)
    args = t.astype(mx.float32)[:, None] * freqs[None]
    return mx.concatenate([mx.cos(args), mx.sin(args)], axis=-1)


class TimestepMLP(nn.Module):
    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def __call__(self, x: mx.array) -> mx.array:
        return self.linear_2(nn.silu(self.linear_1(x)))


class TimestepEmbedder(nn.Module):
    """PixArt-alpha timestep embedder without size embedding: 256 sinusoidal features -> MLP(dim)."""

    def __init__(self, dim: int):
        super().__init__()
        self.timestep_embedder = TimestepMLP(256, dim)

    def __call__(self, t: mx.array, dtype: mx.Dtype) -> mx.array:
        return self.timestep_embedder(timestep_features(t).astype(dtype))  # (B, dim)


class ResnetBlock3D(nn.Module):
    def __init__(self, channels: int, padding_mode: str, timestep_conditioning: bool = False):
        super().__init__()
        self.conv1 = CausalConv3d(channels, channels, padding_mode=padding_mode)
        self.conv2 = CausalConv3d(channels, channels, padding_mode=padding_mode)
        self.timestep_conditioning = timestep_conditioning
        if timestep_conditioning:
            self.scale_shift_table = mx.zeros((4, channels))

    def __call__(self, x: mx.array, causal: bool = True, emb: mx.array | None = None) -> mx.array:
        ada = [None] * 4
        if self.timestep_conditioning:
            # rows: shift1, scale1, shift2, scale2; emb: (B, 4, C)
            ada = list((self.scale_shift_table[None] + emb).transpose(1, 0, 2))  # 4 x (B, C)
        h = self.conv1(pixel_norm_silu(x, ada[1], ada[0]), causal)
        h = self.conv2(pixel_norm_silu(h, ada[3], ada[2]), causal)
        return x + h


class ResGroup(nn.Module):
    """`res_x`: a run of residual blocks sharing one timestep embedding (UNetMidBlock3D)."""

    def __init__(
        self, channels: int, num_layers: int, padding_mode: str, timestep_conditioning: bool = False
    ):
        super().__init__()
        self.timestep_conditioning = timestep_conditioning
        if timestep_conditioning:
            self.time_embedder = TimestepEmbedder(4 * channels)
        self.res_blocks = [
            ResnetBlock3D(channels, padding_mode, timestep_conditioning) for _ in range(num_layers)
        ]

    def __call__(self, x: mx.array, causal: bool = True, timestep: mx.array | None = None) -> mx.array:
        emb = None
        if self.timestep_conditioning:
            emb = self.time_embedder(timestep, x.dtype).reshape(x.shape[0], 4, -1)  # (B, 4, C)
        for block in self.res_blocks:
            x = block(x, causal, emb)
        return x


def space_to_depth(x: mx.array, s: tuple[int, int, int]) -> mx.array:
    """(B, F*s0, H*s1, W*s2, C) -> (B, F, H, W, C*s0*s1*s2), channel index c*P + p0*s1*s2 + p1*s2 + p2."""
    b, f, h, w, c = x.shape
    x = x.reshape(b, f // s[0], s[0], h // s[1], s[1], w // s[2], s[2], c)
    x = x.transpose(0, 1, 3, 5, 7, 2, 4, 6)
    return x.reshape(b, f // s[0], h // s[1], w // s[2], c * s[0] * s[1] * s[2])


def depth_to_space(x: mx.array, s: tuple[int, int, int]) -> mx.array:
    """Inverse of `space_to_depth`: (B, F, H, W, C*P) -> (B, F*s0, H*s1, W*s2, C)."""
    b, f, h, w, cp = x.shape
    c = cp // (s[0] * s[1] * s[2])
    x = x.reshape(b, f, h, w, c, s[0], s[1], s[2])
    x = x.transpose(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(b, f * s[0], h * s[1], w * s[2], c)


class SpaceToDepthDownsample(nn.Module):
    """Encoder `compress_*_res`: space-to-depth of a causal conv plus a channel-averaged space-to-depth skip."""

    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int, int], padding_mode: str):
        super().__init__()
        self.stride = stride
        self.group_size = in_channels * math.prod(stride) // out_channels
        self.conv = CausalConv3d(in_channels, out_channels // math.prod(stride), padding_mode=padding_mode)

    def __call__(self, x: mx.array, causal: bool = True) -> mx.array:
        if self.stride[0] == 2:
            x = mx.concatenate([x[:, :1], x], axis=1)  # one more copy of the first frame
        skip = space_to_depth(x, self.stride)
        b, f, h, w, c = skip.shape
        skip = skip.reshape(b, f, h, w, c // self.group_size, self.group_size).mean(axis=-1)
        return space_to_depth(self.conv(x, causal), self.stride) + skip


class DepthToSpaceUpsample(nn.Module):
    """Decoder `compress_*`: causal conv to P*C/r channels, depth-to-space, drop the first frame when time
    doubles; residual: depth-to-space of the input tiled P/r times along channels."""

    def __init__(
        self,
        in_channels: int,
        stride: tuple[int, int, int],
        residual: bool,
        reduction: int,
        padding_mode: str,
    ):
        super().__init__()
        self.stride = stride
        self.residual = residual
        self.repeats = math.prod(stride) // reduction
        self.conv = CausalConv3d(
            in_channels, math.prod(stride) * in_channels // reduction, padding_mode=padding_mode
        )

    def __call__(self, x: mx.array, causal: bool = True) -> mx.array:
        y = depth_to_space(self.conv(x, causal), self.stride)
        if self.stride[0] == 2:
            y = y[:, 1:]
        if self.residual:
            skip = depth_to_space(x, self.stride)
            skip = mx.concatenate([skip] * self.repeats, axis=-1) if self.repeats > 1 else skip
            if self.stride[0] == 2:
                skip = skip[:, 1:]
            y = y + skip
        return y


def patchify(x: mx.array, p: int) -> mx.array:
    """(B, F, H*p, W*p, C) -> (B, F, H, W, C*p*p), channel index c*p*p + r*p + q (r: width offset, q: height)."""
    b, f, h, w, c = x.shape
    x = x.reshape(b, f, h // p, p, w // p, p, c)  # (b, f, h, q, w, r, c)
    x = x.transpose(0, 1, 2, 4, 6, 5, 3)  # (b, f, h, w, c, r, q)
    return x.reshape(b, f, h // p, w // p, c * p * p)


def unpatchify(x: mx.array, p: int) -> mx.array:
    """Inverse of `patchify`: (B, F, H, W, C*p*p) -> (B, F, H*p, W*p, C)."""
    b, f, h, w, cpp = x.shape
    c = cpp // (p * p)
    x = x.reshape(b, f, h, w, c, p, p)  # (b, f, h, w, c, r, q)
    x = x.transpose(0, 1, 2, 6, 3, 5, 4)  # (b, f, h, q, w, r, c)
    return x.reshape(b, f, h * p, w * p, c)


class PerChannelStatistics(nn.Module):
    """The latent mean and std per channel (checkpoint buffers `mean-of-means`, `std-of-means`)."""

    def __init__(self, channels: int):
        super().__init__()
        self["mean-of-means"] = mx.zeros((channels,))
        self["std-of-means"] = mx.ones((channels,))

    def normalize(self, x: mx.array) -> mx.array:
        return (x - self["mean-of-means"].astype(x.dtype)) / self["std-of-means"].astype(x.dtype)

    def un_normalize(self, x: mx.array) -> mx.array:
        return x * self["std-of-means"].astype(x.dtype) + self["mean-of-means"].astype(x.dtype)
