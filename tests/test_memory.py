"""Memory: `ltx info` estimates against measured peaks; the streamed (low-memory) transformer."""

from __future__ import annotations

from pathlib import Path

import pytest

from ltx import backend  # noqa: F401

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
from test_quantize import golden_inputs, write_widened  # noqa: E402

from ltx import lowmem, memory, patchify, tiny  # noqa: E402
from ltx.transformer import Modality, X0Model, load_transformer  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mem")
    d = tiny.create("2.0", root / "tiny")
    return {"tiny": d / "model.safetensors", "mid": write_widened(root / "mid.safetensors", 64, 32, layers=4)}


def _inputs(cfg, frames: int, h: int, w: int, ta: int, s: int) -> tuple[Modality, Modality]:
    rng = np.random.RandomState(0)
    t = frames * h * w
    arr = lambda *shape: mx.array(rng.standard_normal(shape).astype(np.float32))  # noqa: E731
    ctx = arr(1, s, cfg.caption_channels)
    v = Modality(
        arr(1, t, 128),
        mx.full((1,), 0.8),
        mx.full((1, t, 1), 0.8),
        patchify.video_positions(frames, h, w, 24.0),
        ctx,
    )
    a = Modality(
        arr(1, ta, 128), mx.full((1,), 0.6), mx.full((1, ta, 1), 0.6), patchify.audio_positions(ta), ctx
    )
    mx.eval(v.latent, v.positions, a.latent, a.positions, ctx)
    return v, a


def _measure(load, inputs) -> tuple[int, tuple]:
    mx.clear_cache()
    base = mx.get_active_memory()
    mx.reset_peak_memory()
    model = load()
    mx.eval(model.parameters())
    out = X0Model(model)(*inputs)
    mx.eval(out)
    return mx.get_peak_memory() - base, out


@pytest.mark.parametrize("name", ["tiny", "mid"])
@pytest.mark.parametrize("size", [(3, 8, 8, 26, 64), (5, 16, 16, 51, 128)])
def test_transformer_estimate_within_25_percent(models, name, size):
    path = models[name]
    cfg = load_transformer(path, mx.float32).config
    comps = memory.components(path, path, path.parent / "none", 4)
    frames, h, w, ta, s = size
    inputs = _inputs(cfg, *size)
    measured, _ = _measure(lambda: load_transformer(path, mx.float32), inputs)
    est = comps["transformer"].bytes + memory.transformer_activations(cfg, frames * h * w, ta, s, 4)
    assert abs(est - measured) <= 0.25 * measured, (name, size, est, measured)


def test_streamed_is_bit_identical_and_lowers_peak(models):
    inputs = golden_inputs("2.0")
    normal = X0Model(load_transformer(models["tiny"], mx.float32))(*inputs)
    streamed_model = lowmem.load_streamed_transformer(models["tiny"], mx.float32)
    streamed = X0Model(streamed_model)(*inputs)
    for n, s in zip(normal, streamed, strict=True):
        assert np.array_equal(np.array(n), np.array(s))
    assert streamed_model.streaming_source[0].reads == 2  # each block read once per forward
    # peak: the widened 4-block model, where the block weights dominate
    cfg = load_transformer(models["mid"], mx.float32).config
    small = _inputs(cfg, 3, 2, 2, 5, 8)
    peak_normal, out_n = _measure(lambda: load_transformer(models["mid"], mx.float32), small)
    peak_streamed, out_s = _measure(
        lambda: lowmem.load_streamed_transformer(models["mid"], mx.float32), small
    )
    assert all(np.array_equal(np.array(a), np.array(b)) for a, b in zip(out_n, out_s, strict=True))
    assert peak_streamed < 0.6 * peak_normal, (peak_streamed, peak_normal)


