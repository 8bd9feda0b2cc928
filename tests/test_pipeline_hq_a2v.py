"""Whole tiny hq, a2v and x1.5-upsampler runs against the reference (goldens from tests/reference/golden_hq.py
and golden_a2v.py), as tests/test_pipeline.py does for distilled and dev-two-stage: stages.pipeline.build,
every node through stages.framework.ensure, the reference's noise injected (ltx.diffusion.sampling.noise and,
for res_2s, sampling.res2s_noise_source), every output within 1e-3 x max(1, max |ref|), both tiny variants.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
from test_pipeline import FPS, MODELS, NUM_FRAMES, PROMPT, check  # noqa: E402

from ltx.weights import tiny  # noqa: E402

GOLDENS = Path(__file__).parent / "goldens"
HQ_STEPS = 2  # golden_hq.HQ_STEPS
A2V_STEPS = 3  # golden_pipeline.DEV_STEPS
AUDIO_START = 0.1  # golden_audio_io.START
# pipeline -> (golden file, output prefix, options)
RUNS = {
    "hq": ("hq", "hq", dict(pipeline="hq", steps=HQ_STEPS, height=64, width=128)),
    "a2v": ("a2v", "a2v", dict(pipeline="a2v", steps=A2V_STEPS, height=64, width=128)),
    "x1.5": (
        "hq",
        "x15",
        dict(pipeline="distilled", spatial_upsampler_path="tiny:x1.5", height=96, width=192),
    ),
}
ORDER = (
    "encode",
    "encode_negative",
    "encode_audio",
    "denoise",
    "upsample",
    "refine",
    "decode_audio",
    "vocode",
)


def _golden(name: str, variant: str) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in mx.load(str(GOLDENS / variant / f"{name}.safetensors")).items()}


def _noise(g: dict, prefix: str, drawn: list[str]):
    def noise(seed, shape, stream, dtype=mx.float32):
        ref = g.get(f"noise.{prefix}.{stream}", g.get(f"noise.{stream}"))
        shape = tuple(int(s) for s in shape)
        if stream == "decoder" and shape != ref.shape and shape == ref.transpose(0, 2, 3, 4, 1).shape:
            ref = ref.transpose(0, 2, 3, 4, 1)
        assert shape == ref.shape, f"noise {stream}: asked for {shape}, the reference drew {ref.shape}"
        drawn.append(stream)
        return mx.array(np.ascontiguousarray(ref)).astype(dtype)

    return noise


def _sde_noise(g: dict, drawn: list[str]):
    """res2s_noise_source replacement: the reference's raw SDE noise of stage 1, then stage 2 (golden_hq)."""
    stages = []

    def source(seed):
        stage = len(stages) + 1
        stages.append(stage)

        def draw(step, level, modality, shape):
            i = 4 * step + 2 * ("substep", "step").index(level) + ("video", "audio").index(modality)
            ref = g[f"noise.hq.sde{stage}.{i}"]
            assert tuple(shape) == ref.shape, (stage, i, tuple(shape), ref.shape)
            drawn.append(f"sde{stage}.{i}")
            return mx.array(ref).astype(mx.float64)

        return draw

    return source


@pytest.fixture(scope="module", params=[(v, p) for v in tiny.VARIANTS for p in RUNS])
def run(request, tmp_path_factory):
    from cache.store import Store
    from ltx.diffusion import sampling
    from stages import framework, pipeline
    from stages.models import resolve_model

    variant, pipe = request.param
    name, prefix, extra = RUNS[pipe]
    g = _golden(name, variant)
    root = tmp_path_factory.mktemp(f"run{variant}-{pipe}")
    store = Store(root / "cache")
    store.ensure_writable()
    opts = dict(extra)
    if pipe == "a2v":
        wav = root / "input.wav"
        wav.write_bytes(np.asarray(mx.load(str(GOLDENS / "audio_io.safetensors"))["wav.bytes"]).tobytes())
        opts.update(audio_path=str(wav), audio_start_time=AUDIO_START)
    o = pipeline.Options(
        prompt=PROMPT, num_frames=NUM_FRAMES, frame_rate=FPS, model=MODELS[variant], tiling="default", **opts
    )
    resolve_model(MODELS[variant], store).ready()
    nodes, o, files = pipeline.build(o, store)
    drawn: list[str] = []
    arts = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sampling, "noise", _noise(g, prefix, drawn))
        mp.setattr(sampling, "res2s_noise_source", _sde_noise(g, drawn))
        for label in ORDER:
            if label in nodes:
                arts[label] = framework.ensure(store, nodes[label], echo=lambda s: None)
    return variant, pipe, prefix, g, nodes, o, files, arts, drawn


def test_options_match_the_reference_run(run):
    from ltx import constants as C

    variant, pipe, _, g, nodes, o, files, *_ = run
    p1, p2 = nodes["denoise"].params, nodes["refine"].params
    if pipe == "hq":
        assert (p1.sampler, p2.sampler) == ("res2s", "res2s")
        np.testing.assert_array_equal(np.float32(p1.sigmas), g["hq.sigmas"])  # shifted for the stage's tokens
        assert (p1.loras, p2.loras) == ((0.25,), (0.5,))  # hq_2_stage_arg_parser's defaults
        hq = C.LTX_2_3_HQ_PARAMS
        assert C.GuiderParams.from_dict(p1.video_guider) == hq.video_guider
        assert C.GuiderParams.from_dict(p1.audio_guider) == hq.audio_guider
    elif pipe == "a2v":
        assert "encode_audio" in nodes and "vocode" not in nodes
        assert C.GuiderParams.from_dict(p1.audio_guider) == C.NO_GUIDANCE
        assert p2.loras == (1.0,)
    else:
        assert files.upsampler_scale == 1.5 and (p1.height, p1.width) == (64, 128)


