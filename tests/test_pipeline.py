"""Whole tiny two-stage runs against the reference (goldens from tests/reference/golden_pipeline.py).

text -> stage 1 -> upsample -> stage 2 -> video decode -> audio decode -> vocoder, built with
stages.pipeline.build and run node by node with stages.framework.ensure, with the reference's noise
injected: ltx.diffusion.sampling.noise is monkeypatched (the stages import it inside their compute functions) to
return the golden's "noise.<stream>" arrays. Every intermediate and final output must match within
max |ours - ref| <= 1e-3 * max(1, max |ref|), for the distilled and the dev-two-stage pipelines of both
tiny variants.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402

from ltx.weights import tiny

GOLDENS = Path(__file__).parent / "goldens"
REL = 1e-3
# golden_pipeline.py's run
PROMPT = "a red fox trots through fresh snow"
HEIGHT, WIDTH, NUM_FRAMES, FPS, DEV_STEPS = 64, 128, 9, 24, 3
MODELS = {"2.0": "tiny", "2.3": "tiny-2.3"}
PIPELINES = {"distilled": "distilled", "dev-two-stage": "dev"}


def check(name: str, out, ref: np.ndarray, rel: float = REL) -> float:
    out = np.asarray(out, np.float32)
    ref = np.asarray(ref, np.float32)
    assert out.shape == ref.shape, f"{name}: shape {out.shape} != reference {ref.shape}"
    err = float(np.abs(out - ref).max())
    bound = rel * max(1.0, float(np.abs(ref).max()))
    print(f"parity {name}: max err {err:.3g} (bound {bound:.3g})")  # shown with pytest -s
    assert err <= bound, f"{name}: max |ours - ref| = {err:.3g} > {bound:.3g}"
    return err


def golden(variant: str) -> dict[str, np.ndarray]:
    path = GOLDENS / variant / "pipeline.safetensors"
    assert path.exists(), f"{path} missing; run `just goldens`"
    g = {k: np.asarray(v) for k, v in mx.load(str(path)).items()}
    for p in PIPELINES.values():  # stored as float16 bits (see golden_pipeline.py)
        g[f"{p}.video"] = g.pop(f"{p}.video_f16").view(np.float16).astype(np.float32)
    return g


def fake_noise(g: dict[str, np.ndarray], drawn: list[str]):
    """ltx.diffusion.sampling.noise replacement: the golden's noise for each stream, checked against the shape asked for."""

    def noise(seed, shape, stream, dtype=mx.float32):
        ref = g[f"noise.{stream}"]
        shape = tuple(int(s) for s in shape)
        if stream == "decoder" and shape != ref.shape and shape == ref.transpose(0, 2, 3, 4, 1).shape:
            ref = ref.transpose(0, 2, 3, 4, 1)  # a channels-last decoder asks for (B, F', H', W', C)
        assert shape == ref.shape, f"noise stream {stream}: asked for {shape}, the reference drew {ref.shape}"
        drawn.append(stream)
        return mx.array(np.ascontiguousarray(ref)).astype(dtype)

    return noise


# what the reference golden holds for each stage's artifact (when a stage raises, its downstream stages run
# from these instead, so every stage's own parity is still reported; the raising stage's tests fail)
REFERENCE_ARTIFACTS = {
    "denoise": {"video_latent": "stage1_video", "audio_latent": "stage1_audio"},
    "upsample": {"video_latent": "upsampled"},
    "refine": {"video_latent": "stage2_video", "audio_latent": "stage2_audio"},
    "decode_audio": {"mel": "mel"},
}
ORDER = ("encode", "encode_negative", "denoise", "upsample", "refine", "decode_audio", "vocode", "decode")


def _publish_reference(store, node_name: str, p: str, g: dict) -> str:
    from cache.keys import make_key

    key = make_key(f"reference.{node_name}", 0, {"pipeline": p}, {}, {})
    if not store.exists(key):
        with store.writer(key, {"stage": f"reference.{node_name}", "inputs": {}}) as w:
            for name, gname in REFERENCE_ARTIFACTS[node_name].items():
                w.put(name, g[f"{p}.{gname}"])
            w.commit(created="reference")
    return key


