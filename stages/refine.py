"""upsampled video latent + stage-1 audio latent + text contexts -> refined full-resolution latents (stage 2).

With `audio` (a2v: the encode_audio artifact) the audio stays that latent, frozen (see stages/denoise.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from stages import diffuse, runtime
from stages.framework import Stage

NAME, VERSION = "refine", 1


@dataclass(frozen=True)
class Params:
    height: int
    width: int
    num_frames: int | None  # None: predicted by the encode stage (the upsampled latents carry the shape)
    frame_rate: float
    seed: int
    sigmas: tuple[float, ...]  # stage-2 sigmas; the first is also the re-noising scale
    images: tuple[tuple[int, float], ...] = ()
    loras: tuple[float, ...] = ()  # strengths (the distilled LoRA for dev-two-stage); digests are externals
    keyframes: bool = False  # every image as appended keyframe tokens (--pipeline keyframes)
    sampler: str = "euler"  # or "res2s" (hq)


def compute(ctx, params: Params, latents, stage1, context, images=None, audio=None) -> dict:
    from ltx.diffusion.conditioning import apply_conditionings, audio_state, video_state
    from ltx.diffusion.sampling import add_noise, noise
    from stages.runtime import mx

    files, loras = ctx.runtime["files"], ctx.runtime.get("loras", ())
    model = runtime.transformer(files, loras, ctx.runtime.get("stream", False))
    denoise = diffuse.make_denoiser(model, diffuse.contexts(context), None, None, None)
    video = video_state(mx.array(latents["video_latent"]), params.frame_rate)
    if images is not None:
        video = apply_conditionings(
            video, diffuse.image_conditionings(images, params.images, params.keyframes)
        )
    scale = float(params.sigmas[0])
    video = add_noise(video, noise(params.seed, video.latent.shape, "stage2_video"), noise_scale=scale)
    if audio is not None:
        audio_s = diffuse.frozen_audio(audio)
    else:
        audio_s = audio_state(mx.array(stage1["audio_latent"]))
        audio_s = add_noise(
            audio_s, noise(params.seed, audio_s.latent.shape, "stage2_audio"), noise_scale=scale
        )
    video, audio_s = diffuse.run_loop(ctx, denoise, list(params.sigmas), video, audio_s, params.sampler)
    return diffuse.finish(video, audio_s)


STAGE = Stage(NAME, VERSION, Params, ("latents", "stage1", "context", "images?", "audio?"), compute, __doc__)
