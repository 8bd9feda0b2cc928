"""Goldens for the model-independent diffusion math: schedules, Euler, noiser, loops, guidance,
conditioning states, res_2s. Variant-independent (the same content is saved for both variants).

Every model-like function here is pure arithmetic written identically in tests/test_diffusion.py.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from ltx_core.components.diffusion_steps import EulerDiffusionStep, Res2sDiffusionStep
from ltx_core.components.guiders import MultiModalGuider, MultiModalGuiderFactory, MultiModalGuiderParams
from ltx_core.components.noisers import GaussianNoiser
from ltx_core.components.patchifiers import AudioPatchifier, VideoLatentPatchifier
from ltx_core.components.schedulers import LTX2Scheduler
from ltx_core.conditioning import VideoConditionByKeyframeIndex, VideoConditionByLatentIndex
from ltx_core.tools import AudioLatentTools, VideoLatentTools
from ltx_core.types import AudioLatentShape, LatentState, VideoLatentShape
from ltx_pipelines.utils import samplers
from ltx_pipelines.utils.helpers import post_process_latent
from ltx_pipelines.utils.res2s import get_res2s_coefficients

SCHEDULES = [(40, None), (30, None), (15, 8160), (8, 6144), (3, None), (1, None), (20, 256)]
GUIDERS = {
    "v20": dict(cfg_scale=3.0, stg_scale=1.0, rescale_scale=0.7, modality_scale=3.0, stg_blocks=[29]),
    "a20": dict(cfg_scale=7.0, stg_scale=1.0, rescale_scale=0.7, modality_scale=3.0, stg_blocks=[29]),
    "hq_v": dict(cfg_scale=3.0, stg_scale=0.0, rescale_scale=0.45, modality_scale=3.0, stg_blocks=[]),
    "plain": dict(cfg_scale=2.5, stg_scale=0.5, rescale_scale=0.0, modality_scale=1.0, stg_blocks=[1]),
}
BIN_SIGMAS = [1.0, 0.95, 0.9, 0.5, 0.2, 0.0]
RES2S_H = [0.01, 0.3, 0.7, 2.5]


def contribute(variant: str) -> dict:
    return {}


def _rs(seed: int) -> np.random.RandomState:
    return np.random.RandomState(seed)


def fake_x0(x: torch.Tensor, sigma: float) -> torch.Tensor:
    # identical formula in tests/test_diffusion.py; float32 arithmetic, result in x's dtype
    s = torch.tensor(sigma, dtype=torch.float32)
    xf = x.float()
    return (0.5 * xf - 0.2 * xf * xf * s + 0.1).to(x.dtype)


def _state(rng, tokens, ch, mask_lo=None) -> LatentState:
    lat = torch.from_numpy(rng.standard_normal((1, tokens, ch)).astype(np.float32))
    clean = torch.from_numpy(rng.standard_normal((1, tokens, ch)).astype(np.float32))
    mask = torch.ones(1, tokens, 1)
    if mask_lo is not None:
        mask[:, :mask_lo] = torch.tensor([0.0, 0.25, 0.5][:mask_lo]).view(1, -1, 1)
    return LatentState(
        latent=lat, denoise_mask=mask, positions=torch.zeros(1, 1, tokens, 2), clean_latent=clean
    )


def _schedules(out: dict) -> None:
    for steps, tokens in SCHEDULES:
        latent = None if tokens is None else torch.zeros(1, 1, tokens, 1, 1)
        out[f"sched_{steps}_{tokens}"] = LTX2Scheduler().execute(steps=steps, latent=latent).numpy()


def _steps(out: dict) -> None:
    rng = _rs(1)
    x = rng.standard_normal((2, 24, 8)).astype(np.float32)
    d = rng.standard_normal((2, 24, 8)).astype(np.float32)
    mask = rng.uniform(0, 1, (2, 24, 1)).astype(np.float32)
    clean = rng.standard_normal((2, 24, 8)).astype(np.float32)
    out.update(step_x=x, step_d=d, step_mask=mask, step_clean=clean)
    sig = LTX2Scheduler().execute(steps=40)
    for dt in (torch.float32, torch.bfloat16):
        tag = "f32" if dt == torch.float32 else "bf16"
        xt, dtt = torch.from_numpy(x).to(dt), torch.from_numpy(d).to(dt)
        for i in (0, 20, 39):
            out[f"euler_{tag}_{i}"] = EulerDiffusionStep().step(xt, dtt, sig, i).float().numpy()
        pp = post_process_latent(dtt, torch.from_numpy(mask), torch.from_numpy(clean).to(dt))
        out[f"post_{tag}"] = pp.float().numpy()
        st = LatentState(xt, torch.from_numpy(mask), torch.zeros(2, 1, 24, 2), torch.from_numpy(clean).to(dt))
        eps = torch.from_numpy(d).to(dt)
        orig = torch.randn
        torch.randn = lambda *a, _eps=eps, **k: _eps.clone()  # inject the noise
        try:
            noised = GaussianNoiser(torch.Generator().manual_seed(0))(st, noise_scale=0.909375)
        finally:
            torch.randn = orig
        out[f"noised_{tag}"] = noised.latent.float().numpy()


def _loops(out: dict) -> None:
    rng = _rs(2)
    v0, a0 = _state(rng, 24, 8, mask_lo=3), _state(rng, 5, 8, mask_lo=2)
    out.update(loop_v=v0.latent.numpy(), loop_vc=v0.clean_latent.numpy(), loop_vm=v0.denoise_mask.numpy())
    out.update(loop_a=a0.latent.numpy(), loop_ac=a0.clean_latent.numpy(), loop_am=a0.denoise_mask.numpy())

    def denoise(video_state, audio_state, sigmas, step_index):
        s = float(sigmas[step_index])
        return fake_x0(video_state.latent, s), fake_x0(audio_state.latent, s)

    for name, sig in (
        ("distilled", torch.tensor([1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875, 0.0])),
        ("ltx10", LTX2Scheduler().execute(steps=10)),
    ):
        v, a = samplers.euler_denoising_loop(sig, v0, a0, EulerDiffusionStep(), denoise)
        out[f"euler_loop_{name}_v"], out[f"euler_loop_{name}_a"] = v.latent.numpy(), a.latent.numpy()
        v, a = samplers.gradient_estimating_euler_denoising_loop(sig, v0, a0, EulerDiffusionStep(), denoise)
        out[f"ge_loop_{name}_v"], out[f"ge_loop_{name}_a"] = v.latent.numpy(), a.latent.numpy()

    # res_2s with injected noise, float32 latents
    sig = LTX2Scheduler().execute(steps=4)
    draws = [rng.standard_normal(s.latent.shape) for _ in range(4) for s in (v0, a0, v0, a0)]
    out["res2s_noise"] = np.concatenate([d.reshape(-1) for d in draws]).astype(np.float32)
    queue = [torch.from_numpy(d.astype(np.float32)).double() for d in draws]

    def new_noise(x, generator):
        n = queue.pop(0)
        n = (n - n.mean()) / n.std()
        return samplers._channelwise_normalize(n)

    v, a = samplers.res2s_audio_video_denoising_loop(
        sig, v0, a0, Res2sDiffusionStep(), denoise, new_noise_fn=new_noise, model_dtype=torch.float32
    )
    assert not queue
    out["res2s_loop_v"], out["res2s_loop_a"] = v.latent.numpy(), a.latent.numpy()
    out["res2s_coeffs"] = np.array([get_res2s_coefficients(h, {}) for h in RES2S_H], np.float64).astype(
        np.float32
    )
    x, d, e = (torch.from_numpy(rng.standard_normal((1, 6, 4))).double() for _ in range(3))
    out.update(sde_x=x.float().numpy(), sde_d=d.float().numpy(), sde_e=e.float().numpy())
    x, d, e = x.float().double(), d.float().double(), e.float().double()
    for tag, sigs in (
        ("f64", torch.tensor([0.8, 0.5], dtype=torch.float64)),
        ("f32", torch.tensor([0.8, 0.5])),
    ):
        out[f"sde_{tag}"] = Res2sDiffusionStep().step(x, d, sigs, 0, noise=e).float().numpy()


def _guidance(out: dict) -> None:
    rng = _rs(3)
    arrs = [torch.from_numpy(rng.standard_normal((1, 24, 8)).astype(np.float32)) for _ in range(4)]
    for k, a in zip(("g_cond", "g_uncond", "g_ptb", "g_iso"), arrs, strict=True):
        out[k] = a.numpy()
    for name, p in GUIDERS.items():
        g = MultiModalGuider(MultiModalGuiderParams(**p))
        ptb = arrs[2] if g.do_perturbed_generation() else 0.0
        iso = arrs[3] if g.do_isolated_modality_generation() else 0.0
        for dt in (torch.float32, torch.bfloat16):
            tag = "f32" if dt == torch.float32 else "bf16"
            c = g.calculate(
                arrs[0].to(dt),
                arrs[1].to(dt),
                ptb if isinstance(ptb, float) else ptb.to(dt),
                iso if isinstance(iso, float) else iso.to(dt),
            )
            out[f"guide_{name}_{tag}"] = c.float().numpy()
    bins = {
        1.0: MultiModalGuiderParams(cfg_scale=1.0),
        0.9: MultiModalGuiderParams(cfg_scale=2.0),
        0.3: MultiModalGuiderParams(cfg_scale=3.0),
    }
    f = MultiModalGuiderFactory.from_dict(bins)
    out["bins_cfg"] = np.array([f.params(s).cfg_scale for s in BIN_SIGMAS], np.float32)


def _conditioning(out: dict) -> None:
    rng = _rs(4)
    shape = VideoLatentShape(1, 4, 3, 2, 3)
    init = torch.from_numpy(rng.standard_normal(tuple(shape)).astype(np.float32))
    img = torch.from_numpy(rng.standard_normal((1, 4, 1, 2, 3)).astype(np.float32))
    kf = torch.from_numpy(rng.standard_normal((1, 4, 1, 2, 3)).astype(np.float32))
    out.update(cond_init=init.numpy(), cond_img=img.numpy(), cond_kf=kf.numpy())
    tools = VideoLatentTools(VideoLatentPatchifier(1), shape, fps=25.0)
    st = tools.create_initial_state(torch.device("cpu"), torch.float32, init)
    out["cond_pos"] = st.positions.numpy()
    out["cond_pos_bf16"] = (
        tools.create_initial_state(torch.device("cpu"), torch.bfloat16).positions.float().numpy()
    )
    st = VideoConditionByLatentIndex(img, strength=0.8, latent_idx=0).apply_to(st, tools)
    st = VideoConditionByKeyframeIndex(kf, frame_idx=17, strength=0.6).apply_to(st, tools)
    st = VideoConditionByKeyframeIndex(img, frame_idx=0, strength=1.0).apply_to(st, tools)
    st = VideoConditionByKeyframeIndex(kf.to(torch.bfloat16), frame_idx=9, strength=0.9).apply_to(
        replace(st, latent=st.latent, clean_latent=st.clean_latent), tools
    )
    for k in ("latent", "clean_latent", "denoise_mask", "positions"):
        out[f"cond_{k}"] = getattr(st, k).float().numpy()
    cl = tools.clear_conditioning(st)
    for k in ("latent", "clean_latent", "denoise_mask", "positions"):
        out[f"clear_{k}"] = getattr(cl, k).float().numpy()
    out["cond_unpatchified"] = tools.unpatchify(cl).latent.numpy()
    atools = AudioLatentTools(AudioPatchifier(1), AudioLatentShape(1, 8, 7, 16))
    ainit = torch.from_numpy(rng.standard_normal((1, 8, 7, 16)).astype(np.float32))
    ast = atools.create_initial_state(torch.device("cpu"), torch.float32, ainit)
    out.update(audio_init=ainit.numpy(), audio_tokens=ast.latent.numpy(), audio_pos=ast.positions.numpy())


def run(variant: str, model_dir) -> dict[str, np.ndarray]:
    torch.manual_seed(0)
    out: dict[str, np.ndarray] = {}
    _schedules(out)
    _steps(out)
    _loops(out)
    _guidance(out)
    _conditioning(out)
    return out


if __name__ == "__main__":  # write just this golden, without touching the manifest
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root / "tests" / "reference"))
    from make_goldens import GOLDENS, save_goldens

    for variant in ("2.0", "2.3"):
        save_goldens(GOLDENS / variant / "diffusion.safetensors", run(variant, None))
        print(variant, "ok")
