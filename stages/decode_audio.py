"""audio latents -> stereo log-mel spectrogram (audio VAE decoder)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages import runtime
from stages.framework import Stage

NAME, VERSION = "decode_audio", 1


@dataclass(frozen=True)
class Params:
    pass


def compute(ctx, params: Params, latents) -> dict:
    from stages.runtime import mx

    decoder = runtime.audio_decoder(ctx.runtime)
    ctx.progress(0, 1, "pass")
    mel = decoder.decode(mx.array(latents["audio_latent"]))  # (B, T, 64, 2) channels-last
    out = {"mel": np.array(mel.transpose(0, 3, 1, 2).astype(mx.float32))}  # (B, 2, T, 64) as the reference
    ctx.progress(1, 1, "pass")
    return out


STAGE = Stage(NAME, VERSION, Params, ("latents",), compute, __doc__)
