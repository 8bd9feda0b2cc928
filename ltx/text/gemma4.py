"""Gemma 4 ("gemma4_unified") text model for LTX-2.5 prompt encoding: all hidden states, with a left-padding mask.

LTX-2.5's text encoder is an LTX-tuned Gemma 4 12B. Its structure comes from the Gemma folder's own
config.json (ltx-core 1.2.0's `gemma_model_config()`): sliding and full attention layers in the order of
`layer_types`, each kind with its own head width (`head_dim`, `global_head_dim`) and KV heads
(`num_key_value_heads`, `num_global_key_value_heads`), keys reused as values on full layers
(`attention_k_eq_v`), partial "proportional" RoPE on full layers, and a learned scalar per layer.
The decoder layers are mlx-vlm's Gemma 4 layers (`mlx_vlm.models.gemma4.language`, which mlx-vlm's
`gemma4_unified` model uses); this module adds what LTX needs, as ltx/text/gemma.py does for Gemma 3:
the padding mask combined with the causal and sliding-window masks, placeholder tokens (image, video,
audio) embedded as padding as transformers does, the embedding scale cast like transformers, and the
hidden states in transformers' convention:
    [scaled embeddings, output of layer 0, ..., output of layer n-2, final_norm(output of layer n-1)]
The vision and audio embedders are not used for text and are not loaded.

The tokenizer follows ltx-core 1.2.0's LTXGemmaTokenizer: the folder's tokenizer.json as it is, a leading
BOS (Gemma 4's tokenizer adds none), truncation to 1024 tokens, left padding.

Besides an HF folder, the release's packed text-encoder file is read (text_encoders/gemma4-12b-with-proj-
ltx-2.5-bf16.safetensors, written by ltx-core's `build_text_encoder_tensors_from_gemma_root`): the HF config
in its `gemma_config` metadata, the language model in ComfyUI's flat keys (`model.layers.*`), the
tokenizer.json and the sidecar files (tokenizer_config.json, chat_template.jinja, ...) as uint8 tensors
`tokenizer_json` and `hf_asset__<name>`, and the text projection (`text_embedding_projection.*`).
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
from mlx_vlm.models.gemma4.language import DecoderLayer  # noqa: E402
from mlx_vlm.models.gemma4_unified.config import TextConfig as _VlmTextConfig  # noqa: E402

from ltx.text.gemma import MAX_LENGTH, attention_masks, gemma_folder_config, gemma_weight_files  # noqa: E402
from ltx.weights.loader import CheckpointError, check_config_value, load_strict  # noqa: E402

MODEL_TYPE = "gemma4_unified"
# The language model's keys: HF layout (`model.language_model.`) or ComfyUI's flat one (`model.`).
_LM_PREFIXES = ("model.language_model.", "model.")
# Parts of a Gemma 4 checkpoint that text encoding does not use (both layouts).
_IGNORED_PREFIXES = (
    "model.vision_embedder.",
    "model.embed_vision.",
    "model.embed_audio.",
    "vision_model.",
    "multi_modal_projector.",
    "audio_projector.",
    "lm_head.",
    "text_embedding_projection.",  # a packed file's text projection: the embeddings processor's
    "hf_asset__",  # a packed file's tokenizer and sidecar files
    "tokenizer_json",
)
PACKED_TOKENIZER = "tokenizer_json"
PACKED_ASSET = "hf_asset__"
# ltx-core 1.2.0 builds the tokenizer from tokenizer_config.json minus these (gemma_assets.py).
_TOKENIZER_CONFIG_SKIP = frozenset(
    {
        "tokenizer_class",
        "auto_map",
        "model_max_length",
        "backend",
        "is_local",
        "local_files_only",
        "processor_class",
        "added_tokens_decoder",
    }
)


def _default_rope() -> dict[str, dict[str, Any]]:  # Gemma4UnifiedTextConfig's defaults
    return {
        "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        "full_attention": {
            "rope_type": "proportional",
            "partial_rotary_factor": 0.25,
            "rope_theta": 1_000_000.0,
        },
    }


@dataclass
class Gemma4Config:
    """The text config of a gemma4_unified config.json; defaults as transformers' Gemma4UnifiedTextConfig."""

    hidden_size: int = 2304
    num_hidden_layers: int = 30
    intermediate_size: int = 9216
    num_attention_heads: int = 8
    num_key_value_heads: int = 4
    num_global_key_value_heads: int | None = None
    head_dim: int = 256
    global_head_dim: int = 512
    vocab_size: int = 262_144
    rms_norm_eps: float = 1e-6
    sliding_window: int = 1024
    layer_types: list[str] | None = None
    rope_parameters: dict[str, dict[str, Any]] = field(default_factory=_default_rope)
    attention_k_eq_v: bool = False
    max_position_embeddings: int = 262_144
    pad_token_id: int = 0
    final_logit_softcapping: float | None = None
    # top-level config.json entries
    placeholder_token_ids: tuple[int, ...] = ()  # image, video and audio soft-token placeholders
    gemma_version: str | None = None

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> Gemma4Config:
        if config.get("model_type") != MODEL_TYPE:
            raise CheckpointError(
                f"Gemma config model_type={config.get('model_type')!r} is not {MODEL_TYPE!r} (LTX-2.5's Gemma 4)"
            )
        text = config.get("text_config") or {}
        names = {f.name for f in fields(cls)} - {"placeholder_token_ids", "gemma_version"}
        cfg = cls(**{k: v for k, v in text.items() if k in names})
        if cfg.rope_parameters is None:
            cfg.rope_parameters = _default_rope()
        for key, expected in (
            ("hidden_activation", "gelu_pytorch_tanh"),
            ("attention_bias", False),
            ("num_kv_shared_layers", 0),
            ("hidden_size_per_layer_input", 0),
            ("enable_moe_block", False),
        ):
            check_config_value(text, key, expected, "gemma.text_config")
        if text.get("use_bidirectional_attention", "vision") not in ("vision", None):
            raise CheckpointError(
                "unsupported config value gemma.text_config.use_bidirectional_attention="
                f"{text['use_bidirectional_attention']!r}; supported: 'vision' (causal text attention), null"
            )
        if cfg.layer_types is None:  # transformers' default: 5 sliding layers, then a full one
            cfg.layer_types = [
                "sliding_attention" if (i + 1) % 6 else "full_attention" for i in range(cfg.num_hidden_layers)
            ]
        cfg.layer_types = list(cfg.layer_types)
        if len(cfg.layer_types) != cfg.num_hidden_layers or set(cfg.layer_types) - {
            "sliding_attention",
            "full_attention",
        }:
            raise CheckpointError(
                f"gemma.text_config.layer_types {cfg.layer_types} must name sliding_attention or full_attention "
                f"for each of the {cfg.num_hidden_layers} layers"
            )
        cfg.layer_types[-1] = "full_attention"  # transformers forces it too
        cfg._check_rope()
        if cfg.attention_k_eq_v and cfg.num_global_key_value_heads is None:
            raise CheckpointError("gemma.text_config.attention_k_eq_v needs num_global_key_value_heads")
        cfg.placeholder_token_ids = tuple(
            int(config[k])
            for k in ("image_token_id", "video_token_id", "audio_token_id")
            if config.get(k) is not None
        )
        cfg.gemma_version = config.get("gemma_version")
        return cfg

    def _check_rope(self) -> None:
        want = {"sliding_attention": "default", "full_attention": "proportional"}
        for kind in set(self.layer_types):
            params = self.rope_parameters.get(kind)
            got = (params or {}).get("rope_type")
            # full layers may use plain RoPE when they are as wide as the sliding ones
            ok = got == want[kind] or (got == "default" and self.global_head_dim in (None, 0, self.head_dim))
            if not ok:
                raise CheckpointError(
                    f"unsupported config value gemma.text_config.rope_parameters.{kind}.rope_type={got!r}; "
                    f"supported: {want[kind]!r}"
                )

    def to_vlm(self) -> _VlmTextConfig:
        return _VlmTextConfig(
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            intermediate_size=self.intermediate_size,
            num_attention_heads=self.num_attention_heads,
            head_dim=self.head_dim,
            global_head_dim=self.global_head_dim,
            rms_norm_eps=self.rms_norm_eps,
            vocab_size=self.vocab_size,
            vocab_size_per_layer_input=self.vocab_size,
            num_key_value_heads=self.num_key_value_heads,
            num_global_key_value_heads=self.num_global_key_value_heads,
            num_kv_shared_layers=0,
            hidden_size_per_layer_input=0,
            sliding_window=self.sliding_window,
            attention_k_eq_v=self.attention_k_eq_v,
            use_double_wide_mlp=False,
            rope_parameters=self.rope_parameters,
            layer_types=self.layer_types,
            max_position_embeddings=self.max_position_embeddings,
            final_logit_softcapping=self.final_logit_softcapping,
        )


