"""prompt -> video and audio text contexts (Gemma hidden states -> feature extractor -> connectors), and on
LTX-2.5 without --num-frames the frame count the duration head predicts from them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages import runtime
from stages.framework import Stage

NAME, VERSION = "encode", 1


@dataclass(frozen=True)
class Params:
    prompt: str
    enhance_seed: int | None = None  # rewrite the prompt with Gemma first (seeded sampling); None = as given
    # (min seconds, max seconds, fps): predict the frame count with the duration head (LTX-2.5); None = given
    duration: tuple[float, float, float] | None = None


def compute(ctx, params: Params) -> dict:
    from stages.runtime import mx

    prompt = params.prompt
    passes = 1 if params.enhance_seed is None else 2  # Gemma generating the new prompt, then encoding it
    ctx.progress(0, passes, "pass")
    if params.enhance_seed is not None:  # a separate Gemma 3 (LTX-2.5), else the encoding one
        files = ctx.runtime
        enhancer = runtime.prompt_enhancer(files) if files.enhancer else runtime.text_encoder(files)
        prompt = enhancer.enhance_t2v(prompt, seed=params.enhance_seed).strip() or prompt
        ctx.echo(f"enhanced prompt: {prompt}")
        ctx.progress(1, passes, "pass")
    out = runtime.text_encoder(ctx.runtime).encode(prompt)
    video, audio = out.video, out.audio
    mx.eval(video, audio)
    ctx.progress(passes, passes, "pass")
    out = {
        "video_context": np.array(video.astype(mx.float32)),
        "audio_context": np.array(audio.astype(mx.float32)),
        "prompt_utf8": np.frombuffer(prompt.encode(), np.uint8),
    }
    if params.duration is not None:
        from ltx.text.duration import predict_frames

        lo, hi, fps = params.duration
        frames, seconds = predict_frames(runtime.duration_head(ctx.runtime), video, audio, fps, lo, hi)
        ctx.echo(f"predicted duration: {seconds:.2f} s -> {frames} frames at {fps:g} fps")
        out["num_frames"] = np.array(frames, np.int64)
        out["duration_seconds"] = np.array(seconds, np.float32)
    return out


STAGE = Stage(NAME, VERSION, Params, (), compute, __doc__)