def test_stage1(run):
    variant, pipe, prefix, g, *_, arts, _ = run
    check(f"{variant} {pipe} stage-1 video", arts["denoise"]["video_latent"], g[f"{prefix}.stage1_video"])
    if pipe == "a2v":  # frozen: the encoded input, unchanged
        np.testing.assert_array_equal(arts["denoise"]["audio_latent"], arts["encode_audio"]["audio_latent"])
        check(f"{variant} a2v audio latent", arts["denoise"]["audio_latent"], g["a2v.audio_latent"])
    else:
        check(f"{variant} {pipe} stage-1 audio", arts["denoise"]["audio_latent"], g[f"{prefix}.stage1_audio"])


def test_upsample_and_stage2(run):
    variant, pipe, prefix, g, *_, arts, _ = run
    check(f"{variant} {pipe} upsampled", arts["upsample"]["video_latent"], g[f"{prefix}.upsampled"])
    check(f"{variant} {pipe} stage-2 video", arts["refine"]["video_latent"], g[f"{prefix}.stage2_video"])
    if pipe == "a2v":
        np.testing.assert_array_equal(arts["refine"]["audio_latent"], arts["encode_audio"]["audio_latent"])
    else:
        check(f"{variant} {pipe} stage-2 audio", arts["refine"]["audio_latent"], g[f"{prefix}.stage2_audio"])


def test_audio_output(run):
    variant, pipe, prefix, g, nodes, *_, arts, _ = run
    if pipe == "a2v":  # the input audio as read, as the reference returns it
        check(f"{variant} a2v waveform", arts["encode_audio"]["waveform"], g["a2v.waveform"])
        assert nodes["mux"].inputs["audio"] is nodes["encode_audio"]
        return
    check(f"{variant} {pipe} mel", arts["decode_audio"]["mel"], g[f"{prefix}.mel"])
    check(f"{variant} {pipe} waveform", arts["vocode"]["waveform"], g[f"{prefix}.waveform"])


def test_video_decode(run):
    from stages import runtime

    variant, pipe, prefix, g, nodes, o, files, arts, _ = run
    ref = g[f"{prefix}.video_f16"].view(np.float16).astype(np.float32)
    kw = {}
    decoder = runtime.video_decoder(files)
    if decoder.timestep_conditioning:
        draw = _noise(g, prefix, [])
        kw["noise"] = lambda shape: draw(0, shape, "decoder")
    video = decoder.decode(mx.array(np.asarray(arts["refine"]["video_latent"])), "default", **kw)
    check(f"{variant} {pipe} decoded video", np.asarray(video.astype(mx.float32))[0], ref)


def test_noise_streams(run):
    _, pipe, _, g, nodes, o, files, arts, drawn = run
    if pipe == "a2v":  # the frozen audio draws nothing
        assert drawn == ["stage1_video", "stage2_video"]
    elif pipe == "hq":
        sde = [d for d in drawn if d.startswith("sde")]
        n1 = 4 * HQ_STEPS
        assert sde == [f"sde1.{i}" for i in range(n1)] + [f"sde2.{i}" for i in range(12)]
        assert [d for d in drawn if not d.startswith("sde")] == [
            "stage1_video",
            "stage1_audio",
            "stage2_video",
            "stage2_audio",
        ]
    else:
        assert drawn == ["stage1_video", "stage1_audio", "stage2_video", "stage2_audio"]


def test_hq_denoise_resumes_bit_identically(tmp_path, monkeypatch):
    """An hq (res_2s) stage 1 interrupted after its last full step resumes with only the final denoise
    left and ends bit-identical to an uninterrupted run."""
    from cache.store import Store
    from stages import framework, pipeline

    o = pipeline.Options(prompt=PROMPT, pipeline="hq", steps=HQ_STEPS, height=64, width=128, num_frames=9)
    runs = {}
    for name in ("whole", "resumed"):
        store = Store(tmp_path / name)
        store.ensure_writable()
        nodes, *_ = pipeline.build(o, store)
        for label in ("encode", "encode_negative"):
            framework.ensure(store, nodes[label], echo=lambda s: None)
        if name == "resumed":
            real = framework.Context.progress

            def stop(self, done, total=None, unit="step", real=real):
                real(self, done, total, unit)
                if self.node.stage.name == "denoise" and done == HQ_STEPS:
                    raise KeyboardInterrupt

            with monkeypatch.context() as mp:
                mp.setattr(framework.Context, "progress", stop)
                with pytest.raises(KeyboardInterrupt):
                    framework.ensure(store, nodes["denoise"], echo=lambda s: None)
            assert not store.exists(nodes["denoise"].key)
        said = []
        runs[name] = framework.ensure(store, nodes["denoise"], echo=said.append)
        if name == "resumed":
            assert any(f"resuming from step {HQ_STEPS}/{HQ_STEPS + 1}" in s for s in said), said
    for array in ("video_latent", "audio_latent"):
        np.testing.assert_array_equal(runs["whole"][array], runs["resumed"][array])
