"""Noise, noiser, Euler step and the denoising loops (generators that yield once per step).

Arithmetic follows the reference's order and rounding points: every quantity is computed in float32
and rounded to `round_dtype` where the reference rounds to the latent dtype (bf16 there). With
round_dtype None the rounding dtype is the latent's own dtype, so a float32 run does no extra
rounding and a bfloat16 run (or float32 latents with round_dtype=mx.bfloat16) emulates the reference.

A denoise function is `denoise(video, audio, sigma, step) -> (x0_video, x0_audio)` on LatentStates
(audio may be None for video-only runs); the pipeline wires it to the transformer and guidance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import replace

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402

from ltx.diffusion.conditioning import LatentState
from ltx.diffusion.schedulers import res2s_sigmas

Denoise = Callable[[LatentState, "LatentState | None", float, int], tuple[mx.array, "mx.array | None"]]
# Independent noise streams of a run, in the reference's draw order.
STREAMS = ("stage1_video", "stage1_audio", "stage2_video", "stage2_audio", "decoder")


def noise(seed: int, shape: tuple[int, ...], stream: str, dtype: mx.Dtype = mx.float32) -> mx.array:
    """Standard normal noise for one stream of a run, a pure function of (seed, stream, shape)."""
    if stream not in STREAMS:
        raise ValueError(f"noise stream {stream!r} must be one of {', '.join(STREAMS)}")
    if not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"seed {seed!r} must be an integer in [0, 2**32)")
    key = mx.random.split(mx.random.key(seed), len(STREAMS))[STREAMS.index(stream)]
    return mx.random.normal(shape, dtype=mx.float32, key=key).astype(dtype)


def _f32(x: mx.array) -> mx.array:
    return x.astype(mx.float32)


def _round(x: mx.array, dtype: mx.Dtype) -> mx.array:
    # round to `dtype`, continue in float32 (a no-op for float32)
    return x if dtype == mx.float32 else x.astype(dtype).astype(mx.float32)


def add_noise(
    state: LatentState, eps: mx.array, noise_scale: float = 1.0, round_dtype: mx.Dtype | None = None
) -> LatentState:
    """GaussianNoiser: with m = denoise_mask * noise_scale, latent <- eps * m + latent * (1 - m)."""
    if eps.shape != state.latent.shape:
        raise ValueError(
            f"noise shape {tuple(eps.shape)} must equal the latent shape {tuple(state.latent.shape)}"
        )
    if not math.isfinite(noise_scale) or not 0.0 <= noise_scale <= 1.0:
        raise ValueError(f"noise_scale {noise_scale!r} must be in [0, 1]")
    dt = state.latent.dtype
    m = state.denoise_mask * mx.array(noise_scale, mx.float32)
    eps = _round(_f32(eps), round_dtype or dt)  # the reference draws noise in the latent dtype
    x = eps * m + _f32(state.latent) * (1 - m)
    return replace(state, latent=_round(x, round_dtype or dt).astype(dt))


def post_process(
    denoised: mx.array, mask: mx.array, clean: mx.array, round_dtype: mx.Dtype | None = None
) -> mx.array:
    """Blend the x0 prediction with the clean latent: d * m + clean * (1 - m), rounded to the x0 dtype."""
    out = _f32(denoised) * mask + _f32(clean) * (1 - mask)
    return _round(out, round_dtype or denoised.dtype).astype(denoised.dtype)


def _sigma_pair(sigma: float, sigma_next: float) -> tuple[mx.array, mx.array]:
    s = mx.array(sigma, mx.float32)
    return s, mx.array(sigma_next, mx.float32) - s  # dt in float32, as torch's 0-d tensors


def velocity(x: mx.array, denoised: mx.array, sigma: float, round_dtype: mx.Dtype | None = None) -> mx.array:
    """(x - d) / sigma in float32, rounded to round_dtype (default: x's dtype); returned as float32."""
    if sigma == 0:
        raise ValueError("sigma 0.0 has no velocity: the schedule's last sigma is only a target")
    return _round((_f32(x) - _f32(denoised)) / mx.array(sigma, mx.float32), round_dtype or x.dtype)


def euler_step(
    x: mx.array, denoised: mx.array, sigma: float, sigma_next: float, round_dtype: mx.Dtype | None = None
) -> mx.array:
    """EulerDiffusionStep: x + v * (sigma_next - sigma), v = (x - d) / sigma; result in x's dtype."""
    rd = round_dtype or x.dtype
    v = velocity(x, denoised, sigma, rd)
    _, dt = _sigma_pair(sigma, sigma_next)
    return _round(_f32(x) + v * dt, rd).astype(x.dtype)


# Stage 1 of the distilled pipeline on LTX-2.5 (ltx_pipelines/distilled.py): a fully ancestral Euler
# sampler with its own noise stream, seeded from the run's seed plus this offset.
ANCESTRAL_ETA = 1.0
ANCESTRAL_S_NOISE = 1.0
ANCESTRAL_NOISE_SEED_OFFSET = 10000


def euler_ancestral_step(
    x: mx.array,
    denoised: mx.array,
    sigma: float,
    sigma_next: float,
    eps: mx.array | None,
    eta: float = ANCESTRAL_ETA,
    s_noise: float = ANCESTRAL_S_NOISE,
) -> mx.array:
    """EulerAncestralDiffusionStep (rectified flow, alpha = 1 - sigma), in float32: an Euler step to
    sigma_down = sigma_next * (1 + (sigma_next / sigma - 1) * eta), then renoised up to sigma_next with
    the signal rescaled by alpha_next / alpha_down; the x0 prediction itself when sigma_next is 0."""
    if sigma_next == 0:
        return denoised.astype(x.dtype)
    if eta > 0 and eps is None:
        raise ValueError("the ancestral step needs a noise tensor when eta > 0")
    s, sn = mx.array(sigma, mx.float32), mx.array(sigma_next, mx.float32)
    sigma_down = sn * (1.0 + (sn / s - 1.0) * eta)
    ratio = sigma_down / s
    out = ratio * _f32(x) + (1.0 - ratio) * _f32(denoised)
    if eta > 0:
        alpha_next, alpha_down = 1.0 - sn, 1.0 - sigma_down
        coeff = mx.sqrt(mx.maximum(sn**2 - sigma_down**2 * alpha_next**2 / alpha_down**2, 0.0))
        out = (alpha_next / alpha_down) * out + _f32(eps) * s_noise * coeff
    return out.astype(x.dtype)


def ancestral_noise_source(seed: int) -> Callable[[int, str, tuple[int, ...]], mx.array]:
    """draw(step, modality, shape) for euler_ancestral_loop: the stream of seed + 10000 (the
    reference's offset keeps it apart from the initial noise), one key per (step, modality)."""
    if not isinstance(seed, int) or not 0 <= seed < 2**32 - ANCESTRAL_NOISE_SEED_OFFSET:
        raise ValueError(f"seed {seed!r} must be an integer in [0, 2**32 - {ANCESTRAL_NOISE_SEED_OFFSET})")
    base = mx.random.key(seed + ANCESTRAL_NOISE_SEED_OFFSET)

    def draw(step: int, modality: str, shape: tuple[int, ...]) -> mx.array:
        idx = 2 * step + ("video", "audio").index(modality)
        return mx.random.normal(shape, dtype=mx.float32, key=mx.random.split(base, idx + 1)[idx])

    return draw


def euler_ancestral_loop(
    denoise: Denoise,
    sigmas: list[float],
    video: LatentState,
    audio: LatentState | None,
    draw: Callable[[int, str, tuple[int, ...]], mx.array],
    start: int = 0,
    eta: float = ANCESTRAL_ETA,
    s_noise: float = ANCESTRAL_S_NOISE,
) -> Iterator[tuple[int, LatentState, LatentState | None]]:
    """The reference's euler_ancestral_denoising_loop; yields (step, video, audio) after each step.

    Per step and stream (video first): the x0 prediction blended with the clean latent (float32), the
    ancestral step with draw(step, stream, shape) noise, then the clean latent blended back in (so
    conditioned tokens stay clean). The last step (sigma_next 0) takes the x0 prediction. Resumable
    as euler_loop: each step's noise depends on the step alone.
    """
    _check_resume(sigmas, start)
    for i in range(start, len(sigmas) - 1):
        dv, da = denoise(video, audio, sigmas[i], i)
        states = {"video": (video, dv)} | ({"audio": (audio, da)} if audio is not None else {})
        for name, (st, d) in states.items():
            d = _f32(d) * st.denoise_mask + _f32(st.clean_latent) * (1 - st.denoise_mask)
            if sigmas[i + 1] == 0:
                x = d
            else:
                eps = draw(i, name, tuple(st.latent.shape)) if eta > 0 else None
                x = euler_ancestral_step(_f32(st.latent), d, sigmas[i], sigmas[i + 1], eps, eta, s_noise)
                if eta > 0:
                    x = x * st.denoise_mask + _f32(st.clean_latent) * (1 - st.denoise_mask)
            states[name] = replace(st, latent=x.astype(st.latent.dtype))
        video, audio = states["video"], states.get("audio")
        yield i + 1, video, audio


def _check_resume(sigmas: list[float], start: int) -> None:
    if len(sigmas) < 2:
        raise ValueError(f"sigmas {sigmas} must hold at least two values (start and target)")
    if not 0 <= start < len(sigmas) - 1:
        raise ValueError(f"start step {start} must be in [0, {len(sigmas) - 2}] for {len(sigmas) - 1} steps")


def _denoised(denoise: Denoise, video: LatentState, audio: LatentState | None, sigma: float, step: int, rd):
    dv, da = denoise(video, audio, sigma, step)
    dv = post_process(dv, video.denoise_mask, video.clean_latent, rd)
    if audio is not None:
        da = post_process(da, audio.denoise_mask, audio.clean_latent, rd)
    return dv, da


def euler_loop(
    denoise: Denoise,
    sigmas: list[float],
    video: LatentState,
    audio: LatentState | None = None,
    start: int = 0,
    round_dtype: mx.Dtype | None = None,
) -> Iterator[tuple[int, LatentState, LatentState | None]]:
    """Euler sampling; yields (step, video, audio) after each step, step = steps done (1..N).

    The yielded states are the latents at sigmas[step]. To resume, pass them back with start=step:
    the continuation is bit-identical to an uninterrupted run.
    """
    _check_resume(sigmas, start)
    for i in range(start, len(sigmas) - 1):
        dv, da = _denoised(denoise, video, audio, sigmas[i], i, round_dtype)
        video = replace(video, latent=euler_step(video.latent, dv, sigmas[i], sigmas[i + 1], round_dtype))
        if audio is not None:
            audio = replace(audio, latent=euler_step(audio.latent, da, sigmas[i], sigmas[i + 1], round_dtype))
        yield i + 1, video, audio


def _ge_correct(x, d, sigma, prev_v, gamma, rd):
    # returns (uncorrected velocity, corrected x0) in the reference's rounding order
    rd = rd or x.dtype
    v = velocity(x, d, sigma, rd)
    if prev_v is None:
        return v, d
    total = _round(_round(gamma * _round(v - prev_v, rd), rd) + prev_v, rd)
    d = _round(_f32(x) - total * mx.array(sigma, mx.float32), rd).astype(x.dtype)
    return v, d


def gradient_estimation_loop(
    denoise: Denoise,
    sigmas: list[float],
    video: LatentState,
    audio: LatentState | None = None,
    start: int = 0,
    previous: tuple[mx.array | None, mx.array | None] = (None, None),
    gamma: float = 2.0,
    round_dtype: mx.Dtype | None = None,
) -> Iterator[tuple[int, LatentState, LatentState | None, tuple[mx.array | None, mx.array | None]]]:
    """Gradient-estimation Euler; yields (step, video, audio, previous velocities).

    Resume with start=step and previous=the yielded velocities. A step whose next sigma is 0 returns
    the post-processed x0 directly.
    """
    _check_resume(sigmas, start)
    pv, pa = previous
    for i in range(start, len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        dv, da = _denoised(denoise, video, audio, s, i, round_dtype)
        if s_next == 0:
            video = replace(video, latent=dv)
            audio = audio if audio is None else replace(audio, latent=da)
            yield i + 1, video, audio, (pv, pa)
            return
        pv, dv = _ge_correct(video.latent, dv, s, pv, gamma, round_dtype)
        video = replace(video, latent=euler_step(video.latent, dv, s, s_next, round_dtype))
        if audio is not None:
            pa, da = _ge_correct(audio.latent, da, s, pa, gamma, round_dtype)
            audio = replace(audio, latent=euler_step(audio.latent, da, s, s_next, round_dtype))
        yield i + 1, video, audio, (pv, pa)


# ---------------------------------------------------------------------------------------------------
# res_2s (HQ pipeline): second-order exponential Runge-Kutta with SDE re-noising, float64 arithmetic


def _phi(j: int, z: float) -> float:
    if abs(z) < 1e-10:
        return 1.0 / math.factorial(j)
    return (math.exp(z) - sum(z**k / math.factorial(k) for k in range(j))) / z**j


def res2s_coefficients(h: float, c2: float = 0.5) -> tuple[float, float, float]:
    """(a21, b1, b2) for a step of log-size h = ln(sigma / sigma_next)."""
    a21 = c2 * _phi(1, -h * c2)
    b2 = _phi(2, -h) / c2
    return a21, _phi(1, -h) - b2, b2


def res2s_sde_step(
    sample: mx.array,
    denoised: mx.array,
    sigma: float,
    sigma_next: float,
    eps: mx.array,
    coeff_dtype: mx.Dtype = mx.float64,
) -> mx.array:
    """Res2sDiffusionStep.step: move `denoised` to sigma_next with sigma_up = sigma_next / 2.

    sample, denoised, eps: float64. The coefficients are computed in coeff_dtype (the reference uses
    float64 at the substep and the float32 schedule at the step level).
    """
    if sigma_next == 0:
        return denoised
    f64 = mx.float64
    s, sn = mx.array(sigma, coeff_dtype), mx.array(sigma_next, coeff_dtype)
    up = sn * 0.5
    res = mx.sqrt(mx.maximum(sn * sn - up * up, 0.0))
    alpha = (1.0 - sn) + res
    down = res / alpha
    e = (sample - denoised) / (s - sn).astype(f64)
    d = sample - s.astype(f64) * e
    return alpha.astype(f64) * (d + down.astype(f64) * e) + up.astype(f64) * eps


def res2s_noise(eps: mx.array) -> mx.array:
    """The reference's normalisation of raw float64 noise: global standardise, then over the last two dims."""
    e = eps.astype(mx.float64)
    e = (e - e.mean()) / _std(e)
    return (e - e.mean(axis=(-2, -1), keepdims=True)) / _std(e, axes=(-2, -1))


def _std(x: mx.array, axes=None) -> mx.array:
    if axes is None:
        return mx.sqrt(mx.var(x, ddof=1))
    return mx.sqrt(mx.var(x, axis=axes, keepdims=True, ddof=1))


def res2s_loop(
    denoise: Denoise,
    sigmas: list[float],
    video: LatentState,
    audio: LatentState | None,
    draw: Callable[[int, str, str, tuple[int, ...]], mx.array],
    start: int = 0,
    bongmath: bool = True,
    bongmath_iters: int = 100,
    model_dtype: mx.Dtype | None = None,
) -> Iterator[tuple[int, LatentState, LatentState | None]]:
    """res_2s sampling; yields (step, video, audio) after each full step, then once more after the final denoise.

    To resume, pass the yielded states back with start=step (start = len(sigmas) - 1 runs the final denoise
    only); the noise of each step is drawn by its index, so the continuation equals an uninterrupted run.

    draw(step, level, modality, shape) returns raw standard-normal noise of that modality's latent shape for
    level "substep" or "step" (normalised here). sigmas: the schedule with its terminal 0.
    """
    sig = res2s_sigmas(sigmas)
    n_full = len(sigmas) - 1
    if sigmas and sigmas[-1] == 0 and start == n_full and n_full >= 1:
        pass  # resuming after the last full step: only the final denoise is left
    else:
        _check_resume(sigmas, start)
    md = model_dtype or video.latent.dtype
    for i in range(start, n_full):
        s, sn = sig[i], sig[i + 1]
        h = -math.log(float(sn) / float(s))
        a21, b1, b2 = res2s_coefficients(h)
        sub = math.sqrt(s * sn)
        d1v, d1a = _denoised(denoise, video, audio, s, i, None)
        mods = [("video", video, d1v)] + ([("audio", audio, d1a)] if audio is not None else [])
        anchors, eps1, mids = {}, {}, {}
        for name, st, d1 in mods:
            xa = st.latent.astype(mx.float64)
            e1 = d1.astype(mx.float64) - xa
            xm = xa + h * a21 * e1
            xm = _renoise(st, xa, xm, s, sub, draw(i, "substep", name, st.latent.shape), mx.float64)
            if bongmath and h < 0.5 and s > 0.03:
                for _ in range(bongmath_iters):
                    xa = xm - h * a21 * e1
                    e1 = d1.astype(mx.float64) - xa
            anchors[name], eps1[name], mids[name] = xa, e1, xm
        mid_v = replace(video, latent=mids["video"].astype(md))
        mid_a = None if audio is None else replace(audio, latent=mids["audio"].astype(md))
        d2v, d2a = _denoised(denoise, mid_v, mid_a, sub, 0, None)
        out = {}
        for name, st, d2 in [("video", video, d2v)] + ([("audio", audio, d2a)] if audio is not None else []):
            xa = anchors[name]
            xn = xa + h * (b1 * eps1[name] + b2 * (d2.astype(mx.float64) - xa))
            out[name] = _renoise(
                st, xa, xn, s, sn, draw(i, "step", name, st.latent.shape), mx.float32
            ).astype(md)
        video = replace(video, latent=out["video"])
        audio = None if audio is None else replace(audio, latent=out["audio"])
        yield i + 1, video, audio
    if sigmas[-1] == 0:
        dv, da = _denoised(denoise, video, audio, sig[n_full], n_full, None)
        video = replace(video, latent=dv.astype(md))
        audio = None if audio is None else replace(audio, latent=da.astype(md))
        yield n_full + 1, video, audio


def _renoise(state: LatentState, sample, target, sigma, sigma_next, raw_eps, coeff_dtype):
    x = res2s_sde_step(sample, target, sigma, sigma_next, res2s_noise(raw_eps), coeff_dtype)
    m = state.denoise_mask.astype(mx.float64)  # legacy mode: blend with the clean latent afterwards
    return x * m + state.clean_latent.astype(mx.float64) * (1 - m)


def res2s_noise_source(seed: int) -> Callable[[int, str, str, tuple[int, ...]], mx.array]:
    """A `draw` for res2s_loop from one seed: a separate key per (step, level, modality)."""
    base = mx.random.key(seed)

    def draw_shaped(step: int, level: str, modality: str, shape: tuple[int, ...]) -> mx.array:
        idx = 4 * step + 2 * ("substep", "step").index(level) + ("video", "audio").index(modality)
        key = mx.random.split(base, idx + 1)[idx]
        return mx.random.normal(shape, dtype=mx.float32, key=key).astype(mx.float64)

    return draw_shaped
