"""prompt -> video and audio text contexts (Gemma-3 hidden states -> feature extractor -> connectors)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages import runtime
from stages.framework import Stage

NAME, VERSION = "encode", 1


@dataclass(frozen=True)
class Params:
    prompt: str


def compute(ctx, params: Params) -> dict:
    from stages.runtime import mx

    encoder = runtime.text_encoder(ctx.runtime)
    out = encoder.encode(params.prompt)
    video, audio = out.video, out.audio
    mx.eval(video, audio)
    return {"video_context": np.array(video.astype(mx.float32)), "audio_context": np.array(audio.astype(mx.float32))}


STAGE = Stage(NAME, VERSION, Params, (), compute, __doc__)
