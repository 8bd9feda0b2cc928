"""The built-in tiny model: small random weights in the official LTX-2 file layout.

A tiny model is described by a manifest (``assets/tiny/<variant>/manifest.json``, written by
``tests/reference/make_goldens.py`` from the reference's own modules): for each file, its
safetensors metadata and the name and shape of every tensor. Weights are synthesised from the
tensor name alone, so the same manifest always gives the same bytes, on any machine, without torch.
The reference goldens are computed from exactly these files.

This module must import only numpy and the standard library: the golden generator imports it
from the reference's virtual environment.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).parents[1] / "assets" / "tiny"
VARIANTS = ("2.0", "2.3")  # goldens from the 1.0.0 reference
VARIANTS_12 = ("2.5",)  # goldens from the 1.2.0 reference (split files, Gemma 4)
ALL_VARIANTS = VARIANTS + VARIANTS_12
# Bump when `synth` changes the bytes it produces: it is part of every tiny model's identity.
SYNTH_VERSION = 2
NOTICE = (
    "the tiny model has random weights: its video and audio are noise. For real output pass "
    "--model Lightricks/LTX-2 (or LTX-2.3, LTX-2.5) from the Hugging Face cache, or a folder with the "
    "official files; `ltx models` lists what is found"
)


def _seed(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")


def _blur_kernel(shape: tuple[int, ...]) -> np.ndarray:
    k = np.array([1.0, 4.0, 6.0, 4.0, 1.0])
    k2 = np.outer(k, k) / np.outer(k, k).sum()
    return np.broadcast_to(k2, shape).astype(np.float32)


def _kaiser_sinc(shape, cutoff=0.25, half_width=0.3):
    """BigVGAN's x2 anti-aliasing low-pass (kaiser-windowed sinc), as ltx_core's kaiser_sinc_filter1d."""
    k = shape[-1]
    half = k // 2
    amp = 2.285 * (half - 1) * math.pi * 4 * half_width + 7.95
    beta = (
        0.1102 * (amp - 8.7)
        if amp > 50
        else (0.5842 * (amp - 21) ** 0.4 + 0.07886 * (amp - 21) if amp >= 21 else 0.0)
    )
    t = np.arange(-half, half) + 0.5 if k % 2 == 0 else np.arange(k) - half
    f = 2 * cutoff * np.kaiser(k, beta) * np.sinc(2 * cutoff * t)
    return np.broadcast_to(f / f.sum(), shape).astype(np.float32)


def _stft_basis(shape):
    """[Re; Im] DFT rows times a periodic Hann window: (2 * (n // 2 + 1), 1, n)."""
    n = shape[-1]
    dft = np.fft.fft(np.eye(n))[: n // 2 + 1]
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    return (np.concatenate([dft.real, dft.imag]) * win)[:, None, :].astype(np.float32)


def _slaney_mel(shape, sample_rate=16000):
    """Slaney-scale, Slaney-normalised mel filterbank (n_mels, n_fft // 2 + 1) up to Nyquist."""
    from ltx.audio.mel import mel_filterbank  # numpy only

    n_mels, n_freqs = shape
    return mel_filterbank(sample_rate, 2 * (n_freqs - 1), n_mels).astype(np.float32)


def synth(key: str, shape: tuple[int, ...] | list[int]) -> np.ndarray:
    """A deterministic float32 tensor for `key`, scaled so that random networks stay finite."""
    shape = tuple(int(s) for s in shape)
    n = np.random.RandomState(_seed(key)).standard_normal(shape).astype(np.float32)
    if key.endswith("std-of-means"):
        return np.exp(0.2 * n).astype(np.float32)
    if key.endswith("mean-of-means") or "per_channel_statistics" in key:
        return 0.1 * n
    if key.endswith("timestep_scale_multiplier"):
        return np.full(shape, 1000.0, np.float32)
    if key.endswith("layer_scalar"):  # Gemma 4 scales each layer's output: near 1, as trained ones are
        return (1.0 + 0.1 * n).astype(np.float32)
    if key.endswith("blur_down.kernel"):
        return _blur_kernel(shape)
    # fixed buffers a real LTX-2.3 vocoder stores: give them their real values, not noise
    if key.endswith(("upsample.filter", "lowpass.filter")):
        return _kaiser_sinc(shape)
    if key.endswith("stft_fn.forward_basis"):
        return _stft_basis(shape)
    if key.endswith("mel_stft.mel_basis"):
        return _slaney_mel(shape)
    if "learnable_registers" in key:
        return n
    if len(shape) >= 2:
        return n / np.float32(np.sqrt(np.prod(shape[1:])))
    if len(shape) == 1 and key.endswith(".bias"):
        return 0.02 * n
    if len(shape) == 1 and key.endswith(".weight"):
        return 1.0 + 0.1 * n
    return 0.1 * n


def _to_bf16_bytes(x: np.ndarray) -> bytes:
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16  # round to nearest even
    return rounded.astype(np.uint16).tobytes()


def write_safetensors(
    path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str], dtype: str
) -> None:
    """Write a safetensors file with numpy only (numpy has no bfloat16, so encode it by hand)."""
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    blobs, offset = [], 0
    for name in sorted(tensors):
        arr = tensors[name]
        blob = _to_bf16_bytes(arr) if dtype == "BF16" else np.ascontiguousarray(arr, np.float32).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for blob in blobs:
            f.write(blob)


def load_manifest(variant: str) -> dict:
    if variant not in ALL_VARIANTS:
        raise ValueError(f"unknown tiny variant {variant!r}; choose one of {', '.join(ALL_VARIANTS)}")
    path = ASSETS / variant / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; regenerate it with `just goldens`")
    return json.loads(path.read_text())


def _metadata(spec: dict) -> dict[str, str]:
    """A file's safetensors metadata (string values; JSON for the rest, as the official files store it)."""
    return {
        k: v if isinstance(v, str) else json.dumps(v, sort_keys=True)
        for k, v in spec.get("metadata", {}).items()
    }


def materialize(manifest: dict, dest: Path) -> Path:
    """Write every file of `manifest` into the new directory `dest` (atomically: temp dir, then rename)."""
    dest = Path(dest)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=dest.parent))
    try:
        for rel, spec in manifest["files"].items():
            out = tmp / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            meta = _metadata(spec)
            tensors = {k: synth(k, shape) for k, shape in spec["tensors"].items()}
            write_safetensors(out, tensors, meta, spec.get("dtype", "BF16"))
        for rel, src in manifest.get("static", {}).items():
            out = tmp / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ASSETS / src, out)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def headers(variant: str, root: Path) -> dict[Path, tuple[dict, dict[str, str]]]:
    """{root / file: (tensor infos, metadata)} of the tiny model's safetensors files, as
    ltx.weights.header.read_header would read them once `create` has written them, from the manifest
    alone (memory estimates before anything is written)."""
    out = {}
    for rel, spec in load_manifest(variant)["files"].items():
        dtype = spec.get("dtype", "BF16")
        size = 2 if dtype == "BF16" else 4
        infos, offset = {}, 0
        for name in sorted(spec["tensors"]):
            shape = [int(d) for d in spec["tensors"][name]]
            n = size * int(np.prod(shape, dtype=np.int64))
            infos[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
            offset += n
        out[Path(root) / rel] = (infos, _metadata(spec))
    return out


def create(variant: str, dest: Path) -> Path:
    """Create the tiny model directory for `variant` ("2.0", "2.3" or "2.5") at `dest`."""
    return materialize(load_manifest(variant), Path(dest))


def manifest_digest(variant: str) -> str:
    """The identity of a tiny model: its manifest and the weight synthesis version (weights follow from both)."""
    h = hashlib.sha256(f"synth-v{SYNTH_VERSION}\n".encode())
    h.update((ASSETS / variant / "manifest.json").read_bytes())
    return h.hexdigest()
