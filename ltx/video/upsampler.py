"""The LTX-2 latent spatial upsampler (ltx_core/model/upsampler/*) in MLX.

    upsampler = load_upsampler("ltx-2-spatial-upscaler-x2-1.0.safetensors")
    hi = upsample_video(latent, encoder, upsampler)  # (B, 128, F, H, W) -> (B, 128, F, 2H, 2W)

The latent is un-normalised with the VIDEO ENCODER's statistics before and normalised after, as
`upsample_video` in the reference. Latents at the API are (B, C, F, H, W); the module runs channels-last.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from ltx import ops  # noqa: E402
from ltx.video.blocks import PerChannelStatistics  # noqa: E402
from ltx.weights.loader import (  # noqa: E402
    CheckpointError,
    load_checkpoint,
    load_strict,
    read_config,
    to_mlx_layout,
)

RATIONAL_SCALES = {0.75: (3, 4), 1.5: (3, 2), 2.0: (2, 1), 4.0: (4, 1)}
BLUR_KEY = "upsampler.blur_down.kernel"


@dataclass
class UpsamplerConfig:
    in_channels: int = 128
    mid_channels: int = 512
    num_blocks_per_stage: int = 4
    dims: int = 3
    spatial_upsample: bool = True
    temporal_upsample: bool = False
    spatial_scale: float = 2.0
    rational_resampler: bool = False

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> UpsamplerConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in config.items() if k in names})
        if cfg.dims != 3 or cfg.temporal_upsample or not cfg.spatial_upsample:
            raise CheckpointError(
                f"unsupported upsampler config dims={cfg.dims}, spatial_upsample={cfg.spatial_upsample}, "
                f"temporal_upsample={cfg.temporal_upsample}; only the 3-D spatial upsampler is implemented"
            )
        if cfg.rational_resampler and float(cfg.spatial_scale) not in RATIONAL_SCALES:
            raise CheckpointError(
                f"unsupported upsampler spatial_scale={cfg.spatial_scale}; use one of {list(RATIONAL_SCALES)}"
            )
        if cfg.mid_channels % 32:
            raise CheckpointError(
                f"upsampler mid_channels={cfg.mid_channels} must be a multiple of 32 (GroupNorm(32))"
            )
        return cfg


def binomial_kernel(size: int = 5) -> np.ndarray:
    k = np.array([math.comb(size - 1, i) for i in range(size)], np.float64)
    k2 = np.outer(k, k)
    return (k2 / k2.sum()).astype(np.float32)


def _group_norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, c, eps=1e-5, affine=True, pytorch_compatible=True)


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = ops.FrameConv3d(c, c, 3, padding=1)
        self.norm1 = _group_norm(c)
        self.conv2 = ops.FrameConv3d(c, c, 3, padding=1)
        self.norm2 = _group_norm(c)

    def __call__(self, x: mx.array) -> mx.array:
        h = ops.group_norm_silu(self.norm1, self.conv1(x))
        return ops.group_norm_silu(self.norm2, self.conv2(h), residual=x)


def pixel_shuffle_2d(x: mx.array, p: int) -> mx.array:
    """(N, H, W, C*p*p) -> (N, H*p, W*p, C), channel index c*p*p + p1*p + p2 (p1: height offset)."""
    n, h, w, cpp = x.shape
    c = cpp // (p * p)
    x = x.reshape(n, h, w, c, p, p).transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(n, h * p, w * p, c)


class SpatialRationalResampler(nn.Module):
    """Per frame: conv to num^2 * C, pixel shuffle by num, binomial blur with stride den."""

    def __init__(self, c: int, scale: float):
        super().__init__()
        self.num, self.den = RATIONAL_SCALES[float(scale)]
        self.conv = nn.Conv2d(c, self.num**2 * c, 3, padding=1)
        self._kernel = mx.array(binomial_kernel())

    def __call__(self, x: mx.array) -> mx.array:
        b, f, h, w, c = x.shape
        y = pixel_shuffle_2d(self.conv(x.reshape(b * f, h, w, c)), self.num)
        if self.den > 1:  # depthwise blur + stride (identity for the x2 upsampler)
            k = mx.broadcast_to(self._kernel[None, :, :, None], (c, 5, 5, 1)).astype(y.dtype)
            y = mx.conv2d(y, k, stride=self.den, padding=2, groups=c)
        return y.reshape(b, f, *y.shape[1:])


class LatentUpsampler(nn.Module):
    def __init__(self, cfg: UpsamplerConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.mid_channels
        self.initial_conv = ops.FrameConv3d(cfg.in_channels, c, 3, padding=1)
        self.initial_norm = _group_norm(c)
        self.res_blocks = [ResBlock(c) for _ in range(cfg.num_blocks_per_stage)]
        if cfg.rational_resampler:
            self.upsampler = SpatialRationalResampler(c, cfg.spatial_scale)
        else:  # Sequential(Conv2d, PixelShuffle(2)): keys upsampler.0.*
            self.upsampler = [nn.Conv2d(c, 4 * c, 3, padding=1)]
        self.post_upsample_res_blocks = [ResBlock(c) for _ in range(cfg.num_blocks_per_stage)]
        self.final_conv = ops.FrameConv3d(c, cfg.in_channels, 3, padding=1)

    def __call__(self, latent: mx.array) -> mx.array:
        # latent: (B, F, H, W, C) un-normalised
        x = ops.group_norm_silu(self.initial_norm, self.initial_conv(latent))
        for block in self.res_blocks:
            x = block(x)
        if isinstance(self.upsampler, SpatialRationalResampler):
            x = self.upsampler(x)
        else:
            b, f, h, w, c = x.shape
            x = pixel_shuffle_2d(self.upsampler[0](x.reshape(b * f, h, w, c)), 2)
            x = x.reshape(b, f, *x.shape[1:])
        for block in self.post_upsample_res_blocks:
            x = block(x)
        return self.final_conv(x)

    def sanitize(self, weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """PyTorch layouts -> MLX; the fixed blur kernel buffer, if stored, must be the binomial one."""
        weights = dict(weights)
        kernel = weights.pop(BLUR_KEY, None)
        if kernel is not None:
            k = np.array(kernel.astype(mx.float32)).reshape(-1)
            if k.size != 25 or not np.allclose(k, binomial_kernel().reshape(-1), atol=1e-3):
                raise CheckpointError(f"{BLUR_KEY} is not the 5x5 binomial blur kernel this upsampler uses")
        expected = {k: tuple(v.shape) for k, v in tree_flatten(self.parameters())}
        return to_mlx_layout(weights, expected)


def load_upsampler(path: str | Path, dtype: mx.Dtype | None = None) -> LatentUpsampler:
    """The spatial upsampler file (keys without prefix, config in its own metadata)."""
    weights, metadata = load_checkpoint(path)
    model = LatentUpsampler(UpsamplerConfig.from_dict(read_config(metadata, path)))
    load_strict(
        model, model.sanitize(weights), dtype or backend.default_dtype(), what=f"latent upsampler in {path}"
    )
    ops.lay_out(model)
    return model


def upsample_video(latent: mx.array, encoder, upsampler: LatentUpsampler) -> mx.array:
    """x2 spatial upsampling of a normalised latent (B, 128, F, H, W) -> (B, 128, F, 2H, 2W), un-normalised
    and re-normalised with the VIDEO ENCODER's per-channel statistics (`encoder` or its statistics)."""
    stats: PerChannelStatistics = getattr(encoder, "per_channel_statistics", encoder)
    x = stats.un_normalize(latent.transpose(0, 2, 3, 4, 1))  # (B, F, H, W, C)
    return stats.normalize(upsampler(x)).transpose(0, 4, 1, 2, 3)
