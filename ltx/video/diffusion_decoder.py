"""The LTX-2.5 diffusion video decoder (ltx_core/model/video_vae/diffusion_video_decoder.py) in MLX.

    decoder = load_diffusion_decoder("vae/video_vae.safetensors")
    video = decoder.decode(latent, seed=0)          # (B, 128, F', H', W') -> (B, F, H, W, 3) in [-1, 1]
    for chunk in decoder.decode_stream(latent, (16, 8), None, (512, 96)), seed=0): ...

Stages 1-4 are neighbourhood-attention transformer stages (RMSNorm, attention with 3-axis RoPE, SwiGLU),
each followed by a linear pixel-shuffle upsample, that turn the latent into a context volume. Stage 5
denoises patchified pixels drawn from noise, conditioned on that context (added into every block) and on
the timestep by AdaLN (one shared modulation plus a per-block table); it predicts x0 (or a velocity) in a
few Euler steps (one for the released decoder). Stages 1-3 run once on the whole latent, stages 4-5 per
tile with fresh noise per tile (one-step decoders) or slices of one draw (multi-step ones), blended
by trapezoid masks on the decoder's own grid (ltx.video.diffusion_tiling).

Two pathways of the reference: "chunked" (the pipelines' default, DiffVAEMode.CHUNKED_EAGER: stage 5's
attention sees replicated edge columns at the W borders) and "combined" (full-volume attention, the
decoder as built). Channels-last inside; the public API takes the project's latent layout (B, C, F, H, W).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from ltx import ops  # noqa: E402
from ltx.video import diffusion_tiling as dt  # noqa: E402
from ltx.video.blocks import PerChannelStatistics, TimestepEmbedder, patchify, unpatchify  # noqa: E402
from ltx.video.neighborhood import na3d  # noqa: E402
from ltx.video.tiling import groups_by_time  # noqa: E402
from ltx.video.vae import NoiseFn  # noqa: E402
from ltx.weights.loader import CheckpointError, load_checkpoint, load_strict, read_config  # noqa: E402

CONV_CLASS = "CausalVideoAutoencoder"
SCALE_FACTORS = (8, 32, 32)
PATHWAYS = ("chunked", "combined")
GATES = {".gate_msa": (".attn.proj.",), ".gate_mlp": (".mlp.w_down.",), ".gate_ctx": (".context_proj.",)}


@dataclass
class DiffusionDecoderConfig:
    in_channels: int = 128
    out_channels: int = 3
    patch_size: int = 4
    head_dim: int = 64
    t_emb_dim: int = 384
    stage_channels: list = field(default_factory=lambda: [1024, 512, 256, 256, 128])
    stage_depths: list = field(default_factory=lambda: [4, 6, 4, 2, 8])
    stage_kernels: list = field(
        default_factory=lambda: [[3, 7, 7], [3, 7, 7], [3, 5, 5], [3, 5, 5], [3, 3, 3]]
    )
    upsamples: list = field(
        default_factory=lambda: [[[1, 2, 2], 2], [[2, 1, 1], 2], [[2, 2, 2], 1], [[2, 2, 2], 2]]
    )
    stage5_kernel: list = field(default_factory=lambda: [3, 7, 7])
    stage5_channels: int | None = None
    default_num_inference_steps: int = 2
    timestep_scale_multiplier: float = 1.0
    model_output_type: str = "v"

    @classmethod
    def from_vae(cls, vae: dict[str, Any]) -> DiffusionDecoderConfig:
        """From the checkpoint's `vae` section (decoder fields under `vae.decoder`, as the reference reads)."""
        dec = dict(vae.get("decoder", vae))
        if "na_head_dim" in dec and "head_dim" not in dec:
            dec["head_dim"] = dec["na_head_dim"]
        dec.setdefault("in_channels", vae.get("latent_channels", 128))
        names = {f.name for f in dataclasses.fields(cls)} - {"model_output_type"}
        cfg = cls(
            **{k: v for k, v in dec.items() if k in names},
            model_output_type=vae.get("model_output_type", "v"),
        )
        if cfg.model_output_type not in ("v", "x0"):
            raise CheckpointError(f"vae.model_output_type {cfg.model_output_type!r} is not 'v' or 'x0'")
        ups = [tuple(s) for s, _ in cfg.upsamples]
        if (
            cfg.in_channels != 128
            or cfg.patch_size != 4
            or len(ups) != 4
            or dt.stage4_shape(ups, 2, 1, 1) != (5, 4, 4)
        ):
            raise CheckpointError(
                "the diffusion decoder must map 128 latent channels by (8, 32, 32) (patch 4)"
            )
        if ups[3][0] != 2 or any(k % 2 == 0 for k in cfg.stage5_kernel):
            raise CheckpointError(
                f"unsupported diffusion decoder: upsamples {cfg.upsamples}, stage5 {cfg.stage5_kernel}"
            )
        return cfg

    @property
    def c5(self) -> int:
        return self.stage5_channels or self.stage_channels[-1]

    @property
    def overlaps(self) -> tuple[int, int]:
        """The smallest (frames, pixels) tile overlap its stages 4-5 need."""
        up3 = tuple(self.upsamples[3][0])
        k4, k5 = self.stage_kernels[3], self.stage5_kernel
        halos = dt.tile_halos(k4, self.stage_depths[3], k5, self.stage_depths[-1], up3)
        return dt.required_overlaps(halos, dt.pixel_scale(up3, self.patch_size))


