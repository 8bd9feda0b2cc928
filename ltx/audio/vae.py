"""Audio VAE (LTX-2 / LTX-2.3): stereo log-mel spectrogram <-> audio latent.

Reference: ltx_core/model/audio_vae/{audio_vae,resnet,downsample,upsample,causal_conv_2d,ops}.py.
Internally everything is channels-last: a spectrogram is (B, T, F, C) with T the time (mel frame)
axis, F the mel bins and C the channels (2 for stereo). The public latent is in the reference
layout (B, 8, T_a, 16), which is what `ltx.model.patchify.patchify_audio` consumes.
Convolutions are causal along time (padded at the front only) and symmetric along frequency.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ltx import backend  # (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from ltx import ops  # noqa: E402
from ltx.audio.mel import MelConfig, log_mel  # noqa: E402
from ltx.video.blocks import pixel_norm_silu  # noqa: E402
from ltx.weights.loader import (  # noqa: E402
    CheckpointError,
    check_config_value,
    load_checkpoint,
    load_strict,
    read_config,
    take_prefix,
    to_mlx_layout,
)

LATENT_DOWNSAMPLE_FACTOR = 4  # fixed in the reference, independent of ch_mult
_DDCONFIG = "audio_vae.model.params.ddconfig"


@dataclass
class AudioVAEConfig:
    ch: int = 128
    out_ch: int = 2
    in_channels: int = 2
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 8
    double_z: bool = True
    resolution: int = 256
    mel_bins: int = 64
    sample_rate: int = 16000
    mel_hop_length: int = 160
    n_fft: int = 1024
    is_causal: bool = True

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> AudioVAEConfig:
        """From the checkpoint's `config["audio_vae"]` section (nested as in the official metadata)."""
        params = config.get("model", {}).get("params", {})
        dd = params.get("ddconfig", {})
        pre = config.get("preprocessing", {})
        stft, mel = pre.get("stft", {}), pre.get("mel", {})
        _check_supported(dd)
        mel_bins = (
            dd.get("mel_bins") or mel.get("n_mel_channels") or config.get("variables", {}).get("mel_bins")
        )
        return cls(
            ch=dd.get("ch", 128),
            out_ch=dd.get("out_ch", 2),
            in_channels=dd.get("in_channels", 2),
            ch_mult=tuple(dd.get("ch_mult", (1, 2, 4))),
            num_res_blocks=dd.get("num_res_blocks", 2),
            z_channels=dd.get("z_channels", 8),
            double_z=dd.get("double_z", True),
            resolution=dd.get("resolution", 256),
            mel_bins=mel_bins or 64,
            sample_rate=params.get("sampling_rate", 16000),
            mel_hop_length=stft.get("hop_length", 160),
            n_fft=stft.get("filter_length", 1024),
            is_causal=stft.get("causal", True),
        )


