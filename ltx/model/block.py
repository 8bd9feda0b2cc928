"""One audio-video transformer block of LTX-2 (ltx_core/model/transformer/transformer.py).

Per block: video self-attention, video text cross-attention, the same for audio, then audio->video
and video->audio cross-attention (each stream's cross AdaLN driven by the other stream's sigma),
then the feed-forwards. AdaLN values are kept as a small table of distinct timesteps (U, K, dim)
plus a token index, so the common case (one sigma for every token) costs one row per batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402

from ltx import ops  # noqa: E402
from ltx.model.attention import Attention, FeedForward  # noqa: E402

SKIP_A2V_CROSS_ATTN = "skip_a2v_cross_attn"
SKIP_V2A_CROSS_ATTN = "skip_v2a_cross_attn"
SKIP_VIDEO_SELF_ATTN = "skip_video_self_attn"
SKIP_AUDIO_SELF_ATTN = "skip_audio_self_attn"
PERTURBATION_TYPES = (SKIP_A2V_CROSS_ATTN, SKIP_V2A_CROSS_ATTN, SKIP_VIDEO_SELF_ATTN, SKIP_AUDIO_SELF_ATTN)


@dataclass(frozen=True)
class Perturbation:
    """Skip one kind of attention in `blocks` (None: every block); ltx_core/guidance/perturbations.py."""

    type: str
    blocks: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.type not in PERTURBATION_TYPES:
            raise ValueError(
                f"unknown perturbation {self.type!r}; choose one of {', '.join(PERTURBATION_TYPES)}"
            )
        if self.blocks is not None:
            object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))

    def hits(self, kind: str, block: int) -> bool:
        return self.type == kind and (self.blocks is None or block in self.blocks)


@dataclass
class StreamArgs:
    """One stream's prepared inputs (TransformerArgs in the reference)."""

    x: mx.array  # (B, T, dim)
    context: mx.array  # (B, S, dim)
    context_mask: mx.array | None  # additive (B, 1, 1, S)
    ada: mx.array  # (U, K, dim) AdaLN modulation per distinct timestep
    ada_index: mx.array  # (B, T) or (B, 1) int32 rows of `ada` per token
    embedded: mx.array  # (U, dim) embedded timestep (output head)
    pe: tuple[mx.array, mx.array]
    self_mask: mx.array | None = None  # additive (B, 1, T, T)
    enabled: bool = True
    cross_pe: tuple[mx.array, mx.array] | None = None
    cross_ss: mx.array | None = None  # (B, 1, 4, dim); (B, T', 4, dim) per token from LTX-2.5 on
    cross_gate: mx.array | None = None  # (B, 1, 1, dim)
    prompt: mx.array | None = None  # (B, 1, 2, dim) LTX-2.3 cross-attention AdaLN of the context
    # (None with cross-attention AdaLN on: LTX-2.5 has no prompt AdaLN MLP, the table alone applies)
    extra: dict = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.x.shape[1] > 0


@mx.compile
def _gated(x: mx.array, y: mx.array, gate: mx.array) -> mx.array:
    """Gated residual x + y * gate in one fused pass."""
    return x + y * gate


def ada_rows(table: mx.array, s: StreamArgs, rows: slice) -> list[mx.array]:
    """table (K, dim) + modulation rows -> list of (B, T or 1, dim)."""
    vals = table[rows][None] + s.ada[:, rows]  # (U, k, dim)
    vals = vals[s.ada_index]  # (B, T', k, dim)
    return [vals[:, :, i] for i in range(vals.shape[2])]


def cross_rows(table: mx.array, s: StreamArgs, rows: slice) -> tuple[mx.array, mx.array, mx.array]:
    """(scale, shift, gate) of the A<->V cross-attention: (B, 1 or T, dim) each."""
    ss = table[:4][None, None] + s.cross_ss  # (B, 1, 4, dim)
    gate = table[4:][None, None] + s.cross_gate  # (B, 1, 1, dim)
    return ss[:, :, rows.start], ss[:, :, rows.start + 1], gate[:, :, 0]


def perturbed(perturbations: list[list[Perturbation]], kind: str, block: int) -> list[bool]:
    return [any(p.hits(kind, block) for p in sample) for sample in perturbations]


def _keep_mask(flags: list[bool], dtype: mx.Dtype) -> mx.array:
    return mx.array([0.0 if f else 1.0 for f in flags], dtype=dtype).reshape(-1, 1, 1)


