"""stage-1 video latents -> spatially upsampled latents, x2 or x1.5 (un-normalise, upsampler, normalise)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages import runtime
from stages.framework import Stage

NAME, VERSION = "upsample", 1


@dataclass(frozen=True)
class Params:
    pass


def compute(ctx, params: Params, latents) -> dict:
    from ltx.video.upsampler import upsample_video
    from stages.runtime import mx

    files = ctx.runtime
    up = upsample_video(
        mx.array(latents["video_latent"]), runtime.video_encoder(files), runtime.upsampler(files)
    )
    return {"video_latent": np.array(up.astype(mx.float32))}


STAGE = Stage(NAME, VERSION, Params, ("latents",), compute, __doc__)
