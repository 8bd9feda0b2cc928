"""images -> conditioning latents (cover-resize, center crop, H.264 CRF round trip, video VAE encoder)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages import runtime
from stages.framework import Stage

NAME, VERSION = "condition", 1


@dataclass(frozen=True)
class Params:
    height: int
    width: int
    crf: int
    count: int


def compute(ctx, params: Params) -> dict:
    from ltx.video.media import load_image_conditioning
    from stages.runtime import mx

    encoder = runtime.video_encoder(ctx.runtime["files"])
    out = {}
    for i, path in enumerate(ctx.runtime["paths"]):
        pixels = load_image_conditioning(path, params.height, params.width, crf=params.crf)  # (1, 3, 1, H, W)
        latent = encoder.encode(pixels)
        out[f"latent{i}"] = np.array(latent.astype(mx.float32))
    return out


STAGE = Stage(NAME, VERSION, Params, (), compute, __doc__)
