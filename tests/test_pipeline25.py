"""A whole tiny LTX-2.5 distilled run against the 1.2.0 reference (tests/reference/golden25_pipeline.py).

prompt (Gemma 4) -> the duration head's frame count (--num-frames omitted) -> stage 1 with Euler ancestral
-> upsample -> stage 2 (Euler) -> the conv video decoder, the audio VAE and vocoder: the split tiny-2.5
built with stages.pipeline.build and run node by node, the reference's noise injected (the initial noise
through ltx.diffusion.sampling.noise, the ancestral steps' through ancestral_noise_source). Every output
within max |ours - ref| <= 1e-3 * max(1, max |ref|).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ltx import backend  # noqa: F401

# isort: split

import mlx.core as mx  # noqa: E402
from test_pipeline import fake_noise

GOLDEN = Path(__file__).parent / "goldens" / "2.5" / "pipeline.safetensors"
REL = 1e-3
PROMPT, HEIGHT, WIDTH, FPS = "a red fox trots through fresh snow", 64, 128, 24  # golden25_pipeline.py's


def check(name: str, out, ref, rel: float = REL) -> float:
    out, ref = np.asarray(out, np.float32), np.asarray(ref, np.float32)
    assert out.shape == ref.shape, f"{name}: shape {out.shape} != reference {ref.shape}"
    err = float(np.abs(out - ref).max())
    bound = rel * max(1.0, float(np.abs(ref).max()))
    print(f"parity 2.5 {name}: max err {err:.3g} (bound {bound:.3g})")  # pytest -s
    assert err <= bound, f"{name}: max |ours - ref| = {err:.3g} > {bound:.3g}"
    return err


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from cache.store import Store
    from stages import framework, pipeline

    g = {k: np.asarray(v) for k, v in mx.load(str(GOLDEN)).items()}
    store = Store(tmp_path_factory.mktemp("pipe25"))
    store.ensure_writable()
    opts = pipeline.Options(
        prompt=PROMPT,
        height=HEIGHT,
        width=WIDTH,
        frame_rate=FPS,
        model="tiny-2.5",
        decoder="conv",
        tiling="none",
    )
    nodes, o, files = pipeline.build(opts, store)
    drawn: list[str] = []

    noise = fake_noise(g, drawn)

    def ancestral(seed):
        assert seed == o.seed

        def draw(step, modality, shape):
            ref = g[f"noise.ancestral.{step}.{modality}"]
            assert tuple(shape) == ref.shape
            drawn.append(f"ancestral.{step}.{modality}")
            return mx.array(ref)

        return draw

    arts = {}
    with pytest.MonkeyPatch.context() as mp:
        import ltx.diffusion.sampling as sampling

        mp.setattr(sampling, "noise", noise)
        mp.setattr(sampling, "ancestral_noise_source", ancestral)
        for name in ("encode", "denoise", "upsample", "refine", "decode", "decode_audio", "vocode"):
            arts[name] = framework.ensure(store, nodes[name], echo=lambda s: None)
    return g, nodes, o, files, arts, drawn


def test_the_run_is_the_reference_s(run):
    g, nodes, o, files, arts, drawn = run
    assert o.num_frames is None and o.auto_duration == (1.0, 20.0) and o.image_crf == 18
    assert nodes["denoise"].params.sampler == "euler_ancestral" and o.decoder == "conv"
    steps = len(nodes["denoise"].params.sigmas) - 2  # the last step takes the x0 prediction: no noise
    want = ["stage1_video", "stage1_audio"]
    want += [f"ancestral.{i}.{m}" for i in range(steps) for m in ("video", "audio")]
    assert drawn == want + ["stage2_video", "stage2_audio"]


def test_contexts_and_predicted_duration(run):
    g, _, _, _, arts, _ = run
    for kind in ("video", "audio"):
        ours = np.asarray(arts["encode"][f"{kind}_context"], np.float32)
        check(f"{kind} context", ours.reshape(-1, ours.shape[-1])[::16], g[f"context.{kind}_rows16"])
    check("duration seconds", np.atleast_1d(arts["encode"]["duration_seconds"]), g["duration_seconds"])
    assert int(np.asarray(arts["encode"]["num_frames"]).reshape(-1)[0]) == int(g["num_frames"].reshape(-1)[0])


@pytest.mark.parametrize(
    "stage,key,ref",
    [
        ("denoise", "video_latent", "stage1_video"),
        ("denoise", "audio_latent", "stage1_audio"),
        ("upsample", "video_latent", "upsampled"),
        ("refine", "video_latent", "stage2_video"),
        ("refine", "audio_latent", "stage2_audio"),
        ("vocode", "waveform", "waveform"),
    ],
)
def test_latents_and_audio(run, stage, key, ref):
    g, _, _, _, arts, _ = run
    check(f"{stage} {key}", arts[stage][key], g[ref])


def test_video(run):
    """The decode stage's uint8 frames against the reference's float frames in [0, 1] (float16-stored)."""
    g, _, _, _, arts, _ = run
    ref = g["video_f16"].view(np.float16).astype(np.float32)
    frames = np.asarray(arts["decode"]["frames"]).astype(np.float32) / 255.0
    assert frames.shape == ref.shape
    assert float(np.abs(frames - ref).max()) <= 1.0 / 255 + 1e-3