class BasicAVTransformerBlock(nn.Module):
    def __init__(self, idx: int, cfg, video: bool = True, audio: bool = True):
        super().__init__()
        self.idx, self.eps = idx, cfg.norm_eps
        self.cross_attention_adaln = cfg.cross_attention_adaln
        k = cfg.adaln_coefficient
        gated = cfg.apply_gated_attention
        vd, ad = cfg.inner_dim, cfg.audio_inner_dim
        if video:
            h, dh = cfg.num_attention_heads, cfg.attention_head_dim
            self.attn1 = Attention(vd, h, dh, eps=cfg.norm_eps, gated=gated)
            self.attn2 = Attention(vd, h, dh, cfg.cross_attention_dim, eps=cfg.norm_eps, gated=gated)
            self.ff = FeedForward(vd, bias=cfg.ff_bias)
            self.scale_shift_table = mx.zeros((k, vd))
            if self.cross_attention_adaln:
                self.prompt_scale_shift_table = mx.zeros((2, vd))
        if audio:
            h, dh = cfg.audio_num_attention_heads, cfg.audio_attention_head_dim
            self.audio_attn1 = Attention(ad, h, dh, eps=cfg.norm_eps, gated=gated)
            self.audio_attn2 = Attention(
                ad, h, dh, cfg.audio_cross_attention_dim, eps=cfg.norm_eps, gated=gated
            )
            self.audio_ff = FeedForward(ad, bias=cfg.audio_ff_bias)
            self.audio_scale_shift_table = mx.zeros((k, ad))
            if self.cross_attention_adaln:
                self.audio_prompt_scale_shift_table = mx.zeros((2, ad))
        if video and audio:
            h, dh = cfg.audio_num_attention_heads, cfg.audio_attention_head_dim
            self.audio_to_video_attn = Attention(
                vd, h, dh, ad, eps=cfg.norm_eps, gated=gated
            )  # Q video, KV audio
            self.video_to_audio_attn = Attention(
                ad, h, dh, vd, eps=cfg.norm_eps, gated=gated
            )  # Q audio, KV video
            self.scale_shift_table_a2v_ca_audio = mx.zeros((5, ad))
            self.scale_shift_table_a2v_ca_video = mx.zeros((5, vd))

    def _self_attn(self, attn: Attention, table: mx.array, s: StreamArgs, flags: list[bool]) -> mx.array:
        shift, scale, gate = ada_rows(table, s, slice(0, 3))
        xn = ops.rms_norm_modulate(s.x, self.eps, scale, shift)
        skip, keep = all(flags), None
        if any(flags) and not skip:
            keep = _keep_mask(flags, s.x.dtype)
        return _gated(s.x, attn(xn, pe=s.pe, mask=s.self_mask, skip=skip, keep=keep), gate)

    def _text_attn(self, attn: Attention, table: mx.array, prompt_table, s: StreamArgs) -> mx.array:
        if not self.cross_attention_adaln:
            return s.x + attn(ops.rms_norm_modulate(s.x, self.eps), s.context, mask=s.context_mask)
        shift_q, scale_q, gate = ada_rows(table, s, slice(6, 9))
        kv = prompt_table[None, None]  # (1, 1, 2, dim), + the prompt AdaLN (B, 1, 2, dim) if any
        kv = kv if s.prompt is None else kv + s.prompt
        ctx = s.context * (1 + kv[:, :, 1]) + kv[:, :, 0]
        xn = ops.rms_norm_modulate(s.x, self.eps, scale_q, shift_q)
        return _gated(s.x, attn(xn, ctx, mask=s.context_mask), gate)

    def _cross_attn(
        self, attn: Attention, q: StreamArgs, kv: StreamArgs, qn: mx.array, kvn: mx.array, tables, rows, flags
    ) -> mx.array:
        """One direction of the audio<->video cross-attention: q.x + gate * attn(q's modulated norm qn,
        kv's modulated norm kvn); tables (q's, kv's) and their rows (scale, shift) for this direction."""
        q_scale, q_shift, gate = cross_rows(tables[0], q, rows)
        kv_scale, kv_shift, _ = cross_rows(tables[1], kv, rows)
        out = attn(
            ops.modulate(qn, q_scale, q_shift),
            ops.modulate(kvn, kv_scale, kv_shift),
            pe=q.cross_pe,
            k_pe=kv.cross_pe,
        )
        return _gated(q.x, out * _keep_mask(flags, out.dtype) if any(flags) else out, gate)

    def _ff(self, ff: FeedForward, table: mx.array, s: StreamArgs) -> mx.array:
        shift, scale, gate = ada_rows(table, s, slice(3, 6))
        return _gated(s.x, ff(ops.rms_norm_modulate(s.x, self.eps, scale, shift)), gate)

    def __call__(
        self, video: StreamArgs | None, audio: StreamArgs | None, perturbations: list[list[Perturbation]]
    ) -> tuple[StreamArgs | None, StreamArgs | None]:
        run_v = video is not None and video.enabled and video.active
        run_a = audio is not None and audio.enabled and audio.active
        run_a2v = run_v and audio is not None and audio.active
        run_v2a = run_a and video is not None and video.active
        if run_v:
            video.x = self._self_attn(
                self.attn1,
                self.scale_shift_table,
                video,
                perturbed(perturbations, SKIP_VIDEO_SELF_ATTN, self.idx),
            )
            video.x = self._text_attn(
                self.attn2, self.scale_shift_table, getattr(self, "prompt_scale_shift_table", None), video
            )
        if run_a:
            audio.x = self._self_attn(
                self.audio_attn1,
                self.audio_scale_shift_table,
                audio,
                perturbed(perturbations, SKIP_AUDIO_SELF_ATTN, self.idx),
            )
            audio.x = self._text_attn(
                self.audio_attn2,
                self.audio_scale_shift_table,
                getattr(self, "audio_prompt_scale_shift_table", None),
                audio,
            )
        if run_a2v or run_v2a:
            vn, an = ops.rms_norm_modulate(video.x, self.eps), ops.rms_norm_modulate(audio.x, self.eps)
            vt, at = self.scale_shift_table_a2v_ca_video, self.scale_shift_table_a2v_ca_audio
            flags = perturbed(perturbations, SKIP_A2V_CROSS_ATTN, self.idx)
            if run_a2v and not all(flags):
                video.x = self._cross_attn(
                    self.audio_to_video_attn, video, audio, vn, an, (vt, at), slice(0, 2), flags
                )
            flags = perturbed(perturbations, SKIP_V2A_CROSS_ATTN, self.idx)
            if run_v2a and not all(flags):
                audio.x = self._cross_attn(
                    self.video_to_audio_attn, audio, video, an, vn, (at, vt), slice(2, 4), flags
                )
        if run_v:
            video.x = self._ff(self.ff, self.scale_shift_table, video)
        if run_a:
            audio.x = self._ff(self.audio_ff, self.audio_scale_shift_table, audio)
        return video, audio
