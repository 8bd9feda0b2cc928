"""Audio input for the audio VAE encoder: file loading, resampling and the stereo log-mel front-end.

Reference: ltx_core/model/audio_vae/ops.py::AudioProcessor (torchaudio `resample` with its default
Hann-windowed sinc kernel, then `MelSpectrogram` with Slaney mel scale and norm, power 1, centred
reflect padding, then log(clamp(., 1e-5))) and ltx_pipelines/utils/media_io.py::decode_audio_from_file.
Computed in float64 numpy (the STFT and the Slaney filterbank are written out here: librosa gives the
same numbers but its numba warm-up costs seconds); returned as float32.
Waveforms are channels-last (N, C) or (B, N, C); mel spectrograms are (B, T, n_mels, C).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LOG_FLOOR = 1e-5


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 160
    n_mels: int = 64

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> MelConfig:
        """From the checkpoint's `config["audio_vae"]` section, as the reference's encoder reads it.

        The reference uses win_length = n_fft and f_max = sample_rate / 2 whatever the config says.
        """
        params = config.get("model", {}).get("params", {})
        dd = params.get("ddconfig", {})
        pre = config.get("preprocessing", {})
        stft, mel = pre.get("stft", {}), pre.get("mel", {})
        n_mels = (
            dd.get("mel_bins")
            or mel.get("n_mel_channels")
            or config.get("variables", {}).get("mel_bins")
            or 64
        )
        return cls(
            sample_rate=params.get("sampling_rate", 16000),
            n_fft=stft.get("filter_length", 1024),
            hop_length=stft.get("hop_length", 160),
            n_mels=n_mels,
        )


def _sinc_kernel(orig: int, new: int, width_zeros: int = 6, rolloff: float = 0.99) -> tuple[np.ndarray, int]:
    """torchaudio's `sinc_interp_hann` polyphase kernel for orig -> new (both already divided by their gcd)."""
    base = min(orig, new) * rolloff
    width = math.ceil(width_zeros * orig / base)
    idx = np.arange(-width, width + orig, dtype=np.float64)[None, :] / orig  # (1, K)
    t = (np.arange(0, -new, -1, dtype=np.float64)[:, None] / new + idx) * base  # (new, K)
    t = np.clip(t, -width_zeros, width_zeros)
    window = np.cos(t * math.pi / width_zeros / 2) ** 2
    t = t * math.pi
    safe = np.where(t == 0, 1.0, t)
    kernel = np.where(t == 0, 1.0, np.sin(safe) / safe) * window * (base / orig)
    return kernel, width  # (new, 2 * width + orig)


def resample(waveform: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Band-limited sinc resampling along the last axis, matching torchaudio.functional.resample's defaults."""
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} and {new_sr}")
    if orig_sr == new_sr:
        return waveform
    g = math.gcd(int(orig_sr), int(new_sr))
    orig, new = int(orig_sr) // g, int(new_sr) // g
    kernel, width = _sinc_kernel(orig, new)
    x = np.asarray(waveform, np.float64)
    lead, n = x.shape[:-1], x.shape[-1]
    x = x.reshape(-1, n)
    x = np.pad(x, [(0, 0), (width, width + orig)])
    frames = (x.shape[1] - kernel.shape[1]) // orig + 1
    windows = np.lib.stride_tricks.sliding_window_view(x, kernel.shape[1], axis=1)[:, ::orig][
        :, :frames
    ]  # (R, frames, K)
    out = (windows @ kernel.T).reshape(x.shape[0], -1)  # (R, frames * new), phases interleaved
    target = math.ceil(new * n / orig)
    return out[:, :target].reshape(*lead, -1)


def resampled_length(n: int, orig_sr: int, new_sr: int) -> int:
    """The length `resample` gives for n samples: ceil(n * new / orig), the rates divided by their gcd."""
    g = math.gcd(int(orig_sr), int(new_sr))
    return math.ceil((int(new_sr) // g) * n / (int(orig_sr) // g))


def latent_frames(n: int, sample_rate: int, config: MelConfig = MelConfig(), downsample: int = 4) -> int:
    """Audio latent frames the encoder makes of n samples at sample_rate: 1 + n16 // hop mel frames (centred
    STFT), then `downsample` x fewer along time through causal stride-2 convolutions: 1 + (T - 1) // 4."""
    mel = resampled_length(n, sample_rate, config.sample_rate) // config.hop_length + 1
    return (mel - 1) // downsample + 1


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    f = np.asarray(f, np.float64)
    mel = f / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, mel)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * (200.0 / 3))


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> np.ndarray:
    """Triangular Slaney-scale filters with Slaney (area) normalisation, (n_mels, n_fft // 2 + 1)."""
    f_max = sample_rate / 2.0 if f_max is None else f_max
    freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    pts = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))  # (n_mels + 2,)
    slopes = pts[:, None] - freqs[None, :]  # (n_mels + 2, n_freqs)
    diff = np.diff(pts)[:, None]
    fb = np.maximum(0.0, np.minimum(-slopes[:-2] / diff[:-1], slopes[2:] / diff[1:]))
    return fb * (2.0 / (pts[2:] - pts[:-2]))[:, None]


