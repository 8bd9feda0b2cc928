"""Retake and extend against the reference (goldens from tests/reference/golden_retake.py): the reference's
RetakePipeline run whole, with its noise injected, on both tiny variants.

masks      TemporalRegionMask on fresh states of three shapes for eight spans (edges on frame and audio-token
           boundaries): exact.
cases      file (an .mp4 with an AAC track through encode_video + encode_audio), run (a run's latents as
           they are), distilled (the same, the distilled variant), extend (the run's latents continued):
           built with stages.pipeline.build from Options(source=...) and run node by node with
           ltx.diffusion.sampling.noise returning the golden's noise; the denoise masks <= 1e-4, the retake
           latents <= 1e-3 x max(1, max |ref|), and for file and extend the decoded video (float), the mel
           and the waveform too.
keep_*     the run case with --keep-audio (regenerate_audio=False) and --keep-video (regenerate_video=False):
           the kept stream's mask all 0 and its latent bit-identical to the source's; the other as above.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
from test_pipeline import check, fake_noise

from ltx.weights import tiny

GOLDENS = Path(__file__).parent / "goldens"
MODELS = {"2.0": "tiny", "2.3": "tiny-2.3"}
CASES = ("file", "run", "distilled", "extend", "keep_audio", "keep_video")
KEPT = {"keep_audio": "audio", "keep_video": "video"}  # the stream each keeps whole
# decoded too (the decoders' own parity is tested elsewhere; two cases keep CI short)
DECODED = ("file", "extend")


def _reference():
    path = Path(__file__).parent / "reference" / "golden_retake.py"  # numpy-only at import (but its imports)
    import sys

    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location("golden_retake", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(path.parent))
    return mod


REF = _reference()


def golden(variant: str) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in mx.load(str(GOLDENS / variant / "retake.safetensors")).items()}


def test_masks_match_the_reference():
    from ltx.diffusion.conditioning import TemporalRegionMask, audio_state, video_state

    g = golden("2.0")
    n = 0
    for name, f, h, w, fps, t in REF.MASK_SHAPES:
        video = video_state(mx.zeros((1, 128, f, h, w)), fps)
        audio = audio_state(mx.zeros((1, 8, t, 16)))
        for i, (s, e) in enumerate(REF.MASK_SPANS):
            for kind, state in (("video", video), ("audio", audio)):
                ours = np.asarray(TemporalRegionMask(s, e).apply(state).denoise_mask)[..., 0]
                ref = g[f"masks.{name}.{i}.{kind}"]
                assert ours.shape == ref.shape
                assert np.array_equal(ours, ref), (name, (s, e), kind, ours, ref)
                n += int(ref.sum())
    assert n > 0  # some spans regenerate something


def _options(case: str, variant: str, source: str):
    from stages import pipeline

    span = REF.FILE_SPAN if case == "file" else REF.RUN_SPAN
    o = pipeline.Options(
        prompt=REF.PROMPT,
        model=MODELS[variant],
        source=source,
        pipeline="distilled" if case == "distilled" else "dev",
        steps=None if case == "distilled" else REF.STEPS,
    )
    if case == "extend":
        o.extend_seconds = REF.EXTEND_FRAMES / REF.FPS
    else:
        o.start_time, o.end_time = span
    o.keep_audio, o.keep_video = (case == "keep_audio") or None, (case == "keep_video") or None
    return o


def _publish_source(store, g) -> str:
    """The golden's source latents as a finished run's refine artifact (the stage a retake of a run reads)."""
    from cache.keys import make_key

    key = make_key("refine", 1, {"frame_rate": REF.FPS, "test": "retake source"}, {}, {})
    if not store.exists(key):
        manifest = {"stage": "refine", "version": 1, "params": {"frame_rate": REF.FPS}, "inputs": {}}
        with store.writer(key, manifest) as w:
            w.put("video_latent", g["run.source_video"])
            w.put("audio_latent", g["run.source_audio"])
            w.commit(created="test")
    return key


_RUNS: dict = {}  # (variant, case) -> its run, shared by the two fixtures


def _run(variant: str, name: str, root: Path):
    from cache.store import Store
    from stages import framework, pipeline

    if (variant, name) in _RUNS:
        return _RUNS[variant, name]
    g = golden(variant)
    store = Store(root / "cache")
    store.ensure_writable()
    if name == "file":
        path = root / "source.mp4"
        path.write_bytes(g["file.mp4"].tobytes())
        source = str(path)
    else:
        source = _publish_source(store, g)
    nodes, o, files = pipeline.build(_options(name, variant, source), store)
    drew = "run" if name in KEPT else name  # the keep cases reuse the run case's noise
    noise = {k.removeprefix(f"{drew}."): v for k, v in g.items() if k.startswith(f"{drew}.noise.")}
    drawn: list[str] = []
    arts = {}
    with pytest.MonkeyPatch.context() as mp:
        import ltx.diffusion.sampling

        mp.setattr(ltx.diffusion.sampling, "noise", fake_noise(noise, drawn))
        for label in ("encode_video", "encode_audio", "retake", "decode_audio", "vocode"):
            if label in nodes and (label not in ("decode_audio", "vocode") or name in DECODED):
                arts[label] = framework.ensure(store, nodes[label], echo=lambda s: None)
    _RUNS[variant, name] = variant, name, g, nodes, o, files, arts, noise, drawn
    return _RUNS[variant, name]


@pytest.fixture(scope="module", params=[(v, c) for v in tiny.VARIANTS for c in CASES])
def case(request, tmp_path_factory):
    return _run(*request.param, tmp_path_factory.mktemp(f"retake{request.param[0]}-{request.param[1]}"))


@pytest.fixture(scope="module", params=[(v, c) for v in tiny.VARIANTS for c in DECODED])
def decoded(request, tmp_path_factory):
    return _run(*request.param, tmp_path_factory.mktemp(f"retake{request.param[0]}-{request.param[1]}"))


def test_graph_and_options(case):
    variant, name, g, nodes, o, files, *_ = case
    p = nodes["retake"].params
    assert (o.height, o.width, o.frame_rate) == (REF.HEIGHT, REF.WIDTH, REF.FPS)
    want_frames = REF.FRAMES + (REF.EXTEND_FRAMES if name == "extend" else 0)
    assert p.num_frames == o.num_frames == want_frames
    np.testing.assert_allclose(p.sigmas, g[f"{name}.sigmas"], rtol=0, atol=1e-7)
    if name == "distilled":
        assert p.video_guider is None and "encode_negative" not in nodes
    else:
        assert nodes["encode_negative"].params.prompt == ""  # the reference CLI passes no negative prompt
        for kind, ours in (("video", p.video_guider), ("audio", p.audio_guider)):
            want = REF.GUIDERS[kind]
            assert {
                k: (list(v) if isinstance(v, tuple | list) else v) for k, v in ours.items() if k in want
            } == want
    assert ("encode_video" in nodes) == ("encode_audio" in nodes) == (name == "file")
    assert (p.regenerate_video, p.regenerate_audio) == (KEPT.get(name) != "video", KEPT.get(name) != "audio")
    assert o.seed == 42 and o.tiling == "default"


def test_masks_in_the_run(case):
    from stages import retake

    variant, name, g, nodes, o, files, arts, noise, _ = case
    src = arts["encode_video"] if name == "file" else None
    video = src["video_latent"] if src is not None else g["run.source_video"]
    audio = arts["encode_audio"]["audio_latent"] if name == "file" else g["run.source_audio"]
    with pytest.MonkeyPatch.context() as mp:
        import ltx.diffusion.sampling

        mp.setattr(ltx.diffusion.sampling, "noise", fake_noise(noise, []))
        v, a = retake.initial_states(nodes["retake"].params, video, audio)
    check(f"{variant} {name} video mask", np.asarray(v.denoise_mask)[..., 0], g[f"{name}.video_mask"], 1e-4)
    check(f"{variant} {name} audio mask", np.asarray(a.denoise_mask)[..., 0], g[f"{name}.audio_mask"], 1e-4)
    for kind in ("video", "audio"):
        mask = g[f"{name}.{kind}_mask"]
        if KEPT.get(name) == kind:  # the reference's span [0, 0): nothing of the stream regenerated
            assert mask.sum() == 0 and not np.asarray((v if kind == "video" else a).denoise_mask).any()
        else:
            assert 0 < mask.sum() < mask.size  # something kept, something not


def test_latents(case):
    variant, name, g, nodes, o, files, arts, _, drawn = case
    art = arts["retake"]
    check(f"{variant} {name} retake video latent", art["video_latent"], g[f"{name}.video_latent"])
    check(f"{variant} {name} retake audio latent", art["audio_latent"], g[f"{name}.audio_latent"])
    assert drawn[:2] == ["stage1_video", "stage1_audio"]
    if name != "extend":  # outside the span the source comes back as it was
        mask = g[f"{name}.video_mask"][0].reshape(art["video_latent"].shape[2], -1)
        kept = np.where(mask.max(axis=1) == 0)[0]
        assert kept.size
        src = arts["encode_video"]["video_latent"] if name == "file" else g["run.source_video"]
        np.testing.assert_array_equal(art["video_latent"][:, :, kept], np.asarray(src)[:, :, kept])
    if name in KEPT:  # the kept stream is the source's, bit for bit
        kind = KEPT[name]
        np.testing.assert_array_equal(np.asarray(art[f"{kind}_latent"]), g[f"run.source_{kind}"])


def test_decoded_video_and_audio(decoded):
    from stages import runtime

    variant, name, g, nodes, o, files, arts, noise, _ = decoded
    decoder = runtime.video_decoder(files)
    kw = {}
    if decoder.timestep_conditioning:
        draw = fake_noise(noise, [])
        kw["noise"] = lambda shape: draw(0, shape, "decoder")
    video = decoder.decode(mx.array(np.asarray(arts["retake"]["video_latent"])), "default", **kw)
    ours = np.asarray(video.astype(mx.float32))[0][::4]
    ref = g[f"{name}.video_f16_every4"].view(np.float16).astype(np.float32)
    check(f"{variant} {name} decoded video", ours, ref)
    check(f"{variant} {name} mel", arts["decode_audio"]["mel"], g[f"{name}.mel"])
    check(
        f"{variant} {name} waveform",
        np.asarray(arts["vocode"]["waveform"])[:, ::4],
        g[f"{name}.waveform_every4"],
    )
