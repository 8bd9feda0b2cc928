"""LTX-2 text path: Gemma hidden states -> feature extractor -> video/audio embeddings connectors.

Mirrors ltx-core's `EmbeddingsProcessor` (`ltx_core/text_encoders/gemma/*`):
- LTX-2.0 (feature extractor V1): per-layer masked min/max normalisation of the stacked hidden
  states, flattened with the layer index fastest, then one `aggregate_embed` (no bias) shared by
  both connectors. The transformer applies its caption projections to the connector outputs.
- LTX-2.3 (V2, `caption_proj_before_connector`): per-token RMS normalisation, then separate video
  and audio `*_aggregate_embed` (with bias) straight to the transformer's inner widths.
Each connector moves the valid tokens to the front, fills the rest with 128 learnable registers,
and runs a few RoPE self-attention blocks with full attention; so the output mask is all ones.
"""

from __future__ import annotations  # noqa: I001  (ltx.backend must be imported before mlx)

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402

from ltx.model.rope import ladder  # noqa: E402
from ltx.weights.loader import CheckpointError, check_config_value, load_checkpoint, load_strict, read_config  # noqa: E402

NUM_REGISTERS = 128  # hard-coded in ltx-core's Embeddings1DConnector; the config key is not read there
ROPE_THETA = 10000.0  # Embeddings1DConnector default; the configurators do not pass it

# ltx_pipelines/utils/constants.py DEFAULT_NEGATIVE_PROMPT, byte-exact (sha256 3b57a0df...67379).
DEFAULT_NEGATIVE_PROMPT = (
    "blurry, out of focus, overexposed, underexposed, low contrast, washed out colors, excessive noise, grainy "
    "texture, poor lighting, flickering, motion blur, distorted proportions, unnatural skin tones, deformed facial "
    "features, asymmetrical face, missing facial features, extra limbs, disfigured hands, wrong hand count, "
    "artifacts around text, inconsistent perspective, camera shake, incorrect depth of field, background too sharp, "
    "background clutter, distracting reflections, harsh shadows, inconsistent lighting direction, color banding, "
    "cartoonish rendering, 3D CGI look, unrealistic materials, uncanny valley effect, incorrect ethnicity, wrong "
    "gender, exaggerated expressions, wrong gaze direction, mismatched lip sync, silent or muted audio, distorted "
    "voice, robotic voice, echo, background noise, off-sync audio, incorrect dialogue, added dialogue, repetitive "
    "speech, jittery movement, awkward pauses, incorrect timing, unnatural transitions, inconsistent framing, tilted "
    "camera, flat lighting, inconsistent tone, cinematic oversaturation, stylized filters, or AI artifacts."
)

# LTX-2.3 (V2) flags, exactly as ltx-core's encoder_configurator requires them.
_V2_FLAGS = {
    "caption_proj_before_connector": True,
    "caption_projection_first_linear": False,
    "caption_proj_input_norm": False,
    "caption_projection_second_linear": False,
}
# Checkpoint prefix -> module prefix (ltx-core EMBEDDINGS_PROCESSOR_KEY_OPS).
KEY_MAP = {
    "text_embedding_projection.": "feature_extractor.",
    "model.diffusion_model.video_embeddings_connector.": "video_connector.",
    "model.diffusion_model.audio_embeddings_connector.": "audio_connector.",
}


