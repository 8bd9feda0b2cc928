"""LTX-2.5's text path against the 1.2.0 reference (tests/reference/golden25_text.py): the tiny Gemma 4's
tokenizer ids and hidden states, the V2 feature extractor and bias-free connectors; the Gemma version check;
the separate prompt enhancer."""

from __future__ import annotations  # noqa: I001  (ltx.backend must be imported before mlx)

import json
import shutil
from pathlib import Path

import pytest

from ltx import backend  # noqa: F401

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

from ltx.weights import tiny  # noqa: E402
from ltx.text.encoder import check_gemma, load_text_encoder  # noqa: E402
from ltx.text.enhance import PromptEnhancer, load_prompt_enhancer  # noqa: E402
from ltx.text.gemma import GemmaTextModel  # noqa: E402
from ltx.text.gemma4 import Gemma4Config, Gemma4TextModel  # noqa: E402
from ltx.weights.loader import CheckpointError, load_checkpoint  # noqa: E402

GOLDENS = Path(__file__).parent / "goldens" / "2.5"
TRANSFORMER = "diffusion_models/transformer.safetensors"  # the tiny 2.5's layout (tests/reference/tiny25.py)
GEMMA = "text_encoders/gemma4"
PROMPT = (
    '  A woman in a blue coat walks along a rainy street at night; she says "Let\'s go home" while '
    "a piano plays softly and the camera slowly pans to the right.  "
)
SPECIAL_PROMPT = "a cat <|image|> sits on a mat"


def assert_close(name: str, got, ref: np.ndarray) -> None:
    got = np.asarray(got, dtype=np.float32)
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != reference {ref.shape}"
    err = float(np.abs(got - ref).max())
    tol = 1e-4 * max(1.0, float(np.abs(ref).max()))
    print(f"PARITY 2.5 {name}: max abs err {err:.3g} (ref max {float(np.abs(ref).max()):.3g})")
    assert err <= tol, f"{name}: max |mlx - ref| = {err:.3g} > {tol:.3g}"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny.create("2.5", tmp_path_factory.mktemp("text25") / "model")


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    return load_file(str(GOLDENS / "text.safetensors"))


@pytest.fixture(scope="module")
def encoder(model_dir):
    return load_text_encoder(model_dir / TRANSFORMER, model_dir / GEMMA, dtype=mx.float32)


@pytest.fixture(scope="module")
def gemma3_dir(tmp_path_factory) -> Path:
    return tiny.create("2.3", tmp_path_factory.mktemp("text23") / "model") / "gemma"


def _valid_rows(states, mask) -> np.ndarray:
    n = int(np.array(mask).sum())
    return np.stack([np.array(s[0]) for s in states], axis=-1)[-n:]  # (n, D, L), left padding


def test_tokenizer_ids_match_reference(encoder, golden):
    negative = bytes(golden["negative_prompt_utf8"]).decode()
    for tag, text in (("prompt", PROMPT), ("negative", negative), ("special", SPECIAL_PROMPT)):
        ids, mask = encoder.tokenizer(text)
        np.testing.assert_array_equal(np.array(ids), golden[f"{tag}_input_ids"], err_msg=f"{tag} ids")
        np.testing.assert_array_equal(np.array(mask), golden[f"{tag}_attention_mask"], err_msg=f"{tag} mask")
        first = int(np.argmax(np.array(mask)[0]))
        assert int(np.array(ids)[0, first]) == encoder.tokenizer.tokenizer.bos_token_id  # the leading BOS
    ids, mask = encoder.tokenizer("x " * 3000)  # truncated to 1024, BOS kept first
    np.testing.assert_array_equal(np.array(ids), golden["long_input_ids"])
    assert int(np.array(mask).sum()) == 1024


def test_gemma4_hidden_states_match_reference(encoder, golden):
    assert isinstance(encoder.gemma, Gemma4TextModel)
    for tag, text in (("prompt", PROMPT), ("special", SPECIAL_PROMPT)):
        states, _, mask = encoder.hidden_states(text)
        assert len(states) == encoder.gemma.config.num_hidden_layers + 1
        assert_close(f"gemma4 {tag} hidden states", _valid_rows(states, mask), golden[f"{tag}_hidden_states"])


def test_placeholder_token_is_embedded_as_padding(encoder):
    ids, mask = encoder.tokenizer(SPECIAL_PROMPT)
    image_id = encoder.tokenizer.tokenizer.convert_tokens_to_ids("<|image|>")
    pos = int(np.nonzero(np.array(ids)[0] == image_id)[0][0])
    pad = mx.full((1, 1), encoder.gemma.config.pad_token_id, mx.int32)
    np.testing.assert_array_equal(
        np.array(encoder.gemma._embed(ids)[0, pos]), np.array(encoder.gemma._embed(pad)[0, 0])
    )


