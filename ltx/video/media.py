"""Image preprocessing for conditioning, as the reference's `load_image_conditioning`
(ltx_pipelines/utils/media_io.py): decode, drop alpha, H.264 round trip at CRF 33 (CRF 0 skips it),
cover-resize (bilinear, align_corners=False, scale = max(H/h, W/w), size rounded up), center crop,
x / 127.5 - 1.

The reference encodes with PyAV; here the same libx264 settings (preset veryfast, yuv420p, one frame,
dimensions cropped to even) run through the ffmpeg binary of imageio-ffmpeg, with bilinear swscale
conversions as PyAV uses. Different libx264/ffmpeg builds can differ by a few levels after a lossy round trip.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402

DEFAULT_IMAGE_CRF = 33


def decode_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; alpha is dropped, grey and palette images are expanded to RGB."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("RGB", "RGBA"):
            im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
        return np.array(im)[..., :3]


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def h264_round_trip(image: np.ndarray, crf: int = DEFAULT_IMAGE_CRF) -> np.ndarray:
    """Encode one frame with libx264 (CRF `crf`, preset veryfast, yuv420p) and decode it back. CRF 0 returns
    the image unchanged (as the reference: no encode at all). Odd dimensions are cropped to even."""
    if crf == 0:
        return image
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    image = np.ascontiguousarray(image[:h, :w], np.uint8)
    with tempfile.TemporaryDirectory(prefix="ltx-crf-") as tmp:
        mp4 = str(Path(tmp) / "frame.mp4")
        encode = [
            _ffmpeg(),
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            f"{w}x{h}",
            "-r",
            "1",
            "-i",
            "pipe:0",
            "-frames:v",
            "1",
            "-sws_flags",
            "bilinear",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            str(crf),
            "-pix_fmt",
            "yuv420p",
            mp4,
        ]
        subprocess.run(encode, input=image.tobytes(), check=True, capture_output=True)
        decode = [
            _ffmpeg(),
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            mp4,
            "-frames:v",
            "1",
            "-sws_flags",
            "bilinear",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "pipe:1",
        ]
        out = subprocess.run(decode, check=True, capture_output=True).stdout
    if len(out) != h * w * 3:
        raise RuntimeError(f"ffmpeg returned {len(out)} bytes for a {w}x{h} frame")
    return np.frombuffer(out, np.uint8).reshape(h, w, 3).copy()


def _bilinear_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # PyTorch's upsample_bilinear2d, align_corners=False, in float32
    scale = np.float32(n_in) / np.float32(n_out)
    src = np.maximum(
        scale * (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), np.float32(0)
    )
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = (src - i0.astype(np.float32)).astype(np.float32)
    return i0, i1, lam


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, C) float32 -> (height, width, C), as torch.nn.functional.interpolate(bilinear, align_corners=False)."""
    x = image.astype(np.float32)
    h0, h1, lh = _bilinear_weights(x.shape[0], height)
    w0, w1, lw = _bilinear_weights(x.shape[1], width)
    lw_, lh_ = lw[None, :, None], lh[:, None, None]
    top = (1 - lw_) * x[h0][:, w0] + lw_ * x[h0][:, w1]
    bottom = (1 - lw_) * x[h1][:, w0] + lw_ * x[h1][:, w1]
    return ((1 - lh_) * top + lh_ * bottom).astype(np.float32)


def resize_and_center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Cover-resize (scale = max(height/h, width/w), new size rounded up) then center-crop: (H, W, C) float32."""
    src_h, src_w = image.shape[:2]
    scale = max(height / src_h, width / src_w)
    new_h, new_w = math.ceil(src_h * scale), math.ceil(src_w * scale)
    x = resize_bilinear(image, new_h, new_w)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return x[top : top + height, left : left + width]


def preprocess_image(image: np.ndarray, height: int, width: int, crf: int = DEFAULT_IMAGE_CRF) -> mx.array:
    """(H, W, 3) uint8 -> (1, 1, height, width, 3) float32 in [-1, 1]: one channels-last frame for
    `VideoEncoder.encode`."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    x = resize_and_center_crop(h264_round_trip(image, crf).astype(np.float32), height, width)
    return mx.array(x / np.float32(127.5) - np.float32(1.0))[None, None]


def load_image_conditioning(
    path: str | Path, height: int, width: int, crf: int = DEFAULT_IMAGE_CRF
) -> mx.array:
    """An image file -> (1, 1, height, width, 3) float32 in [-1, 1], as the reference's load_image_conditioning."""
    return preprocess_image(decode_image(path), height, width, crf)


# ---------------------------------------------------------------------------------------------------
# Video files: decoded with PyAV, the library the reference decodes with (media_io.decode_video_from_file)


