"""video latents -> RGB frames (uint8), decoded tile by tile and streamed into the artifact."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages import runtime
from stages.framework import Stage

NAME, VERSION = "decode", 1


@dataclass(frozen=True)
class Params:
    tiling: str  # none | default | aggressive | conservative | SPATIAL:OVERLAP,FRAMES:OVERLAP
    seed: int  # decoder noise, used only by timestep-conditioned decoders


def to_uint8(frames) -> np.ndarray:
    """[-1, 1] (F, H, W, 3) -> uint8 with the reference's truncating cast."""
    return (np.clip((np.asarray(frames, np.float32) + 1.0) / 2.0, 0.0, 1.0) * 255.0).astype(np.uint8)


def compute(ctx, params: Params, latents) -> dict:
    import mlx.core as mx

    from ltx.tiling import parse_tiling

    decoder = runtime.video_decoder(ctx.runtime)
    latent = mx.array(latents["video_latent"])
    _, _, f, h, w = latent.shape
    out = ctx.output("frames", (8 * (f - 1) + 1, 32 * h, 32 * w, 3), np.uint8)
    for chunk in decoder.decode_stream(latent, parse_tiling(params.tiling), seed=params.seed):
        out.write(to_uint8(chunk))
    return {}


STAGE = Stage(NAME, VERSION, Params, ("latents",), compute, __doc__)
