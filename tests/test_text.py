"""Text path parity with the reference goldens (tests/reference/golden_text.py) and strict loading."""

from __future__ import annotations  # noqa: I001  (ltx.backend must be imported before mlx)

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from ltx import backend  # noqa: F401

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

from ltx.weights import tiny  # noqa: E402
from ltx.text.gemma import GemmaConfig, load_gemma  # noqa: E402
from ltx.weights.loader import CheckpointError, load_checkpoint, read_config  # noqa: E402
from ltx.text.enhance import clean_response, enhance_t2v, generate, t2v_chat_ids, t2v_system_prompt  # noqa: E402
from ltx.text.encoder import (  # noqa: E402
    DEFAULT_NEGATIVE_PROMPT,
    FeatureExtractorV1,
    FeatureExtractorV2,
    TextConfig,
    load_embeddings_processor,
    load_text_encoder,
)

GOLDENS = Path(__file__).parent / "goldens"
PROMPT = (
    '  A woman in a blue coat walks along a rainy street at night; she says "Let\'s go home" while '
    "a piano plays softly and the camera slowly pans to the right.  "
)


def assert_close(name: str, got: mx.array | np.ndarray, ref: np.ndarray) -> None:
    got = np.asarray(got, dtype=np.float32)
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != reference {ref.shape}"
    err = float(np.abs(got - ref).max())
    tol = 1e-4 * max(1.0, float(np.abs(ref).max()))
    assert err <= tol, f"{name}: max |mlx - ref| = {err:.3g} > {tol:.3g}"


@pytest.fixture(scope="module", params=tiny.VARIANTS)
def tiny_text(request, tmp_path_factory):
    variant = request.param
    model_dir = tiny.create(variant, tmp_path_factory.mktemp(f"text-{variant}") / "model")
    encoder = load_text_encoder(model_dir / "model.safetensors", model_dir / "gemma", dtype=mx.float32)
    golden = load_file(str(GOLDENS / variant / "text.safetensors"))
    return variant, model_dir, encoder, golden


def test_negative_prompt_is_byte_exact():
    data = DEFAULT_NEGATIVE_PROMPT.encode()
    assert len(DEFAULT_NEGATIVE_PROMPT) == 1078
    assert (
        hashlib.sha256(data).hexdigest() == "3b57a0df38897410505431c481fdc9b8e4b6e86d18b1c425a1bc26ab96067379"
    )


def test_tokenizer_ids_match_reference(tiny_text):
    _, _, encoder, g = tiny_text
    for tag, text in (("prompt", PROMPT), ("negative", DEFAULT_NEGATIVE_PROMPT)):
        ids, mask = encoder.tokenizer(text)
        np.testing.assert_array_equal(np.array(ids), g[f"{tag}_input_ids"], err_msg=f"{tag} ids")
        np.testing.assert_array_equal(np.array(mask), g[f"{tag}_attention_mask"], err_msg=f"{tag} mask")
    assert ids.shape == (1, 1024)
    assert int(np.array(mask)[0, 0]) == 0 and int(np.array(mask)[0, -1]) == 1  # left padding


def test_tokenizer_strips_and_truncates(tiny_text):
    _, _, encoder, _ = tiny_text
    a, _ = encoder.tokenizer("  a cat  ")
    b, _ = encoder.tokenizer("a cat")
    np.testing.assert_array_equal(np.array(a), np.array(b))
    ids, mask = encoder.tokenizer("x " * 3000)
    assert ids.shape == (1, 1024) and int(np.array(mask).sum()) == 1024


def test_gemma_hidden_states_match_reference(tiny_text):
    _, _, encoder, g = tiny_text
    states, _, mask = encoder.hidden_states(PROMPT)
    assert len(states) == encoder.gemma.config.num_hidden_layers + 1
    n = int(np.array(mask).sum())
    stacked = np.stack([np.array(s[0]) for s in states], axis=-1)[-n:]  # valid rows (left padding)
    assert_close("gemma hidden states", stacked, g["prompt_hidden_states"])


def test_gemma_uses_sliding_and_global_layers(tiny_text):
    _, _, encoder, _ = tiny_text
    kinds = [layer.self_attn.is_sliding for layer in encoder.gemma.layers]
    assert True in kinds and False in kinds
    assert encoder.gemma.config.sliding_window < 40  # shorter than the prompt, so the window matters


