"""Latent states (tokens, denoise mask, clean latent, positions) and the conditioning items that edit them.

A state holds patchified tokens. Video latents come in the reference layout (B, C, F, H, W), audio
latents as (B, C, T, mel_bins); `unpatchify` returns the same layouts. Conditioning items only
append tokens at the end, so `clear_conditioning` drops everything past the generated tokens.
Strength: 1.0 keeps the conditioning clean (mask 0, token timestep 0); the mask is 1 - strength.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from ltx.constants import validate_strength
from ltx.model.patchify import (
    audio_positions,
    patchify_audio,
    patchify_video,
    pixel_bounds,
    unpatchify_audio,
    unpatchify_video,
    video_latent_bounds,
    video_positions,
)

AUDIO_HOP_SECONDS = 160 / 16000  # one mel frame
AUDIO_DOWNSAMPLE = 4  # mel frames per audio latent


@dataclass(frozen=True)
class LatentState:
    latent: mx.array  # (B, T, C) tokens
    denoise_mask: mx.array  # (B, T, 1) float32, 1 = denoise fully
    positions: mx.array  # video (B, 3, T, 2) [start, end) in (seconds, px, px); audio (B, 1, T, 2) seconds
    clean_latent: mx.array  # (B, T, C)
    shape: tuple[int, ...]  # unpatchified shape of the generated part: (B, C, F, H, W) or (B, C, T, mel)
    fps: float | None = None  # video only
    attention_mask: mx.array | None = None  # (B, T, T) in [0, 1]; None = full attention

    @property
    def num_tokens(self) -> int:
        """Generated tokens; appended conditioning tokens follow them."""
        return self.shape[2] * self.shape[3] * self.shape[4] if self.is_video else self.shape[2]

    @property
    def is_video(self) -> bool:
        return len(self.shape) == 5


# ---------------------------------------------------------------------------------------------------
# Patchify (patch size 1) and position grids


# (in ltx.model.patchify)


# ---------------------------------------------------------------------------------------------------
# States


def video_state(
    latent: mx.array, fps: float, causal_fix: bool = True, positions_dtype: mx.Dtype = mx.float32
) -> LatentState:
    """A video state from a (B, C, F, H, W) latent (zeros for text-to-video), clean latent = the latent.

    positions_dtype: the reference casts video positions to the latent dtype (bf16) here.
    """
    b, _, f, h, w = latent.shape
    tokens = patchify_video(latent)
    pos = video_positions(f, h, w, fps, batch=b, causal_fix=causal_fix)
    return LatentState(
        latent=tokens,
        denoise_mask=mx.ones((b, tokens.shape[1], 1), mx.float32),
        positions=pos.astype(positions_dtype),
        clean_latent=tokens,
        shape=tuple(latent.shape),
        fps=float(fps),
    )


def audio_state(latent: mx.array) -> LatentState:
    """An audio state from a (B, C, T, mel_bins) latent; positions stay float32 (as in the reference)."""
    b, _, t, _ = latent.shape
    tokens = patchify_audio(latent)
    return LatentState(
        latent=tokens,
        denoise_mask=mx.ones((b, t, 1), mx.float32),
        positions=audio_positions(t, batch=b),
        clean_latent=tokens,
        shape=tuple(latent.shape),
    )


def with_mask_value(state: LatentState, value: float) -> LatentState:
    """The whole state's denoise mask set to `value` (0.0 freezes it, e.g. the input audio of a2vid)."""
    return replace(state, denoise_mask=mx.full(state.denoise_mask.shape, value, mx.float32))


def timesteps(state: LatentState, sigma: float) -> mx.array:
    """Per-token timesteps (B, T, 1) = denoise_mask * sigma, float32."""
    return state.denoise_mask * mx.array(sigma, mx.float32)


def clear_conditioning(state: LatentState) -> LatentState:
    """Drop appended conditioning tokens, reset the mask to 1 and the attention mask to None."""
    n = state.num_tokens
    return replace(
        state,
        latent=state.latent[:, :n],
        clean_latent=state.clean_latent[:, :n],
        denoise_mask=mx.ones((state.latent.shape[0], n, 1), mx.float32),
        positions=state.positions[:, :, :n],
        attention_mask=None,
    )