def stft_magnitude(x: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """|STFT| with a periodic Hann window of n_fft and centred reflect padding: (..., N) -> (..., T, n_fft // 2 + 1)."""
    if x.shape[-1] <= n_fft // 2:
        raise ValueError(f"{x.shape[-1]} samples are too few for reflect padding by {n_fft // 2}")
    pad = [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)]
    x = np.pad(x, pad, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft, axis=-1)[
        ..., ::hop_length, :
    ]  # (..., T, n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    return np.abs(np.fft.rfft(frames * window, axis=-1))


def log_mel(waveform: np.ndarray, sample_rate: int, config: MelConfig = MelConfig()) -> np.ndarray:
    """Waveform (N, C) or (B, N, C) at `sample_rate` -> log-mel (B, T, n_mels, C) float32 at config.sample_rate."""
    x = np.asarray(waveform, np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"waveform must be (N, C) or (B, N, C), got shape {tuple(np.shape(waveform))}")
    x = resample(np.moveaxis(x, -1, 1), sample_rate, config.sample_rate)  # (B, C, N)
    spec = stft_magnitude(x, config.n_fft, config.hop_length)  # (B, C, T, n_freqs)
    fb = mel_filterbank(config.sample_rate, config.n_fft, config.n_mels)
    mel = np.einsum("bctf,mf->btmc", spec, fb)
    return np.log(np.maximum(mel, LOG_FLOOR)).astype(np.float32)


_INT_FULL_SCALE = {
    "u8": 128.0,
    "u8p": 128.0,
    "s16": 32768.0,
    "s16p": 32768.0,
    "s32": 2147483648.0,
    "s32p": 2147483648.0,
}


class AudioDecodeError(ValueError):
    """A file with no decodable audio stream."""


def _frame_to_float(frame: Any) -> np.ndarray:
    # (C, n) float32 in [-1, 1]: integer formats over their full scale, interleaved ones de-interleaved
    arr = frame.to_ndarray().astype(np.float32)
    fmt = frame.format.name
    if fmt in _INT_FULL_SCALE:
        arr = arr / _INT_FULL_SCALE[fmt]
    if not frame.format.is_planar:
        arr = arr.reshape(-1, len(frame.layout.channels)).T
    return arr


def _decode(path: Path, start_time: float, max_duration: float | None) -> tuple[np.ndarray, int]:
    import av

    with av.open(str(path)) as container:
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            raise AudioDecodeError(f"{path} has no audio stream")
        sr, tb = stream.rate, stream.time_base
        if max_duration is not None:
            end_time = start_time + max_duration
        else:
            end_time = float(stream.duration * tb) if stream.duration is not None else math.inf
        container.seek(int(start_time / tb), stream=stream)
        chunks, first = [], None
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            t = float(frame.pts * tb)
            if t + frame.samples / frame.sample_rate < start_time:
                continue
            if t > end_time:
                break
            first = t if first is None else first
            chunks.append(_frame_to_float(frame))
    if not chunks:
        raise AudioDecodeError(f"{path} has no audio samples after --audio-start-time {start_time:g} s")
    audio = np.concatenate(chunks, axis=-1)  # (C, N)
    # codec frames need not start at start_time: drop the samples before it, keep max_duration's worth
    skip = round((start_time - first) * sr)
    if skip > 0:
        audio = audio[:, skip:]
    if max_duration is not None:
        audio = audio[:, : round(max_duration * sr)]
    return audio, sr


def load_audio(
    path: str | Path, start_time: float = 0.0, max_duration: float | None = None
) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of any file ffmpeg reads (wav, flac, mp3, the AAC track of an mp4)
    as float32 (N, 2) in [-1, 1], and its sample rate; as ltx_pipelines' decode_audio_from_file (PyAV):
    seek to start_time, decode whole codec frames, trim to [start_time, start_time + max_duration].

    Mono is duplicated to both channels (the encoder is stereo-only; the reference would fail on a
    mono file); files with more than two channels are rejected.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file {path} does not exist")
    if not (math.isfinite(start_time) and start_time >= 0) or (
        max_duration is not None and not (math.isfinite(max_duration) and max_duration > 0)
    ):
        raise ValueError(f"start_time {start_time} must be >= 0 and max_duration {max_duration} > 0")
    import av

    try:
        audio, sr = _decode(path, float(start_time), max_duration)
    except av.FFmpegError as e:
        raise AudioDecodeError(f"{path} cannot be decoded as audio ({e.strerror or e})") from None
    if audio.shape[0] == 1:
        audio = np.repeat(audio, 2, axis=0)
    elif audio.shape[0] != 2:
        raise ValueError(f"{path} has {audio.shape[0]} channels; only mono and stereo audio are supported")
    if audio.shape[1] == 0:
        raise AudioDecodeError(f"{path} has no audio samples after --audio-start-time {start_time:g} s")
    return np.ascontiguousarray(audio.T), int(sr)