class Gemma4TextModel(nn.Module):
    """The Gemma 4 language model returning every hidden state (encoding only: LTX-2.5 enhances with another Gemma)."""

    def __init__(self, config: Gemma4Config):
        super().__init__()
        self.config = config
        vlm = config.to_vlm()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = [DecoderLayer(vlm, i) for i in range(config.num_hidden_layers)]
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)  # Gemma 4: weight as is, no 1 + w

    def _embed(self, input_ids: mx.array) -> mx.array:
        if self.config.placeholder_token_ids:  # transformers embeds multimodal placeholders as padding
            placeholder = mx.zeros(input_ids.shape, mx.bool_)
            for t in self.config.placeholder_token_ids:
                placeholder = placeholder | (input_ids == t)
            input_ids = mx.where(placeholder, self.config.pad_token_id, input_ids)
        w = self.embed_tokens.weight
        scale = mx.array(math.sqrt(self.config.hidden_size), mx.float32).astype(w.dtype)
        return self.embed_tokens(input_ids) * scale

    def __call__(self, input_ids: mx.array, attention_mask: mx.array) -> list[mx.array]:
        # input_ids, attention_mask: (B, T)
        h = self._embed(input_ids)
        global_mask, sliding_mask = attention_masks(attention_mask, self.config.sliding_window, h.dtype)
        states = [h]  # (B, T, D) each
        for layer in self.layers:
            h, _, _ = layer(h, sliding_mask if layer.self_attn.is_sliding else global_mask, None)
            states.append(h)
        states[-1] = self.norm(h)
        return states

    @staticmethod
    def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """HF or ComfyUI Gemma 4 keys -> this module's keys; vision/audio embedders and the LM head dropped."""
        out = {}
        for k, v in weights.items():
            if k.startswith(_IGNORED_PREFIXES) or "rotary_emb" in k:
                continue
            for p in _LM_PREFIXES:
                if k.startswith(p):
                    k = k[len(p) :]
                    break
            out[k] = v
        return out


