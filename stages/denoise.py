"""text contexts (+ negative contexts, + image latents, + reference video latents, + frozen audio latents)
-> stage-1 video and audio latents.

With `audio` (a2v: the encode_audio artifact) the audio latent is that one, never noised, with a zero
denoise mask (the reference's denoise_video_only): only the video is denoised, and, as the reference's
A2V audio guider has no negative context, the unconditional pass keeps the positive audio context.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from stages import diffuse, runtime
from stages.framework import Stage

NAME, VERSION = "denoise", 1


@dataclass(frozen=True)
class Params:
    height: int  # of this stage's output: half the target for two-stage pipelines
    width: int
    num_frames: int | None  # None: the frame count the encode stage predicted (LTX-2.5's duration head)
    frame_rate: float
    seed: int
    sigmas: tuple[float, ...]
    video_guider: dict | None = None  # GuiderParams fields; None = a single conditional pass (distilled)
    audio_guider: dict | None = None
    images: tuple[tuple[int, float], ...] = ()  # (frame, strength) of each image latent in `images`
    loras: tuple[float, ...] = ()  # strengths; the LoRA files' digests are externals
    keyframes: bool = False  # every image as appended keyframe tokens (--pipeline keyframes), frame 0 too
    # ic-lora: {"strengths" (one per reference video latent: inputs reference, reference2, ...), "downscale",
    # "attention", "mask"}; with "mask" the --conditioning-attention-mask video (an external) weighs their attention
    reference: dict | None = None
    # "euler", "euler_ancestral" (LTX-2.5's distilled stage 1, its own noise stream) or "res2s" (hq: second
    # order with SDE re-noising); diffuse.run_loop
    sampler: str = "euler"
    # hq with the frame count predicted (num_frames None): the LTX-2 scheduler over this many steps, shifted
    # for the stage's token count once the count is known, as the reference's HQ pipeline (sigmas empty)
    shift_steps: int | None = None


def reference_conditionings(params, reference_arts: list, mask_path: str | None) -> list:
    """The IC-LoRA reference videos' appended tokens, in order, with the attention weights the reference
    gives them: the mask video's weights on each reference's latent grid times the attention strength,
    else the strength if below 1."""
    from ltx.diffusion.conditioning import VideoConditionByReferenceLatent
    from ltx.video.media import load_mask_video, mask_to_latent, round_bf16
    from stages.runtime import mx

    ref = params.reference
    mask = None
    if ref["mask"]:
        mask = load_mask_video(mask_path, params.height, params.width, params.num_frames)
    items = []
    for art, strength in zip(reference_arts, ref["strengths"], strict=True):
        latent = mx.array(art["video_latent"])
        attention = None
        if mask is not None:
            weights = mask_to_latent(mask, *latent.shape[2:])
            attention = mx.array(round_bf16(weights * np.float32(ref["attention"])))  # bfloat16 there too
        elif ref["attention"] < 1.0:
            attention = float(ref["attention"])
        items.append(
            VideoConditionByReferenceLatent(latent, int(ref["downscale"]), float(strength), attention)
        )
    return items


def num_frames(params, context) -> int:
    """The frame count: given, or predicted by the encode stage from the prompt."""
    return params.num_frames if params.num_frames is not None else int(context["num_frames"])


def initial_states(
    params,
    images_art,
    stream: str,
    reference_arts=(),
    mask_path: str | None = None,
    frames: int | None = None,
    audio_art=None,
):
    from ltx.constants import audio_latent_frames, video_latent_shape
    from ltx.diffusion.conditioning import apply_conditionings, audio_state, video_state
    from ltx.diffusion.sampling import add_noise, noise
    from stages.runtime import mx

    frames = params.num_frames if frames is None else frames
    params = dataclasses.replace(params, num_frames=frames)  # the predicted count where it was None
    f, h, w = video_latent_shape(frames, params.height, params.width)
    video = video_state(mx.zeros((1, 128, f, h, w), mx.float32), params.frame_rate)
    if images_art is not None:
        video = apply_conditionings(
            video, diffuse.image_conditionings(images_art, params.images, params.keyframes)
        )
    if reference_arts:
        video = apply_conditionings(video, reference_conditionings(params, list(reference_arts), mask_path))
    video = add_noise(video, noise(params.seed, video.latent.shape, f"{stream}_video"))
    if audio_art is not None:
        return video, diffuse.frozen_audio(audio_art)
    audio = audio_state(mx.zeros((1, 8, audio_latent_frames(frames, params.frame_rate), 16), mx.float32))
    audio = add_noise(audio, noise(params.seed, audio.latent.shape, f"{stream}_audio"))
    return video, audio


def compute(ctx, params: Params, context, negative=None, images=None, audio=None, **references) -> dict:
    files, loras = ctx.runtime["files"], ctx.runtime.get("loras", ())
    model = runtime.transformer(files, loras, ctx.runtime.get("stream", False))
    pos = diffuse.contexts(context)
    neg = diffuse.contexts(negative) if negative is not None else None
    if neg is not None and audio is not None:
        neg = (neg[0], pos[1])
    denoise = diffuse.make_denoiser(model, pos, neg, params.video_guider, params.audio_guider)
    refs = [references[n] for n in REFERENCES if references.get(n) is not None]
    frames = num_frames(params, context)
    mask = ctx.runtime.get("mask")
    video, audio_s = initial_states(params, images, "stage1", refs, mask, frames, audio)
    sigmas = list(params.sigmas)
    if params.shift_steps is not None:
        from ltx.constants import video_latent_shape
        from ltx.diffusion import schedulers

        tokens = int(np.prod(video_latent_shape(frames, params.height, params.width)))
        sigmas = schedulers.ltx2_sigmas(params.shift_steps, tokens=tokens)
    video, audio_s = diffuse.run_loop(ctx, denoise, sigmas, video, audio_s, params.sampler, params.seed)
    return diffuse.finish(video, audio_s)


MAX_REFERENCES = 4  # --video-conditioning files a run takes
REFERENCES = ("reference", *(f"reference{i}" for i in range(2, MAX_REFERENCES + 1)))
STAGE = Stage(
    NAME,
    VERSION,
    Params,
    ("context", "negative?", "images?", *(f"{n}?" for n in REFERENCES), "audio?"),
    compute,
    __doc__,
)
