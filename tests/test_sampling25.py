"""LTX-2.5's duration head and Euler ancestral step against the 1.2.0 reference's goldens (float32)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ltx import backend  # noqa: F401

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from ltx.diffusion import sampling  # noqa: E402
from ltx.diffusion.conditioning import LatentState  # noqa: E402
from ltx.text import duration  # noqa: E402
from ltx.weights import tiny  # noqa: E402

GOLDENS = Path(__file__).parent / "goldens" / "2.5"


def _gold(name: str) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in mx.load(str(GOLDENS / f"{name}.safetensors")).items()}


def rel_err(got, ref) -> float:
    got, ref = np.asarray(got, np.float32), np.asarray(ref, np.float32)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    return float(np.abs(got - ref).max() / max(1.0, float(np.abs(ref).max())))


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    d = tiny.create("2.5", tmp_path_factory.mktemp("tiny25") / "m")
    return duration.load_duration_head(d / "model_patches/duration_head.safetensors", mx.float32)


def test_duration_head(head):
    g = _gold("duration")
    v, a = mx.array(g["in.video"]), mx.array(g["in.audio"])
    assert rel_err(head(v, a), g["seconds.both"]) <= 1e-4
    assert rel_err(head(v, None), g["seconds.video"]) <= 1e-4
    assert rel_err(head(None, a), g["seconds.audio"]) <= 1e-4
    assert rel_err(head(mx.array(g["in.video2"]), None), g["seconds.batch2"]) <= 1e-4
    frames = []
    for scale in (0.0, 0.5, 1.0, 3.0):
        assert rel_err(head(v * scale, a * scale), g[f"seconds.scale{scale}"]) <= 1e-4
        for lo, hi in g["ranges"]:
            frames.append(duration.predict_frames(head, v * scale, a * scale, 24.0, float(lo), float(hi))[0])
    assert frames == g["frames"].tolist()
    assert all((f - 1) % 8 == 0 for f in frames)
    with pytest.raises(ValueError, match="one prompt at a time"):
        duration.predict_frames(head, mx.array(g["in.video2"]), None, 24.0)


def test_seconds_to_frames():
    assert duration.seconds_to_frames(5.0, 24.0, 24, 480) == 113  # 120 -> floor to 8k + 1
    assert duration.seconds_to_frames(0.2, 24.0, 24, 480) == 25  # clamped to 24, floored to 17 < 24: up
    assert duration.seconds_to_frames(100.0, 24.0, 24, 480) == 473
    assert duration.seconds_to_frames(0.9, 25.0, 20, 500) == 25


def test_duration_head_missing(tmp_path):
    d = tiny.create("2.5", tmp_path / "m")
    from ltx.weights.loader import CheckpointError

    with pytest.raises(CheckpointError, match="no duration head"):
        duration.load_duration_head(d / "vae/audio_vae.safetensors")


def test_ancestral_step():
    g = _gold("diffusion")
    x, d, eps = (mx.array(g[f"in.{k}"]) for k in ("sample", "denoised", "noise"))
    sig = [float(s) for s in g["sigmas"]]
    worst = 0.0
    for k, (eta, s_noise) in enumerate(g["settings"]):
        for i in range(len(sig) - 1):
            got = sampling.euler_ancestral_step(x, d, sig[i], sig[i + 1], eps, float(eta), float(s_noise))
            worst = max(worst, rel_err(got, g[f"step.{k}.{i}"]))
    assert worst <= 1e-5, worst
    # eta 0 is the plain Euler step
    ref = sampling.euler_step(x, d, sig[1], sig[2])
    assert rel_err(sampling.euler_ancestral_step(x, d, sig[1], sig[2], None, eta=0.0), ref) <= 1e-6


def _state(rng, tokens=6, clean_first=2):
    lat = mx.array(rng.standard_normal((1, tokens, 128)).astype(np.float32))
    mask = np.ones((1, tokens, 1), np.float32)
    mask[:, :clean_first] = 0.0
    clean = mx.array(rng.standard_normal((1, tokens, 128)).astype(np.float32))
    return LatentState(lat, mx.array(mask), mx.zeros((1, 3, tokens, 2)), clean, (1, 128, 1, 1, tokens))


def test_ancestral_loop_keeps_conditioning_and_resumes():
    rng = np.random.RandomState(3)
    video, audio = _state(rng), _state(rng, 4, 0)
    sigmas = [1.0, 0.9, 0.5, 0.0]
    draw = sampling.ancestral_noise_source(10)

    def denoise(v, a, sigma, step):  # a deterministic stand-in for the transformer
        return v.latent * 0.5 + step, a.latent * 0.25 - sigma

    run = list(sampling.euler_ancestral_loop(denoise, sigmas, video, audio, draw))
    assert [s for s, _, _ in run] == [1, 2, 3]
    for _, v, _ in run:  # conditioned tokens stay clean at every step
        assert np.array_equal(np.array(v.latent[:, :2]), np.array(video.clean_latent[:, :2]))
    # resuming at step 2 from the yielded state is bit-identical
    _, v1, a1 = run[0]
    resumed = list(sampling.euler_ancestral_loop(denoise, sigmas, v1, a1, draw, start=1))
    assert np.array_equal(np.array(resumed[-1][1].latent), np.array(run[-1][1].latent))
    assert np.array_equal(np.array(resumed[-1][2].latent), np.array(run[-1][2].latent))
    # the stream is its own: another seed gives other noise, the initial noise's seed never collides
    other = sampling.ancestral_noise_source(11)(0, "video", (1, 6, 128))
    assert not np.allclose(np.array(draw(0, "video", (1, 6, 128))), np.array(other))
    init = sampling.noise(10, (1, 6, 128), "stage1_video")
    assert not np.allclose(np.array(draw(0, "video", (1, 6, 128))), np.array(init))
    # the last step takes the blended x0 prediction
    _, v2, _ = run[1]
    want = np.array(denoise(v2, a1, 0.5, 2)[0]) * np.array(video.denoise_mask) + np.array(
        video.clean_latent
    ) * (1 - np.array(video.denoise_mask))
    assert np.allclose(np.array(run[-1][1].latent), want)
