"""Content-addressed keys: sha256 of the canonical JSON of a stage's recipe.

A recipe is everything that changes an artifact's bits: the store schema, the stage name and its
integer version, its parameters, the keys of its upstream artifacts and the content digests of
external inputs (weights files, images, audio). Source code is deliberately not hashed: a stage
bumps its version when its output changes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from cache.errors import RecipeError

SCHEMA = 1


def _normalise(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RecipeError(f"parameter {where} is {value}; parameters must be finite numbers")
        # Integral floats hash like ints so that 2.0 and 2 give one key; repr() is shortest-roundtrip.
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise RecipeError(f"parameter {where} has non-string key {k!r}")
            out[k] = _normalise(v, f"{where}.{k}")
        return out
    if isinstance(value, list | tuple):
        return [_normalise(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy scalars
        return _normalise(value.item(), where)
    raise RecipeError(
        f"parameter {where} of type {type(value).__name__} cannot be part of a key; use numbers, strings, lists or dicts"
    )


def canonical_json(obj: Any) -> str:
    """Sorted keys, compact separators, no NaN or infinity."""
    return json.dumps(_normalise(obj, "params"), sort_keys=True, separators=(",", ":"), allow_nan=False)


def make_key(
    stage: str,
    version: int,
    params: dict[str, Any],
    inputs: dict[str, str] | None = None,
    externals: dict[str, str] | None = None,
) -> str:
    """The 64-hex-digit key of a recipe."""
    recipe = {
        "schema": SCHEMA,
        "stage": stage,
        "version": int(version),
        "params": params,
        "inputs": dict(inputs or {}),
        "externals": dict(externals or {}),
    }
    return hashlib.sha256(canonical_json(recipe).encode()).hexdigest()


def file_digest(path: str | Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tree_digest(root: str | Path) -> str:
    """sha256 over the relative paths and contents of every file under a directory."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(root)).encode() + b"\0" + file_digest(p).encode() + b"\n")
    return h.hexdigest()


def stat_signature(path: str | Path) -> str:
    """A cheap identity of a file's current state (for memoising digests of huge files)."""
    st = os.stat(path)
    return f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
