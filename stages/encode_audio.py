"""audio file -> audio latents (decode, resample to 16 kHz, stereo log-mel, audio VAE encoder) + the waveform read.

The file is an external input (its content digest is in the key); `ctx.runtime` holds its path and the
model files. Any file ffmpeg decodes works (wav, flac, mp3, the audio track of an mp4): ltx.audio.mel.load_audio
reads it as the reference's decode_audio_from_file does. The artifact also keeps the waveform as read
(channels-first, its own sample rate, the layout of the vocode stage), so a pipeline can mux the input
audio itself, as the reference's A2V pipeline does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages import runtime
from stages.framework import LtxError, Stage

NAME, VERSION = "encode_audio", 1


@dataclass(frozen=True)
class Params:
    start_time: float = 0.0  # seconds into the file
    max_duration: float | None = None  # seconds read from start_time; None: to the end
    latent_frames: int | None = None  # keep the first N latent frames (25 per second); None: all


def compute(ctx, params: Params) -> dict:
    from ltx.audio.mel import load_audio
    from stages.runtime import mx

    path = ctx.runtime["path"]
    ctx.progress(0, 1, "pass")
    wave, rate = load_audio(path, params.start_time, params.max_duration)  # (N, 2)
    latent = runtime.audio_encoder(ctx.runtime["files"]).encode_waveform(wave, rate)  # (1, 8, T, 16)
    if params.latent_frames is not None:
        if latent.shape[2] < params.latent_frames:  # options.py checks this first; a changed file lands here
            raise LtxError(
                f"{path} gives {latent.shape[2]} audio latent frames, {params.latent_frames} are needed; "
                "pass a longer audio file"
            )
        latent = latent[:, :, : params.latent_frames]
    out = {
        "audio_latent": np.array(latent.astype(mx.float32)),
        "waveform": np.ascontiguousarray(wave.T),  # (2, N) at sample_rate, as read
        "sample_rate": np.array(rate, np.int64),
    }
    ctx.progress(1, 1, "pass")
    return out


STAGE = Stage(NAME, VERSION, Params, (), compute, __doc__)
