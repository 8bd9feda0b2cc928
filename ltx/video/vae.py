"""The LTX-2 video VAE (ltx_core/model/video_vae/video_vae.py) in MLX: encoder, decoder (plain or
timestep-conditioned), tiled and streaming decoding.

    encoder = load_video_encoder("model.safetensors")
    latent = encoder.encode(video)                            # (B, F, H, W, 3) in [-1, 1] -> (B, 128, F', H', W')
    decoder = load_video_decoder("model.safetensors")
    video = decoder.decode(latent, tiling="default", seed=0)  # (B, 128, F', H', W') -> (B, F, H, W, 3)
    for chunk in decoder.decode_stream(latent, "default"):   # finished frames (B, T_i, H, W, 3), in order
        ...

Layouts: pixels are channels-last (B, F, H, W, 3); latents at the public API are the project's (and the
reference's) (B, C, F, H, W). Inside, everything runs channels-last (`__call__` takes (B, F, H, W, C)).
Latents are normalised with the per-channel statistics, as the reference's.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from ltx import ops  # noqa: E402
from ltx.video import tiling as tiling_mod  # noqa: E402
from ltx.video.blocks import (  # noqa: E402
    CausalConv3d,
    DepthToSpaceUpsample,
    PerChannelStatistics,
    ResGroup,
    SpaceToDepthDownsample,
    TimestepEmbedder,
    patchify,
    pixel_norm_silu,
    unpatchify,
)
from ltx.weights.loader import (  # noqa: E402
    CheckpointError,
    check_config_value,
    load_checkpoint,
    load_strict,
    read_config,
    take_prefix,
    to_mlx_layout,
)

SCALE_FACTORS = (8, 32, 32)  # (time, height, width): fixed in the reference
DECODE_NOISE_SCALE = 0.025
DECODE_TIMESTEP = 0.05
# Checkpoint buffers that exist in official files but that ltx-core never reads.
UNUSED_STATS = ("channel", "mean-of-stds", "mean-of-stds_over_std-of-means")
TIMESTEP_KEYS = ("timestep_scale_multiplier", "last_time_embedder.", "last_scale_shift_table")
STRIDES = {"compress_time": (2, 1, 1), "compress_space": (1, 2, 2), "compress_all": (2, 2, 2)}

NoiseFn = Callable[[tuple[int, ...]], mx.array]


@dataclass
class VideoVAEConfig:
    dims: int = 3
    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 128
    patch_size: int = 4
    encoder_blocks: list = field(default_factory=list)
    decoder_blocks: list = field(default_factory=list)
    decoder_base_channels: int = 128
    norm_layer: str = "pixel_norm"
    latent_log_var: str = "uniform"
    causal_decoder: bool = False
    timestep_conditioning: bool | None = None  # None: absent from the metadata
    # The decoder's widest (latent-end) width: 1.0.0 builds decoder_base_channels * 8, 1.2.0 (LTX-2.5)
    # decoder_base_channels times the product of the upsampling multipliers; equal for the released
    # VAEs, the loader reads it off the checkpoint's conv_in. None: decoder_base_channels * 8.
    decoder_bottleneck: int | None = None
    spatial_padding_mode: str | None = None  # None: encoder zeros, decoder reflect (the reference defaults)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> VideoVAEConfig:
        if isinstance(config.get("encoder"), dict):  # LTX-2.5's CausalDiffusionVAE: encoder fields nest
            enc = config["encoder"]
            keep = (
                "dims",
                "in_channels",
                "patch_size",
                "norm_layer",
                "latent_log_var",
                "spatial_padding_mode",
            )
            config = {
                **{k: enc[k] for k in keep if k in enc},
                "latent_channels": enc.get("out_channels", config.get("latent_channels", 128)),
                "encoder_blocks": enc.get("blocks", enc.get("encoder_blocks", [])),
            }
        names = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in config.items() if k in names})
        check_config_value(config, "dims", 3, "vae")
        check_config_value(config, "in_channels", 3, "vae")
        check_config_value(config, "out_channels", 3, "vae")
        check_config_value(config, "norm_layer", "pixel_norm", "vae")
        check_config_value(config, "latent_log_var", "uniform", "vae")
        return cfg

    @property
    def encoder_padding(self) -> str:
        return self.spatial_padding_mode or "zeros"

    @property
    def decoder_padding(self) -> str:
        return self.spatial_padding_mode or "reflect"


def _blocks(blocks: list) -> list[tuple[str, dict]]:
    return [(name, {"num_layers": p} if isinstance(p, int) else dict(p)) for name, p in blocks]


class VideoEncoder(nn.Module):
    def __init__(self, cfg: VideoVAEConfig):
        super().__init__()
        self.cfg = cfg
        pad = cfg.encoder_padding
        self.patch_size = cfg.patch_size
        self.per_channel_statistics = PerChannelStatistics(cfg.latent_channels)
        ch = cfg.latent_channels
        self.conv_in = CausalConv3d(cfg.in_channels * cfg.patch_size**2, ch, padding_mode=pad)
        self.down_blocks = []
        for name, p in _blocks(cfg.encoder_blocks):
            if name == "res_x":
                block = ResGroup(ch, p["num_layers"], pad)
            elif name.endswith("_res") and name[: -len("_res")] in STRIDES:
                out = ch * p.get("multiplier", 2)
                block, ch = SpaceToDepthDownsample(ch, out, STRIDES[name[:-4]], pad), out
            elif name in STRIDES:
                block = CausalConv3d(ch, ch, stride=STRIDES[name], padding_mode=pad)
            else:
                raise CheckpointError(f"unsupported video VAE encoder block {name!r} in vae.encoder_blocks")
            self.down_blocks.append(block)
        self.conv_out = CausalConv3d(
            ch, cfg.latent_channels + 1, padding_mode=pad
        )  # 128 means + 1 log-variance

    def __call__(self, video: mx.array) -> mx.array:
        # video: (B, F, H, W, 3) in [-1, 1], F = 1 + 8k, H and W multiples of 32
        b, f, h, w, _ = video.shape
        if (f - 1) % SCALE_FACTORS[0] or h % SCALE_FACTORS[1] or w % SCALE_FACTORS[2]:
            raise ValueError(
                f"video of {f} frames x {h} x {w} cannot be encoded: frames must be 1 + 8k and "
                "height and width multiples of 32"
            )
        x = self.conv_in(patchify(video, self.patch_size))  # (B, F, H/4, W/4, C)
        for block in self.down_blocks:
            x = block(x)
        x = self.conv_out(pixel_norm_silu(x))  # (B, F', H', W', 129)
        return self.per_channel_statistics.normalize(x[..., :-1])

    def encode(self, video: mx.array) -> mx.array:
        """(B, F, H, W, 3) pixels in [-1, 1] -> normalised latent (B, 128, F', H', W')."""
        return self(video).transpose(0, 4, 1, 2, 3)

    def sanitize(self, weights: dict[str, mx.array]) -> dict[str, mx.array]:
        return _sanitize(self, weights)


class VideoDecoder(nn.Module):
    def __init__(self, cfg: VideoVAEConfig):
        super().__init__()
        self.cfg = cfg
        pad = cfg.decoder_padding
        self.patch_size = cfg.patch_size
        self.causal = cfg.causal_decoder
        self.timestep_conditioning = bool(cfg.timestep_conditioning)
        self.per_channel_statistics = PerChannelStatistics(cfg.latent_channels)
        ch = cfg.decoder_bottleneck or cfg.decoder_base_channels * 8
        self.conv_in = CausalConv3d(cfg.latent_channels, ch, padding_mode=pad)
        self.up_blocks = []
        for name, p in reversed(_blocks(cfg.decoder_blocks)):
            if p.get("inject_noise", False):
                raise CheckpointError(
                    f"vae.decoder_blocks {name} has inject_noise=True, which is not implemented"
                )
            if name == "res_x":
                block = ResGroup(ch, p["num_layers"], pad, self.timestep_conditioning)
            elif name in STRIDES:
                r = p.get("multiplier", 1)
                residual = p.get("residual", False) if name == "compress_all" else False
                block, ch = DepthToSpaceUpsample(ch, STRIDES[name], residual, r, pad), ch // r
            else:
                raise CheckpointError(f"unsupported video VAE decoder block {name!r} in vae.decoder_blocks")
            self.up_blocks.append(block)
        self.conv_out = CausalConv3d(ch, cfg.out_channels * cfg.patch_size**2, padding_mode=pad)
        if self.timestep_conditioning:
            self.timestep_scale_multiplier = mx.array(1000.0)
            self.last_time_embedder = TimestepEmbedder(2 * ch)
            self.last_scale_shift_table = mx.zeros((2, ch))

    def __call__(
        self, latent: mx.array, timestep: float | mx.array | None = None, noise: mx.array | None = None
    ) -> mx.array:
        """One untiled pass: (B, F', H', W', 128) -> (B, 8(F'-1)+1, 32H', 32W', 3).

        A timestep-conditioned decoder mixes in `noise` (shape of `latent`; drawn from mx.random if None)
        at scale 0.025 and conditions on `timestep` (default 0.05)."""
        b = latent.shape[0]
        t = None
        if self.timestep_conditioning:
            if noise is None:
                noise = mx.random.normal(latent.shape, dtype=latent.dtype)
            if tuple(noise.shape) != tuple(latent.shape):
                raise ValueError(
                    f"decode noise has shape {tuple(noise.shape)}, expected {tuple(latent.shape)}"
                )
            latent = noise.astype(latent.dtype) * DECODE_NOISE_SCALE + (1.0 - DECODE_NOISE_SCALE) * latent
            t = mx.broadcast_to(
                mx.array(DECODE_TIMESTEP if timestep is None else timestep, dtype=latent.dtype), (b,)
            )
            t = t * self.timestep_scale_multiplier.astype(latent.dtype)
        x = self.conv_in(self.per_channel_statistics.un_normalize(latent), self.causal)
        for block in self.up_blocks:
            x = block(x, self.causal, t) if isinstance(block, ResGroup) else block(x, self.causal)
        scale = shift = None
        if self.timestep_conditioning:
            emb = self.last_time_embedder(t, x.dtype).reshape(b, 2, -1)  # (B, 2, C): shift, scale
            ada = self.last_scale_shift_table[None] + emb
            shift, scale = ada[:, 0], ada[:, 1]
        x = unpatchify(self.conv_out(pixel_norm_silu(x, scale, shift), self.causal), self.patch_size)
        # evaluated here, apart from the tile blending that follows: evaluated together, their peak
        # depended on when MLX's CPU stream thread found the conv's buffers free (by one tile's size)
        mx.eval(x)
        return x

    def decode_stream(
        self,
        latent: mx.array,
        tiling: str | tiling_mod.TilingConfig | None = "default",
        timestep: float | None = None,
        noise: mx.array | NoiseFn | None = None,
        seed: int | None = None,
        key: mx.array | None = None,
        on_tile: Callable[[], None] | None = None,
    ) -> Iterator[mx.array]:
        """Latent (B, 128, F', H', W') -> finished frame chunks (B, T_i, H, W, 3), in order. With tiling, one
        tile is decoded at a time and only the current temporal group and its overlap are held.

        Decode noise (timestep-conditioned decoders only; ignored otherwise) is drawn as the reference does:
        one draw of the tile's latent shape per decoder pass, in tile order. `noise`: an array (untiled) or a
        function shape -> array, both in the latent layout (B, C, F', H', W'); else from `seed` / `key` (split
        per tile) or, with neither, mx.random. `on_tile()` is called after each tile (tiled decoding only)."""
        cfg = tiling_mod.parse_tiling(tiling)
        latent = latent.transpose(0, 2, 3, 4, 1)  # (B, F', H', W', C)
        draw = None
        if self.timestep_conditioning:
            if noise is None:
                noise = _noise_from_key(mx.random.key(seed) if seed is not None else key)
            if not callable(noise):
                if cfg is not None:
                    raise ValueError(
                        "tiled decoding draws noise per tile: pass a function shape -> noise, not an array"
                    )
                fixed = noise
                noise = lambda shape: fixed  # noqa: E731
            draw = _channels_last(noise)

        def decode_tile(z: mx.array) -> mx.array:
            return self(z, timestep, draw(tuple(z.shape)) if draw is not None else None)

        if cfg is None:
            yield decode_tile(latent)
            return
        yield from tiling_mod.tiled_decode(decode_tile, latent, cfg, SCALE_FACTORS, on_tile)

    def decode(
        self,
        latent: mx.array,
        tiling: str | tiling_mod.TilingConfig | None = "none",
        timestep: float | None = None,
        noise: mx.array | NoiseFn | None = None,
        seed: int | None = None,
        key: mx.array | None = None,
    ) -> mx.array:
        """The whole video (B, F, H, W, 3); see `decode_stream` for long videos."""
        chunks = list(self.decode_stream(latent, tiling, timestep, noise, seed, key))
        return chunks[0] if len(chunks) == 1 else mx.concatenate(chunks, axis=1)

    def sanitize(self, weights: dict[str, mx.array]) -> dict[str, mx.array]:
        return _sanitize(self, weights)


def _channels_last(noise: NoiseFn) -> NoiseFn:
    """A noise function of the latent layout (B, C, F, H, W), called with channels-last shapes."""

    def draw(shape: tuple[int, ...]) -> mx.array:
        b, f, h, w, c = shape
        x = noise((b, c, f, h, w))
        if tuple(x.shape) != (b, c, f, h, w):
            raise ValueError(f"decode noise has shape {tuple(x.shape)}, expected {(b, c, f, h, w)}")
        return x.transpose(0, 2, 3, 4, 1)

    return draw


def _noise_from_key(key: mx.array | None) -> NoiseFn:
    state = [key]

    def draw(shape: tuple[int, ...]) -> mx.array:
        if state[0] is None:
            return mx.random.normal(shape)
        state[0], sub = mx.random.split(state[0])
        return mx.random.normal(shape, key=sub)

    return draw


def _sanitize(model: nn.Module, weights: dict[str, mx.array]) -> dict[str, mx.array]:
    weights = {
        k: v for k, v in weights.items() if not any(k == f"per_channel_statistics.{u}" for u in UNUSED_STATS)
    }
    expected = {k: tuple(v.shape) for k, v in tree_flatten(model.parameters())}
    return to_mlx_layout(weights, expected)


def _vae_config(metadata: dict[str, str], path: str | Path) -> VideoVAEConfig:
    config = read_config(metadata, path)
    if "vae" not in config:
        raise CheckpointError(f"{path}: config has no 'vae' section")
    return VideoVAEConfig.from_dict(config["vae"])


def _part_weights(weights: dict[str, mx.array], part: str) -> dict[str, mx.array]:
    """`vae.<part>.*` and the statistics; a split video VAE file may store them bare (`<part>.*`)."""
    vae = "vae." if any(k.startswith(f"vae.{part}.") for k in weights) else ""
    own = take_prefix(weights, f"{vae}{part}.")
    own.update(
        {
            f"per_channel_statistics.{k}": v
            for k, v in take_prefix(weights, f"{vae}per_channel_statistics.").items()
        }
    )
    return own


def decoder_timestep_conditioning(
    cfg: VideoVAEConfig, decoder_keys: list[str], path: str | Path = "checkpoint"
) -> bool:
    """Whether the decoder is timestep-conditioned: the metadata and the weights must agree."""
    has_keys = any(
        k.startswith(TIMESTEP_KEYS) or ".time_embedder." in k or k.endswith(".scale_shift_table")
        for k in decoder_keys
    )
    meta = cfg.timestep_conditioning
    if meta is None:
        if not has_keys:
            warnings.warn(
                f"{path}: vae.timestep_conditioning is absent from the metadata (the reference would assume "
                "True) and the decoder has no timestep-conditioning weights: decoding without it",
                stacklevel=3,
            )
        return has_keys
    if bool(meta) and not has_keys:
        raise CheckpointError(
            f"{path}: metadata says vae.timestep_conditioning=True but the decoder has no "
            "timestep-conditioning weights (vae.decoder.last_time_embedder.*, ...time_embedder.*)"
        )
    if not meta and has_keys:
        raise CheckpointError(
            f"{path}: metadata says vae.timestep_conditioning=False but the decoder has "
            "timestep-conditioning weights (e.g. vae.decoder.last_time_embedder.*)"
        )
    return bool(meta)


def load_video_encoder(path: str | Path, dtype: mx.Dtype | None = None) -> VideoEncoder:
    """The video VAE encoder of an official single-file checkpoint (keys `vae.encoder.*` + statistics)."""
    weights, metadata = load_checkpoint(path)
    model = VideoEncoder(_vae_config(metadata, path))
    load_strict(
        model,
        model.sanitize(_part_weights(weights, "encoder")),
        dtype or backend.default_dtype(),
        what=f"video VAE encoder in {path}",
    )
    ops.lay_out(model)
    return model


def load_video_decoder(path: str | Path, dtype: mx.Dtype | None = None) -> VideoDecoder:
    """The video VAE decoder of an official single-file checkpoint (keys `vae.decoder.*` + statistics)."""
    weights, metadata = load_checkpoint(path)
    if read_config(metadata, path).get("vae", {}).get("_class_name", "CausalVideoAutoencoder") != (
        "CausalVideoAutoencoder"
    ):
        raise CheckpointError(
            f"{path}: its video VAE has a diffusion decoder (ltx.video.diffusion_decoder), not a convolutional one"
        )
    cfg = _vae_config(metadata, path)
    own = _part_weights(weights, "decoder")
    cfg = dataclasses.replace(cfg, timestep_conditioning=decoder_timestep_conditioning(cfg, list(own), path))
    if "conv_in.conv.weight" in own:
        cfg = dataclasses.replace(cfg, decoder_bottleneck=int(own["conv_in.conv.weight"].shape[0]))
    model = VideoDecoder(cfg)
    load_strict(
        model, model.sanitize(own), dtype or backend.default_dtype(), what=f"video VAE decoder in {path}"
    )
    ops.lay_out(model)
    return model


def to_uint8(video: mx.array) -> mx.array:
    """Decoded [-1, 1] video -> uint8 as the reference: clamp((x + 1) / 2, 0, 1) * 255, truncated."""
    return (mx.clip((video.astype(mx.float32) + 1.0) / 2.0, 0.0, 1.0) * 255.0).astype(mx.uint8)
