"""Golden module: the text path (tokenizer, Gemma 3 hidden states, feature extractor, connectors).

Runs in the reference environment (see make_goldens.py). The tiny Gemma directory is
`<model>/gemma/`: config.json, tokenizer and preprocessor files are committed under
ltx/assets/tiny/gemma/ (static), the weights are synthesised from the HF key names listed here.
ltx-core builds Gemma from the hard-coded GEMMA3_CONFIG_FOR_LTX; `_shrink_gemma_config` rewrites
that object in place from the tiny config.json before anything builds a Gemma model or a feature
extractor, so the official configurators (GemmaTextEncoderConfigurator,
EmbeddingsProcessorConfigurator) run unchanged through ModelLedger. The text length stays the
reference's hard-coded 1024 (tiny Gemma over 1024 tokens is cheap).

`python tests/reference/golden_text.py --tokenizer` rebuilds the committed tiny tokenizer.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
GEMMA_ASSETS = ROOT / "ltx" / "assets" / "tiny" / "gemma"
STATIC = (
    "config.json",
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "preprocessor_config.json",
)
PROMPT = (
    '  A woman in a blue coat walks along a rainy street at night; she says "Let\'s go home" while '
    "a piano plays softly and the camera slowly pans to the right.  "
)

# config.transformer keys read by the text path (the transformer golden writes the same values).
CONNECTOR = {
    "caption_channels": 32,
    "connector_num_attention_heads": 2,
    "connector_attention_head_dim": 16,
    "connector_num_layers": 2,
    "connector_positional_embedding_max_pos": [4096],
    "connector_num_learnable_registers": 128,
    "rope_type": "split",
    "frequencies_precision": "float64",
}
# LTX-2.3: feature extractor V2 projects straight to the transformer's inner widths, so the
# connectors run at those widths: video 2 x 8 = 16, audio 2 x 4 = 8 (the tiny transformer's dims).
V2 = {
    "caption_proj_before_connector": True,
    "caption_projection_first_linear": False,
    "caption_proj_input_norm": False,
    "caption_projection_second_linear": False,
    "connector_apply_gated_attention": True,
    "num_attention_heads": 2,
    "attention_head_dim": 8,
    "audio_num_attention_heads": 2,
    "audio_attention_head_dim": 4,
    "connector_num_attention_heads": 2,
    "connector_attention_head_dim": 8,
    "audio_connector_num_attention_heads": 2,
    "audio_connector_attention_head_dim": 4,
}


# Gemma 3's chat template (system turn folded into the first user turn), for the tiny tokenizer.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- else -%}{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{%- endif -%}"
    "{%- if (message['role'] == 'assistant') -%}{%- set role = 'model' -%}{%- else -%}"
    "{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- elif message['content'] is iterable -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}{%- endfor -%}"
    "{%- else -%}{{ raise_exception('Invalid content type') }}{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)
ENHANCE_PROMPT = "a cat plays piano"
GREEDY_TOKENS = 12


def transformer_config(variant: str) -> dict:
    cfg = dict(CONNECTOR)
    if variant == "2.3":
        cfg.update(V2)
    return cfg


def _shrink_gemma_config() -> dict:
    """Rewrite ltx-core's GEMMA3_CONFIG_FOR_LTX in place from the tiny config.json."""
    from ltx_core.text_encoders.gemma.config import GEMMA3_CONFIG_FOR_LTX as g
    from ltx_core.text_encoders.gemma.config import Gemma3RopeScaling

    cfg = json.loads((GEMMA_ASSETS / "config.json").read_text())
    for section, target in (("text_config", g.text_config), ("vision_config", g.vision_config)):
        for k, v in cfg[section].items():
            if hasattr(target, k):
                setattr(target, k, Gemma3RopeScaling(**v) if k == "rope_scaling" else v)
    for k in (
        "boi_token_index",
        "eoi_token_index",
        "eos_token_id",
        "image_token_index",
        "mm_tokens_per_image",
    ):
        setattr(g, k, cfg[k])
    return cfg