def unpatchify(state: LatentState) -> mx.array:
    """The generated latent in its unpatchified layout; call `clear_conditioning` first if items were appended."""
    if state.latent.shape[1] != state.num_tokens:
        raise ValueError(
            f"state has {state.latent.shape[1]} tokens but its shape {state.shape} holds {state.num_tokens}: "
            "call clear_conditioning before unpatchify"
        )
    if state.is_video:
        return unpatchify_video(state.latent, *state.shape[2:])
    return unpatchify_audio(state.latent, state.shape[1], state.shape[3])


# ---------------------------------------------------------------------------------------------------
# Conditioning items


@dataclass(frozen=True)
class VideoConditionByLatentIndex:
    """Overwrite latent frame `latent_idx` (latent and clean latent) with `latent` (B, C, F_c, H, W)."""

    latent: mx.array
    strength: float
    latent_idx: int = 0

    def apply(self, state: LatentState) -> LatentState:
        validate_strength(self.strength)
        b, c, f, h, w = state.shape
        cb, cc, cf, ch, cw = self.latent.shape
        if (cb, cc, ch, cw) != (b, c, h, w):
            raise ValueError(
                f"conditioning latent shape {tuple(self.latent.shape)} does not match the video latent "
                f"{state.shape} in batch, channels, height or width: encode the image at the video's resolution"
            )
        if not 0 <= self.latent_idx or self.latent_idx + cf > f:
            raise ValueError(
                f"latent_idx {self.latent_idx} with {cf} frame(s) is outside the {f} latent frames"
            )
        tokens = patchify_video(self.latent).astype(state.latent.dtype)
        start = self.latent_idx * h * w
        stop = start + tokens.shape[1]
        mask = state.denoise_mask
        return replace(
            state,
            latent=_put(state.latent, tokens, start, stop),
            clean_latent=_put(state.clean_latent, tokens.astype(state.clean_latent.dtype), start, stop),
            denoise_mask=_put(
                mask, mx.full((b, stop - start, 1), 1.0 - self.strength, mx.float32), start, stop
            ),
        )


@dataclass(frozen=True)
class VideoConditionByKeyframeIndex:
    """Append `keyframes` (B, C, F_k, H, W) as extra tokens placed at pixel frame `frame_idx`."""

    keyframes: mx.array
    frame_idx: int
    strength: float

    def apply(self, state: LatentState) -> LatentState:
        validate_strength(self.strength)
        if self.frame_idx < 0:
            raise ValueError(f"keyframe frame_idx {self.frame_idx} must be >= 0")
        b, c, f, h, w = self.keyframes.shape
        if (b, c) != state.shape[:2]:
            raise ValueError(
                f"keyframe latent shape {tuple(self.keyframes.shape)} does not match video {state.shape}"
            )
        tokens = patchify_video(self.keyframes)
        # Causal fix only for a keyframe at frame 0; positions in float32 whatever the state's dtype.
        pos = video_positions(
            f, h, w, state.fps, batch=b, causal_fix=self.frame_idx == 0, frame_offset=self.frame_idx
        )
        # The reference builds this mask in the keyframe's dtype, so 1 - strength is rounded to it.
        mask = mx.full((b, tokens.shape[1], 1), 1.0 - self.strength, self.keyframes.dtype).astype(mx.float32)
        attn = grow_attention_mask(state, tokens.shape[1], None)
        return append_tokens(state, tokens, pos, mask, attn)


@dataclass(frozen=True)
class VideoConditionByReferenceLatent:
    """Append a reference video's latent (B, C, F_r, H_r, W_r) as extra tokens (IC-LoRA), as the reference's
    VideoConditionByReferenceLatent, wrapped in ConditioningItemAttentionStrengthWrapper when `attention`
    is given: a scalar or (B, F_r*H_r*W_r) weights of the attention between these and the generated tokens.

    Positions are the reference's own grid (causal fix on) with the spatial axes scaled by
    `downscale_factor`, so a half-size reference lines up with the target's coordinates."""

    latent: mx.array
    downscale_factor: int = 1
    strength: float = 1.0
    attention: float | mx.array | None = None

    def apply(self, state: LatentState) -> LatentState:
        validate_strength(self.strength)
        b, c, f, h, w = self.latent.shape
        if (b, c) != state.shape[:2]:
            raise ValueError(
                f"reference latent shape {tuple(self.latent.shape)} does not match video {state.shape}"
            )
        tokens = patchify_video(self.latent)
        pos = video_positions(f, h, w, state.fps, batch=b, causal_fix=True)
        if self.downscale_factor != 1:
            pos = mx.concatenate([pos[:, :1], pos[:, 1:] * float(self.downscale_factor)], axis=1)
        mask = mx.full((b, tokens.shape[1], 1), 1.0 - self.strength, self.latent.dtype).astype(mx.float32)
        attn = grow_attention_mask(state, tokens.shape[1], self.attention)
        return append_tokens(state, tokens, pos, mask, attn)


