"""upsampled video latent + stage-1 audio latent + text contexts -> refined full-resolution latents (stage 2)."""

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


def compute(ctx, params: Params, latents, stage1, context, images=None) -> dict:
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
    audio = audio_state(mx.array(stage1["audio_latent"]))
    scale = float(params.sigmas[0])
    video = add_noise(video, noise(params.seed, video.latent.shape, "stage2_video"), noise_scale=scale)
    audio = add_noise(audio, noise(params.seed, audio.latent.shape, "stage2_audio"), noise_scale=scale)
    video, audio = diffuse.run_loop(ctx, denoise, list(params.sigmas), video, audio)
    return diffuse.finish(video, audio)


STAGE = Stage(NAME, VERSION, Params, ("latents", "stage1", "context", "images?"), compute, __doc__)
