"""The keyframes and ic-lora pipelines against the reference (goldens from tests/reference/golden_keyframes.py
and golden_iclora.py), both tiny variants, with the reference's noise injected (as tests/test_pipeline.py):

- new components within 1e-4: the keyframe tokens (positions, denoise mask, the appended tokens of every
  --image, frame 0 too), the reference-video tokens (positions scaled by the IC-LoRA's
  reference_downscale_factor, the denoise mask), the self-attention mask they build, the attention-mask
  video's pixels and its latent-grid weights;
- whole runs within 1e-3 relative: stage-1 and stage-2 latents, the upsampled latent, mel, waveform, and
  the decoded frames within one uint8 level of the reference's float output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
from test_pipeline import check, fake_noise  # noqa: E402

from ltx.weights import tiny  # noqa: E402

GOLDENS = Path(__file__).parent / "goldens"
MODELS = {"2.0": "tiny", "2.3": "tiny-2.3"}
PROMPT = "a red fox trots through fresh snow"
# golden_keyframes.py / golden_iclora.py
KEYFRAMES = [(0, 1.0), (5, 0.8), (16, 1.0)]
RUNS = {"keyframes": None, "ic-lora a": "a", "ic-lora b": "b", "ic-lora c": "c"}


def _golden(variant: str, name: str) -> dict[str, np.ndarray]:
    path = GOLDENS / variant / f"{name}.safetensors"
    assert path.exists(), f"{path} missing; run `just goldens`"
    return {k: np.asarray(v) for k, v in mx.load(str(path)).items()}


def _options(run: str, g: dict, d: Path, model: str):
    from PIL import Image

    from stages.options import Options

    if run == "keyframes":
        images = []
        for i, (frame, strength) in enumerate(KEYFRAMES):
            Image.fromarray(g[f"image{i}"]).save(d / f"key{i}.png")
            images.append((str(d / f"key{i}.png"), frame, strength))
        return Options(
            prompt=PROMPT, height=64, width=128, num_frames=17, frame_rate=24, pipeline="keyframes", steps=3,
            model=model, tiling="default", images=images, image_crf=0,
        )  # fmt: skip
    (d / "ref.mp4").write_bytes(g["ref_mp4"].tobytes())
    (d / "mask.mp4").write_bytes(g["mask_mp4"].tobytes())
    Image.fromarray(g["image0"]).save(d / "image0.png")
    ref, mask = str(d / "ref.mp4"), str(d / "mask.mp4")
    refs, attention = {
        "a": ([(ref, 0.9)], 0.7),
        "b": ([(ref, 1.0)], None),
        "c": ([(ref, 1.0), (mask, 0.6)], 0.8),
    }[run[-1]]
    return Options(
        prompt=PROMPT, height=128, width=256, num_frames=17, frame_rate=24, pipeline="ic-lora", model=model,
        tiling="default", image_crf=0, images=[(str(d / "image0.png"), 0, 1.0)] if run[-1] == "a" else [],
        video_conditioning=refs, conditioning_attention_mask=None if attention is None else (mask, attention),
        skip_stage_2=run[-1] != "a",
    )  # fmt: skip


@pytest.fixture(
    scope="module",
    params=[(v, r) for v in tiny.VARIANTS for r in RUNS],
    ids=[f"{v}-{r.replace(' ', '')}" for v in tiny.VARIANTS for r in RUNS],
)
def run(request, tmp_path_factory):
    """(variant, run, golden with the run's prefix dropped, nodes, artifacts by node, noise streams drawn)."""
    from cache.store import Store
    from stages import framework, pipeline
    from stages.models import resolve_model

    variant, name = request.param
    prefix = RUNS[name]
    g = _golden(variant, "keyframes" if prefix is None else "iclora")
    if prefix is not None:  # "a.stage1_video" -> "stage1_video", shared arrays kept
        g = {**g, **{k[2:]: v for k, v in g.items() if k.startswith(f"{prefix}.")}}
    d = tmp_path_factory.mktemp(f"kf{variant}-{name.replace(' ', '')}")
    store = Store(d / "cache")
    store.ensure_writable()
    resolve_model(MODELS[variant], store).ready()
    nodes, o, files = pipeline.build(_options(name, g, d, MODELS[variant]), store)
    drawn: list[str] = []
    arts = {}
    with pytest.MonkeyPatch.context() as mp:
        import ltx.diffusion.sampling

        mp.setattr(ltx.diffusion.sampling, "noise", fake_noise(g, drawn))
        for label, node in nodes.items():
            if label != "mux":
                arts[label] = framework.ensure(store, node, echo=lambda s: None)
    return variant, name, g, nodes, o, arts, drawn


def test_graph(run):
    """Which stages each pipeline runs, and what feeds them (keys known before anything runs)."""
    variant, name, g, nodes, o, arts, drawn = run
    labels = set(nodes)
    if name == "keyframes":
        assert {"encode_negative", "condition", "condition_full", "upsample", "refine"} <= labels
        assert nodes["denoise"].params.keyframes and nodes["refine"].params.keyframes
        assert "encode_video" not in labels
    else:
        assert "encode_negative" not in labels and "encode_video" in labels
        ev = nodes["encode_video"]
        assert (ev.params.height, ev.params.width, ev.params.max_frames) == (32, 64, 17)  # 128x256 / 2 / 2
        assert set(ev.externals) == {"checkpoint", "video"}
        assert nodes["denoise"].inputs["reference"] is ev
        assert nodes["denoise"].params.reference["downscale"] == 2
        n_refs = len(o.video_conditioning)
        assert (
            len(nodes["denoise"].params.reference["strengths"]) == n_refs == (2 if name.endswith("c") else 1)
        )
        if n_refs == 2:  # one encode_video per file, each keyed by its own file only
            assert nodes["denoise"].inputs["reference2"] is nodes["encode_video_2"]
            assert nodes["encode_video_2"].externals["video"] != ev.externals["video"]
        assert ("refine" in labels) == name.endswith("a")
        if name.endswith("a"):  # the mask video is an external of stage 1 only
            assert "attention_mask" in nodes["denoise"].externals
            assert not any("attention_mask" in n.externals for k, n in nodes.items() if k != "denoise")
            assert nodes["refine"].params.loras == ()  # stage 2 runs without the IC-LoRA
            assert "reference" not in nodes["refine"].inputs
        expected = ["stage1_video", "stage1_audio"] + (
            ["stage2_video", "stage2_audio"] if "refine" in labels else []
        )
        assert drawn[: len(expected)] == expected


def _initial(run):
    """Stage 1's video state after its conditionings, before noise, from our stages' own pieces."""
    from ltx.constants import video_latent_shape
    from ltx.diffusion.conditioning import apply_conditionings, video_state
    from stages import denoise, diffuse

    variant, name, g, nodes, o, arts, drawn = run
    p = nodes["denoise"].params
    f, h, w = video_latent_shape(p.num_frames, p.height, p.width)
    state = video_state(mx.zeros((1, 128, f, h, w), mx.float32), p.frame_rate)
    if "condition" in arts:
        state = apply_conditionings(
            state, diffuse.image_conditionings(arts["condition"], p.images, p.keyframes)
        )
    if p.reference is not None:
        refs = [arts[k] for k in sorted(arts) if k.startswith("encode_video")]
        items = denoise.reference_conditionings(p, refs, nodes["denoise"].runtime.get("mask"))
        state = apply_conditionings(state, items)
    return state


def test_conditioning_tokens_and_masks(run):
    variant, name, g, nodes, o, arts, drawn = run
    state = _initial(run)
    n = state.num_tokens
    tag = f"{variant} {name}"
    check(f"{tag} positions", state.positions, g["init.positions"], 1e-4)
    check(f"{tag} denoise mask", state.denoise_mask, g["init.denoise_mask"], 1e-4)
    check(f"{tag} appended tokens", state.clean_latent[:, n:], g["init.tokens"], 1e-4)
    if "init.attention_mask" in g:
        check(f"{tag} attention mask", state.attention_mask, g["init.attention_mask"], 1e-4)
    else:
        assert state.attention_mask is None


def test_attention_mask_video(run):
    from ltx.video.media import load_mask_video, mask_to_latent, round_bf16

    variant, name, g, nodes, o, arts, drawn = run
    if "mask_latent" not in g:  # no --conditioning-attention-mask: no mask video feeds any stage
        assert not any("attention_mask" in n.externals for n in nodes.values())
        assert (nodes["denoise"].params.reference or {}).get("mask") in (None, False)
        return
    p = nodes["denoise"].params
    mask = load_mask_video(nodes["denoise"].runtime["mask"], p.height, p.width, p.num_frames)
    check(f"{variant} {name} mask pixels", mask[:, ::4, ::4], g["mask_pixels_every4"], 1e-4)
    latent = arts[max(k for k in arts if k.startswith("encode_video"))][
        "video_latent"
    ]  # the last reference's
    weights = round_bf16(mask_to_latent(mask, *latent.shape[2:]) * np.float32(p.reference["attention"]))
    check(f"{variant} {name} mask latent weights", weights, g["mask_latent"], 1e-4)


def test_latents(run):
    variant, name, g, nodes, o, arts, drawn = run
    tag = f"{variant} {name}"
    check(f"{tag} stage-1 video", arts["denoise"]["video_latent"], g["stage1_video"])
    check(f"{tag} stage-1 audio", arts["denoise"]["audio_latent"], g["stage1_audio"])
    if "refine" in arts:
        check(f"{tag} upsampled", arts["upsample"]["video_latent"], g["upsampled"])
        check(f"{tag} stage-2 video", arts["refine"]["video_latent"], g["stage2_video"])
        check(f"{tag} stage-2 audio", arts["refine"]["audio_latent"], g["stage2_audio"])


def test_outputs(run):
    from ltx.video.vae import to_uint8

    variant, name, g, nodes, o, arts, drawn = run
    tag = f"{variant} {name}"
    check(f"{tag} mel", arts["decode_audio"]["mel"], g["mel"])
    check(f"{tag} waveform", np.asarray(arts["vocode"]["waveform"])[:, ::4], g["waveform_every4"])
    ref = g["video_f16"].view(np.float16).astype(np.float32)
    step = 2 if name == "keyframes" else 4
    frames = np.asarray(arts["decode"]["frames"])[::4, ::step, ::step]
    assert frames.shape == ref.shape
    diff = np.abs(frames.astype(np.int16) - np.array(to_uint8(mx.array(ref))).astype(np.int16))
    print(f"parity {tag} frames: max {diff.max()} uint8 levels")
    assert diff.max() <= 1, f"{tag}: frames differ by up to {diff.max()} levels"