def test_features_connectors_and_contexts_match_reference(tiny_text):
    variant, _, encoder, g = tiny_text
    states, _, mask = encoder.hidden_states(PROMPT)
    fe = encoder.processor.feature_extractor
    assert isinstance(fe, FeatureExtractorV2 if variant == "2.3" else FeatureExtractorV1)
    video_f, audio_f = fe(states, mask)
    assert_close("video features", video_f[0], g["prompt_video_features"])
    assert_close("audio features", audio_f[0], g["prompt_audio_features"])
    out = encoder.processor(states, mask)
    assert_close("video context", out.video[0], g["prompt_video_context"])
    assert_close("audio context", out.audio[0], g["prompt_audio_context"])
    assert np.array(out.mask).all()


def test_encode_negative_prompt_matches_reference(tiny_text):
    _, _, encoder, g = tiny_text
    out = encoder.encode(DEFAULT_NEGATIVE_PROMPT)
    assert_close("negative video context", out.video[0, ::8], g["negative_video_context_rows8"])
    assert_close("negative audio context", out.audio[0, ::8], g["negative_audio_context_rows8"])


def _processor_inputs(model_dir: Path):
    weights, metadata = load_checkpoint(model_dir / "model.safetensors")
    return dict(weights), read_config(metadata)


def test_processor_missing_key_is_named(tiny_text):
    _, model_dir, encoder, _ = tiny_text
    weights, config = _processor_inputs(model_dir)
    del weights["model.diffusion_model.audio_embeddings_connector.learnable_registers"]
    c = encoder.gemma.config
    with pytest.raises(CheckpointError, match="audio_connector.learnable_registers"):
        load_embeddings_processor(weights, config, c.hidden_size, c.num_hidden_layers + 1)


def test_processor_renamed_key_is_named(tiny_text):
    _, model_dir, encoder, _ = tiny_text
    weights, config = _processor_inputs(model_dir)
    key = next(k for k in weights if k.startswith("text_embedding_projection."))
    weights[key.replace("aggregate_embed", "aggregate_embedding")] = weights.pop(key)
    c = encoder.gemma.config
    with pytest.raises(CheckpointError, match="aggregate_embed"):
        load_embeddings_processor(weights, config, c.hidden_size, c.num_hidden_layers + 1)


def test_processor_wrong_gemma_width_is_reported(tiny_text):
    _, model_dir, encoder, _ = tiny_text
    weights, config = _processor_inputs(model_dir)
    with pytest.raises(CheckpointError, match="shape"):
        load_embeddings_processor(weights, config, encoder.gemma.config.hidden_size, 7)


@pytest.mark.parametrize(
    "key,value",
    [
        ("connector_num_learnable_registers", 64),
        ("rope_type", "spiral"),
        ("caption_proj_before_connector", False),
    ],
)
def test_unsupported_text_config_is_named(key, value):
    base = {"connector_num_learnable_registers": 128, "rope_type": "split"}
    if key == "caption_proj_before_connector":
        base.update(
            caption_projection_first_linear=False,
            caption_proj_input_norm=False,
            caption_projection_second_linear=False,
        )
    with pytest.raises(CheckpointError, match=key):
        TextConfig.from_dict({**base, key: value})


def test_partial_v2_config_is_named():
    with pytest.raises(CheckpointError, match="caption_proj_input_norm"):
        TextConfig.from_dict(
            {
                "caption_proj_before_connector": True,
                "caption_projection_first_linear": False,
                "caption_projection_second_linear": False,
            }
        )


def test_unsupported_gemma_config_is_named():
    with pytest.raises(CheckpointError, match="hidden_activation"):
        GemmaConfig.from_dict({"text_config": {"hidden_activation": "relu"}})
    with pytest.raises(CheckpointError, match="layer_types"):
        GemmaConfig.from_dict(
            {
                "num_hidden_layers": 2,
                "sliding_window_pattern": 2,
                "layer_types": ["full_attention", "full_attention"],
            }
        )