@dataclass
class TextConfig:
    """The `config["transformer"]` keys the text path reads, plus the Gemma sizes it needs."""

    connector_num_attention_heads: int = 30
    connector_attention_head_dim: int = 128
    connector_num_layers: int = 2
    audio_connector_num_attention_heads: int | None = None
    audio_connector_attention_head_dim: int | None = None
    audio_connector_num_layers: int | None = None
    connector_positional_embedding_max_pos: list[int] = field(default_factory=lambda: [1])
    connector_apply_gated_attention: bool = False
    connector_ff_bias: bool = True  # LTX-2.5: False, bias-free connector feed-forwards
    rope_type: str = "interleaved"
    frequencies_precision: str | None = None
    num_attention_heads: int | None = None
    attention_head_dim: int | None = None
    audio_num_attention_heads: int | None = None
    audio_attention_head_dim: int | None = None
    v2: bool = False
    gemma_hidden: int = 3840  # Gemma hidden size (hard-coded GEMMA3_CONFIG_FOR_LTX in ltx-core)
    gemma_states: int = 49  # Gemma layers + 1

    @classmethod
    def from_dict(
        cls, transformer: dict[str, Any], gemma_hidden: int = 3840, gemma_states: int = 49
    ) -> TextConfig:
        names = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in transformer.items() if k in names})
        cfg.gemma_hidden, cfg.gemma_states = gemma_hidden, gemma_states
        check_config_value(transformer, "connector_num_learnable_registers", NUM_REGISTERS, "transformer")
        if cfg.rope_type not in ("interleaved", "split"):
            raise CheckpointError(f"unsupported config value transformer.rope_type={cfg.rope_type!r}")
        present = transformer.keys() & _V2_FLAGS.keys()
        if present:
            missing = sorted(_V2_FLAGS.keys() - present)
            if missing:
                raise CheckpointError(f"partial LTX-2.3 text config: transformer.{missing[0]} is missing")
            for k in sorted(present):
                check_config_value(transformer, k, _V2_FLAGS[k], "transformer")
            dims = (
                "num_attention_heads",
                "attention_head_dim",
                "audio_num_attention_heads",
                "audio_attention_head_dim",
            )
            for k in dims:
                if transformer.get(k) is None:
                    raise CheckpointError(f"LTX-2.3 text config needs transformer.{k}")
            cfg.v2 = True
        return cfg

    def connector_dims(self, audio: bool) -> tuple[int, int, int]:
        """(heads, head_dim, layers) of the video or audio connector (audio falls back to video)."""
        heads, dim = self.connector_num_attention_heads, self.connector_attention_head_dim
        layers = self.connector_num_layers
        if audio:
            heads = self.audio_connector_num_attention_heads or heads
            dim = self.audio_connector_attention_head_dim or dim
            layers = self.audio_connector_num_layers or layers
        return heads, dim, layers


# ----------------------------------------------------------------------------------------------
# Feature extractors


def _norm_v1(states: mx.array, mask: mx.array) -> mx.array:
    # states (B, T, D, L), mask (B, T) -> (B, T, D*L): per sample and layer, 8 (x - mean) / (max - min)
    b, t, d, n = states.shape
    valid = (mask > 0)[:, :, None, None]
    lengths = mask.astype(mx.float32).sum(axis=1).reshape(b, 1, 1, 1)
    mean = mx.where(valid, states, 0).astype(mx.float32).sum(axis=(1, 2), keepdims=True) / (
        lengths * d + 1e-6
    )
    x_min = mx.where(valid, states, mx.inf).min(axis=(1, 2), keepdims=True)
    x_max = mx.where(valid, states, -mx.inf).max(axis=(1, 2), keepdims=True)
    normed = 8 * (states - mean) / (x_max - x_min + 1e-6)
    return mx.where(valid.reshape(b, t, 1), normed.reshape(b, t, d * n), 0)


def _norm_v2(states: mx.array, mask: mx.array) -> mx.array:
    # per token and layer RMS over the hidden dim; (B, T, D, L) -> (B, T, D*L)
    b, t, d, n = states.shape
    normed = states * mx.rsqrt(mx.mean(states * states, axis=2, keepdims=True) + 1e-6)
    return mx.where((mask > 0)[:, :, None], normed.reshape(b, t, d * n), 0)


class FeatureExtractorV1(nn.Module):
    def __init__(self, hidden: int, states: int):
        super().__init__()
        self.aggregate_embed = nn.Linear(hidden * states, hidden, bias=False)

    def __call__(self, hidden_states: list[mx.array], mask: mx.array) -> tuple[mx.array, mx.array]:
        stacked = mx.stack(hidden_states, axis=-1)  # (B, T, D, L)
        feats = self.aggregate_embed(_norm_v1(stacked, mask).astype(stacked.dtype))  # (B, T, D)
        return feats, feats


