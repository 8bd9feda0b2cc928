"""`ltx convert`: official tiny checkpoints -> MLX-native directories that the same loaders read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ltx import backend  # noqa: F401

# isort: split

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402
from test_quantize import BOUNDS, golden_inputs, write_widened  # noqa: E402

from ltx.model.transformer import X0Model, load_transformer  # noqa: E402
from ltx.text import gemma
from ltx.weights import convert, loader, tiny  # noqa: E402

DIGESTS = {"checkpoint": "sha256:c0", "upsampler": "sha256:u0", "gemma": "sha256:g0"}


def _source(d: Path, digests=DIGESTS) -> convert.Source:
    return convert.Source(d / "model.safetensors", d / "upsampler.safetensors", d / "gemma", dict(digests))


@pytest.fixture(scope="module", params=tiny.VARIANTS)
def official(request, tmp_path_factory) -> tuple[str, Path]:
    return request.param, tiny.create(request.param, tmp_path_factory.mktemp("official") / "model")


def test_float_conversion_is_bit_identical(official, tmp_path):
    variant, d = official
    manifest = convert.convert(_source(d), tmp_path / "mlx")
    out = tmp_path / "mlx"
    assert convert.is_converted(out) and not convert.is_converted(d)
    files = convert.converted_files(out)
    assert files["checkpoint"] == out / "model.safetensors" and files["gemma"] == out / "gemma"
    # no quantization: every recorded digest is the source's, so every cache key stays
    assert manifest["digests"] == {**DIGESTS, "transformer": DIGESTS["checkpoint"]}
    assert manifest["quantization"] is None and convert.quantization_info(files["checkpoint"]) is None
    a, meta_a = loader.load_checkpoint(d / "model.safetensors")
    b, meta_b = loader.load_checkpoint(files["checkpoint"])
    assert sorted(a) == sorted(b) and all(
        a[k].dtype == b[k].dtype and mx.array_equal(a[k], b[k]).item() for k in a
    )
    assert loader.read_config(meta_a) == loader.read_config(meta_b)
    assert meta_a.get("model_version") == meta_b.get("model_version")
    inputs = golden_inputs(variant)
    ref = X0Model(load_transformer(d / "model.safetensors", mx.float32))(*inputs)
    got = X0Model(load_transformer(files["checkpoint"], mx.float32))(*inputs)
    for r, g in zip(ref, got, strict=True):
        assert np.array_equal(np.array(r), np.array(g))
    assert (out / "upsampler.safetensors").read_bytes() == (d / "upsampler.safetensors").read_bytes()
    assert sorted(p.name for p in (out / "gemma").iterdir()) == sorted(
        p.name for p in (d / "gemma").iterdir()
    )


def test_quantized_conversion(official, tmp_path):
    variant, d = official
    manifest = convert.convert(_source(d), tmp_path / "q8", bits=8, group_size=32)
    files = convert.converted_files(tmp_path / "q8")
    q = manifest["quantization"]
    assert (q["bits"], q["group_size"]) == (8, 32) and q["transformer_modules"] > 0 and q["gemma_modules"] > 0
    info = convert.quantization_info(files["checkpoint"])
    assert (info["bits"], info["group_size"], info["modules"]) == (8, 32, q["transformer_modules"])
    # quantizing changes the identity of exactly the quantized components
    d2 = manifest["digests"]
    assert d2["checkpoint"] == DIGESTS["checkpoint"] and d2["upsampler"] == DIGESTS["upsampler"]
    assert d2["transformer"] not in DIGESTS.values() and d2["gemma"] != DIGESTS["gemma"]
    model = load_transformer(files["checkpoint"], mx.float32)
    quantized = [k for k, m in model.named_modules() if isinstance(m, nn.QuantizedLinear)]
    assert len(quantized) == q["transformer_modules"]
    inputs = golden_inputs(variant)
    ref = X0Model(load_transformer(d / "model.safetensors", mx.float32))(*inputs)
    got = X0Model(model)(*inputs)
    errs = [
        float(np.abs(np.array(g) - np.array(r)).max() / np.abs(np.array(r)).max())
        for r, g in zip(ref, got, strict=True)
    ]
    assert 0 < max(errs) <= BOUNDS[8], errs
    g_ref, g_q = gemma.load_gemma(d / "gemma", mx.float32), gemma.load_gemma(files["gemma"], mx.float32)
    assert sum(isinstance(m, nn.QuantizedLinear) for _, m in g_q.named_modules()) == q["gemma_modules"]
    ids, mask = mx.array([[0, 0, 2, 17, 33, 400]]), mx.array([[0, 0, 1, 1, 1, 1]])
    hr, hq = g_ref(ids, mask)[-1][:, 2:], g_q(ids, mask)[-1][:, 2:]
    assert 0 < float(mx.abs(hr - hq).max() / mx.abs(hr).max()) < 0.05  # measured 0.026 (tiny, 8-bit)


def test_mid_conversion_memory_and_size(tmp_path):
    """4-bit, group 64 on the widened model: the file shrinks by the packing, and loading it never
    holds two copies (file-dtype tensors all read besides the loaded ones would be `loaded + file`)."""
    src = tmp_path / "src"
    src.mkdir()
    write_widened(src / "model.safetensors", layers=4)
    tiny.create("2.0", tmp_path / "t")
    for name in ("upsampler.safetensors", "gemma"):
        (tmp_path / "t" / name).rename(src / name)
    convert.convert(_source(src), tmp_path / "q4", bits=4, group_size=64)
    path = tmp_path / "q4" / "model.safetensors"
    header, _ = loader.read_header(path)
    src_header, _ = loader.read_header(src / "model.safetensors")

    def nbytes(h, key):
        s, e = h[key]["data_offsets"]
        return e - s

    k = "model.diffusion_model.transformer_blocks.0.ff.net.2"
    assert header[f"{k}.weight"]["dtype"] == "U32"
    packed = sum(nbytes(header, f"{k}.{p}") for p in ("weight", "scales", "biases"))
    assert nbytes(src_header, f"{k}.weight") / packed == pytest.approx(2 / (0.5 + 4 / 64))  # bf16 vs 4-bit
    mx.clear_cache()
    mx.reset_peak_memory()
    base = mx.get_active_memory()
    model = load_transformer(path, mx.float32)
    mx.eval(model.parameters())
    loaded = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
    file_bytes = sum(nbytes(header, k) for k in header)
    assert mx.get_peak_memory() - base <= loaded + 0.5 * file_bytes  # measured: loaded + 0.25 * file


def test_refuses_existing_destination_and_leaves_no_debris(official, tmp_path):
    _, d = official
    (tmp_path / "exists").mkdir()
    with pytest.raises(ValueError, match="already exists"):
        convert.convert(_source(d), tmp_path / "exists")
    with pytest.raises(ValueError, match="--quantize 3"):
        convert.convert(_source(d), tmp_path / "bad", bits=3)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(loader.CheckpointError):
        convert.convert(_source(broken), tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "exists"]


def test_manifest_version_checked(official, tmp_path):
    _, d = official
    convert.convert(_source(d), tmp_path / "m")
    m = json.loads((tmp_path / "m" / convert.MANIFEST).read_text())
    m["version"] = 99
    (tmp_path / "m" / convert.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ValueError, match="convert the model again"):
        convert.converted_files(tmp_path / "m")