def _gemma_copy(src: Path, dst: Path, edit) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        if f.name != "model.safetensors":
            shutil.copyfile(f, dst / f.name)
    weights = dict(mx.load(str(src / "model.safetensors")))
    edit(weights)
    mx.save_safetensors(str(dst / "model.safetensors"), weights)
    return dst


def test_gemma_missing_and_renamed_keys_are_named(tiny_text, tmp_path):
    _, model_dir, _, _ = tiny_text
    key = "language_model.model.layers.1.self_attn.k_norm.weight"
    missing = _gemma_copy(model_dir / "gemma", tmp_path / "missing", lambda w: w.pop(key))
    with pytest.raises(CheckpointError, match="layers.1.self_attn.k_norm.weight"):
        load_gemma(missing)
    renamed = _gemma_copy(
        model_dir / "gemma",
        tmp_path / "renamed",
        lambda w: w.__setitem__("language_model.model.extra.weight", w.pop(key)),
    )
    with pytest.raises(CheckpointError, match="layers.1.self_attn.k_norm.weight"):
        load_gemma(renamed)


def test_gemma_ignores_vision_tower_only(tiny_text):
    _, model_dir, _, _ = tiny_text
    names = list(mx.load(str(model_dir / "gemma" / "model.safetensors")))
    assert any(k.startswith("vision_tower.") for k in names)  # present in the file, not needed for text
    cfg = json.loads((model_dir / "gemma" / "config.json").read_text())
    assert cfg["text_config"]["num_hidden_layers"] == 3


def test_gemma_loads_transformers5_key_layout(tiny_text, tmp_path):
    # transformers >= 4.52 saves Gemma 3 as model.language_model.*; the 12B release uses language_model.model.*
    _, model_dir, encoder, g = tiny_text

    def relayout(w):
        for k in [k for k in w if k.startswith("language_model.model.")]:
            w["model.language_model." + k[len("language_model.model.") :]] = w.pop(k)

    gemma = load_gemma(_gemma_copy(model_dir / "gemma", tmp_path / "v5", relayout), dtype=mx.float32)
    ids, mask = encoder.tokenizer(PROMPT)
    n = int(np.array(mask).sum())
    stacked = np.stack([np.array(s[0]) for s in gemma(ids, mask)], axis=-1)[-n:]
    assert_close("gemma hidden states (v5 layout)", stacked, g["prompt_hidden_states"])


# Prompt enhancement (optional feature): the chat ids, the LM logits and a greedy continuation
# (which runs the rotating sliding-window KV cache past the window) match the reference.


def test_enhancement_chat_ids_and_logits_match_reference(tiny_text):
    _, _, encoder, g = tiny_text
    ids = t2v_chat_ids(encoder.tokenizer, "a cat plays piano")
    np.testing.assert_array_equal(np.array(ids), g["enhance_input_ids"])
    logits = encoder.gemma.logits(ids, encoder.gemma.make_cache())[0, -1]
    assert_close("enhancement logits", logits, g["enhance_last_logits"])


def test_enhancement_greedy_tokens_match_reference(tiny_text):
    _, _, encoder, g = tiny_text
    ids = t2v_chat_ids(encoder.tokenizer, "a cat plays piano")
    n = len(g["enhance_greedy_tokens"])
    assert generate(encoder.gemma, ids, n, 0.0, None) == g["enhance_greedy_tokens"].tolist()


def test_enhancement_sampling_is_seeded(tiny_text):
    _, _, encoder, _ = tiny_text

    def run(seed: int) -> str:
        return enhance_t2v(
            encoder.gemma, encoder.tokenizer, "a cat", seed=seed, max_new_tokens=8, system_prompt="Be brief."
        )

    assert run(3) == run(3)
    assert len({run(s) for s in range(4)}) > 1  # the seed matters
    with pytest.raises(ValueError, match="random key"):
        generate(encoder.gemma, mx.array([[2, 2]]), 2, 0.7, None)


def test_clean_response_and_system_prompt():
    assert clean_response("\u201c**Hello\u201d \u2014 world") == 'Hello" - world'
    data = t2v_system_prompt().encode()
    assert (
        hashlib.sha256(data).hexdigest() == "0f98f02f9fffae27ee3f576685d6d9f9ef13194a0c2068aacdd97f86ea96efd2"
    )