def _check_supported(dd: dict[str, Any]) -> None:
    check_config_value(dd, "norm_type", "pixel", _DDCONFIG)
    check_config_value(dd, "causality_axis", "height", _DDCONFIG)
    check_config_value(dd, "resamp_with_conv", True, _DDCONFIG)
    # The reference builds attention blocks when mid_block_add_attention is true (its default) or when a level's
    # nominal resolution (resolution / 2**level) is listed in attn_resolutions. Neither occurs in LTX-2 / 2.3.
    if dd.get("mid_block_add_attention", True):
        raise CheckpointError(
            f"unsupported config value {_DDCONFIG}.mid_block_add_attention={dd.get('mid_block_add_attention', True)!r}"
            " (True when absent); this implementation supports only False (no attention blocks)"
        )
    resolution = dd.get("resolution", 256)
    levels = {resolution // 2**i for i in range(len(dd.get("ch_mult", (1, 2, 4))))}
    attn = set(dd.get("attn_resolutions", (8, 16, 32)) or ())
    if levels & attn:
        raise CheckpointError(
            f"unsupported config value {_DDCONFIG}.attn_resolutions={sorted(attn)!r}: levels at resolutions "
            f"{sorted(levels & attn)} would use attention blocks, which this implementation does not support"
        )


class CausalConv2d(nn.Module):
    """Conv2d padded causally on time (k-1 rows in front) and symmetrically on frequency."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        k = kernel_size
        self.conv = ops.Conv2d(in_channels, out_channels, k, padding=((k - 1, 0), ((k - 1) // 2,) * 2))

    def __call__(self, x: mx.array) -> mx.array:  # (B, T, F, C)
        return self.conv(x)


PIXEL_NORM_EPS = 1e-6


def norm_silu(x: mx.array) -> mx.array:
    return pixel_norm_silu(x, eps=PIXEL_NORM_EPS)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = CausalConv2d(in_channels, out_channels, 3)
        self.conv2 = CausalConv2d(out_channels, out_channels, 3)
        if in_channels != out_channels:
            self.nin_shortcut = CausalConv2d(in_channels, out_channels, 1)

    def __call__(self, x: mx.array) -> mx.array:
        h = self.conv1(norm_silu(x))
        h = self.conv2(norm_silu(h))
        if "nin_shortcut" in self:
            x = self.nin_shortcut(x)
        return x + h


class Downsample(nn.Module):
    """Zero-pad (time: 2 in front, frequency: 1 at the end), then a 3x3 stride-2 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def __call__(self, x: mx.array) -> mx.array:
        return self.conv(mx.pad(x, [(0, 0), (2, 0), (0, 1), (0, 0)]))


class Upsample(nn.Module):
    """Nearest x2 on time and frequency, causal 3x3 conv, drop the first time row: T -> 2T - 1."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = CausalConv2d(channels, channels, 3)

    def __call__(self, x: mx.array) -> mx.array:
        b, t, f, c = x.shape
        x = mx.broadcast_to(x[:, :, None, :, None, :], (b, t, 2, f, 2, c)).reshape(b, 2 * t, 2 * f, c)
        return self.conv(x)[:, 1:]


class MidBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.block_2 = ResnetBlock(channels, channels)

    def __call__(self, x: mx.array) -> mx.array:
        return self.block_2(self.block_1(x))


class PerChannelStatistics(nn.Module):
    """Latent normalisation over the patchified vector (index c * F + f), as in the reference."""

    def __init__(self, size: int):
        super().__init__()
        self["std-of-means"] = mx.ones((size,))
        self["mean-of-means"] = mx.zeros((size,))

    def _stats(self, c: int, f: int) -> tuple[mx.array, mx.array]:
        if c * f != self["std-of-means"].shape[0]:
            raise ValueError(
                f"latent of {c} channels x {f} bins does not match {self['std-of-means'].shape[0]} statistics"
            )
        # (C*F,) in c-major order -> (F, C) to broadcast over a channels-last (B, T, F, C) latent
        mean = self["mean-of-means"].reshape(c, f).T
        std = self["std-of-means"].reshape(c, f).T
        return mean, std

    def normalize(self, x: mx.array) -> mx.array:  # (B, T, F, C)
        mean, std = self._stats(x.shape[3], x.shape[2])
        return (x - mean) / std

    def un_normalize(self, x: mx.array) -> mx.array:  # (B, T, F, C)
        mean, std = self._stats(x.shape[3], x.shape[2])
        return x * std + mean


def _make_level(blocks: list[tuple[int, int]], resample: nn.Module | None, name: str) -> nn.Module:
    level = nn.Module()
    level.block = [ResnetBlock(i, o) for i, o in blocks]
    if resample is not None:
        setattr(level, name, resample)
    return level


class AudioEncoder(nn.Module):
    def __init__(self, config: AudioVAEConfig):
        super().__init__()
        self.config = config
        ch, mult = config.ch, config.ch_mult
        self.per_channel_statistics = PerChannelStatistics(ch)
        self.conv_in = CausalConv2d(config.in_channels, ch, 3)
        self.down = []
        block_in = ch
        for i, m in enumerate(mult):
            blocks = []
            for _ in range(config.num_res_blocks):
                blocks.append((block_in, ch * m))
                block_in = ch * m
            last = i == len(mult) - 1
            self.down.append(_make_level(blocks, None if last else Downsample(block_in), "downsample"))
        self.mid = MidBlock(block_in)
        self.conv_out = CausalConv2d(
            block_in, 2 * config.z_channels if config.double_z else config.z_channels, 3
        )

    def __call__(self, mel: mx.array) -> mx.array:
        """(B, T, mel_bins, 2) log-mel -> normalised latent (B, T_a, mel_bins / 4, z) channels-last."""
        h = self.conv_in(mel)
        for level in self.down:
            for block in level.block:
                h = block(h)
            if "downsample" in level:
                h = level.downsample(h)
        h = self.mid(h)
        h = self.conv_out(norm_silu(h))  # (B, T_a, F_a, 2z)
        means = h[..., : self.config.z_channels]
        return self.per_channel_statistics.normalize(means)

    def encode(self, mel: mx.array) -> mx.array:
        """(B, T, mel_bins, 2) log-mel -> latent (B, z, T_a, F_a), the reference layout."""
        c = self.config
        if mel.ndim != 4 or mel.shape[2] != c.mel_bins or mel.shape[3] != c.in_channels:
            raise ValueError(
                f"mel must be (B, T, {c.mel_bins}, {c.in_channels}), got shape {tuple(mel.shape)}"
            )
        return self(mel).transpose(0, 3, 1, 2)

    def encode_waveform(self, waveform: np.ndarray, sample_rate: int) -> mx.array:
        """Waveform (N, 2) or (B, N, 2) at any rate -> latent (B, z, T_a, F_a), like the reference's encode_audio."""
        c = self.config
        mel = log_mel(waveform, sample_rate, MelConfig(c.sample_rate, c.n_fft, c.mel_hop_length, c.mel_bins))
        return self.encode(mx.array(mel).astype(self.conv_in.conv.weight.dtype))

    def sanitize(self, weights: dict[str, mx.array]) -> dict[str, mx.array]:
        return _sanitize(self, weights)


class AudioDecoder(nn.Module):
    def __init__(self, config: AudioVAEConfig):
        super().__init__()
        self.config = config
        ch, mult = config.ch, config.ch_mult
        block_in = ch * mult[-1]
        self.per_channel_statistics = PerChannelStatistics(ch)
        self.conv_in = CausalConv2d(config.z_channels, block_in, 3)
        self.mid = MidBlock(block_in)
        up: list[nn.Module] = [None] * len(mult)  # type: ignore[list-item]
        for i in reversed(range(len(mult))):
            blocks = []
            for _ in range(config.num_res_blocks + 1):
                blocks.append((block_in, ch * mult[i]))
                block_in = ch * mult[i]
            up[i] = _make_level(blocks, Upsample(block_in) if i != 0 else None, "upsample")
        self.up = up
        self.conv_out = CausalConv2d(block_in, config.out_ch, 3)

    def __call__(self, latent: mx.array) -> mx.array:
        """Normalised latent (B, T_a, F_a, z) channels-last -> log-mel (B, 4 T_a - 3, mel_bins, out_ch)."""
        b, t, f, _ = latent.shape
        h = self.conv_in(self.per_channel_statistics.un_normalize(latent))
        h = self.mid(h)
        for level in reversed(self.up):
            for block in level.block:
                h = block(h)
            if "upsample" in level:
                h = level.upsample(h)
        h = self.conv_out(norm_silu(h))
        return _fit(
            h, max(t * LATENT_DOWNSAMPLE_FACTOR - (LATENT_DOWNSAMPLE_FACTOR - 1), 1), self.config.mel_bins
        )

    def decode(self, latent: mx.array) -> mx.array:
        """Latent (B, z, T_a, F_a) in the reference layout -> log-mel (B, 4 T_a - 3, mel_bins, 2)."""
        if latent.ndim != 4 or latent.shape[1] != self.config.z_channels:
            raise ValueError(
                f"latent must be (B, {self.config.z_channels}, T, F), got shape {tuple(latent.shape)}"
            )
        return self(latent.transpose(0, 2, 3, 1))

    def sanitize(self, weights: dict[str, mx.array]) -> dict[str, mx.array]:
        return _sanitize(self, weights)


def _fit(x: mx.array, frames: int, bins: int) -> mx.array:
    """Crop or zero-pad time and frequency to exactly (frames, bins), as the reference does."""
    x = x[:, :frames, :bins]
    pad_t, pad_f = frames - x.shape[1], bins - x.shape[2]
    if pad_t > 0 or pad_f > 0:
        x = mx.pad(x, [(0, 0), (0, max(pad_t, 0)), (0, max(pad_f, 0)), (0, 0)])
    return x


# statistics the checkpoints may carry beside the two the reference uses (as for the video VAE)
UNUSED_STATS = ("channel", "mean-of-stds", "mean-of-stds_over_std-of-means")


def _sanitize(model: nn.Module, weights: dict[str, mx.array]) -> dict[str, mx.array]:
    unused = {f"per_channel_statistics.{k}" for k in UNUSED_STATS}
    weights = {k: v for k, v in weights.items() if k not in unused}
    expected = {k: tuple(v.shape) for k, v in tree_flatten(model.parameters())}
    return to_mlx_layout(weights, expected)


def _load(cls: type, path: str | Path, part: str, dtype: mx.Dtype | None) -> nn.Module:
    weights, metadata = load_checkpoint(path)
    config = read_config(metadata, path)
    if "audio_vae" not in config:
        raise CheckpointError(f"{path}: config has no 'audio_vae' section")
    model = cls(AudioVAEConfig.from_dict(config["audio_vae"]))
    own = take_prefix(weights, f"audio_vae.{part}.")
    own.update(
        {
            f"per_channel_statistics.{k}": v
            for k, v in take_prefix(weights, "audio_vae.per_channel_statistics.").items()
        }
    )
    load_strict(model, model.sanitize(own), dtype or backend.default_dtype(), what=f"audio VAE {part}")
    ops.lay_out(model)
    return model


def load_audio_encoder(path: str | Path, dtype: mx.Dtype | None = None) -> AudioEncoder:
    """The audio VAE encoder of an official single-file checkpoint (keys `audio_vae.encoder.*`)."""
    return _load(AudioEncoder, path, "encoder", dtype)


def load_audio_decoder(path: str | Path, dtype: mx.Dtype | None = None) -> AudioDecoder:
    """The audio VAE decoder of an official single-file checkpoint (keys `audio_vae.decoder.*`)."""
    return _load(AudioDecoder, path, "decoder", dtype)
