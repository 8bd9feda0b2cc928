"""source video (+ audio) latents + text contexts -> latents with a time span regenerated, the rest kept.

ltx_pipelines/retake.py's RetakePipeline as one stage: the source latents are the initial and clean
latents, a TemporalRegionMask sets the denoise mask (1 inside [start_time, end_time), 0 outside) on video
and audio, the masked tokens are noised and denoised over `sigmas` (guided with the negative contexts; the
distilled variant: one conditional pass), the others stay the source's bit for bit. The audio latent is cut
or zero-padded to the output's length, as the reference's _encode_audio_for_retake; a source without audio
gets its whole audio generated (zeros, mask 1), as the reference does. regenerate_video / regenerate_audio
False (`ltx retake --keep-video` / `--keep-audio`) keep that stream whole: its mask is the span [0, 0), as
the reference's __call__ builds it.

`extend` (this project's own, no reference class) is the same stage: num_frames past the source's, the
source latents zero-padded to them and the span [source end, output end).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages import diffuse, runtime
from stages.framework import Stage

NAME, VERSION = "retake", 1


@dataclass(frozen=True)
class Params:
    start_time: float  # seconds: the span regenerated (tokens overlapping it)
    end_time: float
    num_frames: int  # of the output: the source's, plus the extension of `extend`
    frame_rate: float
    seed: int
    sigmas: tuple[float, ...]
    video_guider: dict | None = None  # GuiderParams fields; None = a single conditional pass (distilled)
    audio_guider: dict | None = None
    loras: tuple[float, ...] = ()  # strengths; the LoRA files' digests are externals
    regenerate_video: bool = True  # False: the source's video kept bit for bit (--keep-video)
    regenerate_audio: bool = True  # False: the source's audio kept bit for bit (--keep-audio)


def fit(latent: np.ndarray, length: int) -> np.ndarray:
    """`latent` cut or zero-padded along axis 2 (frames) to `length`."""
    latent = np.asarray(latent, np.float32)[:, :, :length]
    pad = length - latent.shape[2]
    if pad > 0:
        shape = list(latent.shape)
        shape[2] = pad
        latent = np.concatenate([latent, np.zeros(shape, np.float32)], axis=2)
    return latent


def initial_states(params: Params, video_latent: np.ndarray, audio_latent: np.ndarray | None):
    """The masked, noised video and audio states (noise streams stage1_video, stage1_audio)."""
    from ltx.constants import audio_latent_frames
    from ltx.diffusion.conditioning import TemporalRegionMask, audio_state, video_state
    from ltx.diffusion.sampling import add_noise, noise
    from stages.runtime import mx

    # A stream not regenerated gets the span [0, 0): mask 0 everywhere, as RetakePipeline.__call__ does
    # (its docstring says regenerate_video=False regenerates all the video; its code keeps it all).
    span = TemporalRegionMask(params.start_time, params.end_time)
    nothing = TemporalRegionMask(0.0, 0.0)
    frames = (params.num_frames - 1) // 8 + 1
    video = video_state(mx.array(fit(video_latent, frames)), params.frame_rate)
    video = (span if params.regenerate_video else nothing).apply(video)
    t = audio_latent_frames(params.num_frames, params.frame_rate)
    if audio_latent is None:  # nothing to keep: the whole track is generated
        audio = audio_state(mx.zeros((1, 8, t, 16), mx.float32))
    else:
        audio = audio_state(mx.array(fit(audio_latent, t)))
        audio = (span if params.regenerate_audio else nothing).apply(audio)
    video = add_noise(video, noise(params.seed, video.latent.shape, "stage1_video"))
    audio = add_noise(audio, noise(params.seed, audio.latent.shape, "stage1_audio"))
    return video, audio


def compute(ctx, params: Params, context, video, negative=None, audio=None) -> dict:
    files, loras = ctx.runtime["files"], ctx.runtime.get("loras", ())
    model = runtime.transformer(files, loras, ctx.runtime.get("stream", False))
    neg = diffuse.contexts(negative) if negative is not None else None
    denoise = diffuse.make_denoiser(
        model, diffuse.contexts(context), neg, params.video_guider, params.audio_guider
    )
    states = initial_states(params, video["video_latent"], None if audio is None else audio["audio_latent"])
    v, a = diffuse.run_loop(ctx, denoise, list(params.sigmas), *states)
    return diffuse.finish(v, a)


STAGE = Stage(NAME, VERSION, Params, ("context", "video", "negative?", "audio?"), compute, __doc__)
