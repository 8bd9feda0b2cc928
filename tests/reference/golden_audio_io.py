"""Goldens for reading audio files: ltx_pipelines' decode_audio_from_file (PyAV: seek, whole codec frames,
trim to [start, start + max_duration]) on a WAV, FLAC, MP3 and an AAC track in an .mp4 holding the same
deterministic stereo signal, then the reference's AudioProcessor (torchaudio resample to 16 kHz, the
stereo log-mel of the audio VAE encoder) on what was read. Variant-independent (SHARED): no weights.

The files' bytes are stored, so our side decodes exactly the bytes the reference decoded (the encoders
need not agree across ffmpeg builds). Per format "<fmt>.bytes" (uint8), "<fmt>.waveform" (C, N) as read
with START/DURATION (what golden_a2v's run reads: 9 frames at 24 fps from 0.1 s), "<fmt>.rate"; for the
WAV also the whole file read with no start or duration ("wav.full"), and "wav.resampled" (C, N16) and
"wav.mel" (1, 2, T, 64), both of the START/DURATION read.
"""

from __future__ import annotations

import io
import tempfile
import wave
from pathlib import Path

import numpy as np

SHARED = "audio_io.safetensors"
RATE = 22050  # not 16 kHz: the resampler is exercised (441 -> 320)
SECONDS = 0.5
START, DURATION = 0.1, 9 / 24
FORMATS = {"flac": ("flac", "flac"), "mp3": ("mp3", "libmp3lame"), "m4a": ("mp4", "aac")}
MEL = dict(target_sample_rate=16000, mel_bins=64, mel_hop_length=160, n_fft=1024)


def contribute(variant: str) -> dict:
    return {}


def signal() -> np.ndarray:
    """(N, 2) int16: a 440 Hz tone left, 660 Hz right, a little noise in both."""
    t = np.arange(round(RATE * SECONDS)) / RATE
    noise = np.random.RandomState(7).standard_normal((t.size, 2)) * 0.05
    x = np.stack([0.4 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t + 1.0)], 1) + noise
    return np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)


def wav_bytes() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(signal().tobytes())
    return buf.getvalue()


def _encoded(container_format: str, codec: str) -> bytes:
    import av

    x = signal()
    buf = io.BytesIO()
    with av.open(buf, "w", format=container_format) as out:
        stream = out.add_stream(codec, rate=RATE, layout="stereo")
        frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = RATE
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def run(variant, model_dir) -> dict[str, np.ndarray]:
    import torch
    from ltx_core.model.audio_vae.ops import AudioProcessor
    from ltx_pipelines.utils.media_io import decode_audio_from_file

    files = {"wav": wav_bytes(), **{k: _encoded(*v) for k, v in FORMATS.items()}}
    out: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, data in files.items():
            path = Path(tmp) / f"audio.{fmt}"
            path.write_bytes(data)
            audio = decode_audio_from_file(str(path), torch.device("cpu"), START, DURATION)
            out[f"{fmt}.bytes"] = np.frombuffer(data, np.uint8)
            out[f"{fmt}.waveform"] = audio.waveform[0].numpy()
            out[f"{fmt}.rate"] = np.array(audio.sampling_rate, np.int32)
            if fmt == "wav":
                full = decode_audio_from_file(str(path), torch.device("cpu"))
                out["wav.full"] = full.waveform[0].numpy()
                processor = AudioProcessor(**MEL)
                with torch.no_grad():
                    out["wav.resampled"] = processor.resample_audio(audio).waveform[0].numpy()
                    out["wav.mel"] = processor.waveform_to_mel(audio).numpy()
    return out
