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
    from ltx.video.tiling import parse_tiling, plan_tiles
    from ltx.video.vae import SCALE_FACTORS, to_uint8
    from stages.runtime import mx

    decoder = runtime.video_decoder(ctx.runtime)
    latent = mx.array(latents["video_latent"])
    _, _, f, h, w = latent.shape
    out = ctx.output("frames", (8 * (f - 1) + 1, 32 * h, 32 * w, 3), np.uint8)
    tiles = iter(range(1 << 30))

    def decoder_noise(shape):  # timestep-conditioned decoders draw fresh noise per tile, as the reference
        return noise((params.seed + next(tiles)) % 2**32, shape, "decoder")

    cfg = parse_tiling(params.tiling)
    total = len(plan_tiles((f, h, w), cfg, SCALE_FACTORS)) if cfg is not None else 1
    done = iter(range(1, total + 1))
    ctx.progress(0, total, "tile")

    def on_tile():
        ctx.progress(next(done), total, "tile")

    for chunk in decoder.decode_stream(latent, cfg, noise=decoder_noise, on_tile=on_tile):
        out.write(np.array(to_uint8(chunk[0])))
    if cfg is None:
        ctx.progress(1, 1, "tile")  # untiled: the whole video is one tile, evaluated by the write
    return {}


STAGE = Stage(NAME, VERSION, Params, ("latents",), compute, __doc__)
