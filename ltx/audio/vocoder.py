"""Vocoders: stereo log-mel -> waveform. HiFi-GAN (LTX-2.0, 24 kHz) and the BigVGAN-v2 vocoder with
bandwidth extension (LTX-2.3: 16 kHz vocoder, then a second generator adds the band up to 48 kHz).

Reference: ltx_core/model/audio_vae/vocoder.py and model_configurator.py::VocoderConfigurator.
Channels-last throughout: mel (B, T, n_mels, 2) -> waveform (B, N, 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ltx import backend  # (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from ltx import ops  # noqa: E402
from ltx.ops import Conv1d, ConvTranspose1d  # noqa: E402
from ltx.weights.loader import (  # noqa: E402
    CheckpointError,
    check_config_value,
    load_checkpoint,
    load_strict,
    read_config,
    take_prefix,
    to_mlx_layout,
)

LRELU_SLOPE = 0.1


@dataclass
class VocoderConfig:
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    upsample_rates: list[int] = field(default_factory=lambda: [6, 5, 2, 2, 2])
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [16, 15, 8, 4, 4])
    resblock_dilation_sizes: list[list[int]] = field(
        default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    )
    upsample_initial_channel: int = 1024
    resblock: str = "1"
    output_sampling_rate: int = 24000
    activation: str = "snake"
    use_tanh_at_final: bool = True
    use_bias_at_final: bool = True
    apply_final_activation: bool = True  # set by the role (BWE generator: False), never read from the config

    @classmethod
    def from_dict(cls, config: dict[str, Any], **overrides: Any) -> VocoderConfig:
        keys = cls.__dataclass_fields__.keys() - {"apply_final_activation"}
        cfg = cls(**{k: v for k, v in config.items() if k in keys})
        for k, v in overrides.items():
            setattr(cfg, k, v)
        if not (len(cfg.upsample_rates) == len(cfg.upsample_kernel_sizes)):
            raise CheckpointError(
                f"vocoder upsample_rates {cfg.upsample_rates} and upsample_kernel_sizes {cfg.upsample_kernel_sizes} differ in length"
            )
        if len(cfg.resblock_kernel_sizes) != len(cfg.resblock_dilation_sizes):
            raise CheckpointError(
                f"vocoder resblock_kernel_sizes {cfg.resblock_kernel_sizes} and resblock_dilation_sizes "
                f"{cfg.resblock_dilation_sizes} differ in length"
            )
        return cfg


@dataclass
class BWEConfig:
    vocoder: VocoderConfig
    bwe: VocoderConfig
    input_sampling_rate: int
    output_sampling_rate: int
    hop_length: int
    n_fft: int
    num_mels: int


def vocoder_config_from_dict(config: dict[str, Any]) -> VocoderConfig | BWEConfig:
    """`config["vocoder"]`: a flat dict is a plain HiFi-GAN, nested {"vocoder", "bwe"} the BWE vocoder."""
    if "bwe" not in config:
        check_config_value(config, "resblock", "1", "vocoder")
        check_config_value(config, "stereo", True, "vocoder")
        return VocoderConfig.from_dict(config)
    voc, bwe = config.get("vocoder", {}), config["bwe"]
    for section, cfg in (("vocoder.vocoder", voc), ("vocoder.bwe", bwe)):
        check_config_value(cfg, "resblock", "AMP1", section)
        check_config_value(cfg, "stereo", True, section)
        check_config_value(cfg, "activation", "snakebeta", section)
    for key in ("input_sampling_rate", "output_sampling_rate", "hop_length", "n_fft", "num_mels"):
        if key not in bwe:
            raise CheckpointError(f"vocoder.bwe.{key} is missing from the checkpoint config")
    if bwe["output_sampling_rate"] % bwe["input_sampling_rate"]:
        raise CheckpointError(
            f"unsupported config value vocoder.bwe.output_sampling_rate={bwe['output_sampling_rate']!r}: "
            f"must be an integer multiple of input_sampling_rate {bwe['input_sampling_rate']}"
        )
    return BWEConfig(
        vocoder=VocoderConfig.from_dict(voc, output_sampling_rate=bwe["input_sampling_rate"]),
        bwe=VocoderConfig.from_dict(
            bwe, output_sampling_rate=bwe["output_sampling_rate"], apply_final_activation=False
        ),
        input_sampling_rate=bwe["input_sampling_rate"],
        output_sampling_rate=bwe["output_sampling_rate"],
        hop_length=bwe["hop_length"],
        n_fft=bwe["n_fft"],
        num_mels=bwe["num_mels"],
    )


def _pad_edge(x: mx.array, left: int, right: int) -> mx.array:  # (B, L, C), replicate padding on L
    return mx.pad(x, [(0, 0), (left, right), (0, 0)], mode="edge")


def _depthwise(filt: mx.array, channels: int) -> mx.array:
    k = filt.size
    return mx.broadcast_to(filt.reshape(1, k, 1), (channels, k, 1))  # (C, K, 1)


class ResBlock1(nn.Module):
    """HiFi-GAN resblock "1": three (LReLU, dilated conv, LReLU, conv) residual units."""

    def __init__(self, channels: int, kernel_size: int, dilations: list[int]):
        super().__init__()
        self.convs1 = [
            Conv1d(channels, channels, kernel_size, dilation=d, padding=d * (kernel_size - 1) // 2)
            for d in dilations
        ]
        self.convs2 = [
            Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2) for _ in dilations
        ]

    def __call__(self, x: mx.array) -> mx.array:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            x = x + c2(nn.leaky_relu(c1(nn.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class SnakeBeta(nn.Module):
    """x + sin^2(x e^alpha) / (e^beta + 1e-9), per channel (log-scale parameters)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = mx.zeros((channels,))
        self.beta = mx.zeros((channels,))

    def __call__(self, x: mx.array) -> mx.array:
        s = mx.sin(x * mx.exp(self.alpha))
        return x + (1.0 / (mx.exp(self.beta) + 1e-9)) * (s * s)


