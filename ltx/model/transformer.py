"""The LTX-2 audio-video diffusion transformer (ltx_core/model/transformer/model.py) in MLX.

    model = load_transformer("ltx-2-19b-dev.safetensors")        # strict, lazy (memory-mapped)
    x0_video, x0_audio = X0Model(model)(video, audio, perturbations)

`Modality` bundles one stream's tokens, sigma, per-token timesteps, positions and text context;
pass None for a stream to run the other alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from ltx.constants import VIDEO_LATENT_CHANNELS  # noqa: E402
from ltx.model.attention import AdaLayerNormSingle, TextProjection  # noqa: E402
from ltx.model.block import (  # noqa: E402,F401  (re-exported for callers)
    SKIP_A2V_CROSS_ATTN,
    SKIP_AUDIO_SELF_ATTN,
    SKIP_V2A_CROSS_ATTN,
    SKIP_VIDEO_SELF_ATTN,
    BasicAVTransformerBlock,
    Perturbation,
    StreamArgs,
)
from ltx.model.rope import ROPE_TYPES, precompute_rope  # noqa: E402
from ltx.weights import loader  # noqa: E402

PREFIX = "model.diffusion_model."
TEXT_SUBTREES = ("video_embeddings_connector.", "audio_embeddings_connector.")
MODEL_TYPES = ("av", "video", "audio")

# Options ltx-core asserts (model_configurator.py); anything else is not implemented there either.
FIXED_VALUES = {
    "dropout": 0.0,
    "attention_bias": True,
    "num_vector_embeds": None,
    "activation_fn": "gelu-approximate",
    "num_embeds_ada_norm": 1000,
    "use_linear_projection": False,
    "only_cross_attention": False,
    "cross_attention_norm": True,
    "double_self_attention": False,
    "upcast_attention": False,
    "standardization_norm": "rms_norm",
    "norm_elementwise_affine": False,
    "qk_norm": "rms_norm",
    "positional_embedding_type": "rope",
    "use_audio_video_cross_attention": True,
    "share_ff": False,
    "av_cross_ada_norm": True,
    "use_middle_indices_grid": True,
}
ATTENTION_TYPES = ("default", "pytorch", "xformers", "flash_attention_3")  # backends only: all the same math


@dataclass
class TransformerConfig:
    num_layers: int = 48
    num_attention_heads: int = 32
    attention_head_dim: int = 128
    in_channels: int = 128
    out_channels: int = 128
    cross_attention_dim: int = 4096
    audio_num_attention_heads: int = 32
    audio_attention_head_dim: int = 64
    audio_in_channels: int = 128
    audio_out_channels: int = 128
    audio_cross_attention_dim: int = 2048
    caption_channels: int | None = None
    norm_eps: float = 1e-6
    positional_embedding_theta: float = 10000.0
    positional_embedding_max_pos: list[int] = dataclasses.field(default_factory=lambda: [20, 2048, 2048])
    audio_positional_embedding_max_pos: list[int] = dataclasses.field(default_factory=lambda: [20])
    timestep_scale_multiplier: float = 1000
    av_ca_timestep_scale_multiplier: float = 1
    rope_type: str = "interleaved"  # ltx-core's default; the 19B checkpoint says "split"
    frequencies_precision: Any = None  # "float64" selects the numpy float64 frequency ladder
    apply_gated_attention: bool = False  # LTX-2.3
    cross_attention_adaln: bool = False  # LTX-2.3
    caption_proj_before_connector: bool = False  # LTX-2.3: caption projection lives in the text encoder
    use_prompt_adaln_single: bool = True  # False (LTX-2.5): no prompt AdaLN MLP, K/V per prompt only
    ff_bias: bool = True  # False in LTX-2.5: the video feed-forward has no biases
    audio_ff_bias: bool = True
    use_keyframes_abs_pos_embedding: bool = False  # LTX-2.5: marks single-pixel-frame tokens
    attention_type: str = "default"
    model_type: str = "av"  # not a checkpoint key: "av", "video" or "audio"
    # not a checkpoint key: the A-V cross-attention scale/shift AdaLN reads the stream's own per-token
    # timesteps (the 1.2.0 reference, which LTX-2.5 is made with) instead of the other stream's sigma
    # (1.0.0, which LTX-2.0/2.3's goldens come from); from_dict sets it from model_version
    cross_adaln_own_timesteps: bool = False

    @classmethod
    def from_dict(
        cls, config: dict[str, Any], model_type: str = "av", model_version: str | None = None
    ) -> TransformerConfig:
        """From the checkpoint's `config["transformer"]` (and its `model_version`), rejecting what
        ltx-core rejects."""
        for key, expected in FIXED_VALUES.items():
            if model_type != "av" and key in ("use_audio_video_cross_attention", "av_cross_ada_norm"):
                continue
            # ltx-core compares config.get(key): an absent key is rejected too (except expected None)
            if config.get(key) != expected:
                got = f"={config[key]!r}" if key in config else " is missing"
                raise loader.CheckpointError(
                    f"unsupported config value transformer.{key}{got}; ltx-core and this implementation "
                    f"support only {expected!r}"
                )
        names = {f.name for f in dataclasses.fields(cls)} - {"model_type", "cross_adaln_own_timesteps"}
        cfg = cls(
            **{k: v for k, v in config.items() if k in names},
            model_type=model_type,
            cross_adaln_own_timesteps=parse_model_version(model_version) >= (2, 5),
        )
        latent = {"in_channels": VIDEO_LATENT_CHANNELS, "out_channels": VIDEO_LATENT_CHANNELS}
        for key, want in latent.items():  # the video VAE's latents: patchify reads them as 128 wide
            if getattr(cfg, key) != want:
                raise loader.CheckpointError(
                    f"unsupported config value transformer.{key}={getattr(cfg, key)!r}: LTX-2 video latents "
                    f"have {want} channels; is this an LTX-2 checkpoint?"
                )
        cfg.validate()
        return cfg

    def validate(self) -> None:
        def bad(key: str, why: str):
            raise loader.CheckpointError(
                f"unsupported config value transformer.{key}={getattr(self, key)!r}: {why}"
            )

        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type {self.model_type!r} is not one of {MODEL_TYPES}")
        if self.rope_type not in ROPE_TYPES:
            bad("rope_type", f"choose one of {ROPE_TYPES}")
        if self.attention_type not in ATTENTION_TYPES:
            bad("attention_type", f"choose one of {ATTENTION_TYPES}")
        if self.has_video and self.cross_attention_dim != self.inner_dim:
            bad("cross_attention_dim", f"must equal the video inner dim {self.inner_dim}")
        if self.has_audio and self.audio_cross_attention_dim != self.audio_inner_dim:
            bad("audio_cross_attention_dim", f"must equal the audio inner dim {self.audio_inner_dim}")
        if not self.caption_proj_before_connector and self.caption_channels is None:
            bad("caption_channels", "required when the caption projection is in the transformer")
        for key in ("use_prompt_adaln_single", "ff_bias", "audio_ff_bias", "use_keyframes_abs_pos_embedding"):
            if not isinstance(getattr(self, key), bool):
                bad(key, "must be true or false")

    @property
    def has_video(self) -> bool:
        return self.model_type in ("av", "video")

    @property
    def has_audio(self) -> bool:
        return self.model_type in ("av", "audio")

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def audio_inner_dim(self) -> int:
        return self.audio_num_attention_heads * self.audio_attention_head_dim

    @property
    def adaln_coefficient(self) -> int:
        return 9 if self.cross_attention_adaln else 6

    @property
    def double_precision_rope(self) -> bool:
        return self.frequencies_precision == "float64"

    @property
    def has_prompt_adaln(self) -> bool:
        return self.cross_attention_adaln and self.use_prompt_adaln_single


def parse_model_version(version: str | None) -> tuple[int, ...]:
    """ltx-core's parse_model_version (pre-release tags "2.4-rc2" read as "2.4.rc2"): the leading
    integer components; () for none, which compares below every version."""
    parts = []
    for part in (version or "").replace("-", ".").split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


@dataclass
class Modality:
    """One stream's inputs (ltx_core Modality). timesteps = denoise_mask * sigma per token."""

    latent: mx.array  # (B, T, C) patchified tokens
    sigma: mx.array | float  # scalar or (B,): the step's sigma (drives the other stream's cross AdaLN)
    timesteps: mx.array  # (B, T), (B, T, 1) or (B, 1)
    positions: mx.array  # (B, 3, T, 2) video / (B, 1, T, 2) audio bounds
    context: mx.array  # (B, S, caption_channels)
    enabled: bool = True
    context_mask: mx.array | None = None  # (B, S) 0/1, or an additive float bias
    attention_mask: mx.array | None = None  # (B, T, T) self-attention weights in [0, 1]
    # (B, T, 1) non-zero on tokens of a single pixel frame (the first latent frame, keyframe slots):
    # they get the keyframe embedding, on models that have one
    keyframes_mask: mx.array | None = None