def _tokenizer_files(path: Path) -> tuple[str, dict[str, str]]:
    """(tokenizer.json, {sidecar name: text}) of a Gemma 4 folder or a packed text-encoder file."""
    if path.is_file():
        weights, metadata = mx.load(str(path), return_metadata=True)
        if PACKED_TOKENIZER not in weights:
            raise CheckpointError(f"the packed text encoder {path} has no '{PACKED_TOKENIZER}' tensor")
        as_text = lambda a: bytes(memoryview(np.array(a, dtype=np.uint8))).decode()  # noqa: E731
        side = {k[len(PACKED_ASSET) :]: as_text(v) for k, v in weights.items() if k.startswith(PACKED_ASSET)}
        for name in ("tokenizer_config.json", "chat_template.jinja"):  # older packs: metadata strings
            if name not in side and name in metadata:
                side[name] = metadata[name]
        return as_text(weights[PACKED_TOKENIZER]), side
    tok_file = path / "tokenizer.json"
    if not tok_file.is_file():
        raise CheckpointError(f"the Gemma 4 directory {path} has no tokenizer.json")
    names = ("tokenizer_config.json", "chat_template.jinja")
    return tok_file.read_text(), {n: (path / n).read_text() for n in names if (path / n).is_file()}


class Gemma4Tokenizer:
    """ltx-core 1.2.0's LTXGemmaTokenizer: strip, truncate, a leading BOS, left padding to `max_length`."""

    def __init__(self, path: str | Path, max_length: int = MAX_LENGTH):
        from tokenizers import Tokenizer
        from transformers import PreTrainedTokenizerFast

        path = Path(path)
        tokenizer_json, side = _tokenizer_files(path)
        cfg = json.loads(side.get("tokenizer_config.json", "{}"))
        kwargs = {k: v for k, v in cfg.items() if k not in _TOKENIZER_CONFIG_SKIP}
        if "chat_template.jinja" in side:
            kwargs.setdefault("chat_template", side["chat_template.jinja"])
        self.tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer.from_str(tokenizer_json), model_max_length=max_length, **kwargs
        )
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.tokenizer.bos_token_id is None:
            raise CheckpointError(f"the Gemma 4 tokenizer in {path} has no BOS token; encoding needs one")
        self.max_length = max_length

    def __call__(self, text: str) -> tuple[mx.array, mx.array]:
        """(input_ids, attention_mask), both (1, max_length) int32."""
        n = self.max_length
        ids = self.tokenizer(text.strip(), padding=False, truncation=True, max_length=n)["input_ids"]
        bos = self.tokenizer.bos_token_id
        if not ids or ids[0] != bos:
            ids = [bos, *ids][:n]
        pad = n - len(ids)
        input_ids = mx.array([[self.tokenizer.pad_token_id] * pad + ids], dtype=mx.int32)
        mask = mx.array([[0] * pad + [1] * len(ids)], dtype=mx.int32)
        return input_ids, mask


def load_gemma4(path: str | Path, dtype: mx.Dtype | None = None) -> Gemma4TextModel:
    """The Gemma 4 language model of an HF gemma4_unified directory (config.json + model*.safetensors) or of
    a packed text-encoder file."""
    path = Path(path)
    config = Gemma4Config.from_dict(gemma_folder_config(path))
    weights: dict[str, mx.array] = {}
    for f in [path] if path.is_file() else gemma_weight_files(path):
        weights.update(mx.load(str(f)))
    model = Gemma4TextModel(config)
    dtype = backend.default_dtype() if dtype is None else dtype
    load_strict(model, Gemma4TextModel.sanitize(weights), dtype=dtype, what=f"Gemma 4 ({path})")
    return model
