"""Gemma 3 text model for LTX-2 prompt encoding: all hidden states, with a left-padding mask.

The transformer blocks are mlx-vlm's Gemma 3 blocks (`mlx_vlm.models.gemma3.language`); this module
adds what LTX needs and mlx-vlm does not do: the padding attention mask combined with the causal and
sliding-window masks, the embedding scale cast like HF transformers 4.57, and the HF convention for
the returned hidden states (ltx-core's `GemmaTextEncoder.encode` with `output_hidden_states=True`):
    [scaled embeddings, output of layer 0, ..., output of layer n-2, final_norm(output of layer n-1)]
Positions are 0..T-1 whatever the padding (the reference does not compensate for left padding).
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
from mlx_vlm.models.base import create_attention_mask  # noqa: E402
from mlx_vlm.models.cache import KVCache, RotatingKVCache  # noqa: E402
from mlx_vlm.models.gemma3.config import TextConfig as _VlmTextConfig  # noqa: E402
from mlx_vlm.models.gemma3.language import RMSNorm, TransformerBlock  # noqa: E402

from ltx.weights.loader import CheckpointError, check_config_value, load_strict  # noqa: E402

MAX_LENGTH = 1024  # ltx-core's LTXVGemmaTokenizer(tokenizer_root, 1024)

# Checkpoint prefixes of the language model, by the layout that wrote them.
_LM_PREFIXES = ("language_model.model.", "model.language_model.", "model.")
# Parts of a Gemma 3 checkpoint that text encoding does not use.
_IGNORED_PREFIXES = (
    "vision_tower.",
    "multi_modal_projector.",
    "model.vision_tower.",
    "model.multi_modal_projector.",
    "lm_head.",
    "language_model.lm_head.",
)


@dataclass
class GemmaConfig:
    hidden_size: int = 3840
    num_hidden_layers: int = 48
    intermediate_size: int = 15360
    num_attention_heads: int = 16
    num_key_value_heads: int = 8
    head_dim: int = 256
    vocab_size: int = 262208
    rms_norm_eps: float = 1e-6
    query_pre_attn_scalar: float = 256
    sliding_window: int = 1024
    sliding_window_pattern: int = 6
    rope_theta: float = 1_000_000.0
    rope_local_base_freq: float = 10_000.0
    rope_scaling: dict | None = field(default_factory=lambda: {"rope_type": "linear", "factor": 8.0})
    max_position_embeddings: int = 131072
    hidden_activation: str = "gelu_pytorch_tanh"
    attn_logit_softcapping: float | None = None
    layer_types: list[str] | None = None

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> GemmaConfig:
        """From an HF config.json: a Gemma 3 multimodal config (its `text_config`) or a text-only one."""
        text = config.get("text_config", config)
        names = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in text.items() if k in names})
        check_config_value(text, "hidden_activation", "gelu_pytorch_tanh", "gemma")
        check_config_value(text, "attn_logit_softcapping", None, "gemma")
        check_config_value(text, "attention_bias", False, "gemma")
        scaling = cfg.rope_scaling or {"rope_type": "default"}
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind not in ("linear", "default"):
            raise CheckpointError(
                f"unsupported config value gemma.rope_scaling.rope_type={kind!r}; supported: 'linear', 'default'"
            )
        if cfg.layer_types is not None and cfg.layer_types != cfg.pattern_layer_types():
            raise CheckpointError(
                f"gemma.layer_types {cfg.layer_types} is not the periodic pattern of sliding_window_pattern="
                f"{cfg.sliding_window_pattern}; only periodic patterns are supported"
            )
        return cfg

    def pattern_layer_types(self) -> list[str]:
        p = self.sliding_window_pattern
        return [
            "sliding_attention" if (i + 1) % p else "full_attention" for i in range(self.num_hidden_layers)
        ]

    def to_vlm(self) -> _VlmTextConfig:
        scaling = (
            self.rope_scaling if (self.rope_scaling or {}).get("rope_type", "default") != "default" else None
        )
        return _VlmTextConfig(
            model_type="gemma3_text",
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            intermediate_size=self.intermediate_size,
            num_attention_heads=self.num_attention_heads,
            head_dim=self.head_dim,
            rms_norm_eps=self.rms_norm_eps,
            vocab_size=self.vocab_size,
            num_key_value_heads=self.num_key_value_heads,
            rope_global_base_freq=self.rope_theta,
            rope_local_base_freq=self.rope_local_base_freq,
            rope_traditional=False,
            query_pre_attn_scalar=self.query_pre_attn_scalar,
            sliding_window=self.sliding_window,
            rope_scaling=scaling,
            sliding_window_pattern=self.sliding_window_pattern,
            max_position_embeddings=self.max_position_embeddings,
        )


def attention_masks(mask: mx.array, window: int, dtype: mx.Dtype) -> tuple[mx.array, mx.array]:
    """Additive (global, sliding) masks (B, 1, T, T) from a (B, T) 0/1 padding mask.

    A masked entry holds the dtype's most negative value, as HF does, so that the fully masked rows
    of padding queries stay finite (their values are never used downstream).
    """
    t = mask.shape[-1]
    q = mx.arange(t)[:, None]
    k = mx.arange(t)[None, :]
    keep = (k <= q)[None, None] & (mask[:, None, None, :] > 0)  # (B, 1, T, T)
    sliding = keep & ((q - k) < window)[None, None]
    neg = mx.array(mx.finfo(dtype).min, dtype)
    zero = mx.array(0, dtype)
    return mx.where(keep, zero, neg), mx.where(sliding, zero, neg)


class GemmaTextModel(nn.Module):
    """Gemma 3 language model returning every hidden state; `logits` (LM head tied) for enhancement."""

    def __init__(self, config: GemmaConfig):
        super().__init__()
        self.config = config
        vlm = config.to_vlm()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = [TransformerBlock(vlm, i) for i in range(config.num_hidden_layers)]
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.eos_token_ids: tuple[int, ...] = (1, 106)  # GEMMA3_CONFIG_FOR_LTX; load_gemma reads config.json

    def _embed(self, input_ids: mx.array) -> mx.array:
        # HF scales by sqrt(hidden) cast to the weight dtype (62.0 in bf16 for the 12B)
        w = self.embed_tokens.weight
        return self.embed_tokens(input_ids) * mx.array(math.sqrt(self.config.hidden_size), mx.float32).astype(
            w.dtype
        )

    def __call__(self, input_ids: mx.array, attention_mask: mx.array) -> list[mx.array]:
        # input_ids, attention_mask: (B, T)
        h = self._embed(input_ids)
        global_mask, sliding_mask = attention_masks(attention_mask, self.config.sliding_window, h.dtype)
        states = [h]  # (B, T, D) each
        for layer in self.layers:
            h = layer(h, sliding_mask if layer.self_attn.is_sliding else global_mask, None)
            states.append(h)
        states[-1] = self.norm(h)
        return states

    def make_cache(self) -> list:
        """KV caches for `logits`: a rotating window cache for sliding layers, a full one for global layers."""
        window = self.config.sliding_window
        return [
            RotatingKVCache(max_size=window, keep=0) if layer.self_attn.is_sliding else KVCache()
            for layer in self.layers
        ]

    def logits(self, input_ids: mx.array, cache: list) -> mx.array:
        """Next-token logits (B, L, V) for generation (causal, no padding), LM head tied to the embeddings."""
        h = self._embed(input_ids)
        sliding = [layer.self_attn.is_sliding for layer in self.layers]
        window = self.config.sliding_window
        masks = {
            kind: create_attention_mask(h, cache[sliding.index(kind)], window_size=window if kind else None)
            for kind in set(sliding)
        }
        for layer, c, kind in zip(self.layers, cache, sliding, strict=True):
            h = layer(h, masks[kind], c)
        return self.embed_tokens.as_linear(self.norm(h))

    @staticmethod
    def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """HF Gemma 3 checkpoint keys -> this module's keys; vision tower, projector and LM head dropped."""
        out = {}
        for k, v in weights.items():
            if k.startswith(_IGNORED_PREFIXES) or k.endswith("rotary_emb.inv_freq"):
                continue
            for p in _LM_PREFIXES:
                if k.startswith(p):
                    k = k[len(p) :]
                    break
            out[k] = v
        return out