def append_tokens(
    state: LatentState, tokens: mx.array, pos: mx.array, mask: mx.array, attn: mx.array | None
) -> LatentState:
    """`state` with conditioning tokens appended: their latent (also the clean latent), positions,
    denoise mask and the grown attention mask (positions stay float64 where the state's are)."""
    pos_dtype = mx.float32 if state.positions.dtype != mx.float64 else mx.float64
    return replace(
        state,
        latent=mx.concatenate([state.latent, tokens.astype(state.latent.dtype)], axis=1),
        clean_latent=mx.concatenate([state.clean_latent, tokens.astype(state.clean_latent.dtype)], axis=1),
        denoise_mask=mx.concatenate([state.denoise_mask, mask], axis=1),
        positions=mx.concatenate([state.positions.astype(pos_dtype), pos.astype(pos_dtype)], axis=2),
        attention_mask=attn,
    )


def grow_attention_mask(state: LatentState, num_new: int, cross: float | mx.array | None) -> mx.array | None:
    """The (B, N+M, N+M) self-attention mask once M tokens are appended to the N of `state`, as the
    reference's update_attention_mask: None stays None when no mask exists yet; otherwise the existing
    block is kept (all ones if there was none), the new tokens attend to each other fully, to and from
    the generated tokens with weight `cross` (scalar or (B, M); None = 1), and not at all to and from
    earlier conditioning tokens."""
    old = state.attention_mask
    if cross is None and old is None:
        return None
    b, n, g = state.latent.shape[0], state.latent.shape[1], state.num_tokens
    cross = mx.ones((b, num_new), mx.float32) if cross is None else cross
    if not isinstance(cross, mx.array) or cross.ndim == 0:
        cross = mx.full((b, num_new), float(cross), mx.float32)
    if cross.ndim != 2 or cross.shape[1] != num_new or cross.shape[0] not in (1, b):
        raise ValueError(f"attention weights of shape {tuple(cross.shape)} do not fit {num_new} new tokens")
    cross = mx.broadcast_to(cross.astype(mx.float32), (b, num_new))
    old = mx.ones((b, n, n), mx.float32) if old is None else old.astype(mx.float32)
    right = mx.concatenate([mx.broadcast_to(cross[:, None, :], (b, g, num_new)),
                            mx.zeros((b, n - g, num_new), mx.float32)], axis=1)  # fmt: skip
    bottom = mx.concatenate(
        [cross[:, :, None] * mx.ones((b, num_new, g), mx.float32), mx.zeros((b, num_new, n - g), mx.float32),
         mx.ones((b, num_new, num_new), mx.float32)], axis=2)  # fmt: skip
    return mx.concatenate([mx.concatenate([old, right], axis=2), bottom], axis=1)


@dataclass(frozen=True)
class TemporalRegionMask:
    """Regenerate the time span [start_time, end_time) seconds, keep the rest (the retake's mask,
    ltx_pipelines/retake.py): a generated token's denoise mask is 1 where its [start, end) time overlaps
    the span, else 0. Token times in float32 from a fresh grid, as the reference's (video: causal pixel
    frames / fps; audio: the patchifier's seconds), so they do not depend on the state's position dtype."""

    start_time: float
    end_time: float

    def apply(self, state: LatentState) -> LatentState:
        b, n = state.shape[0], state.num_tokens
        if state.is_video:
            f, h, w = state.shape[2:]
            frames = pixel_bounds(video_latent_bounds(f, h, w, b))[:, 0].astype(np.float32)  # (B, T, 2)
            times = frames / np.float32(state.fps)
        else:
            times = np.asarray(audio_positions(state.shape[2], batch=b))[:, 0]  # (B, T, 2) float32
        inside = (times[..., 1] > np.float32(self.start_time)) & (times[..., 0] < np.float32(self.end_time))
        mask = mx.array(inside.astype(np.float32)[..., None])  # (B, T, 1)
        return replace(state, denoise_mask=_put(state.denoise_mask, mask, 0, n))


def apply_conditionings(state: LatentState, items: list) -> LatentState:
    for item in items:
        state = item.apply(state)
    return state


def _put(x: mx.array, value: mx.array, start: int, stop: int) -> mx.array:
    return mx.concatenate([x[:, :start], value, x[:, stop:]], axis=1)
