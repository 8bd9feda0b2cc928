"""video latents -> RGB frames (uint8), decoded tile by tile and streamed into the artifact."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages import runtime
from stages.framework import Stage

NAME, VERSION = "decode", 1
DECODERS = ("conv", "diffusion")


@dataclass(frozen=True)
class Params:
    tiling: str  # none | default | aggressive | conservative | SPATIAL:OVERLAP,FRAMES:OVERLAP
    seed: int  # decoder noise: timestep-conditioned conv decoders, the diffusion decoder
    decoder: str = "conv"  # conv | diffusion (LTX-2.5's default); its weights are this stage's external


def compute(ctx, params: Params, latents) -> dict:
    from ltx.diffusion.sampling import noise
    from ltx.video.tiling import PRESETS, parse_tiling, plan_tiles
    from ltx.video.vae import SCALE_FACTORS, to_uint8
    from stages.runtime import mx

    decoder = runtime.video_decoder(ctx.runtime, params.decoder)
    latent = mx.array(latents["video_latent"])
    _, _, f, h, w = latent.shape
    out = ctx.output("frames", (8 * (f - 1) + 1, 32 * h, 32 * w, 3), np.uint8)
    draws = iter(range(1 << 30))

    def decoder_noise(shape):  # fresh noise per tile (per draw), keyed by the run's seed and the draw's index
        return noise((params.seed + next(draws)) % 2**32, shape, "decoder")

    cfg = parse_tiling(params.tiling)
    if params.decoder == "diffusion":
        from ltx.video.diffusion_decoder import tiling_for

        cfg = tiling_for(cfg, decoder.cfg.overlaps, params.tiling in PRESETS)
        total = len(decoder.plan((f, h, w), cfg))
    else:
        total = len(plan_tiles((f, h, w), cfg, SCALE_FACTORS)) if cfg is not None else 1
    done = iter(range(1, total + 1))
    ctx.progress(0, total, "tile")

    def on_tile():
        ctx.progress(next(done), total, "tile")

    for chunk in decoder.decode_stream(latent, cfg, noise=decoder_noise, on_tile=on_tile):
        out.write(np.array(to_uint8(chunk[0])))
    if cfg is None and params.decoder == "conv":
        ctx.progress(1, 1, "tile")  # untiled: the whole video is one tile, evaluated by the write
    return {}


STAGE = Stage(NAME, VERSION, Params, ("latents",), compute, __doc__)
