"""The denoising loop shared by `denoise` and `refine`: transformer passes, guidance, checkpoints.

The loop publishes a checkpoint artifact (the latent tokens after the step) after every step, so a
killed or interrupted run resumes at the last finished step; float32 latents round-trip exactly,
so the resumed result is bit-identical to an uninterrupted run.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np


def contexts(art: Any) -> tuple[Any, Any]:
    from stages.runtime import mx

    return mx.array(art["video_context"]), mx.array(art["audio_context"])


def make_forward(model: Any, positive: tuple, negative: tuple | None):
    """forward(video, audio, sigma, guidance_pass) -> (x0_video, x0_audio): one transformer pass."""
    from ltx.diffusion.conditioning import timesteps
    from ltx.model.transformer import Modality
    from stages.runtime import mx

    def forward(video, audio, sigma, gpass):
        v_ctx, a_ctx = negative if gpass.negative else positive
        # the first latent frame encodes a single pixel frame: LTX-2.5's keyframe embedding marks its tokens
        # (appended conditioning tokens are not marked, as in the reference); other models ignore the mask
        marked = video.shape[3] * video.shape[4]
        keyframes = (mx.arange(video.latent.shape[1]) < marked).astype(mx.float32).reshape(1, -1, 1)
        vm = Modality(
            latent=video.latent,
            sigma=sigma,
            timesteps=timesteps(video, sigma),
            positions=video.positions,
            context=v_ctx,
            enabled=gpass.video_enabled,
            attention_mask=video.attention_mask,
            keyframes_mask=keyframes,
        )
        am = None
        if audio is not None:
            am = Modality(
                latent=audio.latent,
                sigma=sigma,
                timesteps=timesteps(audio, sigma),
                positions=audio.positions,
                context=a_ctx,
                enabled=gpass.audio_enabled,
            )
        return model(vm, am, [gpass.perturbation] if gpass.perturbation is not None else None)

    return forward


def make_denoiser(
    model: Any, positive: tuple, negative: tuple | None, video_guider: dict | None, audio_guider: dict | None
):
    from ltx.constants import GuiderParams
    from ltx.diffusion.guidance import GuidancePass, GuidedDenoiser

    forward = make_forward(model, positive, negative)
    if video_guider is None:
        return lambda video, audio, sigma, step: forward(video, audio, sigma, GuidancePass("cond"))
    return GuidedDenoiser(
        forward, GuiderParams.from_dict(video_guider), GuiderParams.from_dict(audio_guider or video_guider)
    )


RES2S_NOISE_SEED = 0  # the reference seeds its res_2s SDE noise (-1, 9999) whatever --seed is: fixed here too
SAMPLERS = ("euler", "euler_ancestral", "res2s")


def frozen_audio(art: Any) -> Any:
    """The audio state of an encode_audio artifact's latent, not to be denoised: zero denoise mask, so every
    step returns it unchanged (its clean latent)."""
    from ltx.diffusion.conditioning import audio_state
    from stages.runtime import mx

    state = audio_state(mx.array(art["audio_latent"]))
    return replace(state, denoise_mask=mx.zeros_like(state.denoise_mask))


def _total(sampler: str, sigmas: list[float]) -> int:
    """Steps of a sampler over `sigmas`: res_2s's final denoise to a terminal 0 counts as one."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler {sampler!r} must be one of {', '.join(SAMPLERS)}")
    return len(sigmas) - 1 + (sampler == "res2s" and sigmas[-1] == 0)


def _loop(sampler: str, denoise: Any, sigmas: list[float], video: Any, audio: Any, start: int, seed: int):
    from ltx.diffusion import sampling

    if sampler == "euler":
        return sampling.euler_loop(denoise, sigmas, video, audio, start=start)
    if sampler == "euler_ancestral":  # LTX-2.5's distilled stage 1: the noise stream of `seed`
        draw = sampling.ancestral_noise_source(seed)
        return sampling.euler_ancestral_loop(denoise, sigmas, video, audio, draw, start=start)
    draw = sampling.res2s_noise_source(RES2S_NOISE_SEED)
    return sampling.res2s_loop(denoise, sigmas, video, audio, draw, start=start)


def run_loop(
    ctx: Any, denoise: Any, sigmas: list[float], video: Any, audio: Any, sampler: str = "euler", seed: int = 0
) -> tuple[Any, Any]:
    """`sampler` over `sigmas` with a checkpoint after every step; resumes from the last checkpoint."""
    from ltx import backend
    from stages.runtime import mx

    total, start = _total(sampler, sigmas), 0
    resumed = ctx.resume(total)
    if resumed is not None:
        start, arrays = resumed
        video = replace(video, latent=mx.array(arrays["video"]))
        audio = replace(audio, latent=mx.array(arrays["audio"])) if audio is not None else None
        ctx.echo(f"{ctx.node.stage.name}: resuming from step {start}/{total}")
    if (
        start == total
    ):  # killed after the last step's checkpoint, before the stage published: nothing left to run
        return video, audio
    ctx.progress(start, total, "step")  # the baseline: rates and the ETA count from here
    with backend.cpu_buffer_cache():  # every step reuses the last one's buffers
        for step, v, a in _loop(sampler, denoise, sigmas, video, audio, start, seed):
            mx.eval(v.latent, *([a.latent] if a is not None else []))
            arrays = {"video": np.array(v.latent)}
            if a is not None:
                arrays["audio"] = np.array(a.latent)
            ctx.checkpoint(step, arrays)
            ctx.progress(step, total, "step")  # "denoise: step 3/8 (1.23 s/step)", a bar, or an event
            video, audio = v, a
    return video, audio


def finish(video: Any, audio: Any) -> dict[str, np.ndarray]:
    """Drop appended conditioning tokens and return latents in the reference layouts."""
    from ltx.diffusion.conditioning import clear_conditioning, unpatchify
    from stages.runtime import mx

    out = {"video_latent": np.array(unpatchify(clear_conditioning(video)).astype(mx.float32))}
    if audio is not None:
        out["audio_latent"] = np.array(unpatchify(clear_conditioning(audio)).astype(mx.float32))
    return out


def image_conditionings(
    images_art: Any, images: tuple[tuple[int, float], ...], keyframes: bool = False
) -> list:
    """Frame 0 replaces the first latent frame, other frames are appended as keyframe tokens (the reference's
    combined_image_conditionings); with `keyframes` every image is appended, frame 0 too
    (image_conditionings_by_adding_guiding_latent, the keyframe interpolation pipeline)."""
    from ltx.diffusion.conditioning import VideoConditionByKeyframeIndex, VideoConditionByLatentIndex
    from stages.runtime import mx

    items = []
    for i, (frame, strength) in enumerate(images):
        latent = mx.array(images_art[f"latent{i}"])
        if frame == 0 and not keyframes:
            items.append(VideoConditionByLatentIndex(latent, strength, 0))
        else:
            items.append(VideoConditionByKeyframeIndex(latent, frame, strength))
    return items
