"""Diffusion math against the reference goldens (tests/reference/golden_diffusion.py), resume, validation."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np
import pytest
from safetensors.numpy import load_file

from ltx import constants
from ltx.constants import GuiderParams
from ltx.diffusion import conditioning as C
from ltx.diffusion import guidance, sampling, schedulers

G = load_file(str(Path(__file__).parent / "goldens" / "2.0" / "diffusion.safetensors"))
GUIDERS = {
    "v20": GuiderParams(3.0, 1.0, (29,), rescale_scale=0.7, modality_scale=3.0),
    "a20": GuiderParams(7.0, 1.0, (29,), rescale_scale=0.7, modality_scale=3.0),
    "hq_v": GuiderParams(3.0, 0.0, (), rescale_scale=0.45, modality_scale=3.0),
    "plain": GuiderParams(2.5, 0.5, (1,), rescale_scale=0.0, modality_scale=1.0),
}


def a(k: str, dtype=mx.float32) -> mx.array:
    return mx.array(G[k]).astype(dtype)


def close(ours: mx.array, ref: np.ndarray, rtol: float = 1e-5) -> float:
    ours = np.asarray(ours.astype(mx.float32))
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    err = float(np.max(np.abs(ours - ref)) / max(1.0, float(np.max(np.abs(ref)))))
    assert err <= rtol, err
    return err


def fake_x0(x: mx.array, sigma: float) -> mx.array:
    # identical formula in tests/reference/golden_diffusion.py
    s = mx.array(sigma, mx.float32)
    xf = x.astype(mx.float32)
    return (0.5 * xf - 0.2 * xf * xf * s + 0.1).astype(x.dtype)


def fake_denoise(video, audio, sigma, step):
    return fake_x0(video.latent, sigma), fake_x0(audio.latent, sigma)


def loop_states():
    def st(p):
        lat, clean, mask = a(f"loop_{p}"), a(f"loop_{p}c"), a(f"loop_{p}m")
        pos = mx.zeros((1, 1, lat.shape[1], 2))
        return C.LatentState(lat, mask, pos, clean, shape=(1, 8, lat.shape[1], 1))

    return st("v"), st("a")


# ---------------------------------------------------------------------------------------------------
# schedules


@pytest.mark.parametrize(
    "steps,tokens", [(40, None), (30, None), (15, 8160), (8, 6144), (3, None), (1, None), (20, 256)]
)
def test_ltx2_schedule_exact(steps, tokens):
    ours = np.array(schedulers.ltx2_sigmas(steps, tokens), np.float32)
    np.testing.assert_array_equal(ours, G[f"sched_{steps}_{tokens}"])


def test_schedule_doc_values_and_distilled():
    s = schedulers.ltx2_sigmas(40)
    assert len(s) == 41 and s[-1] == 0.0 and abs(s[-2] - 0.1) < 1e-6
    assert abs(s[1] - 0.996449) < 1e-6 and abs(s[-3] - 0.233936) < 1e-6
    ref = np.array([1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875, 0.0], np.float32)
    np.testing.assert_array_equal(np.array(schedulers.distilled_sigmas(1)), ref.astype(np.float64))
    assert schedulers.distilled_sigmas(2) == schedulers.distilled_sigmas(1)[-4:]
    assert constants.STAGE_2_NOISE_SCALE == 0.909375


# ---------------------------------------------------------------------------------------------------
# steps


@pytest.mark.parametrize("tag,dtype", [("f32", mx.float32), ("bf16", mx.bfloat16)])
def test_euler_post_process_noiser(tag, dtype):
    sig = schedulers.ltx2_sigmas(40)
    x, d = a("step_x", dtype), a("step_d", dtype)
    mask, clean = a("step_mask"), a("step_clean", dtype)
    for i in (0, 20, 39):
        close(
            sampling.euler_step(x, d, sig[i], sig[i + 1]), G[f"euler_{tag}_{i}"], 1e-5 if tag == "f32" else 0
        )
        if tag == "bf16":  # float32 storage with bf16 rounding points gives the same numbers
            xf, df = x.astype(mx.float32), d.astype(mx.float32)
            emu = sampling.euler_step(xf, df, sig[i], sig[i + 1], round_dtype=mx.bfloat16)
            close(emu, G[f"euler_{tag}_{i}"], 0)
    close(sampling.post_process(d, mask, clean), G[f"post_{tag}"], 1e-6 if tag == "f32" else 0)
    st = C.LatentState(x, mask, mx.zeros((2, 1, 24, 2)), clean, shape=(2, 8, 24, 1))
    close(sampling.add_noise(st, d, 0.909375).latent, G[f"noised_{tag}"], 1e-6 if tag == "f32" else 0)


@pytest.mark.parametrize("name", ["distilled", "ltx10"])
def test_loops_match_reference(name):
    sig = schedulers.distilled_sigmas(1) if name == "distilled" else schedulers.ltx2_sigmas(10)
    v, au = loop_states()
    *_, (n, v1, a1) = sampling.euler_loop(fake_denoise, sig, v, au)
    assert n == len(sig) - 1
    close(v1.latent, G[f"euler_loop_{name}_v"])
    close(a1.latent, G[f"euler_loop_{name}_a"])
    *_, (_, v2, a2, _) = sampling.gradient_estimation_loop(fake_denoise, sig, v, au)
    close(v2.latent, G[f"ge_loop_{name}_v"])
    close(a2.latent, G[f"ge_loop_{name}_a"])


def test_resume_is_bit_identical():
    sig = schedulers.ltx2_sigmas(5)
    v, au = loop_states()
    full = []
    for _, vs, as_ in sampling.euler_loop(fake_denoise, sig, v, au):
        mx.eval(vs.latent, as_.latent)
        full.append((np.array(vs.latent), np.array(as_.latent)))
    first = sampling.euler_loop(fake_denoise, sig, v, au)
    for step, vs, as_ in first:
        mx.eval(vs.latent, as_.latent)
        if step == 2:
            saved = (np.array(vs.latent), np.array(as_.latent))  # a checkpoint, through numpy
            break
    from dataclasses import replace

    vr, ar = replace(v, latent=mx.array(saved[0])), replace(au, latent=mx.array(saved[1]))
    resumed = [
        (s, np.array(x.latent), np.array(y.latent))
        for s, x, y in sampling.euler_loop(fake_denoise, sig, vr, ar, start=2)
    ]
    assert [s for s, *_ in resumed] == [3, 4, 5]
    for s, rv, ra in resumed:
        np.testing.assert_array_equal(rv, full[s - 1][0])
        np.testing.assert_array_equal(ra, full[s - 1][1])
    with pytest.raises(ValueError, match="start step 5"):
        next(sampling.euler_loop(fake_denoise, sig, v, au, start=5))


def test_res2s():
    for h, ref in zip([0.01, 0.3, 0.7, 2.5], G["res2s_coeffs"], strict=True):
        np.testing.assert_allclose(sampling.res2s_coefficients(h), ref, rtol=1e-6)
    x, d, e = (a(k).astype(mx.float64) for k in ("sde_x", "sde_d", "sde_e"))
    close(sampling.res2s_sde_step(x, d, 0.8, 0.5, e, mx.float64), G["sde_f64"], 1e-6)
    close(sampling.res2s_sde_step(x, d, 0.8, 0.5, e, mx.float32), G["sde_f32"], 1e-6)
    sig = schedulers.ltx2_sigmas(4)
    v, au = loop_states()
    raw = G["res2s_noise"]
    sizes = {"video": v.latent.size, "audio": au.latent.size}
    offsets, o = {}, 0
    for i in range(4):
        for lvl in ("substep", "step"):
            for m in ("video", "audio"):
                offsets[(i, lvl, m)] = o
                o += sizes[m]

    def draw(i, lvl, m, shape):
        k = offsets[(i, lvl, m)]
        return mx.array(raw[k : k + sizes[m]].reshape(shape)).astype(mx.float64)

    *_, (n, v1, a1) = sampling.res2s_loop(fake_denoise, sig, v, au, draw)
    assert n == 5
    close(v1.latent, G["res2s_loop_v"], 1e-5)
    close(a1.latent, G["res2s_loop_a"], 1e-5)


def test_res2s_resumes_bit_identically():
    """A res_2s run resumed from any yielded step (the last full step too: only the final denoise is left)
    ends bit-identical to an uninterrupted one: the noise of a step is drawn by its index."""
    sig = schedulers.ltx2_sigmas(3)
    v, au = loop_states()
    draw = sampling.res2s_noise_source(5)
    full = [
        (n, np.array(x.latent), np.array(y.latent))
        for n, x, y in sampling.res2s_loop(fake_denoise, sig, v, au, draw)
    ]
    assert [n for n, *_ in full] == [1, 2, 3, 4]
    for k in (1, 3):
        _, x, y = full[k - 1]
        vk, ak = replace(v, latent=mx.array(x)), replace(au, latent=mx.array(y))
        rest = [(n, np.array(a.latent), np.array(b.latent)) for n, a, b in sampling.res2s_loop(
            fake_denoise, sig, vk, ak, sampling.res2s_noise_source(5), start=k)]  # fmt: skip
        assert [n for n, *_ in rest] == list(range(k + 1, 5))
        for (n, a, b), (m, fa, fb) in zip(rest, full[k:], strict=True):
            assert n == m
            np.testing.assert_array_equal(a, fa)
            np.testing.assert_array_equal(b, fb)
    with pytest.raises(ValueError, match="start step 4"):
        next(sampling.res2s_loop(fake_denoise, sig, v, au, draw, start=4))


def test_noise_streams_deterministic():
    n1 = sampling.noise(7, (1, 4, 3), "stage1_video")
    assert np.array_equal(np.array(n1), np.array(sampling.noise(7, (1, 4, 3), "stage1_video")))
    assert not np.array_equal(np.array(n1), np.array(sampling.noise(7, (1, 4, 3), "stage1_audio")))
    assert not np.array_equal(np.array(n1), np.array(sampling.noise(8, (1, 4, 3), "stage1_video")))
    with pytest.raises(ValueError, match="stream 'video'"):
        sampling.noise(7, (2,), "video")


# ---------------------------------------------------------------------------------------------------
# guidance


@pytest.mark.parametrize("name", list(GUIDERS))
@pytest.mark.parametrize("tag,dtype", [("f32", mx.float32), ("bf16", mx.bfloat16)])
def test_guidance_combine(name, tag, dtype):
    p = GUIDERS[name]
    cond, unc, ptb, iso = (a(k, dtype) for k in ("g_cond", "g_uncond", "g_ptb", "g_iso"))
    ptb = ptb if p.stg_scale != 0 else None
    iso = iso if p.modality_scale != 1 else None
    out = guidance.combine(p, cond, unc, ptb, iso)
    # bf16: the std reductions may differ by an ulp of the factor
    close(out, G[f"guide_{name}_{tag}"], 1e-5 if tag == "f32" else 1e-2)


def test_guidance_plan_and_bins():
    pl = guidance.plan(GUIDERS["v20"], GUIDERS["a20"], step=0)
    assert [p.kind for p in pl.passes] == ["cond", "uncond", "perturbed", "isolated"]
    assert pl.passes[1].negative and pl.passes[2].perturbation == guidance.Perturbation((29,), (29,))
    assert pl.passes[3].perturbation == guidance.Perturbation(skip_a2v=True, skip_v2a=True)
    hq = guidance.plan(GUIDERS["hq_v"], GuiderParams(7.0, 0.0, (), rescale_scale=1.0, modality_scale=3.0), 3)
    assert [p.kind for p in hq.passes] == ["cond", "uncond", "isolated"]
    assert [p.kind for p in guidance.plan(GuiderParams(), GuiderParams(), 0).passes] == ["cond"]
    skip = GuiderParams(3.0, skip_step=1)
    assert guidance.plan(skip, skip, 1).passes == () and guidance.plan(skip, skip, 2).passes[0].kind == "cond"
    sched = guidance.guider_schedule({1.0: GuiderParams(1.0), 0.9: GuiderParams(2.0), 0.3: GuiderParams(3.0)})
    got = [guidance.params_at(sched, s).cfg_scale for s in [1.0, 0.95, 0.9, 0.5, 0.2, 0.0]]
    np.testing.assert_array_equal(np.array(got, np.float32), G["bins_cfg"])


def test_guided_denoiser_runs_planned_passes():
    seen = []

    def forward(video, audio, sigma, gp):
        seen.append(gp.kind)
        k = {"cond": 1.0, "uncond": 0.5, "perturbed": 0.8, "isolated": 0.9}[gp.kind]
        return video.latent * k, audio.latent * k

    v, au = loop_states()
    den = guidance.GuidedDenoiser(forward, GUIDERS["v20"], GUIDERS["a20"])
    dv, _ = den(v, au, 0.5, 0)
    assert seen == ["cond", "uncond", "perturbed", "isolated"]
    ref = guidance.combine(GUIDERS["v20"], v.latent, v.latent * 0.5, v.latent * 0.8, v.latent * 0.9)
    np.testing.assert_array_equal(np.array(dv), np.array(ref))


# ---------------------------------------------------------------------------------------------------
# conditioning


def test_conditioning_states():
    init = a("cond_init")
    st = C.video_state(init, fps=25.0)
    close(st.positions, G["cond_pos"], 0)
    close(C.video_state(init, 25.0, positions_dtype=mx.bfloat16).positions, G["cond_pos_bf16"], 0)
    st = C.apply_conditionings(
        st,
        [
            C.VideoConditionByLatentIndex(a("cond_img"), strength=0.8, latent_idx=0),
            C.VideoConditionByKeyframeIndex(a("cond_kf"), frame_idx=17, strength=0.6),
            C.VideoConditionByKeyframeIndex(a("cond_img"), frame_idx=0, strength=1.0),
            C.VideoConditionByKeyframeIndex(a("cond_kf", mx.bfloat16), frame_idx=9, strength=0.9),
        ],
    )
    for k in ("latent", "clean_latent", "denoise_mask", "positions"):
        close(getattr(st, k), G[f"cond_{k}"], 0)
    cl = C.clear_conditioning(st)
    for k in ("latent", "clean_latent", "denoise_mask", "positions"):
        close(getattr(cl, k), G[f"clear_{k}"], 0)
    close(C.unpatchify(cl), G["cond_unpatchified"], 0)
    with pytest.raises(ValueError, match="clear_conditioning"):
        C.unpatchify(st)
    ast = C.audio_state(a("audio_init"))
    close(ast.latent, G["audio_tokens"], 0)
    close(ast.positions, G["audio_pos"], 0)
    close(C.unpatchify(ast), G["audio_init"], 0)


# ---------------------------------------------------------------------------------------------------
# validation


def test_validation_messages():
    with pytest.raises(ValueError, match=r"num_frames 100 .*1 \+ 8k: use 97 or 105"):
        constants.validate_frames(100)
    constants.validate_frames(121)
    with pytest.raises(ValueError, match="height 500 must be divisible by 64 for two-stage pipelines"):
        constants.validate_resolution(500, 768, two_stage=True)
    with pytest.raises(ValueError, match="448 or 512"):
        constants.validate_resolution(500, 768, two_stage=True)
    constants.validate_resolution(480, 736, two_stage=False)
    with pytest.raises(ValueError, match="width 736 must be divisible by 64"):
        constants.validate_resolution(512, 736, two_stage=True)
    with pytest.raises(ValueError, match="steps 0 must be an integer >= 1"):
        schedulers.ltx2_sigmas(0)
    with pytest.raises(ValueError, match="cfg_scale nan must be a finite number"):
        GuiderParams(cfg_scale=math.nan)
    with pytest.raises(ValueError, match=r"strength 1.5 must be in \[0, 1\]"):
        C.VideoConditionByLatentIndex(a("cond_img"), strength=1.5).apply(C.video_state(a("cond_init"), 25.0))
    with pytest.raises(ValueError, match="noise shape"):
        v, _ = loop_states()
        sampling.add_noise(v, mx.zeros((1, 2, 8)))


def test_params_defaults():
    p20, p23 = constants.params_for_version(""), constants.params_for_version("2.3.0")
    assert p20.num_inference_steps == 40 and p23.num_inference_steps == 30
    assert p20.video_guider.stg_blocks == (29,) and p23.audio_guider.stg_blocks == (28,)
    assert (p20.audio_guider.cfg_scale, p20.video_guider.rescale_scale) == (7.0, 0.7)
    assert (p20.seed, p20.frame_rate, constants.DEFAULT_IMAGE_CRF) == (10, 24.0, 33)
    assert constants.audio_latent_frames(121, 24.0) == 126 and constants.audio_latent_frames(97, 24.0) == 101


def test_stage_loop_runs_inside_the_cpu_buffer_cache():
    """stages/diffuse.run_loop denoises with MLX's buffer cache at ltx.backend's CPU limit (every step
    reuses the last one's buffers) and leaves the limit it found; it still checkpoints every step."""
    from types import SimpleNamespace

    from stages import diffuse

    seen, steps = [], []

    def denoise(video, audio, sigma, step):
        limit = mx.set_cache_limit(0)  # the limit in force: set_cache_limit returns it
        mx.set_cache_limit(limit)
        seen.append(limit)
        return fake_denoise(video, audio, sigma, step)

    ctx = SimpleNamespace(
        resume=lambda total: None,
        checkpoint=lambda step, arrays: steps.append(step),
        echo=lambda text: None,
        progress=lambda done, total, unit: None,
        node=SimpleNamespace(stage=SimpleNamespace(name="denoise")),
    )
    v, au = loop_states()
    before = mx.set_cache_limit(1 << 25)
    try:
        diffuse.run_loop(ctx, denoise, schedulers.ltx2_sigmas(3), v, au)
        after = mx.set_cache_limit(before)
    finally:
        mx.set_cache_limit(before)
    assert seen == [backend.cpu_cache_bytes()] * 3 and steps == [1, 2, 3]
    assert after == 1 << 25
