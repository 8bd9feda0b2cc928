"""Goldens for the encode-video path (make_goldens.py protocol): a video file -> frames -> pixels -> latents.

A small H.264 file (13 frames of 72x100, made here with PyAV and stored in the golden as bytes, so the test
decodes exactly these bytes) goes through the reference's own `load_video_conditioning` (PyAV decode,
`resize_and_center_crop`, `normalize_latent`, float32) and the tiny video VAE encoder of the official
ModelLedger, which cuts 13 frames to 1 + 8k = 9. Two cases: 32x64 with frame_cap 17 (all frames, landscape
crop) and 64x32 with frame_cap 1 (one frame, portrait crop).

Saved: video_mp4 (uint8 bytes), frames_every4 (decode_video_from_file, frames 0, 4, 8, 12), and per case
"<case>.pixels_every4" (1, 3, F[::4], H, W) and "<case>.latent".
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

FRAMES, SRC_H, SRC_W, FPS = 13, 72, 100, 24
CASES = {"land": (32, 64, 17), "portrait": (64, 32, 1)}


def contribute(variant: str) -> dict:
    return {}


def make_video(path: str, frames: int, height: int, width: int, seed: int, grey: bool = False) -> None:
    """Smooth moving patterns (compressible, different per frame), H.264 yuv420p at FPS, with PyAV."""
    import av

    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 6.28, size=3)
    with av.open(path, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"crf": "18", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            chans = [
                127.5 + 120 * np.sin(xx / (7 + 3 * c) + yy / (11 + c) + phase[c] + 0.4 * t) for c in range(3)
            ]
            img = np.stack([chans[0]] * 3 if grey else chans, axis=-1).clip(0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def run(variant: str, model_dir: Path) -> dict[str, np.ndarray]:
    import torch
    from ltx_pipelines.utils.media_io import decode_video_from_file, load_video_conditioning
    from ltx_pipelines.utils.model_ledger import ModelLedger

    torch.set_grad_enabled(False)
    ledger = ModelLedger(
        dtype=torch.float32,
        device=torch.device("cpu"),
        checkpoint_path=str(Path(model_dir) / "model.safetensors"),
    )
    encoder = ledger.video_encoder()
    out: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "source.mp4")
        make_video(path, FRAMES, SRC_H, SRC_W, seed=7)
        out["video_mp4"] = np.frombuffer(Path(path).read_bytes(), np.uint8).copy()
        frames = [f[0].numpy() for f in decode_video_from_file(path, frame_cap=FRAMES, device="cpu")]
        assert len(frames) == FRAMES
        out["frames_every4"] = np.stack(frames[::4])
        for case, (h, w, cap) in CASES.items():
            pixels = load_video_conditioning(path, h, w, cap, torch.float32, torch.device("cpu"))
            out[f"{case}.pixels_every4"] = pixels[:, :, ::4].numpy()
            out[f"{case}.latent"] = encoder(pixels).numpy()
    return out