@pytest.fixture(scope="module", params=[(v, p) for v in tiny.VARIANTS for p in PIPELINES])
def run(request, tmp_path_factory):
    """(variant, pipeline, golden, nodes, options, files, artifacts by node name, noise streams drawn, errors)."""
    import dataclasses

    from cache.store import Store
    from stages import framework, pipeline
    from stages.models import resolve_model

    variant, pipe = request.param
    p = PIPELINES[pipe]
    g = golden(variant)
    store = Store(tmp_path_factory.mktemp(f"pipe{variant}-{pipe}"))
    store.ensure_writable()
    opts = pipeline.Options(
        prompt=PROMPT,
        height=HEIGHT,
        width=WIDTH,
        num_frames=NUM_FRAMES,
        frame_rate=FPS,
        pipeline=pipe,
        steps=DEV_STEPS if pipe != "distilled" else None,
        model=MODELS[variant],
        tiling="default",
    )
    # the tiny model's files exist before build: on a fresh store, resolve_options checks the tiny distilled
    # LoRA path before anything creates the model (see test_dev_two_stage_builds_on_a_fresh_store)
    resolve_model(MODELS[variant], store).ready()
    nodes, o, files = pipeline.build(opts, store)
    drawn: list[str] = []
    arts: dict[str, object] = {}
    errors: dict[str, str] = {}
    substituted: dict[str, str] = {}  # node -> reference artifact key used in its place downstream
    with pytest.MonkeyPatch.context() as mp:
        import ltx.diffusion.sampling

        mp.setattr(ltx.diffusion.sampling, "noise", fake_noise(g, drawn))
        by_key = {n.key: name for name, n in nodes.items()}
        built: dict[str, framework.Node] = {}
        for name in ORDER:
            if name not in nodes:
                continue
            node = nodes[name]
            inputs = {}
            for k, inp in node.inputs.items():
                up = by_key.get(inp.key) if isinstance(inp, framework.Node) else None
                if up in errors and up not in substituted and up in REFERENCE_ARTIFACTS:
                    substituted[up] = _publish_reference(store, up, p, g)
                inputs[k] = substituted[up] if up in substituted else built.get(up, inp)
            node = built[name] = dataclasses.replace(node, inputs=inputs)
            try:
                arts[name] = framework.ensure(store, node, echo=lambda s: None)
            except Exception as e:  # noqa: BLE001  (reported per output by the tests below)
                errors[name] = f"{type(e).__name__}: {e}"
    return variant, p, g, nodes, o, files, arts, drawn, errors


def _art(run, node: str):
    *_, arts, _drawn, errors = run
    if node not in arts:
        pytest.fail(
            f"stage {node} did not run: {errors.get(node, 'an upstream stage failed: ' + repr(errors))}"
        )
    return arts[node]