def test_streamed_with_lora_matches_fused(tmp_path):
    from ltx import lora

    d = tiny.create("2.0", tmp_path / "m")
    path = d / "distilled_lora.safetensors"
    fused = load_transformer(d / "model.safetensors", mx.float32)
    lora.fuse_loras(fused, [(path, 0.8)])
    streamed = lowmem.load_streamed_transformer(d / "model.safetensors", mx.float32, loras=[(path, 0.8)])
    inputs = golden_inputs("2.0")
    for a, b in zip(X0Model(fused)(*inputs), X0Model(streamed)(*inputs), strict=True):
        assert np.array_equal(np.array(a), np.array(b))


def test_plan_budget(models):
    cfg = load_transformer(models["mid"], mx.float32).config
    comps = memory.components(models["mid"], models["mid"], models["mid"].parent / "none", 4)
    for c in ("text_projection", "video_decoder", "audio_decoder", "vocoder", "upsampler", "gemma"):
        comps[c] = memory.Component(c, 0, 0, "-")
    block = comps["transformer"].bytes // 8
    keep = lambda es: [e for e in es if e.stage in ("denoise", "refine")]  # noqa: E731
    normal = keep(memory.estimate_stages(comps, cfg, 64, 64, 9, text_tokens=8))
    streamed = keep(memory.estimate_stages(comps, cfg, 64, 64, 9, text_tokens=8, streamed_block_bytes=block))
    worst, worst_streamed = max(e.peak for e in normal), max(e.peak for e in streamed)
    assert worst_streamed < worst
    assert memory.plan(worst, normal, streamed) is False
    assert memory.plan(worst - 1, normal, streamed) is True
    with pytest.raises(ValueError, match="--memory-budget"):
        memory.plan(worst_streamed - 1, normal, streamed)


def _decoder(base_channels: int | None):
    """The tiny 2.0 video decoder, or the same widened to `base_channels` (synthesised weights, in memory)."""
    import json

    from mlx.utils import tree_flatten, tree_unflatten

    from ltx.video_vae import VideoDecoder, VideoVAEConfig

    cfg = json.loads(
        json.dumps(tiny.load_manifest("2.0")["files"]["model.safetensors"]["metadata"]["config"])
    )
    vae = cfg["vae"]
    if base_channels is not None:
        vae["decoder_base_channels"] = base_channels
    model = VideoDecoder(VideoVAEConfig.from_dict(vae))
    flat = tree_flatten(model.parameters())
    model.update(tree_unflatten([(k, mx.array(tiny.synth("vae.decoder." + k, v.shape))) for k, v in flat]))
    return model


@pytest.mark.parametrize("base", [8, 32])  # 8: the tiny decoder; 32: a mid-size one
@pytest.mark.parametrize("size", [(128, 192, 9), (128, 192, 17)])
def test_decode_estimate_within_25_percent(base, size):
    from ltx.tiling import parse_tiling

    h, w, frames = size
    latent = mx.array(
        np.random.RandomState(0).standard_normal((1, 128, (frames - 1) // 8 + 1, h // 32, w // 32))
    )
    latent = latent.astype(mx.float32)
    mx.eval(latent)
    mx.clear_cache()
    base_mem = mx.get_active_memory()
    mx.reset_peak_memory()
    model = _decoder(base)
    mx.eval(model.parameters())
    weights = mx.get_active_memory() - base_mem
    for chunk in model.decode_stream(latent, parse_tiling("default"), seed=0):
        np.array(chunk)
    measured = mx.get_peak_memory() - base_mem
    patch = model.conv_out.conv.weight.shape[0] // 3
    est = weights + memory.decode_activations(base, patch, frames, h, w, h, w, 4)
    assert abs(est - measured) <= 0.25 * measured, (base, size, est, measured)


def test_decode_widths_from_checkpoint(models):
    comps = memory.components(models["tiny"], models["tiny"], models["tiny"].parent / "none", 4)
    assert comps["video_decoder"].widths == {"channels": 8, "patch_pixels": 16}