def probe_video(path: str | Path) -> tuple[float, int, int, int]:
    """(fps, frames, width, height) of a file's first video stream, as the reference's
    get_videostream_metadata (frames counted by decoding when the container does not say)."""
    import av

    with av.open(str(path)) as container:
        stream = next((s for s in container.streams if s.type == "video"), None)
        if stream is None:
            raise ValueError(f"{path} has no video stream")
        fps = float(stream.average_rate) if stream.average_rate else 0.0
        frames = stream.frames or sum(1 for _ in container.decode(stream))
        return fps, int(frames), int(stream.codec_context.width), int(stream.codec_context.height)


def decode_video_frames(path: str | Path, start: int = 0, count: int | None = None) -> np.ndarray:
    """(F, H, W, 3) uint8 RGB: frames start .. start + count - 1 (all from `start` when count is None),
    converted as the reference's decode_video_from_file (`frame.to_rgb().to_ndarray()`)."""
    import av

    out = []
    with av.open(str(path)) as container:
        stream = next((s for s in container.streams if s.type == "video"), None)
        if stream is None:
            raise ValueError(f"{path} has no video stream")
        for i, frame in enumerate(container.decode(stream)):
            if i < start:
                continue
            out.append(frame.to_rgb().to_ndarray())
            if count is not None and len(out) == count:
                break
    if not out:
        raise ValueError(f"{path} has no video frames from frame {start}")
    return np.stack(out)


def preprocess_video(frames: np.ndarray, height: int, width: int) -> mx.array:
    """(F, H, W, 3) uint8 -> (1, F', height, width, 3) float32 in [-1, 1] for `VideoEncoder.encode`: each
    frame cover-resized and center-cropped (the reference's load_video_conditioning), then the last
    (F - 1) % 8 frames dropped, as the reference's encoder does, so that F' = 1 + 8k."""
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (F, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    keep = 1 + (frames.shape[0] - 1) // 8 * 8
    x = np.stack([resize_and_center_crop(f.astype(np.float32), height, width) for f in frames[:keep]])
    return mx.array(x / np.float32(127.5) - np.float32(1.0))[None]


def load_video_conditioning(
    path: str | Path, height: int, width: int, start: int = 0, count: int | None = None
) -> mx.array:
    """A video file -> (1, F', height, width, 3) float32 in [-1, 1], F' = 1 + 8k (see preprocess_video)."""
    return preprocess_video(decode_video_frames(path, start, count), height, width)


def round_bf16(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (ties to even), kept as float32."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16).astype(np.uint32).view(np.float32)


def load_mask_video(path: str | Path, height: int, width: int, count: int) -> np.ndarray:
    """A mask video -> (F, height, width) float32 in [0, 1], as the reference's ic_lora._load_mask_video:
    frames resized and cropped like a conditioning video (not cut to 1 + 8k), channel mean, (x + 1) / 2.
    The reference does this in bfloat16 whatever the pipeline's dtype: each step is rounded to it here."""
    frames = decode_video_frames(path, 0, count)
    x = np.stack([resize_and_center_crop(f.astype(np.float32), height, width) for f in frames])
    x = round_bf16(x / np.float32(127.5) - np.float32(1.0))
    x = round_bf16(x.sum(axis=-1, dtype=np.float32) / np.float32(3))
    return np.clip(round_bf16(round_bf16(x + np.float32(1.0)) / np.float32(2.0)), 0.0, 1.0)


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    # torch's interpolate(mode="area") = adaptive average pooling: window [floor(i n/o), ceil((i+1) n/o))
    w = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        w[i, lo:hi] = 1.0
    return w


def mask_to_latent(mask: np.ndarray, frames: int, height: int, width: int) -> np.ndarray:
    """(F, H, W) pixel mask -> (1, frames * height * width) token weights, as the reference's
    ICLoraPipeline._downsample_mask_to_latent (in bfloat16 there, rounded to it here): area-resize each
    frame to the latent grid, keep the first frame, average each following group of (F - 1) / (frames - 1)
    frames (the causal VAE's temporal grid)."""
    f_pix = mask.shape[0]
    wh, ww = _area_weights(mask.shape[1], height), _area_weights(mask.shape[2], width)
    sums = np.einsum("ih,fhw,jw->fij", wh, mask.astype(np.float32), ww, dtype=np.float32)
    down = round_bf16(sums / (wh.sum(1)[:, None] * ww.sum(1)[None, :]).astype(np.float32))
    if f_pix > 1 and frames > 1:
        if (f_pix - 1) % (frames - 1):
            raise ValueError(
                f"a mask of {f_pix} frames does not fit {frames} latent frames: (frames - 1) must divide "
                f"{f_pix - 1}"
            )
        t = (f_pix - 1) // (frames - 1)
        rest = down[1:].reshape(frames - 1, t, height, width)
        down = np.concatenate([down[:1], round_bf16(rest.sum(1, dtype=np.float32) / np.float32(t))])
    else:
        down = down[:1]
    return down.reshape(1, -1)
