"""LoRA files (ComfyUI key layout): fused into the transformer's float weights, kept beside quantized ones.

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
from ltx.weights.header import CheckpointError
from ltx.weights.quantize import LoRAQuantizedLinear

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


def _dims(m: nn.Module) -> tuple[int, int]:
    if isinstance(m, LoRAQuantizedLinear):
        m = m.base
    if isinstance(m, nn.QuantizedLinear):
        return m.weight.shape[0], m.weight.shape[1] * 32 // m.bits
    return tuple(m.weight.shape)


def apply_loras(model: nn.Module, loras: list[tuple[str | Path, float]]) -> dict[str, int]:
    """Apply LoRA files (path, strength): fused into float weights exactly as fuse_loras
    does (W + sum (B*s) @ A, float32 delta), kept at run time beside quantized ones.
    Returns {"fused": n, "runtime": n}."""
    return apply_lora_pairs(model, [(str(p), load_lora(p), s) for p, s in loras])


def apply_lora_pairs(
    model: nn.Module, loras: list[tuple[str, dict[str, tuple[mx.array, mx.array]], float]], prefix: str = ""
) -> dict[str, int]:
    """apply_loras with pairs already loaded: (name, {module path: (A, B)}, strength). With
    `prefix`, only modules under it are applied, the prefix stripped (one streamed block)."""
    modules = dict(model.named_modules())
    deltas: dict[str, mx.array] = {}
    runtime: dict[str, list] = {}
    for path, pairs, strength in loras:
        for full, (a, b) in pairs.items():
            if not full.startswith(prefix):
                continue
            name = full[len(prefix) :]
            m = modules.get(name)
            if m is None or not (hasattr(m, "weight") or isinstance(m, LoRAQuantizedLinear)):
                raise CheckpointError(f"LoRA {path}: the model has no linear layer {full!r}")
            out_dim, in_dim = _dims(m)
            if b.shape[1] != a.shape[0] or (b.shape[0], a.shape[1]) != (out_dim, in_dim):
                raise CheckpointError(
                    f"LoRA {path}: {full} has lora_B {tuple(b.shape)} @ lora_A {tuple(a.shape)}, "
                    f"which does not fit the weight {(out_dim, in_dim)}"
                )
            if isinstance(m, (nn.QuantizedLinear, LoRAQuantizedLinear)):
                runtime.setdefault(name, []).append((a, b, strength))
            else:
                d = (b.astype(mx.float32) * strength) @ a.astype(mx.float32)
                deltas[name] = deltas[name] + d if name in deltas else d
    fused = [
        (f"{n}.weight", modules[n].weight + d.astype(modules[n].weight.dtype)) for n, d in deltas.items()
    ]
    model.load_weights(fused, strict=False)
    wrapped = []
    for name, items in runtime.items():
        m = modules[name]
        layer = m if isinstance(m, LoRAQuantizedLinear) else LoRAQuantizedLinear(m)
        for a, b, s in items:
            layer.add(a, b, s, layer.base.scales.dtype)
        wrapped.append((name, layer))
    if wrapped:
        model.update_modules(_nest(wrapped))
    return {"fused": len(fused), "runtime": len(runtime)}


def _nest(items: list[tuple[str, nn.Module]]) -> dict:
    """[("a.0.b", m)] -> {"a": [{"b": m}]}-shaped tree for Module.update_modules (lists as dicts of ints)."""
    from mlx.utils import tree_unflatten

    return tree_unflatten(items)