def test_gemma4_structure_is_read_from_config(encoder):
    """Alternating kinds with their own widths and KV heads, K=V and partial RoPE on full layers, layer scalars."""
    g = encoder.gemma
    cfg = g.config
    kinds = [layer.self_attn.is_sliding for layer in g.layers]
    assert kinds == [t == "sliding_attention" for t in cfg.layer_types] and True in kinds and False in kinds
    for layer in g.layers:
        a = layer.self_attn
        if a.is_sliding:
            assert (a.head_dim, a.n_kv_heads) == (cfg.head_dim, cfg.num_key_value_heads) and "v_proj" in a
        else:
            assert (a.head_dim, a.n_kv_heads) == (cfg.global_head_dim, cfg.num_global_key_value_heads)
            assert "v_proj" not in a  # keys are the values
            assert 0 < a.rope.rope_angles * 2 < a.head_dim  # partial rotation
    assert cfg.head_dim != cfg.global_head_dim and cfg.num_key_value_heads != cfg.num_global_key_value_heads
    scalars = [float(layer.layer_scalar[0]) for layer in g.layers]
    assert len(set(scalars)) == len(scalars) and 1.0 not in scalars  # loaded, not the initial ones
    assert cfg.sliding_window < 14  # shorter than the special prompt: the window matters


def test_features_connectors_and_contexts_match_reference(encoder, golden):
    states, _, mask = encoder.hidden_states(PROMPT)
    video_f, audio_f = encoder.processor.feature_extractor(states, mask)
    assert_close("video features", video_f[0], golden["prompt_video_features"])
    assert_close("audio features", audio_f[0], golden["prompt_audio_features"])
    out = encoder.processor(states, mask)
    assert_close("video context", out.video[0], golden["prompt_video_context"])
    assert_close("audio context", out.audio[0], golden["prompt_audio_context"])
    for conn in (encoder.processor.video_connector, encoder.processor.audio_connector):
        ff = conn.transformer_1d_blocks[0].ff
        assert "bias" not in ff.net[2] and "bias" not in ff.net[0].proj  # connector_ff_bias false


def test_encode_negative_prompt_matches_reference(encoder, golden):
    out = encoder.encode(bytes(golden["negative_prompt_utf8"]).decode())
    assert_close("negative video context", out.video[0, ::8], golden["negative_video_context_rows8"])
    assert_close("negative audio context", out.audio[0, ::8], golden["negative_audio_context_rows8"])


# ---- which Gemma goes with which checkpoint -------------------------------------------------------------------


def test_gemma3_folder_with_a_25_checkpoint_is_one_line(model_dir, gemma3_dir):
    with pytest.raises(CheckpointError) as e:
        load_text_encoder(model_dir / TRANSFORMER, gemma3_dir, dtype=mx.float32)
    msg = str(e.value)
    assert "\n" not in msg and "tiny-gemma4-ltx-v1" in msg and "Gemma 3" in msg and "--gemma-root" in msg


def test_gemma4_folder_with_a_23_checkpoint_is_one_line(model_dir, gemma3_dir):
    ckpt = gemma3_dir.parent / "model.safetensors"
    with pytest.raises(CheckpointError, match="needs a Gemma 3 folder.*gemma4_unified"):
        load_text_encoder(ckpt, model_dir / GEMMA, dtype=mx.float32)


def test_gemma_version_rules():
    g4 = {"model_type": "gemma4_unified", "gemma_version": "v1"}
    g3 = {"model_type": "gemma3"}
    source = json.dumps({"gemma_version": "v1"})
    check_gemma({"model_version": "2.5.0", "gemma_source_checkpoint": source}, g4, "g4")
    check_gemma({"model_version": "2.3.0"}, g3, "g3")
    check_gemma({}, g3, "g3")  # LTX-2.0 checkpoints carry no model_version
    with pytest.raises(CheckpointError, match="gemma_version 'v2'"):
        check_gemma({"gemma_source_checkpoint": json.dumps({"gemma_version": "v2"})}, g4, "g4")
    with pytest.raises(CheckpointError, match="needs gemma_source_checkpoint"):
        check_gemma({"model_version": "2.5.0"}, g4, "g4")
    check_gemma(
        {"model_version": "2.5.0"}, {"model_type": "gemma4_unified"}, "g4"
    )  # the reference only warns
    with pytest.raises(CheckpointError, match="needs a Gemma 3 folder"):
        check_gemma({"model_version": "2.3.0"}, g4, "g4")


# ---- the enhancer is another Gemma ----------------------------------------------------------------------------


def test_gemma4_cannot_enhance(encoder, model_dir):
    with pytest.raises(CheckpointError, match="--prompt-enhancer-gemma-root"):
        encoder.enhance_t2v("a cat")
    with pytest.raises(CheckpointError, match="model_type 'gemma4_unified'"):
        load_prompt_enhancer(model_dir / GEMMA)