def _gemma_tensors() -> dict[str, list[int]]:
    """HF checkpoint key names (the layout GEMMA_LLM_KEY_OPS reads) and shapes of the tiny Gemma 3."""
    import torch
    from ltx_core.text_encoders.gemma.config import GEMMA3_CONFIG_FOR_LTX
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    _shrink_gemma_config()
    with torch.device("meta"):
        model = Gemma3ForConditionalGeneration(Gemma3Config.from_dict(GEMMA3_CONFIG_FOR_LTX.to_dict()))
    out = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight":
            continue  # tied to embed_tokens; the reference duplicates it
        for src, dst in (
            ("model.language_model.", "language_model.model."),
            ("model.vision_tower.", "vision_tower."),
            ("model.multi_modal_projector.", "multi_modal_projector."),
        ):
            if k.startswith(src):
                out[dst + k[len(src) :]] = list(v.shape)
                break
        else:
            raise KeyError(f"unexpected Gemma key {k}")
    return out


def _processor_tensors(variant: str) -> dict[str, list[int]]:
    """Checkpoint key names and shapes of the embeddings processor (feature extractor + connectors)."""
    from ltx_core.text_encoders.gemma import EmbeddingsProcessorConfigurator

    _shrink_gemma_config()
    proc = EmbeddingsProcessorConfigurator.from_config({"transformer": transformer_config(variant)})
    back = {
        "feature_extractor.": "text_embedding_projection.",
        "video_connector.": "model.diffusion_model.video_embeddings_connector.",
        "audio_connector.": "model.diffusion_model.audio_embeddings_connector.",
    }
    out = {}
    for k, v in proc.state_dict().items():
        prefix = next(p for p in back if k.startswith(p))
        out[back[prefix] + k[len(prefix) :]] = list(v.shape)
    return out


def contribute(variant: str) -> dict:
    return {
        "model.safetensors": {
            "metadata": {"config": {"transformer": transformer_config(variant)}},
            "tensors": _processor_tensors(variant),
            "dtype": "BF16",
        },
        "gemma/model.safetensors": {
            "metadata": {"format": "pt"},
            "tensors": _gemma_tensors(),
            "dtype": "BF16",
        },
        "static": {f"gemma/{name}": f"gemma/{name}" for name in STATIC},
    }


def _no_meta(module, what: str) -> None:
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        if t.device.type == "meta":
            raise RuntimeError(f"{what}: {name} was left on the meta device (missing weight)")


def run(variant: str, model_dir: Path) -> dict[str, np.ndarray]:
    import torch
    from ltx_pipelines.utils.constants import DEFAULT_NEGATIVE_PROMPT
    from ltx_pipelines.utils.model_ledger import ModelLedger

    _shrink_gemma_config()
    torch.manual_seed(0)
    ledger = ModelLedger(
        dtype=torch.float32,
        device=torch.device("cpu"),
        checkpoint_path=str(model_dir / "model.safetensors"),
        gemma_root_path=str(model_dir / "gemma"),
    )
    out: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        encoder = ledger.text_encoder()
        _no_meta(encoder.model.model.language_model, "gemma")
        processor = ledger.gemma_embeddings_processor()
        _no_meta(processor, "embeddings processor")
        expected_fe = "FeatureExtractorV2" if variant == "2.3" else "FeatureExtractorV1"
        assert type(processor.feature_extractor).__name__ == expected_fe, type(processor.feature_extractor)

        for tag, text in (("prompt", PROMPT), ("negative", DEFAULT_NEGATIVE_PROMPT)):
            states, mask = encoder.encode(text)
            n_valid = int(mask.sum())
            pairs = encoder.tokenizer.tokenize_with_weights(text)["gemma"]
            out[f"{tag}_input_ids"] = np.array([[int(t) for t, _ in pairs]], np.int32)
            out[f"{tag}_attention_mask"] = mask.numpy().astype(np.int32)
            video_f, audio_f = processor.feature_extractor(states, mask, "left")
            if audio_f is None:
                raise RuntimeError("the tiny model must be audio-video")
            result = processor.process_hidden_states(states, mask)
            assert torch.equal(result.attention_mask, torch.ones_like(result.attention_mask))
            if tag == "prompt":
                stacked = torch.stack(states, dim=-1)[0]  # (T, D, L)
                assert torch.isfinite(stacked[-n_valid:]).all()
                out["prompt_hidden_states"] = stacked[-n_valid:].numpy()  # valid rows only (left padding)
                out["prompt_video_features"] = video_f[0].numpy()
                out["prompt_audio_features"] = audio_f[0].numpy()
                out["prompt_video_context"] = result.video_encoding[0].numpy()
                out["prompt_audio_context"] = result.audio_encoding[0].numpy()
            else:  # every 8th row keeps the file small and still spans tokens, the boundary and registers
                out["negative_video_context_rows8"] = result.video_encoding[0, ::8].numpy()
                out["negative_audio_context_rows8"] = result.audio_encoding[0, ::8].numpy()
        out.update(_enhancement(encoder))
    return out


