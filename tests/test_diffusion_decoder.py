"""The LTX-2.5 video decoders against the 1.2.0 reference (tests/goldens/2.5/video_decoders.safetensors,
made by tests/reference/golden25_video_decoders.py), the neighbourhood attention against its definition,
and the diffusion decoder's tile plan."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from safetensors.numpy import load_file

from ltx.video import diffusion_tiling as dt
from ltx.video.diffusion_decoder import load_diffusion_decoder
from ltx.video.neighborhood import axis_runs, na3d, na3d_reference
from ltx.video.vae import load_video_decoder
from ltx.weights import tiny
from ltx.weights.loader import CheckpointError

GOLDENS = Path(__file__).parent / "goldens" / "2.5"
TOL = 1e-4


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def noise_draw(seed: int, index: int, shape) -> np.ndarray:  # as golden25_video_decoders.noise_draw
    return np.random.RandomState(seed * 1000 + index).standard_normal(tuple(shape)).astype(np.float32)


def injected(seed: int, shapes: np.ndarray):
    calls = []

    def draw(shape):
        i = len(calls)
        assert tuple(shape) == tuple(shapes[i]), (i, shape, shapes[i])
        calls.append(shape)
        return mx.array(noise_draw(seed, i, shape))

    return draw, calls


@pytest.fixture(scope="module")
def golden():
    return load_file(str(GOLDENS / "video_decoders.safetensors"))


def vae_files(**schedule) -> dict:
    """The tiny 2.5's two video VAE files (optionally another decode schedule in the diffusion one's metadata)."""
    files = {k: v for k, v in tiny.load_manifest("2.5")["files"].items() if k.startswith("vae/video_vae")}
    if schedule:
        vae = files["vae/video_vae.safetensors"]["metadata"]["config"]["vae"]
        vae["model_output_type"] = schedule["output_type"]
        vae["decoder"]["default_num_inference_steps"] = schedule["steps"]
    return {"files": files}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny.materialize(vae_files(), tmp_path_factory.mktemp("tiny25") / "model")


def _tiling(golden) -> tuple:
    t = golden["tiling"].tolist()
    return tuple(None if t[i] == 0 else (t[i], t[i + 1]) for i in (0, 2, 4))


@pytest.mark.parametrize("pathway", ["chunked", "combined"])
def test_diffusion_decoder_untiled_and_tiled(golden, model_dir, pathway):
    dec = load_diffusion_decoder(model_dir / "vae/video_vae.safetensors", mx.float32, pathway)
    draw, calls = injected(11, golden[f"{pathway}_noise"])
    video = dec.decode(mx.array(golden["latent"]), None, draw)
    assert len(calls) == len(golden[f"{pathway}_noise"])
    assert rel(np.array(video).transpose(0, 4, 1, 2, 3), golden[f"{pathway}_video"]) <= TOL
    draw, calls = injected(12, golden[f"{pathway}_tiled_noise"])
    chunks = list(dec.decode_stream(mx.array(golden["tiled_latent"]), _tiling(golden), draw))
    assert [c.shape[1] for c in chunks] == golden[f"{pathway}_tiled_chunk_frames"].tolist()
    assert len(calls) == len(golden[f"{pathway}_tiled_noise"])  # fresh noise per tile, in tile order
    tiled = np.concatenate([np.array(c) for c in chunks], axis=1).transpose(0, 4, 1, 2, 3)
    assert rel(tiled, golden[f"{pathway}_tiled_video"]) <= TOL


@pytest.mark.parametrize("name,output_type,steps", [("x0_3", "x0", 3), ("v_2", "v", 2)])
def test_diffusion_decoder_schedules(golden, tmp_path, name, output_type, steps):
    model = tiny.materialize(vae_files(output_type=output_type, steps=steps), tmp_path / "model")
    dec = load_diffusion_decoder(model / "vae/video_vae.safetensors", mx.float32)
    draw, _ = injected(13, golden[f"{name}_noise"])
    video = dec.decode(mx.array(golden["latent"]), None, draw)
    assert rel(np.array(video).transpose(0, 4, 1, 2, 3), golden[f"{name}_video"]) <= TOL
    if f"{name}_tiled_video" in golden:  # one full-size draw, sliced per tile
        draw, calls = injected(14, golden[f"{name}_tiled_noise"])
        video = dec.decode(mx.array(golden["tiled_latent"]), _tiling(golden), draw)
        assert len(calls) == 1
        assert rel(np.array(video).transpose(0, 4, 1, 2, 3), golden[f"{name}_tiled_video"]) <= TOL


def test_conv_decoder_25(golden, model_dir):
    dec = load_video_decoder(model_dir / "vae/video_vae_conv.safetensors", mx.float32)
    video = dec.decode(mx.array(golden["conv_latent"]))
    assert rel(np.array(video).transpose(0, 4, 1, 2, 3), golden["conv_video"]) <= TOL


def test_decoder_kinds_are_not_interchangeable(model_dir):
    with pytest.raises(CheckpointError, match="convolutional decoder"):
        load_diffusion_decoder(model_dir / "vae/video_vae_conv.safetensors")


@pytest.mark.parametrize(
    "shape,kernel",
    [((3, 5, 6), (3, 3, 3)), ((5, 9, 11), (3, 7, 7)), ((4, 7, 13), (3, 5, 5)), ((3, 7, 7), (3, 7, 7))],
)
def test_neighborhood_attention_matches_its_definition(shape, kernel):
    rng = np.random.default_rng(sum(shape))
    q, k, v = (rng.standard_normal((2, *shape, 16)).astype(np.float32) for _ in range(3))
    out = na3d(mx.array(q), mx.array(k), mx.array(v), kernel, heads=2, scale=0.3)
    assert np.abs(np.array(out) - na3d_reference(q, k, v, kernel, 2, 0.3)).max() < 2e-6
    with pytest.raises(ValueError, match="kernel"):
        na3d(mx.array(q[:, :2]), mx.array(k[:, :2]), mx.array(v[:, :2]), (3, 3, 3), 2)


def test_attention_tiles_share_geometry():
    runs = axis_runs(40, 7)  # 5 tiles of 8: the first (shifted window), three interior ones, the last
    assert [(r.n, r.size) for r in runs] == [(1, 8), (3, 8), (1, 8)]
    assert runs[1].region == 8 + 6 and runs[1].k0 == 8 - 3


def test_tile_plan_masks_sum_to_one():
    tiles = dt.plan_tiles((9, 8, 16), ((16, 8), None, (64, 32)), (2, 2, 2), 4, (3, 5, 5), (8, 32))
    assert len(tiles) == 2 * 3
    for axis, n in ((0, 17), (2, 128)):
        acc = np.zeros(n)
        for s, m in {(t.out[axis].start, t.out[axis].stop): t.masks[axis] for t in tiles}.items():
            acc[s[0] : s[1]] += m
        np.testing.assert_allclose(acc, 1.0, atol=1e-6)
    assert {(t.out[0].start, t.out[0].stop) for t in tiles} == {(0, 15), (7, 17)}
    with pytest.raises(ValueError, match="overlap >= 32"):
        dt.plan_tiles((9, 8, 16), (None, None, (64, 16)), (2, 2, 2), 4, (3, 5, 5), (8, 32))


def test_released_configuration_parameter_count():
    """The 1.2.0 defaults (the released decoder's architecture) build lazily with the reference's count:
    104,751,536 parameters (VideoDecoderConfigurator on the meta device) + the 2 x 128 latent statistics."""
    from ltx.video.diffusion_decoder import DiffusionDecoderConfig, parameter_count

    vae = {
        "_class_name": "CausalDiffusionVAE",
        "model_output_type": "x0",
        "decoder": {"default_num_inference_steps": 1},
    }
    assert parameter_count(DiffusionDecoderConfig.from_vae(vae)) == 104_751_536 + 256