def test_separate_gemma3_enhancer_generates(gemma3_dir):
    enhancer = load_prompt_enhancer(gemma3_dir, dtype=mx.float32)
    assert isinstance(enhancer, PromptEnhancer) and isinstance(enhancer.gemma, GemmaTextModel)
    assert enhancer.enhance_t2v("a cat plays piano", seed=3, max_new_tokens=4) == enhancer.enhance_t2v(
        "a cat plays piano", seed=3, max_new_tokens=4
    )


# ---- config and weights the Gemma 4 code does not support are named ------------------------------------------


def _config(model_dir: Path) -> dict:
    return json.loads((model_dir / GEMMA / "config.json").read_text())


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("use_bidirectional_attention", "all", "use_bidirectional_attention='all'"),
        ("hidden_activation", "gelu", "hidden_activation='gelu'"),
        ("num_kv_shared_layers", 2, "num_kv_shared_layers=2"),
        ("layer_types", ["sliding_attention", "full_attention"], "layer_types"),
    ],
)
def test_unsupported_gemma4_config_is_named(model_dir, key, value, match):
    cfg = _config(model_dir)
    cfg["text_config"][key] = value
    with pytest.raises(CheckpointError, match=match):
        Gemma4Config.from_dict(cfg)


def test_unsupported_rope_is_named(model_dir):
    cfg = _config(model_dir)
    cfg["text_config"]["rope_parameters"]["full_attention"]["rope_type"] = "yarn"
    with pytest.raises(CheckpointError, match="full_attention.rope_type='yarn'"):
        Gemma4Config.from_dict(cfg)


def test_missing_gemma4_weight_is_named(model_dir, tmp_path):
    gemma = tmp_path / "gemma"
    shutil.copytree(model_dir / GEMMA, gemma)
    weights, meta = load_checkpoint(gemma / "model.safetensors")
    weights = dict(weights)
    del weights["model.language_model.layers.1.layer_scalar"]
    mx.save_safetensors(str(gemma / "model.safetensors"), weights, meta)
    with pytest.raises(CheckpointError, match=r"layers\.1\.layer_scalar"):
        load_text_encoder(model_dir / TRANSFORMER, gemma, dtype=mx.float32)


# ---- the CLI: --enhance-prompt with the encoding Gemma or a separate one ---------------------------------------


