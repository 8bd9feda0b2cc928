"""LTX-2.5's duration head (ltx_core/duration_head) in MLX: the shot length, in seconds, from the
text connectors' outputs, and its snapping to the VAE's 8k + 1 frame grid.

    head = load_duration_head("model_patches/ltx-2.5-duration-head-bf16.safetensors")
    frames = predict_frames(head, video_context, audio_context, fps=24.0)   # 1.0 s .. 20.0 s

Video and audio tokens are projected to a shared width and tagged with a modality embedding; learnable
queries pool them (nn.MultiheadAttention, every token attendable: the connectors already replaced the
padding with registers); a two-layer MLP regresses log-seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402

from ltx import ops  # noqa: E402
from ltx.constants import VIDEO_SCALE_FACTORS  # noqa: E402
from ltx.weights import loader  # noqa: E402

PREFIX = "duration_head."
AUTO_DURATION = (1.0, 20.0)  # the reference's AutoDuration defaults (seconds)


@dataclass
class DurationHeadConfig:
    video_cross_attention_dim: int = 4096
    audio_cross_attention_dim: int = 2048
    pooler_hidden_dim: int = 256
    num_queries: int = 1
    num_pooler_heads: int = 4
    mlp_hidden: int = 256

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> DurationHeadConfig:
        """From the file's whole `config`: widths from `transformer`, the rest from `duration_head`."""
        t, d = config.get("transformer", {}), config.get("duration_head", {})
        cfg = cls(
            video_cross_attention_dim=t.get("cross_attention_dim", 4096),
            audio_cross_attention_dim=t.get("audio_cross_attention_dim", 2048),
            **{
                k: d[k]
                for k in ("pooler_hidden_dim", "num_queries", "num_pooler_heads", "mlp_hidden")
                if k in d
            },
        )
        if cfg.pooler_hidden_dim % cfg.num_pooler_heads:
            raise loader.CheckpointError(
                f"unsupported config value duration_head.pooler_hidden_dim={cfg.pooler_hidden_dim}: "
                f"must be divisible by num_pooler_heads={cfg.num_pooler_heads}"
            )
        return cfg


class _MultiheadAttention(nn.Module):
    # torch.nn.MultiheadAttention's parameters: packed in_proj_{weight,bias}, out_proj
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = mx.zeros((3 * dim, dim))
        self.in_proj_bias = mx.zeros((3 * dim,))
        self.out_proj = ops.Linear(dim, dim)

    def __call__(self, q: mx.array, kv: mx.array) -> mx.array:
        b, nq, dim = q.shape
        dh = dim // self.heads
        wq, wk, wv = mx.split(self.in_proj_weight, 3)
        bq, bk, bv = mx.split(self.in_proj_bias, 3)

        def heads(x, w, bias):  # (B, T, dim) -> (B, H, T, Dh)
            return (x @ w.T + bias).reshape(b, x.shape[1], self.heads, dh).transpose(0, 2, 1, 3)

        out = ops.attention(heads(q, wq, bq), heads(kv, wk, bk), heads(kv, wv, bv), 1.0 / math.sqrt(dh))
        return self.out_proj(out.transpose(0, 2, 1, 3).reshape(b, nq, dim))


class _AttentionPooler(nn.Module):
    def __init__(self, dim: int, num_queries: int, heads: int):
        super().__init__()
        self.query_tokens = mx.zeros((num_queries, dim))
        self.cross_attn = _MultiheadAttention(dim, heads)

    def __call__(self, tokens: mx.array) -> mx.array:
        queries = mx.broadcast_to(self.query_tokens[None], (tokens.shape[0], *self.query_tokens.shape))
        return self.cross_attn(queries, tokens)  # (B, Q, dim)


class DurationHead(nn.Module):
    def __init__(self, cfg: DurationHeadConfig):
        super().__init__()
        self.config = cfg
        d = cfg.pooler_hidden_dim
        self.video_input_proj = ops.Linear(cfg.video_cross_attention_dim, d)
        self.video_modality_emb = mx.zeros((d,))
        self.audio_input_proj = ops.Linear(cfg.audio_cross_attention_dim, d)
        self.audio_modality_emb = mx.zeros((d,))
        self.attention_pooler = _AttentionPooler(d, cfg.num_queries, cfg.num_pooler_heads)
        self.mlp_hidden = ops.Linear(d * cfg.num_queries, cfg.mlp_hidden)
        self.mlp_out = ops.Linear(cfg.mlp_hidden, 1)

    def __call__(self, video: mx.array | None, audio: mx.array | None) -> mx.array:
        """Seconds (B,) from connector outputs video (B, Tv, Dv) and/or audio (B, Ta, Da)."""
        if video is None and audio is None:
            raise ValueError("the duration head needs the video or the audio context (or both)")
        dtype = self.mlp_out.weight.dtype
        groups = []
        if video is not None:
            groups.append(self.video_input_proj(video.astype(dtype)) + self.video_modality_emb)
        if audio is not None:
            groups.append(self.audio_input_proj(audio.astype(dtype)) + self.audio_modality_emb)
        pooled = self.attention_pooler(mx.concatenate(groups, axis=1))  # (B, Q, d)
        hidden = ops.gelu_tanh(self.mlp_hidden(pooled.reshape(pooled.shape[0], -1)))
        return mx.exp(self.mlp_out(hidden)[:, 0].astype(mx.float32))


def seconds_to_frames(seconds: float, fps: float, min_frames: int, max_frames: int) -> int:
    """The reference's seconds_to_clamped_num_frames: round(seconds * fps) clamped to [min, max], floored
    to 8k + 1, or raised to the next grid point when flooring undershoots min_frames."""
    t = VIDEO_SCALE_FACTORS[0]
    raw = max(min_frames, min(round(seconds * fps), max_frames))
    frames = ((raw - 1) // t) * t + 1
    if frames < min_frames:
        frames = min(-(-(min_frames - 1) // t) * t + 1, max_frames)
    return frames


def predict_frames(
    head: DurationHead,
    video: mx.array | None,
    audio: mx.array | None,
    fps: float,
    min_seconds: float = AUTO_DURATION[0],
    max_seconds: float = AUTO_DURATION[1],
) -> tuple[int, float]:
    """(frames, raw seconds) for one prompt: the prediction clamped to [min, max] seconds, on the 8k + 1 grid."""
    seconds = head(video, audio)
    if seconds.shape != (1,):
        raise ValueError(
            f"duration prediction is for one prompt at a time, got a batch of {seconds.shape[0]}"
        )
    s = float(seconds[0])
    return seconds_to_frames(s, fps, round(min_seconds * fps), round(max_seconds * fps)), s


def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    """Keys under `duration_head.` with the prefix stripped; idempotent on stripped keys."""
    if any(k.startswith(PREFIX) for k in weights):
        return loader.take_prefix(weights, PREFIX)
    return dict(weights)


def has_duration_head(names) -> bool:
    return any(str(k).startswith(PREFIX) for k in names)


def load_duration_head(path: str | Path, dtype: mx.Dtype | None = None) -> DurationHead:
    """Strict and lazy, from a file holding `duration_head.*` (its own, or a whole checkpoint's)."""
    weights, metadata = loader.load_checkpoint(path)
    if not has_duration_head(weights):
        raise loader.CheckpointError(f"{path} has no duration head (no 'duration_head.*' weights)")
    head = DurationHead(DurationHeadConfig.from_dict(loader.read_config(metadata, path)))
    loader.load_strict(head, sanitize(weights), dtype or backend.default_dtype(), f"duration head in {path}")
    return head