class GemmaTokenizer:
    """ltx-core's LTXVGemmaTokenizer: strip, left padding to `max_length`, truncation, pad = eos if missing."""

    def __init__(self, path: str | Path, max_length: int = MAX_LENGTH):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(
            str(path), local_files_only=True, model_max_length=max_length
        )
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.max_length = max_length

    def __call__(self, text: str) -> tuple[mx.array, mx.array]:
        """(input_ids, attention_mask), both (1, max_length) int32."""
        enc = self.tokenizer(text.strip(), padding="max_length", max_length=self.max_length, truncation=True)
        ids = mx.array([enc["input_ids"]], dtype=mx.int32)
        mask = mx.array([enc["attention_mask"]], dtype=mx.int32)
        return ids, mask


def _eos_ids(config: dict[str, Any]) -> tuple[int, ...]:
    eos = config.get("eos_token_id", config.get("text_config", {}).get("eos_token_id", [1, 106]))
    return (eos,) if isinstance(eos, int) else tuple(eos)


def gemma_weight_files(path: str | Path) -> list[Path]:
    path = Path(path)
    files = sorted(path.glob("model*.safetensors"))
    if not files:
        raise CheckpointError(f"no model*.safetensors in the Gemma directory {path}")
    return files


PACKED_CONFIG_KEY = (
    "gemma_config"  # a packed text-encoder file's HF config.json (ltx-core 1.2.0 gemma_assets)
)


def gemma_folder_config(gemma_dir: str | Path) -> dict[str, Any]:
    """A Gemma folder's config.json, or a packed text-encoder file's (its `gemma_config` metadata)."""
    path = Path(gemma_dir)
    if path.is_file():
        from ltx.weights.header import read_header

        _, metadata = read_header(path)
        if PACKED_CONFIG_KEY not in metadata:
            raise CheckpointError(
                f"{path} has no '{PACKED_CONFIG_KEY}' metadata; is it a packed LTX text-encoder file? "
                "(else pass the Gemma folder)"
            )
        text, where = metadata[PACKED_CONFIG_KEY], f"{path}: '{PACKED_CONFIG_KEY}' metadata"
    else:
        if not (path / "config.json").is_file():
            raise CheckpointError(f"the Gemma directory {gemma_dir} has no config.json")
        text, where = (path / "config.json").read_text(), str(path / "config.json")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{where} is not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{where} is not a JSON object")
    return config


def load_gemma(path: str | Path, dtype: mx.Dtype | None = None) -> GemmaTextModel:
    """The Gemma 3 language model of an HF Gemma 3 directory (config.json + model*.safetensors)."""
    path = Path(path)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"the Gemma directory {path} has no config.json")
    raw = json.loads(config_path.read_text())
    config = GemmaConfig.from_dict(raw)
    weights: dict[str, mx.array] = {}
    for f in gemma_weight_files(path):
        weights.update(mx.load(str(f)))
    model = GemmaTextModel(config)
    model.eos_token_ids = _eos_ids(raw)
    dtype = backend.default_dtype() if dtype is None else dtype
    load_strict(model, GemmaTextModel.sanitize(weights), dtype=dtype, what=f"Gemma ({path})")
    return model
