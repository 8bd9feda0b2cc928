"""Reading official LTX-2 checkpoints: safetensors headers, config metadata, strict loading.

Weights come from `mx.load`, which memory-maps safetensors lazily: a tensor is read from disk when
it is first evaluated, so loading never holds two copies of a large model.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

MAX_HEADER_BYTES = 100 * 1024 * 1024
_DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "U32": 4,
}


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, malformed, or does not match the model."""


def read_header(path: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Parse and validate a safetensors header without reading tensor data.

    Returns (tensor_infos, metadata). The header length is checked against the file size before
    parsing, and every tensor's byte range against its dtype, shape and the file size.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{path} is truncated ({size} bytes): not a safetensors file")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER_BYTES or n + 8 > size:
            raise CheckpointError(
                f"{path}: header claims {n} bytes but the file has {size}; the file is corrupt or truncated"
            )
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: malformed safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: malformed safetensors header (not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    data_len = size - 8 - n
    for name, info in header.items():
        try:
            dtype, shape, (start, end) = info["dtype"], info["shape"], info["data_offsets"]
            count = 1
            for s in shape:
                count *= int(s)
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: malformed header entry for tensor {name!r}") from None
        if dtype not in _DTYPE_BYTES:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype}")
        if end - start != count * _DTYPE_BYTES[dtype] or end > data_len or start < 0:
            raise CheckpointError(
                f"{path}: tensor {name!r} lies outside the file; the file is truncated or corrupt"
            )
    return header, metadata


def load_checkpoint(path: str | Path) -> tuple[dict[str, mx.array], dict[str, str]]:
    """Validated, lazily loaded (weights, metadata) of one safetensors file."""
    read_header(path)
    weights, metadata = mx.load(str(path), return_metadata=True)
    return weights, metadata


def read_config(metadata: dict[str, str], path: str | Path = "checkpoint") -> dict[str, Any]:
    """The JSON `config` from a checkpoint's safetensors metadata."""
    if "config" not in metadata:
        raise CheckpointError(
            f"{path} has no 'config' metadata; is it an official LTX-2 single-file checkpoint?"
        )
    try:
        config = json.loads(metadata["config"])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: 'config' metadata is not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: 'config' metadata is not a JSON object")
    return config


def check_config_value(config: dict[str, Any], key: str, expected: Any, section: str = "") -> None:
    """Reject a config option this implementation does not support, naming it."""
    if key in config and config[key] != expected:
        where = f"{section}.{key}" if section else key
        raise CheckpointError(
            f"unsupported config value {where}={config[key]!r}; this implementation supports only {expected!r}"
        )


def take_prefix(weights: dict[str, mx.array], prefix: str) -> dict[str, mx.array]:
    """The weights under `prefix`, with the prefix stripped."""
    return {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}


def load_strict(
    module: nn.Module, weights: dict[str, mx.array], dtype: mx.Dtype | None = None, what: str = "model"
) -> None:
    """Load `weights` into `module`; a missing, unexpected or misshapen key is an error naming it.
    Layers that a converted checkpoint stores quantized become MLX quantized layers first."""
    from ltx.quantize import quantize_like

    quantize_like(module, weights)
    expected = dict(tree_flatten(module.parameters()))
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing:
        raise CheckpointError(
            f"{what}: missing weight {missing[0]!r}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    if unexpected:
        raise CheckpointError(
            f"{what}: unexpected weight {unexpected[0]!r}"
            + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
        )
    for k, v in weights.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(
                f"{what}: weight {k!r} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
            )
    if dtype is not None:
        weights = {
            k: v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v for k, v in weights.items()
        }
    module.load_weights(list(weights.items()), strict=True)


load_strict.handles_quantized = True
