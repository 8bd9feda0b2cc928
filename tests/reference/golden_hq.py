"""Goldens for a whole tiny HQ run (ltx_pipelines/ti2vid_two_stages_hq.py's TI2VidTwoStagesHQPipeline) and a
distilled run through the x1.5 spatial upsampler, float32 on CPU, from the reference's pieces (see
golden_pipeline.py).

hq    text + DEFAULT_NEGATIVE_PROMPT -> stage 1 at half resolution: res2s_audio_video_denoising_loop
      (Res2sDiffusionStep) over LTX2Scheduler().execute(latent=<the stage-1 latent>, steps=HQ_STEPS) (the
      HQ pipeline counts the stage's own tokens), multi_modal_guider_denoising_func with
      LTX_2_3_HQ_PARAMS' guiders (no STG), the transformer with the tiny distilled LoRA fused at
      STRENGTH_1 -> upsample -> stage 2: res2s over STAGE_2_DISTILLED_SIGMA_VALUES, single pass, the LoRA at
      STRENGTH_2 -> decode (tiled), audio decoder, vocoder.
      The res_2s SDE noise is injected too: new_noise_fn returns "noise.hq.sde<stage>.<i>" (raw float32
      standard normals, widened to float64 and normalised as the reference's _get_new_noise does), i in
      call order (per step: substep video, substep audio, step video, step audio).
x15   the distilled pipeline (DISTILLED_SIGMA_VALUES, one pass per step) with the x1.5 upsampler
      (UPSAMPLER_X15: rational resampler, spatial_scale 1.5) at X15_HEIGHT x X15_WIDTH, stage 1 at 2/3 of it.
      The reference's two-stage pipelines size stage 1 at half the target whatever the upsampler, which
      cannot fit an x1.5 upsampler (its stage 2 fails on the latent shape); this is that flow with stage 1
      sized so that x1.5 lands on the target, as stages/pipeline.py sizes it.

Initial noise as in golden_pipeline: "noise.<pipeline>.<stream>" (stage1_video, stage1_audio, stage2_video,
stage2_audio, decoder). Outputs, prefixed "hq." / "x15.": stage1_video, stage1_audio, upsampled,
stage2_video, stage2_audio, video_f16, mel, waveform.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from golden_a2v import setup
from golden_pipeline import (
    FPS,
    HEIGHT,
    NOISE_SEED,
    NUM_FRAMES,
    WIDTH,
    _decode_video,
    _f16_bits,
    _fuse_lora_f32,
    _injected_noiser,
    _Noise,
)
from golden_video_vae import UPSAMPLER

HQ_STEPS = 2
STRENGTH_1, STRENGTH_2 = 0.25, 0.5  # hq_2_stage_arg_parser's defaults
X15_HEIGHT, X15_WIDTH = 96, 192
UPSAMPLER_X15 = {**UPSAMPLER, "spatial_scale": 1.5}
STREAMS = ["stage1_video", "stage1_audio", "stage2_video", "stage2_audio"]


def contribute(variant: str) -> dict:
    import torch
    from ltx_core.model.upsampler.model_configurator import LatentUpsamplerConfigurator

    with torch.device("meta"):
        ups = LatentUpsamplerConfigurator.from_config(UPSAMPLER_X15)
    return {
        "upsampler_x1.5.safetensors": {
            "metadata": {"config": UPSAMPLER_X15},
            "tensors": {k: list(v.shape) for k, v in ups.state_dict().items()},
            "dtype": "BF16",
        }
    }


def _sde_noise(store: dict[str, np.ndarray], prefix: str, rng: np.random.RandomState):
    """new_noise_fn for res2s_audio_video_denoising_loop: injected raw noise, normalised as _get_new_noise."""
    import torch

    count = [0]

    def new_noise(x, generator):
        raw = rng.standard_normal(tuple(x.shape)).astype(np.float32)
        store[f"{prefix}.{count[0]}"] = raw
        count[0] += 1
        n = torch.from_numpy(raw).double()
        n = (n - n.mean()) / n.std()
        return (n - n.mean(dim=(-2, -1), keepdim=True)) / n.std(dim=(-2, -1), keepdim=True)

    return new_noise


def _outputs(name, ledger, v1, a1, up, v2, a2, noise) -> dict[str, np.ndarray]:
    video = _decode_video(ledger.video_decoder(), v2.latent, noise)
    mel = ledger.audio_decoder()(a2.latent)
    wave = ledger.vocoder()(mel).squeeze(0).float()
    out = {
        f"{name}.stage1_video": v1.latent.numpy(),
        f"{name}.stage1_audio": a1.latent.numpy(),
        f"{name}.upsampled": up.numpy(),
        f"{name}.stage2_video": v2.latent.numpy(),
        f"{name}.stage2_audio": a2.latent.numpy(),
        f"{name}.video_f16": _f16_bits(video),
        f"{name}.mel": mel.numpy(),
        f"{name}.waveform": wave.numpy(),
    }
    for stream, a in noise.arrays.items():
        out[f"noise.{name}.{stream}"] = a
    return out


def run(variant: str, model_dir: Path) -> dict[str, np.ndarray]:
    import torch
    from golden_video_vae import _build
    from ltx_core.components.diffusion_steps import EulerDiffusionStep, Res2sDiffusionStep
    from ltx_core.components.guiders import MultiModalGuider
    from ltx_core.components.schedulers import LTX2Scheduler
    from ltx_core.model.upsampler import upsample_video
    from ltx_core.model.upsampler.model_configurator import LatentUpsamplerConfigurator
    from ltx_core.tools import VideoLatentShape
    from ltx_core.types import VideoPixelShape
    from ltx_pipelines.utils.constants import (
        DISTILLED_SIGMA_VALUES,
        LTX_2_3_HQ_PARAMS,
        STAGE_2_DISTILLED_SIGMA_VALUES,
    )
    from ltx_pipelines.utils.helpers import (
        denoise_audio_video,
        multi_modal_guider_denoising_func,
        simple_denoising_func,
    )
    from ltx_pipelines.utils.samplers import euler_denoising_loop, res2s_audio_video_denoising_loop

    model_dir = Path(model_dir)
    ledger, ctx_p, ctx_n, components = setup(model_dir)
    dtype, device = torch.float32, torch.device("cpu")
    out: dict[str, np.ndarray] = {}
    vc, ac = ctx_p.video_encoding, ctx_p.audio_encoding

    # ---- hq
    noise = _Noise(NOISE_SEED)
    sde_rng = np.random.RandomState(NOISE_SEED + 1)
    noiser, queue = _injected_noiser(noise, list(STREAMS))
    stepper = Res2sDiffusionStep()

    def res2s(denoise_fn, stage):
        def fn(sigmas, video_state, audio_state, stepper):
            return res2s_audio_video_denoising_loop(
                sigmas=sigmas,
                video_state=video_state,
                audio_state=audio_state,
                stepper=stepper,
                denoise_fn=denoise_fn,
                new_noise_fn=_sde_noise(out, f"noise.hq.sde{stage}", sde_rng),
                model_dtype=torch.float32,
            )

        return fn

    s1 = VideoPixelShape(batch=1, frames=NUM_FRAMES, width=WIDTH // 2, height=HEIGHT // 2, fps=FPS)
    empty = torch.empty(VideoLatentShape.from_pixel_shape(s1).to_torch_shape())
    sigmas = LTX2Scheduler().execute(latent=empty, steps=HQ_STEPS).to(dtype=torch.float32)
    out["hq.sigmas"] = sigmas.numpy()
    t1 = ledger.transformer()
    _fuse_lora_f32(t1, model_dir / "distilled_lora.safetensors", STRENGTH_1)
    p = LTX_2_3_HQ_PARAMS
    guided = multi_modal_guider_denoising_func(
        video_guider=MultiModalGuider(params=p.video_guider_params, negative_context=ctx_n.video_encoding),
        audio_guider=MultiModalGuider(params=p.audio_guider_params, negative_context=ctx_n.audio_encoding),
        v_context=vc,
        a_context=ac,
        transformer=t1,
    )
    v1, a1 = denoise_audio_video(
        output_shape=s1,
        conditionings=[],
        noiser=noiser,
        sigmas=sigmas,
        stepper=stepper,
        denoising_loop_fn=res2s(guided, 1),
        components=components,
        dtype=dtype,
        device=device,
    )
    del t1
    up = upsample_video(
        latent=v1.latent[:1], video_encoder=ledger.video_encoder(), upsampler=ledger.spatial_upsampler()
    )
    t2 = ledger.transformer()
    _fuse_lora_f32(t2, model_dir / "distilled_lora.safetensors", STRENGTH_2)
    s2_sigmas = torch.tensor(STAGE_2_DISTILLED_SIGMA_VALUES, dtype=torch.float32)
    v2, a2 = denoise_audio_video(
        output_shape=VideoPixelShape(batch=1, frames=NUM_FRAMES, width=WIDTH, height=HEIGHT, fps=FPS),
        conditionings=[],
        noiser=noiser,
        sigmas=s2_sigmas,
        stepper=stepper,
        denoising_loop_fn=res2s(simple_denoising_func(vc, ac, t2), 2),
        components=components,
        dtype=dtype,
        device=device,
        noise_scale=s2_sigmas[0],
        initial_video_latent=up,
        initial_audio_latent=a1.latent,
    )
    assert not queue
    del t2
    out.update(_outputs("hq", ledger, v1, a1, up, v2, a2, noise))

    # ---- x15: the distilled flow through the x1.5 upsampler
    noise = _Noise(NOISE_SEED)
    noiser, queue = _injected_noiser(noise, list(STREAMS))
    base = ledger.transformer()
    euler = EulerDiffusionStep()

    def loop(denoise_fn):
        def fn(sigmas, video_state, audio_state, stepper):
            return euler_denoising_loop(
                sigmas=sigmas,
                video_state=video_state,
                audio_state=audio_state,
                stepper=stepper,
                denoise_fn=denoise_fn,
            )

        return fn

    simple = simple_denoising_func(vc, ac, base)
    h1, w1 = X15_HEIGHT * 2 // 3, X15_WIDTH * 2 // 3
    v1, a1 = denoise_audio_video(
        output_shape=VideoPixelShape(batch=1, frames=NUM_FRAMES, width=w1, height=h1, fps=FPS),
        conditionings=[],
        noiser=noiser,
        sigmas=torch.tensor(DISTILLED_SIGMA_VALUES, dtype=torch.float32),
        stepper=euler,
        denoising_loop_fn=loop(simple),
        components=components,
        dtype=dtype,
        device=device,
    )
    x15 = _build(model_dir / "upsampler_x1.5.safetensors", LatentUpsamplerConfigurator)
    up = upsample_video(latent=v1.latent[:1], video_encoder=ledger.video_encoder(), upsampler=x15)
    v2, a2 = denoise_audio_video(
        output_shape=VideoPixelShape(batch=1, frames=NUM_FRAMES, width=X15_WIDTH, height=X15_HEIGHT, fps=FPS),
        conditionings=[],
        noiser=noiser,
        sigmas=s2_sigmas,
        stepper=euler,
        denoising_loop_fn=loop(simple),
        components=components,
        dtype=dtype,
        device=device,
        noise_scale=s2_sigmas[0],
        initial_video_latent=up,
        initial_audio_latent=a1.latent,
    )
    assert not queue
    out.update(_outputs("x15", ledger, v1, a1, up, v2, a2, noise))
    return out
