"""LoRA files (ComfyUI key layout) and fusing them into the transformer's weights.

Keys are `diffusion_model.<module>.lora_A.weight` (rank, in) and `.lora_B.weight` (out, rank).
Fusion follows the reference (ltx_core/loader/fuse_loras.py): W <- W + sum_i (B_i * strength_i) @ A_i,
with no alpha/rank scaling; the delta is computed in float32 and added in the weight's dtype.
"""

from __future__ import annotations

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from ltx.weights import loader

PREFIXES = ("model.diffusion_model.", "diffusion_model.")


def load_lora(path: str | Path) -> dict[str, tuple[mx.array, mx.array]]:
    """{module path: (A, B)} of one LoRA file; a lone A or B is an error naming it."""
    weights, _ = loader.load_checkpoint(path)
    pairs: dict[str, dict[str, mx.array]] = {}
    for key, value in weights.items():
        for p in PREFIXES:
            if key.startswith(p):
                key = key[len(p) :]
                break
        if key.endswith(".lora_A.weight"):
            pairs.setdefault(key[: -len(".lora_A.weight")], {})["A"] = value
        elif key.endswith(".lora_B.weight"):
            pairs.setdefault(key[: -len(".lora_B.weight")], {})["B"] = value
        elif key.endswith((".alpha", ".dora_scale")):
            raise loader.CheckpointError(
                f"LoRA {path}: key {key!r} needs alpha/DoRA scaling, which LTX LoRAs do not use"
            )
    out = {}
    for module, ab in pairs.items():
        if set(ab) != {"A", "B"}:
            missing = "lora_B" if "A" in ab else "lora_A"
            raise loader.CheckpointError(f"LoRA {path}: {module} has no {missing}.weight")
        out[module] = (ab["A"], ab["B"])
    if not out:
        raise loader.CheckpointError(f"LoRA {path} has no lora_A/lora_B weights")
    return out


def lora_deltas(model: nn.Module, loras: list[tuple[str | Path, float]]) -> dict[str, mx.array]:
    """{weight key: float32 delta} of all LoRAs for `model`, shapes checked."""
    params = dict(tree_flatten(model.parameters()))
    deltas: dict[str, mx.array] = {}
    for path, strength in loras:
        for module, (a, b) in load_lora(path).items():
            key = f"{module}.weight"
            if key not in params:
                raise loader.CheckpointError(f"LoRA {path}: the model has no weight {key!r}")
            w = params[key]
            if b.shape[1] != a.shape[0] or (b.shape[0], a.shape[1]) != tuple(w.shape):
                raise loader.CheckpointError(
                    f"LoRA {path}: {module} has lora_B {tuple(b.shape)} @ lora_A {tuple(a.shape)}, "
                    f"which does not fit the weight {tuple(w.shape)}"
                )
            d = (b.astype(mx.float32) * strength) @ a.astype(mx.float32)
            deltas[key] = deltas[key] + d if key in deltas else d
    return deltas


def fuse_loras(model: nn.Module, loras: list[tuple[str | Path, float]]) -> int:
    """Add the LoRA deltas into the model's (unquantized) weights in place; returns the count fused."""
    params = dict(tree_flatten(model.parameters()))
    deltas = lora_deltas(model, loras)
    fused = []
    for key, d in deltas.items():
        w = params[key]
        fused.append((key, w + d.astype(w.dtype)))
    model.load_weights(fused, strict=False)
    mx.eval(model.parameters())
    return len(fused)
