"""Goldens for LTX-2.5's text path (make_goldens.py protocol, 1.2.0 reference, .venv-ref12).

Tokenizer ids (a leading BOS, as 1.2.0 tokenizes), Gemma 4 ("gemma4_unified") hidden states, the V2
feature extractor and the video/audio embeddings connectors (bias-free feed-forwards), on the tiny Gemma 4
folder `text_encoders/gemma4/` (config.json, tokenizer and processor files committed under
ltx/assets/tiny/gemma4/; the weights synthesised from the HF key names listed here, in the HF on-disk
layout). The text projection (`text_embedding_projection.*`) goes into the transformer file beside the
connectors, as in a monolithic checkpoint: the reference reads a Gemma folder only in that arrangement
(its split layout wants a packed single-file text encoder instead).

Everything is loaded through the reference's own loaders: `get_gemma_ops` + the Gemma text-encoder
configurator (which reads the folder's config.json, `gemma_model_config()`), and the embeddings
processor configurator from the transformer file's metadata (which checks `gemma_source_checkpoint`
against the folder's `gemma_version`). One module op is left out: the processor (image/video
preprocessing for prompt enhancement). Building it needs torchvision, whose PyPI wheels are CUDA builds
that do not load beside the CPU torch here, and encoding never uses it.

`.venv-ref12/bin/python tests/reference/golden25_text.py --assets` rebuilds the tiny Gemma 4 tokenizer files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import tiny25

ROOT = Path(__file__).resolve().parents[2]

GEMMA3_ASSETS = ROOT / "ltx" / "assets" / "tiny" / "gemma"
GEMMA4_ASSETS = ROOT / "ltx" / "assets" / "tiny" / "gemma4"
STATIC = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "processor_config.json",
    "chat_template.jinja",
)
PROMPT = (
    '  A woman in a blue coat walks along a rainy street at night; she says "Let\'s go home" while '
    "a piano plays softly and the camera slowly pans to the right.  "
)
# A placeholder token the model must not embed (gemma4_unified replaces it by the pad token first).
SPECIAL_PROMPT = "a cat <|image|> sits on a mat"


def _hf_config():
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    raw = json.loads((GEMMA4_ASSETS / "config.json").read_text())
    assert raw["gemma_version"] == tiny25.GEMMA_VERSION, raw[
        "gemma_version"
    ]  # what the transformer file asks for
    return CONFIG_MAPPING[raw["model_type"]].from_dict(raw)


def _disk_key(module_key: str) -> str:
    """A gemma4_unified module key -> the HF checkpoint key (what the reference's SDOps read back)."""
    if module_key.startswith("model.embed_vision.multimodal_embedder."):
        return "model.embed_vision." + module_key.removeprefix("model.embed_vision.multimodal_embedder.")
    if module_key.startswith("model.embed_vision."):
        return "model.vision_embedder." + module_key.removeprefix("model.embed_vision.")
    return module_key


def _gemma_tensors() -> dict[str, list[int]]:
    import torch
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(_hf_config())
    return {_disk_key(k): list(v.shape) for k, v in model.state_dict().items() if k != "lm_head.weight"}


def _projection_tensors() -> dict[str, list[int]]:
    """Checkpoint key names and shapes of the feature extractor (the connectors' are golden25_transformer's)."""
    from ltx_core.text_encoders.gemma.embeddings_connector import (
        AudioEmbeddings1DConnectorConfigurator,
        Embeddings1DConnectorConfigurator,
    )
    from ltx_core.text_encoders.gemma.embeddings_processor import EmbeddingsProcessor
    from ltx_core.text_encoders.gemma.encoders.encoder_configurator import _create_feature_extractor

    meta = tiny25.transformer_metadata()
    proc = EmbeddingsProcessor(
        feature_extractor=_create_feature_extractor(tiny25.TRANSFORMER_CONFIG, _hf_config().text_config),
        video_connector=Embeddings1DConnectorConfigurator.from_metadata(meta),
        audio_connector=AudioEmbeddings1DConnectorConfigurator.from_metadata(meta),
    )
    prefix = "feature_extractor."
    return {
        "text_embedding_projection." + k.removeprefix(prefix): list(v.shape)
        for k, v in proc.state_dict().items()
        if k.startswith(prefix)
    }


def contribute(variant: str) -> dict:
    assert variant == "2.5", variant
    te = tiny25.TEXT_ENCODER_DIR
    return {
        tiny25.TRANSFORMER: {
            "metadata": tiny25.transformer_metadata(),
            "tensors": _projection_tensors(),
            "dtype": "BF16",
        },
        f"{te}/model.safetensors": {
            "metadata": {"format": "pt"},
            "tensors": _gemma_tensors(),
            "dtype": "BF16",
        },
        "static": {f"{te}/{name}": f"gemma4/{name}" for name in STATIC},
    }


def _no_meta(module, what: str) -> None:
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        if t.device.type == "meta":
            raise RuntimeError(f"{what}: {name} was left on the meta device (missing weight)")


def _builders(gemma_root: str, embeddings_paths: tuple[str, ...]):
    """The reference's Gemma text encoder and embeddings processor builders (ltx_pipelines PromptEncoder's):
    `gemma_root` a Gemma folder or a packed text-encoder file, `embeddings_paths` the files holding the text
    projection and connectors (their metadata from the first)."""
    from ltx_core.loader.single_gpu_model_builder import SingleGPUModelBuilder as Builder
    from ltx_core.text_encoders.gemma import (
        EMBEDDINGS_PROCESSOR_KEY_OPS,
        EmbeddingsProcessorConfigurator,
        GemmaTextEncoderConfigurator,
        get_gemma_ops,
        resolve_gemma_weight_paths,
    )

    sd_ops, module_ops = get_gemma_ops(gemma_root)
    module_ops = tuple(op for op in module_ops if op.name != "ProcessorLoad")  # needs torchvision; see above
    encoder = Builder(
        model_path=resolve_gemma_weight_paths(gemma_root),
        model_class_configurator=GemmaTextEncoderConfigurator.with_gemma_model_path(gemma_root),
        model_sd_ops=sd_ops,
        module_ops=module_ops,
    )
    processor = Builder(
        model_path=embeddings_paths,
        model_class_configurator=EmbeddingsProcessorConfigurator.with_gemma_model_path(gemma_root),
        model_sd_ops=EMBEDDINGS_PROCESSOR_KEY_OPS,
    )
    return encoder, processor


def run(variant: str, model_dir: Path) -> dict[str, np.ndarray]:
    import torch
    from ltx_pipelines.utils.constants import DEFAULT_NEGATIVE_PROMPT

    assert variant == "2.5", variant
    folder = str(model_dir / tiny25.TEXT_ENCODER_DIR)
    enc_builder, proc_builder = _builders(folder, (str(model_dir / tiny25.TRANSFORMER),))
    out: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        encoder = enc_builder.build(device=torch.device("cpu"), dtype=torch.float32).eval()
        _no_meta(encoder.model.model.language_model, "gemma")
        assert encoder.model.config.model_type == "gemma4_unified"
        processor = proc_builder.build(device=torch.device("cpu"), dtype=torch.float32).eval()
        _no_meta(processor, "embeddings processor")
        assert type(processor.feature_extractor).__name__ == "FeatureExtractorV2", type(
            processor.feature_extractor
        )
        assert processor.video_connector.transformer_1d_blocks[0].ff.net[2].bias is None  # connector_ff_bias

        for tag, text in (
            ("prompt", PROMPT),
            ("negative", DEFAULT_NEGATIVE_PROMPT),
            ("special", SPECIAL_PROMPT),
        ):
            ((states, mask),) = encoder.encode([text])
            pairs = encoder.tokenizer.tokenize_with_weights(text)["gemma"]
            ids = np.array([[int(t) for t, _ in pairs]], np.int32)
            assert ids[0, int(np.argmax(mask.numpy()[0]))] == encoder.tokenizer.tokenizer.bos_token_id
            out[f"{tag}_input_ids"] = ids
            out[f"{tag}_attention_mask"] = mask.numpy().astype(np.int32)
            n_valid = int(mask.sum())
            stacked = torch.stack(states, dim=-1)[0]  # (T, D, L)
            assert torch.isfinite(stacked[-n_valid:]).all()
            result = processor.process_hidden_states(states, mask)
            assert torch.equal(result.attention_mask, torch.ones_like(result.attention_mask))
            if tag == "prompt":
                video_f, audio_f = processor.feature_extractor(states, mask, "left")
                out["prompt_hidden_states"] = stacked[-n_valid:].numpy()  # valid rows only (left padding)
                out["prompt_video_features"] = video_f[0].numpy()
                out["prompt_audio_features"] = audio_f[0].numpy()
                out["prompt_video_context"] = result.video_encoding[0].numpy()
                out["prompt_audio_context"] = result.audio_encoding[0].numpy()
            elif tag == "negative":  # every 8th row: tokens, the boundary and registers, in a small file
                out["negative_video_context_rows8"] = result.video_encoding[0, ::8].numpy()
                out["negative_audio_context_rows8"] = result.audio_encoding[0, ::8].numpy()
            else:
                out["special_hidden_states"] = stacked[-n_valid:].numpy()
        out["negative_prompt_utf8"] = np.frombuffer(DEFAULT_NEGATIVE_PROMPT.encode(), np.uint8).copy()
        long_ids = encoder.tokenizer.tokenize_with_weights("x " * 3000)["gemma"]
        out["long_input_ids"] = np.array([[int(t) for t, _ in long_ids]], np.int32)
        out.update(_packed(model_dir, out))
    return out


def _packed(model_dir: Path, folder_out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The release's layout: the text encoder packed into one file by the reference's own packer (Gemma in
    ComfyUI's flat keys + the text projection + tokenizer and sidecar files as uint8 tensors), the transformer
    file without the projection, loaded in split mode (embeddings from both files). Asserts the same contexts
    as from the folder; returns the packed file's header (names, dtypes, shapes, metadata keys) for our packer."""
    import safetensors
    import torch
    from ltx_core.text_encoders.gemma.gemma_assets import (
        build_text_encoder_tensors_from_gemma_root,
        save_text_encoder_safetensors,
    )
    from safetensors.torch import load_file, save_file

    with safetensors.safe_open(str(model_dir / tiny25.TRANSFORMER), framework="pt") as f:
        meta = f.metadata()
    dit = load_file(str(model_dir / tiny25.TRANSFORMER))
    proj = {k: v for k, v in dit.items() if k.startswith("text_embedding_projection.")}
    tmp = model_dir / "packed"
    tmp.mkdir()
    save_file(
        {k: v for k, v in dit.items() if k not in proj}, str(tmp / "transformer.safetensors"), metadata=meta
    )
    tensors, te_meta = build_text_encoder_tensors_from_gemma_root(
        str(model_dir / tiny25.TEXT_ENCODER_DIR), proj, gemma_version=tiny25.GEMMA_VERSION
    )
    save_text_encoder_safetensors(tmp / "text_encoder.safetensors", tensors, te_meta)
    te = str(tmp / "text_encoder.safetensors")
    enc_builder, proc_builder = _builders(te, (str(tmp / "transformer.safetensors"), te))
    encoder = enc_builder.build(device=torch.device("cpu"), dtype=torch.float32).eval()
    _no_meta(encoder.model.model.language_model, "packed gemma")
    processor = proc_builder.build(device=torch.device("cpu"), dtype=torch.float32).eval()
    _no_meta(processor, "packed embeddings processor")
    ((states, mask),) = encoder.encode([PROMPT])
    result = processor.process_hidden_states(states, mask)
    np.testing.assert_array_equal(mask.numpy(), folder_out["prompt_attention_mask"])
    np.testing.assert_allclose(
        result.video_encoding[0].numpy(), folder_out["prompt_video_context"], rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(
        result.audio_encoding[0].numpy(), folder_out["prompt_audio_context"], rtol=0, atol=1e-6
    )
    with safetensors.safe_open(te, framework="pt") as f:
        header = {
            "metadata": sorted((f.metadata() or {}).keys()),
            "tensors": {
                k: [str(f.get_slice(k).get_dtype()), list(f.get_slice(k).get_shape())] for k in f.keys()
            },  # noqa: SIM118
        }
    blob = json.dumps(header, sort_keys=True).encode()
    return {"packed_header_json": np.frombuffer(blob, np.uint8).copy()}


# ---- the committed tiny Gemma 4 tokenizer files ----------------------------------------------------------------
# Gemma 4's special tokens, on top of the tiny Gemma 3 tokenizer's BPE (ids 4-8 renamed, 512-515 added).
RENAMED = {4: "<|turn>", 5: "<turn|>", 6: "<|image>", 7: "<image|>", 8: "<|image|>"}
ADDED = {512: "<|audio>", 513: "<audio|>", 514: "<|audio|>", 515: "<|video|>"}
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<|turn>' + role + '\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<|image|>' }}{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{ '<turn|>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|turn>model\n' }}{%- endif -%}"
)


def build_assets() -> None:
    """tokenizer.json (no BOS post-processor: Gemma 4's tokenizer adds none), tokenizer_config.json,
    processor_config.json and chat_template.jinja of the tiny Gemma 4 folder."""
    tok = json.loads((GEMMA3_ASSETS / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    for i, name in RENAMED.items():
        old = next(a for a in tok["added_tokens"] if a["id"] == i)
        vocab[name] = vocab.pop(old["content"])
        old["content"] = name
    template = dict(tok["added_tokens"][-1])
    for i, name in ADDED.items():
        tok["added_tokens"].append({**template, "id": i, "content": name})
        vocab[name] = i
    tok["post_processor"] = None
    (GEMMA4_ASSETS / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False, indent=1) + "\n")
    special = {
        "image_token": "<|image|>",
        "boi_token": "<|image>",
        "eoi_token": "<image|>",
        "audio_token": "<|audio|>",
        "boa_token": "<|audio>",
        "eoa_token": "<audio|>",
    }
    cfg = {
        "tokenizer_class": "GemmaTokenizer",
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "add_bos_token": False,
        "add_eos_token": False,
        "padding_side": "left",
        "model_max_length": 1024,
        "extra_special_tokens": special,
        **special,
    }
    (GEMMA4_ASSETS / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    processor = {
        "processor_class": "Gemma4UnifiedProcessor",
        "image_seq_length": 70,
        "audio_seq_length": 750,
        "audio_ms_per_token": 40,
        "feature_extractor": {
            "feature_extractor_type": "Gemma4UnifiedAudioFeatureExtractor",
            "feature_size": 8,
            "audio_samples_per_token": 8,
            "sampling_rate": 16000,
            "padding_value": 0.0,
        },
        "image_processor": {
            "image_processor_type": "Gemma4UnifiedImageProcessor",
            "patch_size": 2,
            "pooling_kernel_size": 2,
            "max_soft_tokens": 70,
        },
        "video_processor": {
            "video_processor_type": "Gemma4UnifiedVideoProcessor",
            "patch_size": 2,
            "pooling_kernel_size": 2,
            "max_soft_tokens": 70,
        },
    }
    (GEMMA4_ASSETS / "processor_config.json").write_text(
        json.dumps(processor, indent=2, sort_keys=True) + "\n"
    )
    (GEMMA4_ASSETS / "chat_template.jinja").write_text(CHAT_TEMPLATE + "\n")


if __name__ == "__main__" and "--assets" in sys.argv:
    build_assets()