def _enhancement(encoder) -> dict[str, np.ndarray]:
    """The chat ids of GemmaTextEncoder._enhance, the LM's last logits and a greedy continuation."""
    import torch

    messages = [
        {"role": "system", "content": encoder.default_gemma_t2v_system_prompt},
        {"role": "user", "content": f"user prompt: {ENHANCE_PROMPT}"},
    ]
    text = encoder.processor.tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    inputs = encoder.processor(text=text, images=None, return_tensors="pt")
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    logits = encoder.model(input_ids=ids, attention_mask=mask).logits[0, -1]
    greedy = encoder.model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=GREEDY_TOKENS, do_sample=False
    )
    assert torch.isfinite(logits).all()
    return {
        "enhance_input_ids": ids.numpy().astype(np.int32),
        "enhance_last_logits": logits.numpy(),
        "enhance_greedy_tokens": greedy[0, ids.shape[1] :].numpy().astype(np.int32),
    }


def build_tokenizer() -> None:
    """Train the tiny sentencepiece tokenizer and convert it to tokenizer.json (transformers 4.57)."""
    import shutil
    import tempfile

    import sentencepiece as spm
    from ltx_pipelines.utils.constants import DEFAULT_NEGATIVE_PROMPT
    from transformers import GemmaTokenizerFast

    corpus = [
        DEFAULT_NEGATIVE_PROMPT,
        PROMPT.strip(),
        "A golden retriever runs across a sunny meadow, its fur glowing in the late afternoon light.",
        "Close-up of rain drops falling on a window at night, city lights blurred behind the glass.",
        "Waves crash against the rocks; seagulls call; the wind whistles over the cliffs.",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "corpus.txt").write_text("\n".join(corpus * 3) + "\n")
        spm.SentencePieceTrainer.train(
            input=f"{tmp}/corpus.txt",
            model_prefix=f"{tmp}/tok",
            model_type="bpe",
            vocab_size=512,
            pad_id=0,
            eos_id=1,
            bos_id=2,
            unk_id=3,
            pad_piece="<pad>",
            eos_piece="<eos>",
            bos_piece="<bos>",
            unk_piece="<unk>",
            byte_fallback=True,
            split_digits=True,
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            normalization_rule_name="identity",
            character_coverage=1.0,
            hard_vocab_limit=False,
            minloglevel=2,
            user_defined_symbols=[
                "<start_of_turn>",
                "<end_of_turn>",
                "<start_of_image>",
                "<end_of_image>",
                "<image_soft_token>",
            ],
        )
        fast = GemmaTokenizerFast(vocab_file=f"{tmp}/tok.model", from_slow=True)
        fast.save_pretrained(f"{tmp}/out")
        for name in ("tokenizer.json", "tokenizer.model", "special_tokens_map.json"):
            shutil.copyfile(f"{tmp}/out/{name}", GEMMA_ASSETS / name)
        cfg = json.loads(Path(f"{tmp}/out/tokenizer_config.json").read_text())
    extra = {
        "boi_token": "<start_of_image>",
        "eoi_token": "<end_of_image>",
        "image_token": "<image_soft_token>",
    }
    cfg.update(
        extra,
        extra_special_tokens=extra,
        model_max_length=1024,
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
    )
    (GEMMA_ASSETS / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__" and "--tokenizer" in sys.argv:
    build_tokenizer()
