"""stereo log-mel spectrogram -> stereo waveform (HiFi-GAN vocoder; LTX-2.3: with bandwidth extension)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages import runtime
from stages.framework import Stage

NAME, VERSION = "vocode", 1


@dataclass(frozen=True)
class Params:
    pass


def compute(ctx, params: Params, mel) -> dict:
    from stages.runtime import mx

    vocoder = runtime.vocoder(ctx.runtime)
    ctx.progress(0, 1, "pass")  # one pass, no chunks: the bar shows it running and its elapsed time
    wave = vocoder(mx.array(mel["mel"]).transpose(0, 2, 3, 1))  # (B, N, 2)
    out = {
        "waveform": np.array(wave[0].T.astype(mx.float32)),
        "sample_rate": np.array(vocoder.sample_rate, np.int64),
    }
    ctx.progress(1, 1, "pass")
    return out


STAGE = Stage(NAME, VERSION, Params, ("mel",), compute, __doc__)
