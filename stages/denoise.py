"""text contexts (+ negative contexts, + image latents) -> stage-1 video and audio latents."""

from __future__ import annotations

from dataclasses import dataclass

from stages import diffuse, runtime
from stages.framework import Stage

NAME, VERSION = "denoise", 1


@dataclass(frozen=True)
class Params:
    height: int  # of this stage's output: half the target for two-stage pipelines
    width: int
    num_frames: int
    frame_rate: float
    seed: int
    sigmas: tuple[float, ...]
    video_guider: dict | None = None  # GuiderParams fields; None = a single conditional pass (distilled)
    audio_guider: dict | None = None
    images: tuple[tuple[int, float], ...] = ()  # (frame, strength) of each image latent in `images`
    loras: tuple[float, ...] = ()  # strengths; the LoRA files' digests are externals


def initial_states(params, images_art, stream: str):
    from ltx.constants import audio_latent_frames, video_latent_shape
    from ltx.diffusion.conditioning import apply_conditionings, audio_state, video_state
    from ltx.diffusion.sampling import add_noise, noise
    from stages.runtime import mx

    f, h, w = video_latent_shape(params.num_frames, params.height, params.width)
    video = video_state(mx.zeros((1, 128, f, h, w), mx.float32), params.frame_rate)
    if images_art is not None:
        video = apply_conditionings(video, diffuse.image_conditionings(images_art, params.images))
    audio = audio_state(
        mx.zeros((1, 8, audio_latent_frames(params.num_frames, params.frame_rate), 16), mx.float32)
    )
    video = add_noise(video, noise(params.seed, video.latent.shape, f"{stream}_video"))
    audio = add_noise(audio, noise(params.seed, audio.latent.shape, f"{stream}_audio"))
    return video, audio


def compute(ctx, params: Params, context, negative=None, images=None) -> dict:
    files, loras = ctx.runtime["files"], ctx.runtime.get("loras", ())
    model = runtime.transformer(files, loras, ctx.runtime.get("stream", False))
    neg = diffuse.contexts(negative) if negative is not None else None
    denoise = diffuse.make_denoiser(
        model, diffuse.contexts(context), neg, params.video_guider, params.audio_guider
    )
    video, audio = initial_states(params, images, "stage1")
    video, audio = diffuse.run_loop(ctx, denoise, list(params.sigmas), video, audio)
    return diffuse.finish(video, audio)


STAGE = Stage(NAME, VERSION, Params, ("context", "negative?", "images?"), compute, __doc__)
