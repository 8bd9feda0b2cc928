"""RoPE frequency ladders against the reference's, bit for bit (issue #27).

tests/goldens/rope_ladders.safetensors (tests/reference/golden_rope.py) holds ltx-core's float32
ladders (generate_freq_grid_pytorch) for every (theta, position axes, inner dim) its LTX-2.0 and
LTX-2.3 modules build, at the tiny and the real widths, read off the reference's own configurators.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from ltx.model import rope
from ltx.model.transformer import TransformerConfig
from ltx.text.encoder import ROPE_THETA, TextConfig, connector_rope
from ltx.weights import tiny

GOLDEN = Path(__file__).parent / "goldens" / "rope_ladders.safetensors"
MODULES = ("video", "audio", "cross", "video_connector", "audio_connector")
# The official widths (as golden_rope.REAL / REAL_23) over the tiny transformer config.
REAL = {
    "num_attention_heads": 32,
    "attention_head_dim": 128,
    "audio_num_attention_heads": 32,
    "audio_attention_head_dim": 64,
    "cross_attention_dim": 4096,
    "audio_cross_attention_dim": 2048,
    "caption_channels": 3840,
    "connector_num_attention_heads": 30,
    "connector_attention_head_dim": 128,
}
REAL_23 = {
    "connector_num_attention_heads": 32,
    "connector_attention_head_dim": 128,
    "audio_connector_num_attention_heads": 32,
    "audio_connector_attention_head_dim": 64,
}


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    return load_file(str(GOLDEN))


def combos(g: dict[str, np.ndarray]) -> dict[str, tuple[float, int, int]]:
    return {
        k[len("combo/") :]: (float(v[0]), int(v[1]), int(v[2]))
        for k, v in g.items()
        if k.startswith("combo/")
    }


def reference_ladder(g, theta: float, axes: int, dim: int) -> np.ndarray:
    return g[f"ladder/{theta:g}/{axes}/{dim}"]


def test_golden_covers_every_module(golden):
    names = set(combos(golden))
    for variant in tiny.VARIANTS:
        for scale in ("tiny", "real"):
            assert {f"{variant}/{scale}/{m}" for m in MODULES} <= names
    assert golden["combo/2.3/real/video_connector"].tolist() == [10000.0, 1.0, 4096.0]
    assert golden["combo/2.0/real/video"].tolist() == [10000.0, 3.0, 4096.0]


def our_combos(transformer: dict) -> dict[str, tuple[float, int, int]]:
    """(theta, axes, dim) our transformer (TransformerModel._rope) and connectors (Connector) use."""
    c = TransformerConfig.from_dict(transformer)
    t = TextConfig.from_dict(transformer)
    theta = c.positional_embedding_theta
    out = {
        "video": (theta, len(c.positional_embedding_max_pos), c.inner_dim),
        "audio": (theta, len(c.audio_positional_embedding_max_pos), c.audio_inner_dim),
        "cross": (theta, 1, c.audio_cross_attention_dim),
    }
    for name, audio in (("video_connector", False), ("audio_connector", True)):
        heads, head_dim, _ = t.connector_dims(audio)
        out[name] = (ROPE_THETA, 1, heads * head_dim)
    return out


@pytest.mark.parametrize("variant", tiny.VARIANTS)
def test_our_configs_ask_for_the_reference_ladders(golden, variant):
    manifest = json.loads((tiny.ASSETS / variant / "manifest.json").read_text())
    cfg = manifest["files"]["model.safetensors"]["metadata"]["config"]["transformer"]
    real = {**cfg, **REAL, **(REAL_23 if variant == "2.3" else {})}
    want = combos(golden)
    for scale, transformer in (("tiny", cfg), ("real", real)):
        for module, triple in our_combos(transformer).items():
            assert triple == want[f"{variant}/{scale}/{module}"], (variant, scale, module)


def test_float32_ladders_match_the_reference_bit_for_bit(golden):
    vector_floats = int(golden["torch_vector_floats"][0])  # the CPU build the goldens came from
    for name, (theta, axes, dim) in combos(golden).items():
        want = reference_ladder(golden, theta, axes, dim)
        got = rope.torch_ladder(theta, dim // (2 * axes), vector_floats)
        assert got.dtype == np.float32 and got.shape == want.shape, name
        bad = np.nonzero(got.view(np.uint32) != want.view(np.uint32))[0]
        assert bad.size == 0, f"{name}: {bad.size} of {want.size} entries differ, first at {bad[:8]}"
        if vector_floats == rope.TORCH_VECTOR_FLOATS:  # the model's own path
            ours = rope.ladder(theta, axes, dim, double_precision=False)
            assert np.array_equal(ours.view(np.uint32), want.view(np.uint32)), name
            assert np.array_equal(np.asarray(rope.frequency_ladder(theta, axes, dim, False)), want), name


def _float64_ladder(theta: float, axes: int, dim: int) -> np.ndarray:
    """The float64 path as it was (generate_freq_grid_np)."""
    n = dim // (2 * axes)
    exps = np.linspace(np.log(1.0) / np.log(theta), np.log(theta) / np.log(theta), n, dtype=np.float64)
    return (np.power(theta, exps) * math.pi / 2).astype(np.float32)


def test_float64_ladders_unchanged(golden):
    triples = set(combos(golden).values()) | {
        (theta, 1, 2 * n) for theta in (10000.0, 500.0) for n in range(1, 70)
    }
    for theta, axes, dim in sorted(triples):
        want = _float64_ladder(theta, axes, dim)
        got = rope.ladder(theta, axes, dim, double_precision=True)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (theta, axes, dim)
        assert np.array_equal(np.asarray(rope.frequency_ladder(theta, axes, dim)), want)


def test_ladder_edges():
    assert rope.torch_ladder(10000.0, 0).shape == (0,)
    assert rope.torch_ladder(10000.0, 1).tolist() == [np.float32(np.float32(math.pi) / 2)]
    lad = rope.ladder(10000.0, 1, 64, False)
    assert not lad.flags.writeable  # cached, shared
    with pytest.raises(ValueError, match="theta"):
        rope.torch_ladder(float("inf"), 4)


def _exact(x) -> Fraction:
    return Fraction(float(x))


def _nearest(v: Fraction, dtype) -> np.floating:
    """v rounded to nearest, ties to even, in dtype."""
    d = dtype(float(v))
    lo, hi = (d, np.nextafter(d, dtype(np.inf))) if _exact(d) <= v else (np.nextafter(d, dtype(-np.inf)), d)
    dl, dh = v - _exact(lo), _exact(hi) - v
    if dl != dh:
        return lo if dl < dh else hi
    return lo if int(np.array(lo).view(np.int64 if dtype == np.float64 else np.int32)) % 2 == 0 else hi


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_emulated_fma_is_correctly_rounded(dtype):
    fma = rope._fma32 if dtype == np.float32 else rope._fma64
    rng = np.random.default_rng(0)
    eps = np.finfo(dtype).eps
    for i in range(3000):
        a, b, c = (dtype(v) for v in rng.standard_normal(3) * np.exp2(rng.integers(-8, 8, 3)))
        if i % 2:  # near-cancellation, where a separate multiply and add round twice
            c = dtype(-(a * b) * dtype(1 + int(rng.integers(-4, 5)) * eps))
        want = _nearest(_exact(a) * _exact(b) + _exact(c), dtype)
        got = fma(a, b, c)
        assert np.asarray(got).dtype == dtype, np.asarray(got).dtype
        assert np.asarray(got).tobytes() == np.asarray(want, dtype).tobytes(), (a, b, c)


def test_connector_rope_float32_uses_the_reference_ladder(golden):
    theta, axes, dim = combos(golden)["2.0/tiny/video_connector"]
    length, max_pos = 8, 4096
    grid = reference_ladder(golden, theta, axes, dim)
    frac = np.arange(length, dtype=np.float32) / np.float32(max_pos)
    freqs = grid[None, :] * (frac * np.float32(2) - np.float32(1))[:, None]
    cos, _ = connector_rope(length, dim, 2, max_pos, "interleaved", False)
    assert np.array_equal(np.asarray(cos)[0], np.repeat(np.cos(freqs), 2, axis=-1))
