"""Validating a safetensors header before anything trusts it (standard library only).

The header length is checked against the file size before the JSON is parsed, and every tensor's
byte range against its dtype, shape and the file size, so a truncated file, a header claiming a huge
size, or a malformed entry is an error naming the file, never a crash or a huge allocation.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

MAX_HEADER_BYTES = 100 * 1024 * 1024
DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, malformed, or does not match the model."""


def read_header(path: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """(tensor infos, metadata) of a safetensors file, validated; CheckpointError names what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p} does not exist")
    size = p.stat().st_size
    with open(p, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{p} is truncated ({size} bytes)")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER_BYTES or n + 8 > size:
            raise CheckpointError(
                f"{p}: header claims {n} bytes but the file has {size}; the file is truncated or corrupt"
            )
        body = f.read(n)
    try:
        header = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{p} has a malformed safetensors header") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{p} has a malformed safetensors header")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{p} has malformed safetensors metadata")
    data_len = size - 8 - n
    for name, info in header.items():
        try:
            dtype, shape, (start, end) = info["dtype"], [int(s) for s in info["shape"]], info["data_offsets"]
            count, start, end = math.prod(shape), int(start), int(end)
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{p}: malformed header entry for tensor {name!r}") from None
        if dtype not in DTYPE_BYTES:
            raise CheckpointError(f"{p}: tensor {name!r} has unsupported dtype {dtype}")
        if start < 0 or end - start != count * DTYPE_BYTES[dtype] or end > data_len:
            raise CheckpointError(
                f"{p}: tensor {name!r} lies outside the file; the file is truncated or corrupt"
            )
    return header, metadata
