"""a video file -> video latents (frames decoded, cover-resized and center-cropped, cut to 1 + 8k, VAE encoder).

The file's content digest is an external input of this stage and of nothing else: a retake or an IC-LoRA
run on the same file at the same size reuses one artifact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages import runtime
from stages.framework import Stage

NAME, VERSION = "encode_video", 1


@dataclass(frozen=True)
class Params:
    height: int  # the frames are resized and cropped to this size (multiples of 32)
    width: int
    start_frame: int = 0  # the first decoded frame used
    max_frames: int | None = None  # at most this many frames from start_frame (None: to the end)


def compute(ctx, params: Params) -> dict:
    from ltx.video.media import decode_video_frames, preprocess_video
    from stages.runtime import mx

    frames = decode_video_frames(ctx.runtime["path"], params.start_frame, params.max_frames)
    pixels = preprocess_video(frames, params.height, params.width)  # (1, 1 + 8k, H, W, 3)
    ctx.progress(0, 1, "pass")
    encoder = runtime.video_encoder(ctx.runtime["files"])
    latent = encoder.encode(pixels)  # (1, 128, 1 + k, H / 32, W / 32)
    mx.eval(latent)
    ctx.progress(1, 1, "pass")
    return {
        "video_latent": np.array(latent.astype(mx.float32)),
        "frames": np.array(pixels.shape[1], np.int64),  # pixel frames encoded (after the 1 + 8k cut)
    }


STAGE = Stage(NAME, VERSION, Params, (), compute, __doc__)