class UpSample1d(nn.Module):
    """x2 anti-aliased upsampling with a (checkpoint) kaiser-sinc filter: replicate pad, transposed conv, crop."""

    def __init__(self, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.ratio = ratio
        self.pad = kernel_size // ratio - 1
        self.crop_left = self.pad * ratio + (kernel_size - ratio) // 2
        self.crop_right = self.pad * ratio + (kernel_size - ratio + 1) // 2
        self.filter = mx.zeros((1, 1, kernel_size))

    def __call__(self, x: mx.array) -> mx.array:  # (B, L, C) -> (B, ratio L, C)
        c = x.shape[-1]
        y = mx.conv_transpose1d(
            _pad_edge(x, self.pad, self.pad), _depthwise(self.filter, c), stride=self.ratio, groups=c
        )
        return self.ratio * y[:, self.crop_left : y.shape[1] - self.crop_right]


class LowPassFilter1d(nn.Module):
    def __init__(self, stride: int = 2, kernel_size: int = 12):
        super().__init__()
        even = kernel_size % 2 == 0
        self.pad_left, self.pad_right = kernel_size // 2 - int(even), kernel_size // 2
        self.stride = stride
        self.filter = mx.zeros((1, 1, kernel_size))

    def __call__(self, x: mx.array) -> mx.array:  # (B, L, C) -> (B, L / stride, C)
        c = x.shape[-1]
        return mx.conv1d(
            _pad_edge(x, self.pad_left, self.pad_right),
            _depthwise(self.filter, c),
            stride=self.stride,
            groups=c,
        )


class DownSample1d(nn.Module):
    def __init__(self, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.lowpass = LowPassFilter1d(ratio, kernel_size)

    def __call__(self, x: mx.array) -> mx.array:
        return self.lowpass(x)


class Activation1d(nn.Module):
    """Anti-aliased activation: upsample x2, SnakeBeta, downsample x2 (on the CPU as numpy passes:
    ltx.ops.snake_beta_resampled)."""

    def __init__(self, channels: int):
        super().__init__()
        self.act = SnakeBeta(channels)
        self.upsample = UpSample1d()
        self.downsample = DownSample1d()

    def __call__(self, x: mx.array) -> mx.array:
        up, low = self.upsample, self.downsample.lowpass
        geometry = (up.ratio, up.pad, up.crop_left, low.stride, low.pad_left)
        return ops.snake_beta_resampled(
            x, self.act.alpha, self.act.beta, up.filter, low.filter, geometry, self._mlx
        )

    def _mlx(self, x: mx.array) -> mx.array:
        return self.downsample(self.act(self.upsample(x)))


class AMPBlock1(nn.Module):
    """BigVGAN-v2 resblock: three (Activation1d, dilated conv, Activation1d, conv) residual units."""

    def __init__(self, channels: int, kernel_size: int, dilations: list[int]):
        super().__init__()
        self.convs1 = [
            Conv1d(channels, channels, kernel_size, dilation=d, padding=d * (kernel_size - 1) // 2)
            for d in dilations
        ]
        self.convs2 = [
            Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2) for _ in dilations
        ]
        self.acts1 = [Activation1d(channels) for _ in dilations]
        self.acts2 = [Activation1d(channels) for _ in dilations]

    def __call__(self, x: mx.array) -> mx.array:
        for c1, c2, a1, a2 in zip(self.convs1, self.convs2, self.acts1, self.acts2, strict=True):
            x = x + c2(a2(c1(a1(x))))
        return x


class Vocoder(nn.Module):
    """HiFi-GAN generator (resblock "1") or BigVGAN-v2 generator (resblock "AMP1"), stereo."""

    def __init__(self, config: VocoderConfig):
        super().__init__()
        self.config = config
        self.is_amp = config.resblock == "AMP1"
        c0 = config.upsample_initial_channel
        self.conv_pre = Conv1d(128, c0, 7, padding=3)  # input: 2 channels x 64 mel bins
        self.ups = [
            ConvTranspose1d(c0 // 2**i, c0 // 2 ** (i + 1), k, stride=u, padding=(k - u) // 2)
            for i, (u, k) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes, strict=True))
        ]
        block = AMPBlock1 if self.is_amp else ResBlock1
        self.resblocks = [
            block(c0 // 2 ** (i + 1), k, d)
            for i in range(len(config.upsample_rates))
            for k, d in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes, strict=True)
        ]
        final = c0 // 2 ** len(config.upsample_rates)
        if self.is_amp:
            self.act_post = Activation1d(final)
        self.conv_post = Conv1d(final, 2, 7, padding=3, bias=config.use_bias_at_final)

    @property
    def sample_rate(self) -> int:
        return self.config.output_sampling_rate

    def __call__(self, mel: mx.array) -> mx.array:
        """(B, T, 64, 2) log-mel -> (B, T * prod(upsample_rates), 2) waveform."""
        b, t, f, s = mel.shape
        if s != 2 or f * s != 128:
            raise ValueError(
                f"vocoder input must be stereo 64-bin mel (B, T, 64, 2), got shape {tuple(mel.shape)}"
            )
        x = self.conv_pre(mel.transpose(0, 1, 3, 2).reshape(b, t, 128))  # channels [left bins | right bins]
        n = len(self.config.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            if not self.is_amp:
                x = nn.leaky_relu(x, LRELU_SLOPE)
            x = up(x)
            blocks = self.resblocks[i * n : (i + 1) * n]
            acc = blocks[0](x)
            for blk in blocks[1:]:
                acc = acc + blk(x)
            x = acc / n
        x = self.act_post(x) if self.is_amp else nn.leaky_relu(x, 0.01)
        x = self.conv_post(x)
        if self.config.apply_final_activation:
            x = mx.tanh(x) if self.config.use_tanh_at_final else mx.clip(x, -1, 1)
        return x

    def sanitize(self, weights: dict[str, mx.array]) -> dict[str, mx.array]:
        return _sanitize(self, weights)


class STFTFn(nn.Module):
    """Causal STFT magnitude as a strided conv with the checkpoint's windowed DFT basis."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int):
        super().__init__()
        self.hop_length, self.win_length = hop_length, win_length
        self.forward_basis = mx.zeros(((n_fft // 2 + 1) * 2, n_fft, 1))  # MLX layout (O, K, I)

    def __call__(self, y: mx.array) -> mx.array:  # (B, L, 1) -> magnitude (B, frames, n_freqs)
        y = mx.pad(y, [(0, 0), (max(0, self.win_length - self.hop_length), 0), (0, 0)])
        spec = mx.conv1d(y, self.forward_basis, stride=self.hop_length)
        real, imag = mx.split(spec, 2, axis=-1)
        return mx.sqrt(real * real + imag * imag)


class MelSTFT(nn.Module):
    def __init__(self, n_fft: int, hop_length: int, num_mels: int):
        super().__init__()
        self.stft_fn = STFTFn(n_fft, hop_length, n_fft)
        self.mel_basis = mx.zeros((num_mels, n_fft // 2 + 1))

    def __call__(self, y: mx.array) -> mx.array:  # (B, L, 1) -> log-mel (B, frames, num_mels)
        mel = self.stft_fn(y) @ self.mel_basis.T
        return mx.log(mx.maximum(mel, 1e-5))


def hann_sinc_upsample_filter(
    ratio: int, width_zeros: int = 6, rolloff: float = 0.99
) -> tuple[mx.array, int]:
    """The BWE skip path's resampling filter (the reference computes it, it is not in the checkpoint)."""
    width = math.ceil(width_zeros / rolloff)
    k = 2 * width * ratio + 1
    t = (np.arange(k, dtype=np.float64) / ratio - width) * rolloff
    window = np.cos(np.clip(t, -width_zeros, width_zeros) * math.pi / width_zeros / 2) ** 2
    return mx.array((np.sinc(t) * window * rolloff / ratio).astype(np.float32)), width


class VocoderWithBWE(nn.Module):
    """16 kHz vocoder, then + a generator's residual on a sinc-upsampled skip, clipped to [-1, 1]."""

    def __init__(self, config: BWEConfig):
        super().__init__()
        self.config = config
        self.vocoder = Vocoder(config.vocoder)
        self.bwe_generator = Vocoder(config.bwe)
        self.mel_stft = MelSTFT(config.n_fft, config.hop_length, config.num_mels)
        self.ratio = config.output_sampling_rate // config.input_sampling_rate
        filt, self._width = hann_sinc_upsample_filter(self.ratio)
        self._resample_filter = filt  # underscore: not a parameter (computed, not in the checkpoint)

    @property
    def sample_rate(self) -> int:
        return self.config.output_sampling_rate

    def resample(self, x: mx.array) -> mx.array:
        """Hann-windowed sinc upsampling (torchaudio-like), (B, L, C) -> (B, ratio L, C)."""
        r, w, c = self.ratio, self._width, x.shape[-1]
        k = self._resample_filter.size
        y = mx.conv_transpose1d(_pad_edge(x, w, w), _depthwise(self._resample_filter, c), stride=r, groups=c)
        return r * y[:, 2 * w * r : y.shape[1] - (k - r)]

    def bwe_mel(self, x: mx.array) -> mx.array:
        """Causal log-mel of each channel, (B, L, C) -> (B, L / hop, num_mels, C)."""
        b, _, c = x.shape
        mel = self.mel_stft(x.transpose(0, 2, 1).reshape(b * c, -1, 1))  # (B*C, frames, num_mels)
        return mel.reshape(b, c, *mel.shape[1:]).transpose(0, 2, 3, 1)

    def __call__(self, mel: mx.array) -> mx.array:
        """(B, T, 64, 2) log-mel -> (B, ratio * T * prod(vocoder upsample_rates), 2) waveform."""
        x = self.vocoder(mel)  # (B, L, 2) at input_sampling_rate, clipped
        length, hop = x.shape[1], self.config.hop_length
        out_len = length * self.config.output_sampling_rate // self.config.input_sampling_rate
        if length % hop:
            x = mx.pad(x, [(0, 0), (0, hop - length % hop), (0, 0)])
        residual = self.bwe_generator(self.bwe_mel(x))
        skip = self.resample(x)
        if residual.shape != skip.shape:
            raise ValueError(
                f"BWE residual {residual.shape} and skip {skip.shape} differ: check vocoder.bwe rates"
            )
        return mx.clip(residual + skip, -1, 1)[:, :out_len]

    def sanitize(self, weights: dict[str, mx.array]) -> dict[str, mx.array]:
        # inverse_basis is only used for resynthesis, which inference never does
        weights = {k: v for k, v in weights.items() if not k.endswith("stft_fn.inverse_basis")}
        return _sanitize(self, weights)


def _sanitize(model: nn.Module, weights: dict[str, mx.array]) -> dict[str, mx.array]:
    expected = {k: tuple(v.shape) for k, v in tree_flatten(model.parameters())}
    return to_mlx_layout(weights, expected, is_transposed_conv=lambda k: ".ups." in f".{k}")


def load_vocoder(path: str | Path, dtype: mx.Dtype | None = None) -> Vocoder | VocoderWithBWE:
    """The vocoder of an official single-file checkpoint (keys `vocoder.*`); `.sample_rate` is its output rate."""
    weights, metadata = load_checkpoint(path)
    config = read_config(metadata, path)
    if "vocoder" not in config:
        raise CheckpointError(f"{path}: config has no 'vocoder' section")
    cfg = vocoder_config_from_dict(config["vocoder"])
    model = VocoderWithBWE(cfg) if isinstance(cfg, BWEConfig) else Vocoder(cfg)
    own = take_prefix(weights, "vocoder.")
    load_strict(model, model.sanitize(own), dtype or backend.default_dtype(), what="vocoder")
    ops.lay_out(model)
    return model
