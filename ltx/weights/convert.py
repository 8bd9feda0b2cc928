"""Official LTX-2 files -> an MLX-native model directory, optionally quantized.

    DST/model.safetensors        the single-file checkpoint, official keys and metadata config;
                                 quantized block linears as MLX packs them (weight/scales/biases)
    DST/upsampler.safetensors    the spatial upsampler, copied
    DST/gemma/                   tokenizer and config files copied; weights in one model.safetensors
    DST/ltx-mlx.json             the manifest: source digests, recorded component digests, options

The converted directory is an official-layout directory too: the same loaders read it (strictly and
lazily; `ltx.weights.quantize.quantize_like` turns layers stored quantized into MLX quantized layers before
the strict load), so loading never holds two copies of a weight. Writing streams one tensor at a
time, so converting the 19B model needs about one tensor's memory, not the model's.

Identity: the manifest records each component's digest. A component that conversion leaves bit for
bit as it was keeps its source digest; a quantized one gets sha256(source digest, bits, group size).
So converting without quantization keeps every cache key, and quantizing changes exactly the keys of
the stages that use the quantized component (the transformer: denoise, refine; Gemma: encode).

This module imports mlx only inside the functions that write, so `is_converted` and `read_manifest`
are cheap to call from stages/models.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "ltx-mlx.json"
FORMAT = "ltx-mlx"
FORMAT_VERSION = 1
METADATA_KEY = "ltx_mlx_quantization"  # in model.safetensors and gemma/model.safetensors
COMPONENTS = ("checkpoint", "transformer", "upsampler", "gemma")


@dataclass
class Source:
    """The files of an official model and their content digests (as stages.models computes them)."""

    checkpoint: Path
    upsampler: Path
    gemma: Path
    digests: dict[str, str] = field(default_factory=dict)  # "checkpoint", "upsampler", "gemma" (+ PARTS)
    # a split model's (LTX-2.5) other component files, copied as they are: PARTS kind -> file
    parts: dict[str, Path] = field(default_factory=dict)


# a split model's component files besides the transformer (stages.models.ModelFiles' fields)
PARTS = ("video_vae", "conv_vae", "diffusion_vae", "audio_vae", "duration_head")


def is_converted(path: str | Path) -> bool:
    """Whether `path` is a directory written by `convert` (it has the manifest)."""
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a readable ltx-mlx manifest ({e})") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format {manifest.get('format')!r} version {manifest.get('version')!r} is not "
            f"{FORMAT!r} version {FORMAT_VERSION}; convert the model again with `ltx convert`"
        )
    return manifest


def converted_files(path: str | Path) -> dict[str, Any]:
    """{"checkpoint", "upsampler", "gemma": Path, "digests": {component: digest}} of a converted dir.

    digests has "checkpoint" (VAEs, vocoder, text projection), "transformer", "upsampler", "gemma"."""
    root = Path(path)
    m = read_manifest(root)
    out = {k: root / m["files"][k] for k in ("checkpoint", "upsampler", "gemma")}
    out["parts"] = {k: root / v for k, v in m["files"].get("parts", {}).items()}
    out["digests"] = dict(m["digests"])
    return out


def _derived(digest: str, q: dict | None) -> str:
    if q is None:
        return digest
    text = json.dumps(
        {"source": digest, "bits": q["bits"], "group_size": q["group_size"], "mode": "affine"}, sort_keys=True
    )
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# --- streamed safetensors writing ---------------------------------------------------------------


def _st_dtype(dtype) -> str:
    from ltx.backend import mx  # the optimised BLAS is set up before mlx

    table = {
        mx.float32: "F32",
        mx.float16: "F16",
        mx.bfloat16: "BF16",
        mx.uint32: "U32",
        mx.int32: "I32",
        mx.int64: "I64",
        mx.uint8: "U8",
        mx.int8: "I8",
        mx.bool_: "BOOL",
        mx.uint16: "U16",
        mx.int16: "I16",
    }
    if dtype not in table:
        raise ValueError(f"cannot write dtype {dtype} to safetensors")
    return table[dtype]


def write_streamed(path: Path, tensors: dict, metadata: dict[str, str]) -> str:
    """Write lazy MLX arrays to a safetensors file, evaluating and releasing one at a time.
    `tensors` is emptied. Returns the sha256 of the file."""
    from ltx.backend import mx  # the optimised BLAS is set up before mlx

    names = sorted(tensors)
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name in names:
        a = tensors[name]
        n = a.nbytes
        header[name] = {
            "dtype": _st_dtype(a.dtype),
            "shape": list(a.shape),
            "data_offsets": [offset, offset + n],
        }
        offset += n
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for chunk in (struct.pack("<Q", len(head)), head):
            f.write(chunk)
            h.update(chunk)
        for name in names:
            a = tensors.pop(name)
            mx.eval(a)
            buf = memoryview(a).cast("B")
            f.write(buf)
            h.update(buf)
            del a, buf
    return "sha256:" + h.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


# --- the conversion -----------------------------------------------------------------------------


def _convert_checkpoint(src: Path, dst: Path, q: dict | None) -> tuple[str, int]:
    from ltx.weights import loader, quantize

    weights, metadata = loader.load_checkpoint(src)
    loader.read_config(metadata, src)  # must be an LTX-2 single-file checkpoint
    modules: list[str] = []
    if q is not None:
        weights, modules = quantize.quantize_weights(
            weights, q["bits"], q["group_size"], quantize.TRANSFORMER_KEYS
        )
    meta = dict(metadata)
    meta[METADATA_KEY] = json.dumps({**q, "modules": len(modules)} if q else None)
    return write_streamed(dst, dict(weights), meta), len(modules)


def _convert_gemma(src: Path, dst: Path, q: dict | None) -> tuple[str, int]:
    from ltx.backend import mx  # the optimised BLAS is set up before mlx
    from ltx.weights import loader, quantize

    dst.mkdir()
    weights: dict = {}
    files = sorted(src.glob("model*.safetensors"))
    if not files:
        raise loader.CheckpointError(f"no model*.safetensors in the Gemma directory {src}")
    for f in files:
        loader.read_header(f)
        weights.update(mx.load(str(f)))
    for item in sorted(src.rglob("*")):
        rel = item.relative_to(src)
        if item.is_file() and not (
            item.name.startswith("model")
            and (item.suffix == ".safetensors" or item.name.endswith(".safetensors.index.json"))
        ):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(item, dst / rel)
    modules: list[str] = []
    if q is not None:
        weights, modules = quantize.quantize_weights(weights, q["bits"], q["group_size"], quantize.GEMMA_KEYS)
    meta = {"format": "pt", METADATA_KEY: json.dumps({**q, "modules": len(modules)} if q else None)}
    return write_streamed(dst / "model.safetensors", weights, meta), len(modules)


def _gemma_type(root: Path) -> str | None:
    try:
        return json.loads((Path(root) / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def convert(
    src: Source,
    dst: str | Path,
    bits: int | None = None,
    group_size: int = 64,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Convert `src` into the new directory `dst` (written under a temporary name, then renamed).
    Returns the manifest."""
    from ltx.weights import quantize

    dst = Path(dst)
    if dst.exists():
        raise ValueError(f"{dst} already exists; choose a new directory for the converted model")
    if bits is not None:
        quantize.check_options(bits, group_size)
    missing = [k for k in ("checkpoint", "upsampler", "gemma") if k not in src.digests]
    if missing:
        raise ValueError(f"source digests missing for {', '.join(missing)}")
    q = None if bits is None else {"bits": bits, "group_size": group_size, "mode": "affine"}
    say = progress or (lambda _msg: None)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".incomplete", dir=dst.parent))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700; the output folder gets the mode mkdir gives
    try:
        say(f"checkpoint {src.checkpoint.name}")
        ckpt_sha, n_tr = _convert_checkpoint(src.checkpoint, tmp / "model.safetensors", q)
        say(f"upsampler {src.upsampler.name}")
        shutil.copyfile(src.upsampler, tmp / "upsampler.safetensors")
        say(f"gemma {src.gemma.name}")
        # LTX-2.5's Gemma 4 stays float: only the transformer is quantized
        gemma4 = _gemma_type(src.gemma) == "gemma4_unified"
        gemma_sha, n_gemma = _convert_gemma(src.gemma, tmp / "gemma", None if gemma4 else q)
        copied, part_sha, aliases = {}, {}, {}
        for kind, path in sorted(src.parts.items()):  # split components: copied as they are
            if path == src.checkpoint:
                continue
            if path not in copied:
                say(f"{kind} {path.name}")
                rel = f"{kind}.safetensors"
                shutil.copyfile(path, tmp / rel)
                copied[path], part_sha[rel] = rel, _file_sha256(tmp / rel)
            aliases[kind] = copied[path]  # video_vae and diffusion_vae may be one file
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "quantization": None
            if q is None
            else {**q, "transformer_modules": n_tr, "gemma_modules": n_gemma},
            "files": {
                "checkpoint": "model.safetensors",
                "upsampler": "upsampler.safetensors",
                "gemma": "gemma",
                "parts": aliases,
            },
            "sha256": {
                "model.safetensors": ckpt_sha,
                "upsampler.safetensors": _file_sha256(tmp / "upsampler.safetensors"),
                "gemma/model.safetensors": gemma_sha,
                **part_sha,
            },
            "source": {
                "checkpoint": {"name": src.checkpoint.name, "digest": src.digests["checkpoint"]},
                "upsampler": {"name": src.upsampler.name, "digest": src.digests["upsampler"]},
                "gemma": {"name": src.gemma.name, "digest": src.digests["gemma"]},
            },
            "digests": {
                "checkpoint": src.digests["checkpoint"],
                "transformer": _derived(src.digests["checkpoint"], q if n_tr else None),
                "upsampler": src.digests["upsampler"],
                "gemma": _derived(src.digests["gemma"], q if n_gemma else None),
                **{k: src.digests[k] for k in aliases if k in src.digests},
            },
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def quantization_info(path: str | Path) -> dict | None:
    """The quantization recorded in a checkpoint's metadata (None for float / official files)."""
    from ltx.weights import loader

    _, metadata = loader.read_header(path)
    raw = metadata.get(METADATA_KEY)
    return json.loads(raw) if raw else None