class FeatureExtractorV2(nn.Module):
    def __init__(self, hidden: int, states: int, video_dim: int, audio_dim: int):
        super().__init__()
        self.hidden = hidden
        self.video_aggregate_embed = nn.Linear(hidden * states, video_dim)
        self.audio_aggregate_embed = nn.Linear(hidden * states, audio_dim)

    def __call__(self, hidden_states: list[mx.array], mask: mx.array) -> tuple[mx.array, mx.array]:
        stacked = mx.stack(hidden_states, axis=-1)  # (B, T, D, L)
        normed = _norm_v2(stacked, mask).astype(stacked.dtype)
        out = []
        for embed in (self.video_aggregate_embed, self.audio_aggregate_embed):
            scale = math.sqrt(embed.weight.shape[0] / self.hidden)
            out.append(embed(normed * scale))  # (B, T, D_out)
        return out[0], out[1]


# ----------------------------------------------------------------------------------------------
# Embeddings connector


def connector_rope(
    length: int, dim: int, heads: int, max_pos: int, rope_type: str, float64: bool
) -> tuple[mx.array, mx.array]:
    """cos/sin for positions 0..length-1 (ltx-core precompute_freqs_cis with one position axis).

    split: (1, H, T, dim/H/2); interleaved: (1, T, dim).
    """
    grid = ladder(ROPE_THETA, 1, dim, float64)  # (dim // 2,) float32, as the reference builds it
    frac = np.arange(length, dtype=np.float32) / np.float32(max_pos)
    freqs = grid[None, :] * (frac * np.float32(2) - np.float32(1))[:, None]  # (T, n) float32
    cos, sin = np.cos(freqs), np.sin(freqs)
    if rope_type == "split":
        cos = cos.reshape(length, heads, -1).transpose(1, 0, 2)[None]
        sin = sin.reshape(length, heads, -1).transpose(1, 0, 2)[None]
    else:
        pad = dim % 2
        cos = np.concatenate([np.ones((length, pad), np.float32), np.repeat(cos, 2, axis=-1)], -1)[None]
        sin = np.concatenate([np.zeros((length, pad), np.float32), np.repeat(sin, 2, axis=-1)], -1)[None]
    return mx.array(cos), mx.array(sin)


def apply_rope(x: mx.array, cos: mx.array, sin: mx.array, rope_type: str, heads: int) -> mx.array:
    # x (B, T, H*Dh)
    b, t, _ = x.shape
    if rope_type == "interleaved":
        pairs = x.reshape(b, t, -1, 2)
        rot = mx.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(b, t, -1)
        return x * cos + rot * sin
    xh = x.reshape(b, t, heads, 2, -1).transpose(0, 2, 1, 3, 4)  # (B, H, T, 2, Dh/2)
    x1, x2 = xh[..., 0, :], xh[..., 1, :]
    out = mx.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-2)
    return out.transpose(0, 2, 1, 3, 4).reshape(b, t, -1)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, rope_type: str, gated: bool):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim, self.rope_type = heads, head_dim, rope_type
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        self.q_norm = nn.RMSNorm(inner, eps=1e-6)
        self.k_norm = nn.RMSNorm(inner, eps=1e-6)
        if gated:
            self.to_gate_logits = nn.Linear(dim, heads)
        self.to_out = [nn.Linear(inner, dim)]

    def __call__(self, x: mx.array, pe: tuple[mx.array, mx.array]) -> mx.array:
        b, t, _ = x.shape
        q = apply_rope(self.q_norm(self.to_q(x)), *pe, self.rope_type, self.heads)
        k = apply_rope(self.k_norm(self.to_k(x)), *pe, self.rope_type, self.heads)
        v = self.to_v(x)
        q, k, v = (a.reshape(b, t, self.heads, -1).transpose(0, 2, 1, 3) for a in (q, k, v))  # (B, H, T, Dh)
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.head_dim**-0.5)
        out = out.transpose(0, 2, 1, 3)  # (B, T, H, Dh)
        if "to_gate_logits" in self:
            out = out * (2 * mx.sigmoid(self.to_gate_logits(x)))[..., None]
        return self.to_out[0](out.reshape(b, t, -1))