def _host(x) -> np.ndarray:
    if isinstance(x, mx.array):
        x = x.astype(mx.float32)
    return np.asarray(x, dtype=np.float32)


def _sigma(sigma, batch: int) -> np.ndarray:
    s = _host(sigma).reshape(-1)
    if s.size not in (1, batch):
        raise ValueError(f"sigma has {s.size} values for a batch of {batch}")
    return np.broadcast_to(s, (batch,)).copy()


def timestep_table(timesteps, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct timesteps (U,) and each token's row (B, T) or (B, 1) when tokens share one."""
    ts = _host(timesteps).reshape(batch, -1)
    if (ts == ts[:, :1]).all():
        ts = ts[:, :1]
    values, inverse = np.unique(ts, return_inverse=True)
    return values, inverse.reshape(ts.shape).astype(np.int32)


def additive_self_mask(mask: mx.array, dtype: mx.Dtype) -> mx.array:
    """[0, 1] weights (B, T, T) -> log-space bias (B, 1, T, T); 0 -> dtype min."""
    m = mask.astype(mx.float32)
    tiny = float(np.finfo(np.float32).tiny)
    low = mx.array(mx.finfo(dtype).min, dtype=mx.float32)
    bias = mx.where(m > 0, mx.log(mx.maximum(m, tiny)), low)
    return bias.astype(dtype)[:, None]


def _context_bias(mask: mx.array | None, dtype: mx.Dtype) -> mx.array | None:
    if mask is None or mx.issubdtype(mask.dtype, mx.floating):
        return mask
    return ((mask.astype(dtype) - 1) * mx.finfo(dtype).max).reshape(mask.shape[0], 1, -1, mask.shape[-1])


class _Cache:
    def __init__(self):
        self.items: dict = {}

    def get(self, key):
        return self.items.get(key)

    def __setitem__(self, key, value):
        self.items[key] = value


def make_modality(
    tokens: mx.array,
    positions: mx.array,
    context: mx.array,
    sigma: float | mx.array,
    denoise_mask: mx.array | None = None,
    attention_mask: mx.array | None = None,
    enabled: bool = True,
    keyframes_mask: mx.array | None = None,
) -> Modality:
    """Modality for one step: timesteps = denoise_mask * sigma per token (float32), or sigma for
    every token when there is no mask (then the AdaLN runs once per sample)."""
    b = tokens.shape[0]
    sig = mx.broadcast_to(mx.array(sigma, dtype=mx.float32).reshape(-1), (b,))
    if denoise_mask is None:
        timesteps = sig.reshape(b, 1, 1)
    else:
        timesteps = denoise_mask.astype(mx.float32).reshape(b, -1, 1) * sig.reshape(b, 1, 1)
    return Modality(tokens, sig, timesteps, positions, context, enabled, None, attention_mask, keyframes_mask)


class LTXModel(nn.Module):
    """Velocity-predicting audio-video DiT; attribute names follow the checkpoint."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.config = cfg
        k = cfg.adaln_coefficient
        for p, on, dim, c_in, c_out in (
            ("", cfg.has_video, cfg.inner_dim, cfg.in_channels, cfg.out_channels),
            ("audio_", cfg.has_audio, cfg.audio_inner_dim, cfg.audio_in_channels, cfg.audio_out_channels),
        ):
            if not on:
                continue
            setattr(self, f"{p}patchify_proj", nn.Linear(c_in, dim))
            if not cfg.caption_proj_before_connector:
                setattr(self, f"{p}caption_projection", TextProjection(cfg.caption_channels, dim))
            setattr(self, f"{p}adaln_single", AdaLayerNormSingle(dim, k))
            if cfg.has_prompt_adaln:
                setattr(self, f"{p}prompt_adaln_single", AdaLayerNormSingle(dim, 2))
            setattr(self, f"{p}scale_shift_table", mx.zeros((2, dim)))
            setattr(self, f"{p}proj_out", nn.Linear(dim, c_out))
        if cfg.has_video and cfg.use_keyframes_abs_pos_embedding:
            self.keyframes_abs_pos_embedding = mx.zeros((1, cfg.inner_dim))
        if cfg.model_type == "av":
            self.av_ca_video_scale_shift_adaln_single = AdaLayerNormSingle(cfg.inner_dim, 4)
            self.av_ca_audio_scale_shift_adaln_single = AdaLayerNormSingle(cfg.audio_inner_dim, 4)
            self.av_ca_a2v_gate_adaln_single = AdaLayerNormSingle(cfg.inner_dim, 1)
            self.av_ca_v2a_gate_adaln_single = AdaLayerNormSingle(cfg.audio_inner_dim, 1)
        self.transformer_blocks = [
            BasicAVTransformerBlock(i, cfg, cfg.has_video, cfg.has_audio) for i in range(cfg.num_layers)
        ]
        self._rope_cache = _Cache()  # a plain object, so that parameters() does not see it

    @property
    def dtype(self) -> mx.Dtype:
        return (self.patchify_proj if self.config.has_video else self.audio_patchify_proj).weight.dtype

    def rope(self, positions: mx.array, stream: str, cross: bool = False) -> tuple[mx.array, mx.array]:
        """RoPE tables of a stream's self-attention, or (cross=True) of the A<->V cross-attention.
        Cached per (stream, cross) while the same positions array is passed (every sampling step)."""
        hit = self._rope_cache.get((stream, cross))
        if hit is not None and hit[0] is positions and hit[1][0].dtype == self.dtype:
            return hit[1]
        tables = self._rope(positions, stream, cross)
        self._rope_cache[(stream, cross)] = (positions, tables)
        return tables

    def _rope(self, positions: mx.array, stream: str, cross: bool) -> tuple[mx.array, mx.array]:
        c = self.config
        heads = c.num_attention_heads if stream == "video" else c.audio_num_attention_heads
        if cross:
            max_pos = [max(c.positional_embedding_max_pos[0], c.audio_positional_embedding_max_pos[0])]
            positions, dim = positions[:, 0:1], c.audio_cross_attention_dim
        elif stream == "video":
            max_pos, dim = c.positional_embedding_max_pos, c.inner_dim
        else:
            max_pos, dim = c.audio_positional_embedding_max_pos, c.audio_inner_dim
        return precompute_rope(
            positions,
            dim,
            heads,
            max_pos,
            c.rope_type,
            c.positional_embedding_theta,
            c.double_precision_rope,
            self.dtype,
        )

    def prepare(self, m: Modality, other: Modality | None, stream: str) -> StreamArgs:
        c, dtype = self.config, self.dtype
        p = "" if stream == "video" else "audio_"
        x = getattr(self, f"{p}patchify_proj")(m.latent.astype(dtype))  # (B, T, dim)
        if stream == "video" and m.keyframes_mask is not None and c.use_keyframes_abs_pos_embedding:
            marked = (m.keyframes_mask > 0).astype(dtype)  # (B, T, 1)
            x = x + marked * self.keyframes_abs_pos_embedding.astype(dtype)
        b, dim = x.shape[0], x.shape[-1]
        values, index = timestep_table(m.timesteps, b)
        ada, embedded = getattr(self, f"{p}adaln_single")(
            mx.array(values * np.float32(c.timestep_scale_multiplier)), dtype
        )
        context = m.context.astype(dtype)
        if not c.caption_proj_before_connector:
            context = getattr(self, f"{p}caption_projection")(context)
        args = StreamArgs(
            x=x,
            context=context.reshape(b, -1, dim),
            context_mask=_context_bias(m.context_mask, dtype),
            ada=ada.reshape(len(values), -1, dim),
            ada_index=mx.array(index),
            embedded=embedded,
            pe=self.rope(m.positions, stream),
            enabled=m.enabled,
            self_mask=None if m.attention_mask is None else additive_self_mask(m.attention_mask, dtype),
        )
        sigma = _sigma(m.sigma, b) * np.float32(c.timestep_scale_multiplier)
        if c.has_prompt_adaln:
            args.prompt = getattr(self, f"{p}prompt_adaln_single")(mx.array(sigma), dtype)[0].reshape(
                b, 1, 2, dim
            )
        if other is not None and c.model_type == "av":
            t = _sigma(other.sigma, b) * np.float32(c.timestep_scale_multiplier)
            factor = c.av_ca_timestep_scale_multiplier / c.timestep_scale_multiplier
            name = "video" if stream == "video" else "audio"
            gate = "a2v" if stream == "video" else "v2a"
            ss_adaln = getattr(self, f"av_ca_{name}_scale_shift_adaln_single")
            if c.cross_adaln_own_timesteps:  # this stream's per-token timesteps
                ss, _ = ss_adaln(mx.array(values * np.float32(c.timestep_scale_multiplier)), dtype)
                args.cross_ss = ss.reshape(len(values), 4, dim)[args.ada_index]  # (B, T', 4, dim)
            else:  # the other stream's sigma
                args.cross_ss = ss_adaln(mx.array(t), dtype)[0].reshape(b, 1, 4, dim)
            g, _ = getattr(self, f"av_ca_{gate}_gate_adaln_single")(mx.array(t) * factor, dtype)
            args.cross_gate = g.reshape(b, 1, 1, dim)
            args.cross_pe = self.rope(m.positions, stream, cross=True)
        return args

    def head(self, s: StreamArgs, stream: str) -> mx.array:
        p = "" if stream == "video" else "audio_"
        mod = getattr(self, f"{p}scale_shift_table")[None] + s.embedded[:, None]  # (U, 2, dim)
        mod = mod[s.ada_index]  # (B, T', 2, dim)
        x = mx.fast.layer_norm(s.x, None, None, self.config.norm_eps) * (1 + mod[:, :, 1]) + mod[:, :, 0]
        return getattr(self, f"{p}proj_out")(x)

    def __call__(
        self, video: Modality | None, audio: Modality | None, perturbations=None
    ) -> tuple[mx.array | None, mx.array | None]:
        """Velocities (B, T, C) for each given stream."""
        c = self.config
        if video is not None and not c.has_video:
            raise ValueError("this transformer has no video stream; pass video=None")
        if audio is not None and not c.has_audio:
            raise ValueError("this transformer has no audio stream; pass audio=None")
        if video is None and audio is None:
            raise ValueError("pass at least one of video and audio")
        batch = (video or audio).latent.shape[0]
        per_sample = normalize_perturbations(perturbations, batch)
        v = self.prepare(video, audio, "video") if video is not None else None
        a = self.prepare(audio, video, "audio") if audio is not None else None
        for block in self.transformer_blocks:
            v, a = block(v, a, per_sample)
        return (
            self.head(v, "video") if v is not None else None,
            self.head(a, "audio") if a is not None else None,
        )


def _expand(spec) -> list[Perturbation]:
    """One sample's perturbations from: Perturbation, None, a list of them, or an object shaped like
    ltx.diffusion.guidance.Perturbation (skip_{video,audio}_self_attn_blocks, skip_a2v, skip_v2a)."""
    if spec is None:
        return []
    if isinstance(spec, Perturbation):
        return [spec]
    if isinstance(spec, (list, tuple)):
        return [p for item in spec for p in _expand(item)]
    out = []
    for kind, blocks in (
        (SKIP_VIDEO_SELF_ATTN, spec.skip_video_self_attn_blocks),
        (SKIP_AUDIO_SELF_ATTN, spec.skip_audio_self_attn_blocks),
    ):
        if blocks is None or len(blocks):
            out.append(Perturbation(kind, None if blocks is None else tuple(blocks)))
    out += [Perturbation(SKIP_A2V_CROSS_ATTN)] if spec.skip_a2v else []
    out += [Perturbation(SKIP_V2A_CROSS_ATTN)] if spec.skip_v2a else []
    return out


def normalize_perturbations(perturbations, batch: int) -> list[list[Perturbation]]:
    """Per-sample perturbation lists from: None; [Perturbation, ...] (every sample); a single spec
    (every sample); or a list of `batch` per-sample specs (see _expand)."""
    if perturbations is None:
        return [[] for _ in range(batch)]
    if not isinstance(perturbations, (list, tuple)) or all(
        isinstance(p, Perturbation) for p in perturbations
    ):
        return [_expand(perturbations) for _ in range(batch)]
    if len(perturbations) != batch:
        raise ValueError(f"{len(perturbations)} per-sample perturbation specs for a batch of {batch}")
    return [_expand(p) for p in perturbations]


def to_denoised(latent: mx.array, velocity: mx.array, timesteps) -> mx.array:
    """x0 = latent - velocity * t, in float32, cast back to the latent dtype."""
    t = (
        mx.array(timesteps, dtype=mx.float32)
        if not isinstance(timesteps, mx.array)
        else timesteps.astype(mx.float32)
    )
    b = latent.shape[0]
    t = t.reshape(b, -1, 1) if t.size > 1 else t.reshape(1, 1, 1)
    return (latent.astype(mx.float32) - velocity.astype(mx.float32) * t).astype(latent.dtype)


class X0Model:
    """Wraps the velocity model: returns denoised predictions with per-token timesteps."""

    def __init__(self, model: LTXModel):
        self.model = model

    def __call__(
        self, video: Modality | None, audio: Modality | None, perturbations: Sequence | None = None
    ) -> tuple[mx.array | None, mx.array | None]:
        vv, va = self.model(video, audio, perturbations)
        return (
            to_denoised(video.latent, vv, video.timesteps) if vv is not None else None,
            to_denoised(audio.latent, va, audio.timesteps) if va is not None else None,
        )


def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    """Checkpoint keys -> module keys: strip `model.diffusion_model.`, drop the text connectors
    and every other component. Idempotent: already-stripped keys pass through."""
    out = {}
    for k, v in weights.items():
        if k.startswith(PREFIX):
            k = k[len(PREFIX) :]
        elif "." in k and k.split(".", 1)[0] in ("vae", "audio_vae", "vocoder", "text_embedding_projection"):
            continue
        if not k.startswith(TEXT_SUBTREES):
            out[k] = v
    return out


def load_transformer(source, dtype: mx.Dtype | None = None, model_type: str = "av") -> LTXModel:
    """Build from a checkpoint path, or from (weights, config) with config the whole metadata config
    (or its "transformer" section). Strict: a missing or unexpected weight raises CheckpointError."""
    if isinstance(source, (str, Path)):
        weights, metadata = loader.load_checkpoint(source)
        config, what = loader.read_config(metadata, source), f"transformer in {source}"
    else:
        weights, config = source
        what = "transformer"
    section = config.get("transformer", config)
    version = (
        metadata.get("model_version") if isinstance(source, (str, Path)) else config.get("model_version")
    )
    model = LTXModel(TransformerConfig.from_dict(section, model_type, version))
    weights = sanitize(
        {k: v for k, v in weights.items() if k.startswith(PREFIX)}
        if isinstance(source, (str, Path))
        else weights
    )
    loader.load_strict(model, weights, dtype or backend.default_dtype(), what)
    return model


def count_parameters(config: TransformerConfig | dict[str, Any]) -> int:
    """Parameter count from shapes alone: MLX builds the module lazily, no weights are allocated."""
    cfg = (
        config
        if isinstance(config, TransformerConfig)
        else TransformerConfig.from_dict({**FIXED_VALUES, **config})
    )
    return sum(v.size for _, v in tree_flatten(LTXModel(cfg).parameters()))
