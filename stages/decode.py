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


def compute(ctx, params: Params, latents) -> dict:
    from ltx.diffusion.sampling import noise
    from ltx.video.tiling import parse_tiling
    from ltx.video.vae import to_uint8
    from stages.runtime import mx

    decoder = runtime.video_decoder(ctx.runtime)
    latent = mx.array(latents["video_latent"])
    _, _, f, h, w = latent.shape
    out = ctx.output("frames", (8 * (f - 1) + 1, 32 * h, 32 * w, 3), np.uint8)
    tiles = iter(range(1 << 30))

    def decoder_noise(shape):  # timestep-conditioned decoders draw fresh noise per tile, as the reference
        return noise((params.seed + next(tiles)) % 2**32, shape, "decoder")

    for chunk in decoder.decode_stream(latent, parse_tiling(params.tiling), noise=decoder_noise):
        out.write(np.array(to_uint8(chunk[0])))
    return {}


STAGE = Stage(NAME, VERSION, Params, ("latents",), compute, __doc__)
