"""Quantized transformers (MLX affine 8/4-bit): error bounds on the goldens' inputs, memory, loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ltx import backend  # noqa: F401

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from ltx.model.transformer import PREFIX, LTXModel, Modality, TransformerConfig, X0Model, load_transformer  # noqa: E402
from ltx.weights import loader, quantize, tiny  # noqa: E402

GOLDENS = Path(__file__).parent / "goldens"
# max |x0_quantized - x0_float| / max |x0_float| on the goldens' inputs (mid config, group 32 and 64);
# measured: 8-bit <= 0.0031, 4-bit <= 0.063
BOUNDS = {8: 0.01, 4: 0.1}


def write_widened(path: Path, head_dim: int = 32, audio_head_dim: int = 16, layers: int = 2) -> Path:
    """The tiny 2.0 transformer widened (video 2x32, audio 2x16: every block input width a multiple of
    32), in the official layout with synthesised weights; takes the goldens' inputs unchanged."""
    cfg = json.loads(
        json.dumps(tiny.load_manifest("2.0")["files"]["model.safetensors"]["metadata"]["config"])
    )
    t = cfg["transformer"]
    t.update(
        attention_head_dim=head_dim,
        audio_attention_head_dim=audio_head_dim,
        num_layers=layers,
        cross_attention_dim=2 * head_dim,
        audio_cross_attention_dim=2 * audio_head_dim,
    )
    model = LTXModel(TransformerConfig.from_dict(t))
    tensors = {PREFIX + k: tiny.synth(PREFIX + k, v.shape) for k, v in tree_flatten(model.parameters())}
    meta = {"config": json.dumps({"transformer": t}), "model_version": "2.0.0"}
    tiny.write_safetensors(Path(path), tensors, meta, "BF16")
    return Path(path)


def golden_inputs(variant: str = "2.0") -> tuple[Modality, Modality]:
    g = mx.load(str(GOLDENS / variant / "transformer.safetensors"))

    def modality(s: str, sigma: float) -> Modality:
        tok = g[f"{s}_tokens"]
        return Modality(
            tok,
            mx.full((1,), sigma),
            mx.full((1, tok.shape[1], 1), sigma),
            g[f"{s}_positions"],
            g[f"in.{s}_context"],
        )

    return modality("video", 0.8), modality("audio", 0.6)


@pytest.fixture(scope="module")
def mid(tmp_path_factory) -> Path:
    return write_widened(tmp_path_factory.mktemp("mid") / "model.safetensors")


def _rel(got, ref) -> float:
    got, ref = np.array(got), np.array(ref)
    return float(np.abs(got - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("group_size", [32, 64])
def test_error_bound_and_memory(mid, bits, group_size):
    ref_model = load_transformer(mid, mx.float32)
    ref = X0Model(ref_model)(*golden_inputs())
    model = load_transformer(mid, mx.float32)
    done = quantize.quantize_model(model, bits, group_size, "transformer_blocks.")
    # the rule: every block linear whose input width divides by the group size, nothing at the top level
    expected = [
        k[: -len(".weight")]
        for k, v in tree_flatten(ref_model.parameters())
        if k.startswith("transformer_blocks.")
        and k.endswith(".weight")
        and v.ndim == 2
        and v.shape[1] % group_size == 0
    ]
    assert sorted(done) == sorted(expected) and len(done) > 0
    out = X0Model(model)(*golden_inputs())
    errs = [_rel(o, r) for o, r in zip(out, ref, strict=True)]
    assert max(errs) <= BOUNDS[bits], errs
    assert min(errs) > 0  # really quantized
    # weight memory of the quantized layers: bits/8 bytes per weight + a float32 scale and bias per group
    params = dict(tree_flatten(model.parameters()))
    ref_params = dict(tree_flatten(ref_model.parameters()))
    q_bytes = sum(params[f"{m}.{p}"].nbytes for m in done for p in ("weight", "scales", "biases"))
    f_bytes = sum(ref_params[f"{m}.weight"].nbytes for m in done)
    factor = 4 / (bits / 8 + 2 * 4 / group_size)
    assert f_bytes / q_bytes == pytest.approx(factor, rel=1e-9)
    print(
        f"QUANT {bits}-bit group {group_size}: max rel error {max(errs):.2g} (bound {BOUNDS[bits]}), "
        f"quantized-layer weights {factor:.2f}x smaller than float32"
    )
    assert quantize.weight_bytes(model) < quantize.weight_bytes(ref_model)


def test_tiny_rule_only_wide_enough_layers(tmp_path):
    """The tiny model's widths are 16 and 8: with group 32 only the feed-forward outputs (inputs 64, 32)
    qualify; the rule is explicit, never a silent pad."""
    d = tiny.create("2.0", tmp_path / "m")
    model = load_transformer(d / "model.safetensors", mx.float32)
    done = quantize.quantize_model(model, 8, 32, "transformer_blocks.")
    assert sorted(done) == sorted(
        f"transformer_blocks.{i}.{ff}.net.2" for i in range(2) for ff in ("ff", "audio_ff")
    )
    assert (
        quantize.quantize_model(
            load_transformer(d / "model.safetensors", mx.float32), 8, 128, "transformer_blocks."
        )
        == []
    )


def test_options_rejected():
    with pytest.raises(ValueError, match="--quantize 3"):
        quantize.check_options(3, 64)
    with pytest.raises(ValueError, match="--group-size 48"):
        quantize.check_options(4, 48)


def test_quantize_like_infers_layout_and_rejects_garbage(mid):
    weights, metadata = loader.load_checkpoint(mid)
    qw, done = quantize.quantize_weights(dict(weights), 4, 64, quantize.TRANSFORMER_KEYS)
    config = loader.read_config(metadata)
    model = LTXModel(TransformerConfig.from_dict(config["transformer"]))
    from ltx.model.transformer import sanitize

    own = sanitize(qw)
    assert quantize.quantize_like(model, own) == len(done)
    layer = dict(model.named_modules())[done[0][len(PREFIX) :]]
    assert (layer.bits, layer.group_size) == (4, 64)
    model = LTXModel(TransformerConfig.from_dict(config["transformer"]))
    key = done[0][len(PREFIX) :]
    bad = dict(own)
    bad[f"{key}.scales"] = mx.concatenate([bad[f"{key}.scales"]] * 3, axis=1)
    with pytest.raises(loader.CheckpointError, match="fit no bits/group size"):
        quantize.quantize_like(model, bad)


def test_lora_on_quantized_layer_matches_fused_math():
    rng = np.random.RandomState(0)
    w = mx.array(rng.standard_normal((64, 64)).astype(np.float32))
    a, b = (mx.array(rng.standard_normal(s).astype(np.float32)) for s in ((2, 64), (64, 2)))
    x = mx.array(rng.standard_normal((3, 64)).astype(np.float32))
    import mlx.nn as nn

    lin = nn.Linear(64, 64)
    lin.weight = w
    q = nn.QuantizedLinear.from_linear(lin, group_size=32, bits=8)
    wrapped = quantize.LoRAQuantizedLinear(q)
    wrapped.add(a, b, 0.8, mx.float32)
    want = q(x) + 0.8 * ((x @ a.T) @ b.T)
    assert np.array_equal(np.array(wrapped(x)), np.array(want))
    fused = x @ (w + 0.8 * b @ a).T + lin.bias
    assert _rel(wrapped(x), fused) < 0.01  # the quantized base differs from w by the 8-bit error only
