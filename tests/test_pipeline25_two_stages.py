"""A whole tiny LTX-2.5 dev-two-stage run against 1.2.0's TI2VidTwoStagesPipeline
(tests/reference/golden25_two_stages.py).

prompt + 1.2.0's negative prompt (Gemma 4) -> stage 1 guided with the 2.5 checkpoint's defaults (LTX_2_4_PARAMS:
CFG, STG, rescale, modality isolation; Euler over the LTX-2 scheduler) -> x2 upsample -> stage 2 with the 2.5
distilled LoRA fused -> the conv video decoder; the audio decoded is stage 1's (1.2.0 discards stage 2's). The
split tiny-2.5 built with stages.pipeline.build and run node by node, the reference's noise injected. Every
output within max |ours - ref| <= 1e-3 * max(1, max |ref|).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_pipeline25 import check

from ltx import backend  # noqa: F401

# isort: split

import mlx.core as mx  # noqa: E402
from test_pipeline import fake_noise

GOLDEN = Path(__file__).parent / "goldens" / "2.5" / "two_stages.safetensors"
PROMPT, HEIGHT, WIDTH, NUM_FRAMES, FPS, STEPS = "a red fox trots through fresh snow", 64, 128, 9, 24, 3
STAGES = ("encode", "encode_negative", "denoise", "upsample", "refine", "decode", "decode_audio", "vocode")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from cache.store import Store
    from stages import framework, pipeline

    g = {k: np.asarray(v) for k, v in mx.load(str(GOLDEN)).items()}
    store = Store(tmp_path_factory.mktemp("two25"))
    store.ensure_writable()
    opts = pipeline.Options(
        prompt=PROMPT,
        pipeline="dev-two-stage",
        height=HEIGHT,
        width=WIDTH,
        num_frames=NUM_FRAMES,
        frame_rate=FPS,
        steps=STEPS,
        model="tiny-2.5",
        decoder="conv",
        tiling="none",
    )
    nodes, o, files = pipeline.build(opts, store)
    drawn: list[str] = []

    noise = fake_noise(g, drawn)

    arts = {}
    with pytest.MonkeyPatch.context() as mp:
        import ltx.diffusion.sampling as sampling

        mp.setattr(sampling, "noise", noise)
        for name in STAGES:
            arts[name] = framework.ensure(store, nodes[name], echo=lambda s: None)
    return g, nodes, o, arts, drawn


def test_the_graph_is_the_reference_s(run):
    """The 2.5 defaults: 1.2.0's negative prompt, LTX_2_4_PARAMS guidance (STG on the tiny model's last
    block), Euler stage 1 over the LTX-2 scheduler, the distilled LoRA in stage 2 only, stage 1's audio."""
    from ltx.text.encoder import DEFAULT_NEGATIVE_PROMPT

    g, nodes, o, _, drawn = run
    assert o.negative_prompt.startswith("has_subtitles, has_blurbox") and o.negative_prompt.endswith(
        DEFAULT_NEGATIVE_PROMPT
    )
    assert nodes["encode_negative"].params.prompt == o.negative_prompt
    p1 = nodes["denoise"].params
    assert p1.sampler == "euler" and p1.loras == () and nodes["refine"].params.loras == (1.0,)
    np.testing.assert_allclose(p1.sigmas, g["stage1_sigmas"], rtol=1e-6)
    for m, gp in (("video", p1.video_guider), ("audio", p1.audio_guider)):
        got = [gp["cfg_scale"], gp["stg_scale"], gp["rescale_scale"], gp["modality_scale"]]
        assert got == list(g[f"guider.{m}"]) and gp["stg_blocks"] == [1], (m, gp)
    assert "lora0" in nodes["refine"].externals and "lora0" not in nodes["denoise"].externals
    assert nodes["decode_audio"].inputs["latents"] is nodes["denoise"]  # 1.2.0 decodes stage 1's audio
    assert drawn == ["stage1_video", "stage1_audio", "stage2_video", "stage2_audio"]


def test_contexts(run):
    g, _, _, arts, _ = run
    for label, tag in (("encode", ""), ("encode_negative", "_negative")):
        for kind in ("video", "audio"):
            ours = np.asarray(arts[label][f"{kind}_context"], np.float32)
            check(
                f"{kind}{tag} context",
                ours.reshape(-1, ours.shape[-1])[::16],
                g[f"context.{kind}{tag}_rows16"],
            )


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
    g, _, _, arts, _ = run
    check(f"dev-two-stage {stage} {key}", arts[stage][key], g[ref])


def test_video(run):
    """The decode stage's uint8 frames against the reference's float frames in [0, 1] (float16-stored)."""
    g, _, _, arts, _ = run
    ref = g["video_f16"].view(np.float16).astype(np.float32)
    frames = np.asarray(arts["decode"]["frames"]).astype(np.float32) / 255.0
    assert frames.shape == ref.shape
    err = float(np.abs(frames - ref).max())
    print(f"parity 2.5 dev-two-stage video frames: max err {err:.3g} (bound {1 / 255 + 1e-3:.3g})")
    assert err <= 1.0 / 255 + 1e-3
