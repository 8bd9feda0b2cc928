"""Latents <-> transformer tokens, and the token position grids the transformer's RoPE reads.

Video latents (B, 128, F, H, W) become tokens (B, F*H*W, 128) in frame, row, column order (patch
size 1). Audio latents (B, 8, T, 16) become tokens (B, T, 128), channel-major (c*16 + f).
Positions are `[start, end)` bounds per token: video (B, 3, T, 2) in (seconds, pixels, pixels),
audio (B, 1, T, 2) in seconds (ltx_core/components/patchifiers.py, ltx_core/tools.py).
"""

from __future__ import annotations

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

VIDEO_SCALE_FACTORS = (8, 32, 32)  # (time, height, width) of the video VAE
AUDIO_SAMPLE_RATE = 16000
AUDIO_HOP_LENGTH = 160
AUDIO_LATENT_DOWNSAMPLE = 4
AUDIO_CHANNELS = 8
AUDIO_MEL_BINS = 16


def patchify_video(latent: mx.array) -> mx.array:
    """(B, C, F, H, W) -> (B, F*H*W, C)."""
    if latent.ndim != 5:
        raise ValueError(f"video latent must be (B, C, F, H, W), got shape {tuple(latent.shape)}")
    b, c = latent.shape[:2]
    return latent.reshape(b, c, -1).swapaxes(1, 2)


def unpatchify_video(tokens: mx.array, frames: int, height: int, width: int) -> mx.array:
    """(B, F*H*W, C) -> (B, C, F, H, W)."""
    b, t, c = tokens.shape
    if t != frames * height * width:
        raise ValueError(f"{t} video tokens do not fill a {frames}x{height}x{width} latent grid")
    return tokens.swapaxes(1, 2).reshape(b, c, frames, height, width)


def patchify_audio(latent: mx.array) -> mx.array:
    """(B, C, T, F) -> (B, T, C*F)."""
    if latent.ndim != 4:
        raise ValueError(f"audio latent must be (B, C, T, F), got shape {tuple(latent.shape)}")
    b, c, t, f = latent.shape
    return latent.transpose(0, 2, 1, 3).reshape(b, t, c * f)


def unpatchify_audio(
    tokens: mx.array, channels: int = AUDIO_CHANNELS, mel_bins: int = AUDIO_MEL_BINS
) -> mx.array:
    """(B, T, C*F) -> (B, C, T, F)."""
    b, t, d = tokens.shape
    if d != channels * mel_bins:
        raise ValueError(f"audio token width {d} != channels {channels} x mel_bins {mel_bins}")
    return tokens.reshape(b, t, channels, mel_bins).transpose(0, 2, 1, 3)


def video_latent_bounds(frames: int, height: int, width: int, batch: int = 1) -> np.ndarray:
    """Latent-grid [start, end) bounds of every video token: (B, 3, F*H*W, 2), int64."""
    for name, v in (("frames", frames), ("height", height), ("width", width), ("batch", batch)):
        if v <= 0:
            raise ValueError(f"video latent {name} must be positive, got {v}")
    f, h, w = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    starts = np.stack([f, h, w]).reshape(3, -1)  # (3, T)
    bounds = np.stack([starts, starts + 1], axis=-1)  # (3, T, 2)
    return np.broadcast_to(bounds, (batch, *bounds.shape)).copy()


def pixel_bounds(
    latent_bounds: np.ndarray,
    causal_fix: bool = True,
    scale_factors: tuple[int, int, int] = VIDEO_SCALE_FACTORS,
) -> np.ndarray:
    """Scale latent bounds (B, 3, T, 2) to pixel units; the causal fix maps latent frame 0 to [0, 1)."""
    px = latent_bounds * np.asarray(scale_factors).reshape(1, 3, 1, 1)
    if causal_fix:
        px[:, 0] = np.maximum(px[:, 0] + 1 - scale_factors[0], 0)
    return px


def video_positions(
    frames: int,
    height: int,
    width: int,
    fps: float,
    batch: int = 1,
    causal_fix: bool = True,
    dtype: mx.Dtype = mx.float32,
    frame_offset: int = 0,
) -> mx.array:
    """Token bounds (B, 3, F*H*W, 2): time in seconds, height and width in pixels.

    frame_offset (pixel frames) is added before dividing by fps (appended keyframes). The reference
    casts the result to the pipeline dtype (bfloat16 in production); pass dtype=mx.bfloat16 to
    reproduce that rounding.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    px = pixel_bounds(video_latent_bounds(frames, height, width, batch), causal_fix)
    px[:, 0] += frame_offset
    px = px.astype(np.float32)
    px[:, 0] = px[:, 0] / np.float32(fps)
    return mx.array(px).astype(dtype)


def _audio_seconds(index: np.ndarray, causal: bool) -> np.ndarray:
    mel = index.astype(np.float32) * AUDIO_LATENT_DOWNSAMPLE
    if causal:
        mel = np.maximum(mel + 1 - AUDIO_LATENT_DOWNSAMPLE, 0)
    return (mel * AUDIO_HOP_LENGTH / AUDIO_SAMPLE_RATE).astype(np.float32)


def audio_positions(num_tokens: int, batch: int = 1, shift: int = 0, causal: bool = True) -> mx.array:
    """Token bounds (B, 1, T, 2) in seconds (float32, as in the reference)."""
    if num_tokens <= 0:
        raise ValueError(f"audio token count must be positive, got {num_tokens}")
    idx = np.arange(shift, shift + num_tokens)
    bounds = np.stack([_audio_seconds(idx, causal), _audio_seconds(idx + 1, causal)], axis=-1)  # (T, 2)
    return mx.array(np.broadcast_to(bounds, (batch, 1, num_tokens, 2)).copy())


def audio_latent_frames(num_frames: int, fps: float) -> int:
    """Audio latent length for a video of `num_frames` pixel frames at `fps` (25 latents per second)."""
    per_second = float(AUDIO_SAMPLE_RATE) / float(AUDIO_HOP_LENGTH) / float(AUDIO_LATENT_DOWNSAMPLE)
    return round(float(num_frames) / float(fps) * per_second)