def tiling_for(tiling, overlaps: tuple[int, int], preset: bool) -> tuple | None:
    """The project's decode tiling (ltx.video.tiling.TilingConfig: spatial (px, overlap), temporal (frames,
    overlap)) on the diffusion decoder's own grid: (frames, height, width) tiles. A preset's overlaps rise to
    what the decoder needs; an explicit overlap below it is a ValueError."""
    if tiling is None:
        return None
    out = []
    for name, axis, need in (
        ("frames", tiling.temporal, overlaps[0]),
        ("spatial", tiling.spatial, overlaps[1]),
    ):
        if axis is not None and axis[1] < need and not preset:
            raise ValueError(
                f"{name} overlap {axis[1]} is below the {need} the diffusion decoder needs; use {axis[0]}:{need} "
                "or a preset"
            )
        if axis is not None and preset:
            axis = (max(axis[0], need + (8 if name == "frames" else 32)), max(axis[1], need))
        out.append(axis)
    return out[0], out[1], out[1]


def rope_split(head_dim: int) -> tuple[int, int, int]:
    d_t = (head_dim // 4) // 2 * 2
    d_hw = (head_dim - d_t) // 2
    if d_hw % 2:
        d_t -= 2
        d_hw = (head_dim - d_t) // 2
    return d_t, d_hw, d_hw


def _angles(n: int, start: int, dim: int) -> tuple[mx.array, mx.array]:
    inv = (1.0 / np.power(10000.0, np.arange(0, dim, 2, dtype=np.float64) / dim)).astype(np.float32)
    ang = np.arange(start, start + n, dtype=np.float32)[:, None] * inv[None, :]  # float32 product, as torch
    return mx.array(np.cos(ang)), mx.array(np.sin(ang))


def rope3d(x: mx.array, heads: int, w0: int = 0) -> mx.array:
    """Absolute RoPE on (B, T, H, W, heads * Dh): interleaved pairs of the first d_t channels of each head
    rotate with t, the next d_h with h, the last with w (w counted from `w0`)."""
    b, t, h, w, c = x.shape
    dh = c // heads
    split = rope_split(dh)
    x = x.reshape(b, t, h, w, heads, dh)
    parts, lo = [], 0
    for axis, (d, n, start) in enumerate(zip(split, (t, h, w), (0, 0, w0), strict=True)):
        xc = x[..., lo : lo + d].reshape(b, t, h, w, heads, d // 2, 2)
        cos, sin = _angles(n, start, d)
        shape = [1, 1, 1, 1, 1, d // 2]
        shape[axis + 1] = n
        cos, sin = cos.reshape(shape), sin.reshape(shape)
        xe, xo = xc[..., 0], xc[..., 1]
        parts.append(
            mx.stack([xe * cos - xo * sin, xe * sin + xo * cos], axis=-1).reshape(b, t, h, w, heads, d)
        )
        lo += d
    return mx.concatenate(parts, axis=-1).reshape(b, t, h, w, c)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = mx.ones((dim,))
        self.eps = eps

    def __call__(self, x: mx.array) -> mx.array:
        shape = x.shape
        return ops.rms_norm(x.reshape(1, -1, shape[-1]), self.weight, self.eps).reshape(shape)


class NeighborhoodAttention(nn.Module):
    def __init__(self, dim: int, kernel: tuple[int, int, int], head_dim: int):
        super().__init__()
        self.heads, self.head_dim, self.kernel = dim // head_dim, head_dim, tuple(kernel)
        self.qkv = ops.Linear(dim, 3 * dim)  # the checkpoint's fused q|k|v
        self.proj = ops.Linear(dim, dim)
        self.q_norm = RMSNorm(head_dim)
        self.k_norm = RMSNorm(head_dim)

    def __call__(self, x: mx.array, w0: int = 0) -> mx.array:
        b, t, h, w, c = x.shape
        q, k, v = mx.split(self.qkv(x), 3, axis=-1)
        heads = (b, t, h, w, self.heads, self.head_dim)
        q = self.q_norm(q.reshape(heads)).reshape(x.shape) * (self.head_dim**-0.5)
        k = self.k_norm(k.reshape(heads)).reshape(x.shape)
        q, k = rope3d(q, self.heads, w0), rope3d(k, self.heads, w0)
        return self.proj(na3d(q, k, v, self.kernel, self.heads))


class SwiGLU(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        hidden = (int(dim * 4.0) + 15) // 16 * 16
        self.w_up = ops.Linear(dim, hidden, bias=False)
        self.w_gate = ops.Linear(dim, hidden, bias=False)
        self.w_down = ops.Linear(hidden, dim, bias=False)

    def __call__(self, x: mx.array) -> mx.array:
        return self.w_down(nn.silu(self.w_gate(x)) * self.w_up(x))


class NABlock(nn.Module):
    def __init__(self, dim: int, kernel, head_dim: int):
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(dim), RMSNorm(dim)
        self.attn = NeighborhoodAttention(dim, kernel, head_dim)
        self.mlp = SwiGLU(dim)

    def __call__(self, x: mx.array) -> mx.array:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PixelShuffleUpsample(nn.Module):
    def __init__(self, dim: int, stride, reduction: int):
        super().__init__()
        self.stride = tuple(stride)
        self.out_channels = dim // reduction
        self.proj = ops.Linear(dim, int(np.prod(stride)) * self.out_channels)

    def __call__(self, x: mx.array, drop_leading_frame: bool = True) -> mx.array:
        b, t, h, w, _ = x.shape
        p1, p2, p3 = self.stride
        c = self.out_channels
        x = self.proj(x).reshape(b, t, h, w, c, p1, p2, p3)
        x = x.transpose(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, t * p1, h * p2, w * p3, c)
        return x[:, 1:] if p1 == 2 and drop_leading_frame else x


class AdaLNZero(nn.Module):
    def __init__(self, dim: int, t_emb_dim: int):
        super().__init__()
        self.proj = ops.Linear(t_emb_dim, 7 * dim)

    def __call__(self, emb: mx.array) -> list[mx.array]:
        h = self.proj(nn.silu(emb))  # (B, 7 * dim): scale/shift/gate msa, scale/shift/gate mlp, gate ctx
        return [c[:, None, None, None, :] for c in mx.split(h, 7, axis=-1)]


class DiffusionBlock(nn.Module):
    def __init__(self, dim: int, kernel, context_channels: int, head_dim: int):
        super().__init__()
        self.context_proj = ops.Linear(context_channels, dim)
        self.scale_shift_table = mx.zeros((7, dim))
        self.norm1, self.norm2 = RMSNorm(dim), RMSNorm(dim)
        self.attn = NeighborhoodAttention(dim, kernel, head_dim)
        self.mlp = SwiGLU(dim)

    def __call__(self, x: mx.array, context: mx.array, mod: list[mx.array], w_pad: int) -> mx.array:
        scale_msa, shift_msa, _, scale_mlp, shift_mlp, _, _ = (
            m + self.scale_shift_table[i] for i, m in enumerate(mod)
        )
        x = x + self.context_proj(context)
        y = ops.modulate(self.norm1(x), scale_msa, shift_msa)
        if w_pad:  # the chunked pathway: W borders see replicated edge columns, at positions -w_pad..
            edges = mx.repeat(y[:, :, :, :1], w_pad, axis=3), mx.repeat(y[:, :, :, -1:], w_pad, axis=3)
            y = mx.concatenate([edges[0], y, edges[1]], axis=3)
            x = x + self.attn(y, -w_pad)[:, :, :, w_pad:-w_pad]
        else:
            x = x + self.attn(y)
        return x + self.mlp(ops.modulate(self.norm2(x), scale_mlp, shift_mlp))


class DiffusionVideoDecoder(nn.Module):
    def __init__(self, cfg: DiffusionDecoderConfig, pathway: str = "chunked"):
        super().__init__()
        if pathway not in PATHWAYS:
            raise ValueError(f"pathway {pathway!r} must be one of {', '.join(PATHWAYS)}")
        self.cfg, self.pathway = cfg, pathway
        ch, hd = cfg.stage_channels, cfg.head_dim
        self.per_channel_statistics = PerChannelStatistics(cfg.in_channels)
        self.conv_in = ops.Linear(cfg.in_channels, ch[0])
        self.det_stages = [
            [NABlock(ch[i], cfg.stage_kernels[i], hd) for _ in range(cfg.stage_depths[i])]
            for i in range(len(ch) - 1)
        ]
        self.upsamples = [PixelShuffleUpsample(ch[i], s, r) for i, (s, r) in enumerate(cfg.upsamples)]
        self.t_embedder = TimestepEmbedder(cfg.t_emb_dim)
        pixels = cfg.out_channels * cfg.patch_size**2
        self.conv_in_x_t = ops.Linear(pixels, cfg.c5)
        self.shared_adaln = AdaLNZero(cfg.c5, cfg.t_emb_dim)
        self.diff_blocks = [
            DiffusionBlock(cfg.c5, cfg.stage5_kernel, ch[-1], hd) for _ in range(cfg.stage_depths[-1])
        ]
        self.norm_out = RMSNorm(cfg.c5)
        self.conv_out = ops.Linear(cfg.c5, pixels)
        ups = [tuple(s) for s, _ in cfg.upsamples]
        self.strides, self.up3 = ups, ups[3]
        self.ghost = (
            cfg.stage_kernels[0][0] // 2
        ) * 2  # latent frames replicated past the end (NATTEN border)
        self.min_latent = dt.stage_min_latent(cfg.stage_kernels, cfg.upsamples, cfg.stage5_kernel)
        self.min_tile = dt.tile_min_sizes(cfg.stage_kernels[3], cfg.stage5_kernel, self.up3)
        halos = dt.tile_halos(
            cfg.stage_kernels[3], cfg.stage_depths[3], cfg.stage5_kernel, cfg.stage_depths[-1], self.up3
        )
        self.overlaps = dt.required_overlaps(halos, dt.pixel_scale(self.up3, cfg.patch_size))
        n = cfg.default_num_inference_steps
        self.timesteps = np.linspace(1.0, 1.0 / n, n).astype(np.float32).tolist()

    # ---- stages --------------------------------------------------------------------------------------
    def stages_1_to_3(self, latent: mx.array) -> mx.array:
        """(B, F', H', W', 128) normalised latent -> stage-4 input features (channels-last)."""
        x = self.conv_in(self.per_channel_statistics.un_normalize(latent))
        for i in range(3):
            for block in self.det_stages[i]:
                x = block(x)
            x = self.upsamples[i](x)
            mx.eval(x)
        return x

    def stage_4(self, feat: mx.array, is_origin: bool, pad_trailing: bool) -> mx.array:
        x = feat
        for block in self.det_stages[3]:
            x = block(x)
        x = self.upsamples[3](x, drop_leading_frame=is_origin)
        if pad_trailing and self.ghost:  # crop the replicated frames, keeping at least stage 5's kernel
            keep = min(
                x.shape[1], max(max(x.shape[1] - self.ghost * SCALE_FACTORS[0], 1), self.cfg.stage5_kernel[0])
            )
            x = x[:, :keep]
        return x

    def diff_step(self, x_t: mx.array, context: mx.array, t: float) -> mx.array:
        """One stage-5 prediction: noised pixels (B, F, H, W, 3) + context -> x0 or velocity, same shape."""
        cfg = self.cfg
        x = self.conv_in_x_t(patchify(x_t, cfg.patch_size))
        tt = mx.full((x.shape[0],), cfg.timestep_scale_multiplier * t, dtype=mx.float32)
        mod = self.shared_adaln(self.t_embedder(tt, x.dtype))
        w_pad = cfg.stage5_kernel[2] // 2 if self.pathway == "chunked" else 0
        for block in self.diff_blocks:
            x = block(x, context, mod, w_pad)
            mx.eval(x)
        return unpatchify(self.conv_out(self.norm_out(x)), cfg.patch_size)

    def decode_tile(self, feat: mx.array, x_t: mx.array, is_origin: bool, pad_trailing: bool) -> mx.array:
        context = self.stage_4(feat, is_origin, pad_trailing)
        mx.eval(context)
        ts = self.timesteps
        for i, t in enumerate(ts):
            out = self.diff_step(x_t, context, t).astype(mx.float32)
            if self.cfg.model_output_type == "x0":
                if i == len(ts) - 1:
                    return out
                out = (x_t.astype(mx.float32) - out) / t  # x0 -> velocity
            t_next = ts[i + 1] if i + 1 < len(ts) else 0.0
            x_t = (x_t.astype(mx.float32) - (t - t_next) * out).astype(x_t.dtype)
            mx.eval(x_t)
        return x_t

    # ---- decoding ------------------------------------------------------------------------------------
    def plan(self, latent_shape: tuple[int, int, int], tiling: tuple | None) -> list[dt.DiffTile]:
        """The tiles of a latent (F', H', W'): `tiling` is (frames, height, width), each (tile, overlap) or None."""
        padded = tuple(max(n, m) for n, m in zip(latent_shape, self.min_latent, strict=True))
        s4 = dt.stage4_shape(self.strides, *padded)
        return dt.plan_tiles(s4, tiling, self.up3, self.cfg.patch_size, self.min_tile, self.overlaps)

    def decode_stream(
        self,
        latent: mx.array,
        tiling: tuple | None = None,
        noise: NoiseFn | None = None,
        seed: int | None = None,
        on_tile: Callable[[], None] | None = None,
    ) -> Iterator[mx.array]:
        """Latent (B, 128, F', H', W') -> finished frame chunks (B, T_i, H, W, 3) in [-1, 1], in order.

        Noise: `noise(shape)` in the reference's layout (B, 3, F, H, W), called as the reference draws (one
        draw per tile for one-step decoders, else one full-size draw before the tiles); else from `seed`
        (mx.random keys split in draw order), else mx.random."""
        draw = noise if noise is not None else _noise_from_seed(seed)
        b, _, f, h, w = latent.shape
        frames, height, width = (f - 1) * SCALE_FACTORS[0] + 1, h * SCALE_FACTORS[1], w * SCALE_FACTORS[2]
        z = latent.transpose(0, 2, 3, 4, 1)
        pads = []
        for axis, (n, m) in enumerate(zip((f, h, w), self.min_latent, strict=True)):
            pads.append(0 if n >= m else (m - n) // 2 if axis else 0)
            if n < m:
                z = dt.resize_axis(z, axis + 1, m, "repeat_last" if axis == 0 else "symmetric")
        _, pf, ph, pw, _ = z.shape
        full = ((pf - 1) * SCALE_FACTORS[0] + 1, ph * SCALE_FACTORS[1], pw * SCALE_FACTORS[2])
        s4 = dt.stage4_shape(self.strides, pf, ph, pw)
        tiles = self.plan((f, h, w), tiling)
        z = dt.resize_axis(z, 1, pf + self.ghost, "repeat_last")
        feat = self.stages_1_to_3(z)  # (B, s4_t + ghost, s4_h, s4_w, C)
        x_init = None
        if not (len(self.timesteps) == 1 and self.cfg.model_output_type == "x0"):
            x_init = _channels_last(draw((b, self.cfg.out_channels, *full)))
        crop_h = slice(pads[1] * SCALE_FACTORS[1], pads[1] * SCALE_FACTORS[1] + height)
        crop_w = slice(pads[2] * SCALE_FACTORS[2], pads[2] * SCALE_FACTORS[2] + width)
        prev = prev_w = prev_t = None
        for group in groups_by_time(tiles):
            t_slice = _resolve(group[0].out[0], full[0])
            buf = mx.zeros((b, t_slice.stop - t_slice.start, full[1], full[2], 3), mx.float32)
            wts = mx.zeros((1, t_slice.stop - t_slice.start, full[1], full[2], 1), mx.float32)
            for tile in group:
                video = self._tile(feat, tile, s4, full, x_init, draw)
                hs, ws = _resolve(tile.out[1], full[1]), _resolve(tile.out[2], full[2])
                m = [np.ones(1, np.float32) if x is None else x for x in tile.masks]
                mask = mx.array(m[0][:, None, None] * m[1][None, :, None] * m[2][None, None, :])[
                    None, :, :, :, None
                ]
                buf[:, :, hs, ws] = buf[:, :, hs, ws] + video * mask
                wts[:, :, hs, ws] = wts[:, :, hs, ws] + mx.broadcast_to(mask, (1, *video.shape[1:4], 1))
                mx.eval(buf, wts)
                if on_tile is not None:
                    on_tile()
            if prev is not None:
                k = prev_t.stop - t_slice.start
                off = t_slice.start - prev_t.start
                if k > 0:
                    prev[:, off:] = prev[:, off:] + buf[:, :k]
                    prev_w[:, off:] = prev_w[:, off:] + wts[:, :k]
                    buf[:, :k], wts[:, :k] = prev[:, off:], prev_w[:, off:]
                chunk = self._finish(prev[:, :off], prev_w[:, :off], prev_t.start, frames, crop_h, crop_w)
                if chunk is not None:
                    yield chunk
            prev, prev_w, prev_t = buf, wts, t_slice
        chunk = self._finish(prev, prev_w, prev_t.start, frames, crop_h, crop_w)
        if chunk is not None:
            yield chunk

    def _tile(self, feat, tile: dt.DiffTile, s4, full, x_init, draw) -> mx.array:
        ts, hs, ws = (_resolve(s, n) for s, n in zip(tile.s4, s4, strict=True))
        is_origin, pad_trailing = ts.start == 0, ts.stop == s4[0]
        f_tile = feat[:, ts.start : feat.shape[1] if pad_trailing else ts.stop, hs, ws]
        n_t, n_h, n_w = ts.stop - ts.start, hs.stop - hs.start, ws.stop - ws.start
        st, sh, sw = self.up3
        p = self.cfg.patch_size
        f5 = n_t * st - (1 if is_origin and st == 2 else 0)
        if pad_trailing:
            f5 = max(f5, self.cfg.stage5_kernel[0])
        shape5 = (f_tile.shape[0], f5, n_h * sh * p, n_w * sw * p, self.cfg.out_channels)
        out = [_resolve(s, n) for s, n in zip(tile.out, full, strict=True)]
        if x_init is None:
            x_t = _channels_last(draw((shape5[0], shape5[4], *shape5[1:4])))
        else:  # a slice of the one full-size draw, edge-extended to the stage-5 canvas
            x_t = x_init[:, out[0], out[1], out[2]]
            x_t = dt.resize_axis(x_t, 1, shape5[1], "repeat_last")
            x_t = dt.resize_axis(dt.resize_axis(x_t, 2, shape5[2], "symmetric"), 3, shape5[3], "symmetric")
        video = self.decode_tile(f_tile, x_t.astype(feat.dtype), is_origin, pad_trailing)
        video = dt.resize_axis(video, 1, out[0].stop - out[0].start, "repeat_last")
        video = dt.resize_axis(video, 2, out[1].stop - out[1].start, "symmetric")
        return dt.resize_axis(video, 3, out[2].stop - out[2].start, "symmetric")

    @staticmethod
    def _finish(buf, wts, start: int, frames: int, crop_h: slice, crop_w: slice) -> mx.array | None:
        n = min(buf.shape[1], frames - start)
        if n < 1:
            return None
        chunk = buf[:, :n, crop_h, crop_w] / mx.maximum(wts[:, :n, crop_h, crop_w], 1e-8)
        mx.eval(chunk)
        return chunk

    def decode(
        self,
        latent: mx.array,
        tiling: tuple | None = None,
        noise: NoiseFn | None = None,
        seed: int | None = None,
    ) -> mx.array:
        """The whole video (B, F, H, W, 3); see `decode_stream` for long videos."""
        chunks = list(self.decode_stream(latent, tiling, noise, seed))
        return chunks[0] if len(chunks) == 1 else mx.concatenate(chunks, axis=1)

    def sanitize(self, weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """Checkpoint keys (`vae.decoder.*` or bare `decoder.*`, statistics) -> this module's: drop the
        preview head (`coarse_*`) and unused statistics, fold static gates into their linears, rename the
        timestep MLP. Idempotent."""
        out: dict[str, mx.array] = {}
        for k, v in weights.items():
            for prefix in ("vae.decoder.", "decoder.", "vae."):
                if k.startswith(prefix):
                    k = k[len(prefix) :]
                    break
            if k.startswith("coarse_") or (
                k.startswith("per_channel_statistics.")
                and k.split(".", 1)[1] not in ("mean-of-means", "std-of-means")
            ):
                continue
            k = k.replace("t_embedder.mlp.0.", "t_embedder.timestep_embedder.linear_1.")
            out[k.replace("t_embedder.mlp.2.", "t_embedder.timestep_embedder.linear_2.")] = v
        for gate in [k for k in out if k.endswith(tuple(GATES))]:
            g = out.pop(gate).astype(mx.float32)
            base, suffix = gate.rsplit(".", 1)
            for target in GATES["." + suffix]:
                for leaf in ("weight", "bias"):
                    key = base + target + leaf
                    if key in out:
                        w = out[key]
                        out[key] = ((g[:, None] if w.ndim == 2 else g) * w.astype(mx.float32)).astype(w.dtype)
        return out


def _resolve(s: slice, n: int) -> slice:
    return slice(*s.indices(n)[:2])


def _channels_last(x: mx.array) -> mx.array:
    return x.transpose(0, 2, 3, 4, 1)


def _noise_from_seed(seed: int | None) -> NoiseFn:
    state = [None if seed is None else mx.random.key(seed)]

    def draw(shape: tuple[int, ...]) -> mx.array:
        if state[0] is None:
            return mx.random.normal(shape)
        state[0], sub = mx.random.split(state[0])
        return mx.random.normal(shape, key=sub)

    return draw


def is_diffusion_vae(config: dict[str, Any]) -> bool:
    """Whether a checkpoint config's `vae` section describes a diffusion decoder (the reference's test)."""
    return config.get("vae", {}).get("_class_name", CONV_CLASS) != CONV_CLASS


def load_diffusion_decoder(
    path: str | Path, dtype: mx.Dtype | None = None, pathway: str = "chunked"
) -> DiffusionVideoDecoder:
    """The diffusion video decoder of a 2.5 video VAE file (keys `vae.decoder.*` or `decoder.*` + statistics)."""
    weights, metadata = load_checkpoint(path)
    config = read_config(metadata, path)
    if not is_diffusion_vae(config):
        raise CheckpointError(
            f"{path}: its video VAE has a convolutional decoder (vae._class_name {CONV_CLASS})"
        )
    model = DiffusionVideoDecoder(DiffusionDecoderConfig.from_vae(config["vae"]), pathway)
    own = {
        k: v
        for k, v in weights.items()
        if k.startswith(
            ("vae.decoder.", "decoder.", "vae.per_channel_statistics.", "per_channel_statistics.")
        )
    }
    load_strict(
        model,
        model.sanitize(own),
        dtype or backend.default_dtype(),
        what=f"diffusion video decoder in {path}",
    )
    return model


def parameter_count(cfg: DiffusionDecoderConfig) -> int:
    with_shapes = DiffusionVideoDecoder(cfg)
    return sum(v.size for _, v in tree_flatten(with_shapes.parameters()))
