"""LoRA fusion against ltx-core's apply_loras (goldens), run-time LoRA on quantized layers, and errors.

The reference fuses in bfloat16: W' = bf16(W + bf16(bf16(B * s) @ A)) (test_reference_rounding_chain
reproduces the goldens bit for bit that way). We fuse in the compute dtype from the same bf16 inputs
with an exact float32 delta, so ours cast to bf16 is bf16(W + s B A): within one bf16 ulp of W' except
for the reference's own rounding of the delta, which matters where W + delta cancels (ulp(W') is then
tiny): |ours - ref| <= max(ulp(ours), ulp(ref)) + |bf16(bf16(B s) @ A) - s B A|. 65-75% of the sampled weights are
bit-identical, the rest differ by one ulp or by the reference's delta rounding.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ltx import backend  # noqa: F401

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402
from test_quantize import golden_inputs  # noqa: E402

from ltx.model.transformer import X0Model, load_transformer  # noqa: E402
from ltx.weights import loader, lora, quantize, tiny  # noqa: E402

GOLDENS = Path(__file__).parent / "goldens"


@pytest.fixture(scope="module", params=tiny.VARIANTS)
def model_dir(request, tmp_path_factory):
    return request.param, tiny.create(request.param, tmp_path_factory.mktemp("lora") / "m")


def _bf16_ulp(x: np.ndarray) -> np.ndarray:
    e = np.floor(np.log2(np.maximum(np.abs(x), np.float32(2.0**-126))))
    return np.float32(2.0) ** (e - 7)


def _bf16(x: mx.array) -> mx.array:
    return x.astype(mx.bfloat16).astype(mx.float32)


def _reference_parts(d: Path, module: str, strength: float):
    w = mx.load(str(d / "model.safetensors"))[f"model.diffusion_model.{module}.weight"].astype(mx.float32)
    pair = mx.load(str(d / "distilled_lora.safetensors"))
    a, b = (pair[f"diffusion_model.{module}.lora_{x}.weight"].astype(mx.float32) for x in "AB")
    return w, _bf16(_bf16(b * strength) @ a), strength * b @ a


def test_reference_rounding_chain(model_dir):
    variant, d = model_dir
    gold = {k: np.array(v) for k, v in mx.load(str(GOLDENS / variant / "lora.safetensors")).items()}
    strength = float(gold.pop("strength")[0])
    for key, ref in gold.items():
        w, d_ref, _ = _reference_parts(d, key.removeprefix("fused."), strength)
        assert np.array_equal(np.array(_bf16(w + d_ref)), ref), key


@pytest.mark.parametrize("fuse", ["lora.fuse_loras", "lora.apply_loras"])
def test_fusion_matches_reference(model_dir, fuse):
    variant, d = model_dir
    gold = {k: np.array(v) for k, v in mx.load(str(GOLDENS / variant / "lora.safetensors")).items()}
    strength = float(gold.pop("strength")[0])
    model = load_transformer(d / "model.safetensors", mx.float32)
    before = dict(tree_flatten(model.parameters()))
    path = d / "distilled_lora.safetensors"
    n = (
        lora.fuse_loras(model, [(path, strength)])
        if fuse == "lora.fuse_loras"
        else lora.apply_loras(model, [(path, strength)])["fused"]
    )
    assert n == len(lora.load_lora(path))
    params = dict(tree_flatten(model.parameters()))
    for key, ref in gold.items():
        name = key.removeprefix("fused.") + ".weight"
        ours = np.array(params[name].astype(mx.bfloat16).astype(mx.float32))
        _, d_ref, d_exact = _reference_parts(d, key.removeprefix("fused."), strength)
        diff = np.abs(ours - ref)
        assert (
            diff <= np.maximum(_bf16_ulp(ref), _bf16_ulp(ours)) + np.abs(np.array(d_ref - d_exact))
        ).all(), (name, float(diff.max()))
        assert not np.array_equal(np.array(before[name]), np.array(params[name]))  # the LoRA did change it


def test_runtime_lora_on_quantized_model(tmp_path):
    """Quantized layers get y = qlinear(x) + s (x A^T) B^T; float layers are fused; both close to fusing all."""
    d = tiny.create("2.0", tmp_path / "m")
    path = d / "distilled_lora.safetensors"
    fused = load_transformer(d / "model.safetensors", mx.float32)
    lora.fuse_loras(fused, [(path, 0.8)])
    model = load_transformer(d / "model.safetensors", mx.float32)
    done = quantize.quantize_model(model, 8, 32, "transformer_blocks.")
    counts = lora.apply_loras(model, [(path, 0.8)])
    assert counts["runtime"] == len(done) and counts["fused"] == len(lora.load_lora(path)) - len(done)
    wrapped = [k for k, m in model.named_modules() if isinstance(m, quantize.LoRAQuantizedLinear)]
    assert sorted(wrapped) == sorted(done)
    inputs = golden_inputs("2.0")
    ref, got = X0Model(fused)(*inputs), X0Model(model)(*inputs)
    for r, g in zip(ref, got, strict=True):
        assert float(mx.abs(r - g).max() / mx.abs(r).max()) < 0.01
    # the run-time LoRA is really applied: without it the output moves further away
    bare = load_transformer(d / "model.safetensors", mx.float32)
    quantize.quantize_model(bare, 8, 32, "transformer_blocks.")
    lora.apply_loras(bare, [])
    assert not np.allclose(np.array(X0Model(bare)(*inputs)[0]), np.array(got[0]))


def _write_lora(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    tiny.write_safetensors(path, tensors, {}, "BF16")
    return path


@pytest.mark.parametrize(
    "apply", [lambda m, lo: lora.fuse_loras(m, lo), lambda m, lo: lora.apply_loras(m, lo)]
)
def test_lora_errors(tmp_path, apply):
    d = tiny.create("2.0", tmp_path / "m")
    model = load_transformer(d / "model.safetensors", mx.float32)
    key = "diffusion_model.transformer_blocks.0.attn1.to_q"
    shape = _write_lora(
        tmp_path / "shape.safetensors",
        {
            f"{key}.lora_A.weight": np.ones((2, 8), np.float32),
            f"{key}.lora_B.weight": np.ones((16, 2), np.float32),
        },
    )
    with pytest.raises(
        loader.CheckpointError,
        match=r"transformer_blocks.0.attn1.to_q has lora_B \(16, 2\) @ lora_A \(2, 8\)",
    ):
        apply(model, [(shape, 1.0)])
    gone = "diffusion_model.transformer_blocks.7.attn1.to_q"
    missing = _write_lora(
        tmp_path / "missing.safetensors",
        {
            f"{gone}.lora_A.weight": np.ones((2, 16), np.float32),
            f"{gone}.lora_B.weight": np.ones((16, 2), np.float32),
        },
    )
    with pytest.raises(loader.CheckpointError, match="transformer_blocks.7.attn1.to_q"):
        apply(model, [(missing, 1.0)])
    lone = _write_lora(tmp_path / "lone.safetensors", {f"{key}.lora_A.weight": np.ones((2, 16), np.float32)})
    with pytest.raises(loader.CheckpointError, match=r"attn1.to_q has no lora_B.weight"):
        apply(model, [(lone, 1.0)])
