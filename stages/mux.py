"""frames + waveform -> .mp4 (H.264 + AAC) bytes, written to --output-path (and optionally a .wav)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.framework import LtxError, Stage

NAME, VERSION = "mux", 1


@dataclass(frozen=True)
class Params:
    frame_rate: float
    crf: int = 18


VIDEO_CONTAINERS = (".mp4", ".mov", ".mkv")  # H.264 + AAC in each
AUDIO_CONTAINERS = (".wav", ".flac")


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def encode_mp4(
    frames: np.ndarray, waveform: np.ndarray | None, sample_rate: int, fps: float, crf: int = 18
) -> bytes:
    """H.264 (yuv420p) + AAC, deterministic (single-threaded, bit-exact flags), as the reference muxes."""
    f, h, w, _ = frames.shape
    with tempfile.TemporaryDirectory(prefix="ltx-mux-") as tmp:
        out = Path(tmp) / "out.mp4"
        cmd = [
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
            f"{fps:g}",
            "-i",
            "pipe:0",
        ]
        if waveform is not None:
            wav = Path(tmp) / "audio.wav"
            write_wav(wav, waveform, sample_rate)
            cmd += ["-i", str(wav), "-c:a", "aac", "-b:a", "192k"]
        cmd += [
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-crf",
            str(crf),
            "-preset",
            "veryfast",
            "-threads",
            "1",
            "-fflags",
            "+bitexact",
            "-flags:v",
            "+bitexact",
            "-flags:a",
            "+bitexact",
            "-map_metadata",
            "-1",
            "-movflags",
            "+faststart",
            str(out),
        ]
        proc = subprocess.run(
            cmd, input=np.ascontiguousarray(frames, np.uint8).tobytes(), capture_output=True
        )
        if proc.returncode != 0:
            raise LtxError(
                f"ffmpeg failed to mux the video: {proc.stderr.decode(errors='replace').strip()[-300:]}"
            )
        return out.read_bytes()


def write_wav(path: Path, waveform: np.ndarray, sample_rate: int) -> None:
    import soundfile

    soundfile.write(str(path), np.asarray(waveform, np.float32).T, int(sample_rate), subtype="PCM_16")


def write_audio_atomic(path: Path, waveform: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM in the container of the path's extension (.wav or .flac), written atomically."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="ltx-wav-") as tmp:
        out = Path(tmp) / f"audio{path.suffix.lower()}"
        write_wav(out, waveform, sample_rate)  # soundfile picks the format from the extension
        write_output(out.read_bytes(), path)


def remux(mp4: bytes, suffix: str) -> bytes:
    """The same H.264 + AAC streams in the container of `suffix` (.mp4: as they are; .mov, .mkv: copied
    into it by ffmpeg, no re-encode)."""
    if suffix == ".mp4":
        return mp4
    with tempfile.TemporaryDirectory(prefix="ltx-remux-") as tmp:
        src, dst = Path(tmp) / "in.mp4", Path(tmp) / f"out{suffix}"
        src.write_bytes(mp4)
        cmd = [_ffmpeg(), "-nostdin", "-loglevel", "error", "-y", "-i", str(src), "-map", "0", "-c", "copy"]
        proc = subprocess.run(
            [*cmd, "-fflags", "+bitexact", "-map_metadata", "-1", str(dst)], capture_output=True
        )
        if proc.returncode != 0:
            raise LtxError(
                f"ffmpeg failed to write {suffix}: {proc.stderr.decode(errors='replace').strip()[-300:]}"
            )
        return dst.read_bytes()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_output(data: bytes, path: Path) -> None:
    """Write a requested output file atomically (temp file beside it, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp creates 0600; a requested output gets the mode a plain open() would give it
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def compute(ctx, params: Params, video, audio=None) -> dict:
    frames = video["frames"]
    waveform = audio["waveform"] if audio is not None else None
    rate = int(audio["sample_rate"]) if audio is not None else 0
    data = encode_mp4(frames, waveform, rate, params.frame_rate, params.crf)
    return {"mp4": np.frombuffer(data, np.uint8)}


STAGE = Stage(NAME, VERSION, Params, ("video", "audio?"), compute, __doc__)


def probe(path: Path) -> str:
    """ffmpeg's description of a media file's streams (for tests and `ltx status`)."""
    proc = subprocess.run([_ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return proc.stderr