class _GeluProj(nn.Module):
    def __init__(self, dim: int, inner: int, bias: bool = True):
        super().__init__()
        self.proj = nn.Linear(dim, inner, bias=bias)

    def __call__(self, x: mx.array) -> mx.array:
        return nn.gelu_approx(self.proj(x))


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4, bias: bool = True):
        super().__init__()
        self.net = [_GeluProj(dim, dim * mult, bias), nn.Identity(), nn.Linear(dim * mult, dim, bias=bias)]

    def __call__(self, x: mx.array) -> mx.array:
        for layer in self.net:
            x = layer(x)
        return x


def _rms(x: mx.array) -> mx.array:
    return mx.fast.rms_norm(x, None, 1e-6)


class ConnectorBlock(nn.Module):
    def __init__(
        self, dim: int, heads: int, head_dim: int, rope_type: str, gated: bool, ff_bias: bool = True
    ):
        super().__init__()
        self.attn1 = Attention(dim, heads, head_dim, rope_type, gated)
        self.ff = FeedForward(dim, bias=ff_bias)

    def __call__(self, x: mx.array, pe: tuple[mx.array, mx.array]) -> mx.array:
        x = x + self.attn1(_rms(x), pe)
        return x + self.ff(_rms(x))


class Connector(nn.Module):
    """ltx-core Embeddings1DConnector: registers for padding, RoPE self-attention blocks, final RMS norm."""

    def __init__(self, cfg: TextConfig, audio: bool):
        super().__init__()
        heads, head_dim, layers = cfg.connector_dims(audio)
        self.heads, self.dim = heads, heads * head_dim
        self.rope_type = cfg.rope_type
        self.float64 = cfg.frequencies_precision == "float64"
        self.max_pos = cfg.connector_positional_embedding_max_pos
        if len(self.max_pos) != 1:
            raise CheckpointError(
                f"transformer.connector_positional_embedding_max_pos={self.max_pos} must have one entry"
            )
        gated = cfg.connector_apply_gated_attention
        self.transformer_1d_blocks = [
            ConnectorBlock(self.dim, heads, head_dim, cfg.rope_type, gated, cfg.connector_ff_bias)
            for _ in range(layers)
        ]
        self.learnable_registers = mx.zeros((NUM_REGISTERS, self.dim))

    def replace_padding(self, x: mx.array, mask: mx.array) -> mx.array:
        # valid tokens move to the front in order; position i >= L gets register i mod 128
        b, t, d = x.shape
        if b != 1 or t % NUM_REGISTERS:
            raise ValueError(
                f"the connector needs batch 1 (got {b}) and a length divisible by {NUM_REGISTERS} (got {t})"
            )
        keep = np.nonzero(np.array(mask[0]) > 0)[0]
        regs = mx.tile(self.learnable_registers, (t // NUM_REGISTERS, 1))[len(keep) :].astype(x.dtype)
        if not len(keep):
            return regs[None]
        return mx.concatenate([x[:, mx.array(keep, mx.int32)], regs[None]], axis=1)  # (1, T, D)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        # x (1, T, D), mask (1, T) -> (1, T, D)
        x = self.replace_padding(x, mask)
        cos, sin = connector_rope(
            x.shape[1], self.dim, self.heads, self.max_pos[0], self.rope_type, self.float64
        )
        pe = (cos.astype(x.dtype), sin.astype(x.dtype))
        for block in self.transformer_1d_blocks:
            x = block(x, pe)
        return _rms(x)


@dataclass
class TextEncoding:
    """Connector outputs for one prompt: video (1, T, Dv), audio (1, T, Da); mask (1, T) is all ones."""

    video: mx.array
    audio: mx.array
    mask: mx.array


class EmbeddingsProcessor(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.config = cfg
        if cfg.v2:
            video_dim = cfg.num_attention_heads * cfg.attention_head_dim
            audio_dim = cfg.audio_num_attention_heads * cfg.audio_attention_head_dim
            self.feature_extractor = FeatureExtractorV2(
                cfg.gemma_hidden, cfg.gemma_states, video_dim, audio_dim
            )
        else:
            self.feature_extractor = FeatureExtractorV1(cfg.gemma_hidden, cfg.gemma_states)
        self.video_connector = Connector(cfg, audio=False)
        self.audio_connector = Connector(cfg, audio=True)

    def __call__(self, hidden_states: list[mx.array], mask: mx.array) -> TextEncoding:
        video, audio = self.feature_extractor(hidden_states, mask)
        video = self.video_connector(video, mask)
        audio = self.audio_connector(audio, mask)
        return TextEncoding(video, audio, mx.ones(mask.shape, mx.int32))

    @staticmethod
    def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """Keep and rename the text-path keys of an official single-file checkpoint."""
        out = {}
        for k, v in weights.items():
            for src, dst in KEY_MAP.items():
                if k.startswith(src):
                    out[dst + k[len(src) :]] = v
                    break
            else:
                if k.startswith(tuple(KEY_MAP.values())):  # already sanitized
                    out[k] = v
        return out


def load_embeddings_processor(
    checkpoint: str | Path | dict[str, mx.array],
    config: dict[str, Any] | None = None,
    gemma_hidden: int = 3840,
    gemma_states: int = 49,
    dtype: mx.Dtype | None = None,
) -> EmbeddingsProcessor:
    """The feature extractor and both connectors from an official LTX-2 / LTX-2.3 checkpoint."""
    if isinstance(checkpoint, dict):
        weights = checkpoint
        if config is None:
            raise ValueError("pass config (the checkpoint's metadata config) with a weights dict")
    else:
        weights, metadata = load_checkpoint(checkpoint)
        config = read_config(metadata, checkpoint) if config is None else config
    cfg = TextConfig.from_dict(config.get("transformer", {}), gemma_hidden, gemma_states)
    model = EmbeddingsProcessor(cfg)
    dtype = backend.default_dtype() if dtype is None else dtype
    load_strict(model, EmbeddingsProcessor.sanitize(weights), dtype=dtype, what="text embeddings processor")
    return model


class TextEncoder:
    """prompt -> TextEncoding: Gemma tokenizer and hidden states, then the embeddings processor."""

    def __init__(self, tokenizer: Any, gemma: nn.Module, processor: EmbeddingsProcessor):
        self.tokenizer, self.gemma, self.processor = tokenizer, gemma, processor

    def hidden_states(self, prompt: str) -> tuple[list[mx.array], mx.array, mx.array]:
        """(hidden states [(1, T, D)] * (layers + 1), input_ids (1, T), attention_mask (1, T))."""
        ids, mask = self.tokenizer(prompt)
        return self.gemma(ids, mask), ids, mask

    def encode(self, prompt: str) -> TextEncoding:
        states, _, mask = self.hidden_states(prompt)
        out = self.processor(states, mask)
        mx.eval(out.video, out.audio)
        return out

    def enhance_t2v(self, prompt: str, seed: int = 42, max_new_tokens: int = 512) -> str:
        """Prompt enhancement with the same Gemma: a Gemma 3 instruct model (LTX-2.0/2.3) only."""
        from ltx.text.enhance import PromptEnhancer

        return PromptEnhancer(self.gemma, self.tokenizer).enhance_t2v(prompt, seed, max_new_tokens)


# ----------------------------------------------------------------------------------------------
# Which Gemma a checkpoint needs (ltx-core 1.2.0 encoder_configurator._check_gemma_version)

GEMMA_SOURCE_REQUIRED_SINCE = (2, 4, 0)  # from here a checkpoint must name its Gemma
GEMMA3_TYPES = ("gemma3", "gemma3_text")


def parse_model_version(version: Any) -> tuple[int, ...]:
    """ "2.5.0" -> (2, 5, 0); parsing stops at the first part that is not an integer ("2.3.rc1" -> (2, 3))."""
    out = []
    for part in str(version or "").split("."):
        if not part.isdigit():
            break
        out.append(int(part))
    return tuple(out)


def _describe(gemma: dict[str, Any]) -> str:
    kind = gemma.get("model_type")
    name = (
        "a Gemma 3 folder"
        if kind in GEMMA3_TYPES
        else "a Gemma 4 folder"
        if kind == "gemma4_unified"
        else "a folder"
    )
    version = gemma.get("gemma_version")
    return f"{name} (model_type {kind!r}" + (
        f", gemma_version {version!r})" if version else ", no gemma_version)"
    )


def check_gemma(metadata: dict[str, str], gemma: dict[str, Any], gemma_dir: str | Path) -> None:
    """The Gemma folder (its config.json `gemma`) is the one the checkpoint (its safetensors metadata) needs."""
    source = metadata.get("gemma_source_checkpoint")
    version = metadata.get("model_version")
    if source is not None:
        try:
            source = json.loads(source) if isinstance(source, str) else source
        except json.JSONDecodeError:
            source = None
        if not isinstance(source, dict):
            raise CheckpointError("the checkpoint's gemma_source_checkpoint metadata is not a JSON object")
        expected = source.get("gemma_version")
        if expected != gemma.get("gemma_version"):
            raise CheckpointError(
                f"the LTX-{version or '?'} checkpoint needs the Gemma with gemma_version {expected!r}, but "
                f"{gemma_dir} is {_describe(gemma)}; pass --gemma-root with the checkpoint's Gemma"
                + (" (the LTX-tuned Gemma 4 folder)" if gemma.get("model_type") != "gemma4_unified" else "")
            )
        return
    if parse_model_version(version) >= GEMMA_SOURCE_REQUIRED_SINCE:
        if gemma.get("gemma_version") is None:
            return  # the reference warns and goes on
        raise CheckpointError(
            f"the checkpoint's model_version {version} needs gemma_source_checkpoint.gemma_version in its "
            "metadata and has none; is the file complete?"
        )
    if gemma.get("model_type") not in GEMMA3_TYPES:
        raise CheckpointError(
            f"the LTX-{version or '2.0'} checkpoint needs a Gemma 3 folder, but {gemma_dir} is {_describe(gemma)}; "
            "pass --gemma-root with the Gemma 3 folder (google/gemma-3-12b-it-qat-q4_0-unquantized)"
        )


def load_gemma_model(gemma_dir: str | Path, dtype: mx.Dtype | None = None) -> tuple[nn.Module, Any]:
    """(language model, tokenizer) of a Gemma folder: Gemma 3, or LTX-2.5's Gemma 4 (gemma4_unified; also
    the release's packed text-encoder file)."""
    from ltx.text.gemma import gemma_folder_config

    kind = gemma_folder_config(gemma_dir).get("model_type")
    if kind == "gemma4_unified":
        from ltx.text.gemma4 import Gemma4Tokenizer, load_gemma4

        return load_gemma4(gemma_dir, dtype), Gemma4Tokenizer(gemma_dir)
    from ltx.text.gemma import GemmaTokenizer, load_gemma

    if Path(gemma_dir).is_file():
        raise CheckpointError(
            f"{gemma_dir} is a packed text encoder of model_type {kind!r}; only LTX-2.5's Gemma 4 is read "
            "packed: pass the Gemma 3 folder"
        )
    return load_gemma(gemma_dir, dtype), GemmaTokenizer(gemma_dir)


def load_text_encoder(
    checkpoint: str | Path, gemma_dir: str | Path, dtype: mx.Dtype | None = None
) -> TextEncoder:
    """The whole text path from an official checkpoint and its Gemma folder (checked to be the one it needs).

    `gemma_dir` may be LTX-2.5's packed text-encoder file: its text projection then replaces any in the
    checkpoint (the release's transformer file holds only the connectors)."""
    from ltx.text.gemma import gemma_folder_config

    weights, metadata = load_checkpoint(checkpoint)
    if Path(gemma_dir).is_file():
        packed, _ = load_checkpoint(gemma_dir)
        weights = {
            **weights,
            **{k: v for k, v in packed.items() if k.startswith("text_embedding_projection.")},
        }
    if not any(k.startswith("text_embedding_projection.") for k in weights):
        raise CheckpointError(
            f"{checkpoint} holds no text projection (text_embedding_projection.*) and {gemma_dir} is a folder; "
            "LTX-2.5 ships it in the packed text-encoder file (text_encoders/gemma4-*.safetensors): pass that "
            "file as --gemma-root"
        )
    check_gemma(metadata, gemma_folder_config(gemma_dir), gemma_dir)
    gemma, tokenizer = load_gemma_model(gemma_dir, dtype)
    c = gemma.config
    config = read_config(metadata, checkpoint)
    processor = load_embeddings_processor(weights, config, c.hidden_size, c.num_hidden_layers + 1, dtype)
    return TextEncoder(tokenizer, gemma, processor)