def test_cli_enhances_with_a_separate_gemma3(gemma3_dir, tmp_path, capsys, monkeypatch):
    """`ltx encode --enhance-prompt` runs; --prompt-enhancer-gemma-root's digest keys only the encode stage."""
    from test_bad_inputs import _run_in_process

    from cache.store import Store

    for var in ("LTX_MODEL", "LTX_CACHE", "LTX_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    cache = tmp_path / "cache"
    args = [
        "--cache-dir",
        str(cache),
        "encode",
        "--prompt",
        "a cat plays piano",
        "--seed",
        "3",
        "--enhance-prompt",
    ]
    rc, err = _run_in_process([*args[:3], "same", *args[3:]], capsys)
    assert rc == 0, err
    rc, err = _run_in_process(
        [*args[:3], "sep", *args[3:], "--prompt-enhancer-gemma-root", str(gemma3_dir)], capsys
    )
    assert rc == 0, err
    assert "enhanced prompt:" in err
    store = Store(cache)
    same, sep = (store.manifest(store.load_run(r)["stages"]["encode"]) for r in ("same", "sep"))
    assert "enhancer" not in same["externals"] and "enhancer" in sep["externals"]
    assert {k: v for k, v in sep["externals"].items() if k != "enhancer"} == same["externals"]
    prompt = bytes(np.asarray(store.open(store.load_run("sep")["stages"]["encode"])["prompt_utf8"])).decode()
    assert prompt and prompt != "a cat plays piano"


# ---- the release's packed text-encoder file (Gemma 4 + text projection + tokenizer in one safetensors) --------

_COMFY = (  # HF key prefix -> the packed file's (ltx-core's _flatten_gemma4_unified_keys_for_comfy)
    ("model.language_model.", "model."),
    ("model.vision_embedder.", "vision_model."),
    ("model.embed_vision.", "multi_modal_projector."),
    ("model.embed_audio.", "audio_projector."),
)


def _pack(model_dir: Path, out: Path) -> tuple[Path, Path]:
    """(a transformer file without the text projection, a packed text encoder holding it), as the release ships."""
    folder = model_dir / GEMMA
    tensors = {}
    for k, v in load_checkpoint(folder / "model.safetensors")[0].items():
        src, dst = next((s, d) for s, d in _COMFY if k.startswith(s))
        tensors[dst + k[len(src) :]] = v
    dit, meta = load_checkpoint(model_dir / TRANSFORMER)
    proj = {k: v for k, v in dit.items() if k.startswith("text_embedding_projection.")}
    as_u8 = lambda p: mx.array(np.frombuffer(p.read_bytes(), np.uint8))  # noqa: E731
    tensors.update(proj, tokenizer_json=as_u8(folder / "tokenizer.json"))
    for name in ("tokenizer_config.json", "processor_config.json", "chat_template.jinja"):
        tensors[f"hf_asset__{name}"] = as_u8(folder / name)
    out.mkdir()
    te, transformer = out / "text_encoder.safetensors", out / "transformer.safetensors"
    config = json.dumps(json.loads((folder / "config.json").read_text()))
    mx.save_safetensors(str(te), tensors, {"format": "pt", "gemma_config": config})
    mx.save_safetensors(str(transformer), {k: v for k, v in dit.items() if k not in proj}, meta)
    return transformer, te


def test_packed_text_encoder_matches_reference(model_dir, golden, tmp_path):
    transformer, te = _pack(model_dir, tmp_path / "packed")
    ref = json.loads(bytes(golden["packed_header_json"]).decode())  # what the reference's packer writes
    weights, meta = load_checkpoint(te)
    names = {"bfloat16": "BF16", "uint8": "U8", "float32": "F32"}
    ours = {k: [names[str(v.dtype).removeprefix("mlx.core.")], list(v.shape)] for k, v in weights.items()}
    assert sorted(meta) == ref["metadata"] and ours == ref["tensors"]
    encoder = load_text_encoder(transformer, te, dtype=mx.float32)
    assert isinstance(encoder.gemma, Gemma4TextModel)
    states, ids, mask = encoder.hidden_states(PROMPT)
    np.testing.assert_array_equal(np.array(ids), golden["prompt_input_ids"])
    assert_close("packed gemma4 hidden states", _valid_rows(states, mask), golden["prompt_hidden_states"])
    out = encoder.processor(states, mask)
    assert_close("packed video context", out.video[0], golden["prompt_video_context"])
    assert_close("packed audio context", out.audio[0], golden["prompt_audio_context"])
    with pytest.raises(CheckpointError, match="holds no text projection"):  # the folder has none
        load_text_encoder(transformer, model_dir / GEMMA, dtype=mx.float32)


def test_memory_counts_the_packed_gemma_as_the_folder(model_dir, tmp_path):
    """`ltx info`'s Gemma component: the language model alone, from a folder or from the packed file."""
    from ltx import memory

    transformer, te = _pack(model_dir, tmp_path / "packed")
    up = model_dir / "latent_upscale_models" / "spatial_upscaler_x2.safetensors"
    folder = memory.components(model_dir / TRANSFORMER, up, model_dir / GEMMA, 4)["gemma"]
    packed = memory.components(transformer, up, te, 4)["gemma"]
    cfg = Gemma4Config.from_dict(_config(model_dir))
    shapes = tiny.load_manifest("2.5")["files"][f"{GEMMA}/model.safetensors"]["tensors"]
    lm = sum(int(np.prod(s)) for k, s in shapes.items() if k.startswith("model.language_model."))
    assert folder.parameters == packed.parameters == lm
    assert folder.widths["hidden"] == packed.widths["hidden"] == cfg.hidden_size


def test_quantized_gemma4_loads_and_encodes(model_dir, encoder, tmp_path):
    """A Gemma 4 folder whose decoder linears are stored 8-bit (as `ltx convert --quantize 8` writes them)."""
    from ltx.weights import quantize
    from ltx.weights.convert import METADATA_KEY

    gemma = tmp_path / "gemma"
    shutil.copytree(model_dir / GEMMA, gemma)
    weights, modules = quantize.quantize_weights(
        dict(mx.load(str(gemma / "model.safetensors"))), 8, 32, quantize.GEMMA_KEYS
    )
    assert len(modules) == 26  # 4 layers x (q, k, o, 3 MLP) + v on the 2 sliding ones (K=V on full layers)
    meta = {"format": "pt", METADATA_KEY: json.dumps({"bits": 8, "group_size": 32, "modules": len(modules)})}
    mx.save_safetensors(str(gemma / "model.safetensors"), weights, meta)
    quantized = load_text_encoder(model_dir / TRANSFORMER, gemma, dtype=mx.float32)
    assert all(type(layer.self_attn.o_proj).__name__ == "QuantizedLinear" for layer in quantized.gemma.layers)
    a, b = quantized.encode(PROMPT), encoder.encode(PROMPT)
    err, ref = float(mx.abs(a.video - b.video).max()), float(mx.abs(b.video).max())
    assert 0 < err < 0.25 * ref  # random tiny widths: a loose bound, but the same model