def _reference_module():
    import importlib.util

    path = Path(__file__).parent / "reference" / "golden_pipeline.py"  # numpy-only at import
    spec = importlib.util.spec_from_file_location("golden_pipeline", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_options_match_the_reference_run(run):
    variant, p, g, nodes, o, files, *_ = run
    ref = _reference_module()
    assert (PROMPT, HEIGHT, WIDTH, NUM_FRAMES, FPS, DEV_STEPS) == (
        ref.PROMPT,
        ref.HEIGHT,
        ref.WIDTH,
        ref.NUM_FRAMES,
        ref.FPS,
        ref.DEV_STEPS,
    )
    assert (o.height, o.width, o.num_frames, o.frame_rate, o.tiling) == (
        HEIGHT,
        WIDTH,
        NUM_FRAMES,
        FPS,
        "default",
    )
    assert files.tiny_variant == variant
    params = nodes["denoise"].params
    if p == "dev":
        assert o.distilled_lora[1] == ref.LORA_STRENGTH
        for kind, ours in (("video", params.video_guider), ("audio", params.audio_guider)):
            want = ref.GUIDERS[kind]
            got = {k: (list(ours[k]) if isinstance(ours[k], (list, tuple)) else ours[k]) for k in want}
            assert got == want, f"{kind} guidance {got} != the golden's {want}"
            extra = {k: v for k, v in ours.items() if k not in want}
            assert extra in ({}, {"skip_step": 0}), f"guidance fields the golden does not set: {extra}"
    else:
        assert params.video_guider is None and params.audio_guider is None


def test_text_contexts(run):
    variant, p, g, *_ = run
    art = _art(run, "encode")
    for kind in ("video", "audio"):
        ours = np.asarray(art[f"{kind}_context"], np.float32)
        ours = ours.reshape(-1, ours.shape[-1])[::16]
        check(f"{variant} {p} {kind} context", ours, g[f"context.{kind}_rows16"])
    if p == "dev":
        art = _art(run, "encode_negative")
        for kind in ("video", "audio"):
            ours = np.asarray(art[f"{kind}_context"], np.float32)
            check(
                f"{variant} {p} negative {kind} context",
                ours.reshape(-1, ours.shape[-1])[::16],
                g[f"context.{kind}_negative_rows16"],
            )


def test_stage1(run):
    variant, p, g, *_ = run
    art = _art(run, "denoise")
    check(f"{variant} {p} stage-1 video latent", art["video_latent"], g[f"{p}.stage1_video"])
    check(f"{variant} {p} stage-1 audio latent", art["audio_latent"], g[f"{p}.stage1_audio"])


def test_upsample(run):
    variant, p, g, *_ = run
    check(f"{variant} {p} upsampled latent", _art(run, "upsample")["video_latent"], g[f"{p}.upsampled"])


def test_stage2(run):
    variant, p, g, *_ = run
    art = _art(run, "refine")
    check(f"{variant} {p} stage-2 video latent", art["video_latent"], g[f"{p}.stage2_video"])
    check(f"{variant} {p} stage-2 audio latent", art["audio_latent"], g[f"{p}.stage2_audio"])


def test_audio_decode_and_vocoder(run):
    variant, p, g, *_ = run
    check(f"{variant} {p} mel", _art(run, "decode_audio")["mel"], g[f"{p}.mel"])
    art = _art(run, "vocode")
    check(f"{variant} {p} waveform", art["waveform"], g[f"{p}.waveform"])
    assert int(np.asarray(art["sample_rate"])) == int(g["vocoder_rate"].item())


def test_video_decode_float(run):
    """Our decoder on the stage-2 latent (the decode stage keeps only uint8), with the reference's decode
    noise for the timestep-conditioned LTX-2.0 decoder, against the reference's float output (float16-stored)."""
    from stages import runtime

    variant, p, g, nodes, o, files, *_ = run
    ref = g[f"{p}.video"]  # (F, H, W, 3)
    decoder = runtime.video_decoder(files)
    latent = mx.array(np.asarray(_art(run, "refine")["video_latent"]))  # (B, 128, F', H', W')
    kw = {}
    if int(g["decoder_timestep_conditioning"].item()):
        assert decoder.timestep_conditioning
        draw = fake_noise(g, [])
        kw["noise"] = lambda shape: draw(0, shape, "decoder")
    video = decoder.decode(latent, "default", **kw)
    # float16 storage of the reference: half an ulp is <= 2^-11 |ref|, inside the 1e-3 bound
    check(f"{variant} {p} decoded video (float)", np.asarray(video.astype(mx.float32))[0], ref)


def test_video_decode_stage_frames(run):
    """The decode stage's uint8 frames against the reference's truncating cast of its float output (one
    level of slack for values at the cast's boundaries)."""
    from ltx.video.vae import to_uint8

    variant, p, g, *_ = run
    ref = g[f"{p}.video"]
    frames = np.asarray(_art(run, "decode")["frames"])
    assert frames.shape == ref.shape and frames.dtype == np.uint8
    diff = np.abs(frames.astype(np.int16) - np.array(to_uint8(mx.array(ref))).astype(np.int16))
    assert diff.max() <= 1, (
        f"{p}: uint8 frames differ by up to {diff.max()} levels (mean {diff.mean():.2f}); "
        f"decode noise streams drawn through ltx.diffusion.sampling.noise: {run[-2]}"
    )


def test_noise_streams_in_reference_order(run):
    variant, p, g, *_, drawn, errors = run
    if errors:
        pytest.fail(f"stages failed: {errors}")
    expected = ["stage1_video", "stage1_audio", "stage2_video", "stage2_audio"]
    if int(g["decoder_timestep_conditioning"].item()):
        expected.append("decoder")
    assert drawn == expected


def test_dev_two_stage_builds_on_a_fresh_store(tmp_path):
    """`--pipeline dev-two-stage --model tiny` on an empty cache: the tiny distilled LoRA is created with the model."""
    from cache.store import Store
    from stages import pipeline

    store = Store(tmp_path)
    store.ensure_writable()
    pipeline.build(
        pipeline.Options(prompt=PROMPT, pipeline="dev-two-stage", steps=DEV_STEPS, model="tiny"), store
    )
