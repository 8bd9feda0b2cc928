"""Weight quantization (MLX affine, 4 or 8 bits) of the transformer's and Gemma's linear layers,
and the layer that keeps LoRAs beside a quantized weight at run time (applied by ltx.weights.lora).

Which layers: every 2-D linear weight of a transformer block (q/k/v/out, gate logits, feed-forward;
the reference's fp8-cast covers the same set) and every linear weight of Gemma's decoder layers,
provided its input width is divisible by the group size. Top-level transformer layers (patchify,
AdaLN, caption projection, output head: 1.8% of the 19B's parameters) and Gemma's embedding stay in
float. A quantized layer is stored under its official key as MLX packs it: `<m>.weight` (uint32),
`<m>.scales` and `<m>.biases` (the source dtype); loading infers bits and group size from the shapes.
"""

from __future__ import annotations

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import re

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from ltx.weights.header import CheckpointError  # noqa: E402

BITS = (4, 8)
GROUP_SIZES = (32, 64, 128)
_LOADABLE_BITS = (2, 3, 4, 5, 6, 8)

# Official checkpoint keys of quantizable weights (the rule above; `.weight` of a 2-D tensor only).
TRANSFORMER_KEYS = re.compile(r"^model\.diffusion_model\.transformer_blocks\.\d+\..+\.weight$")
GEMMA_KEYS = re.compile(
    r"^(language_model\.)?(model\.)?(language_model\.)?(model\.)?layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight$"
)


def check_options(bits: int, group_size: int) -> None:
    if bits not in BITS:
        raise ValueError(f"--quantize {bits} is not supported; choose one of {', '.join(map(str, BITS))}")
    if group_size not in GROUP_SIZES:
        raise ValueError(
            f"--group-size {group_size} is not supported; choose one of {', '.join(map(str, GROUP_SIZES))}"
        )


def quantizable(key: str, shape: tuple[int, ...] | list[int], group_size: int, pattern: re.Pattern) -> bool:
    """The rule: a linear weight the pattern selects, 2-D, input width divisible by the group size."""
    return bool(pattern.match(key)) and len(shape) == 2 and shape[1] % group_size == 0


def quantize_weights(
    weights: dict[str, mx.array], bits: int, group_size: int, pattern: re.Pattern
) -> tuple[dict[str, mx.array], list[str]]:
    """Official-key weights -> the same keys with the selected linear weights packed by mx.quantize
    (plus `.scales` / `.biases` beside them). Returns (weights, quantized module paths)."""
    check_options(bits, group_size)
    out, done = {}, []
    for key, w in weights.items():
        if not quantizable(key, w.shape, group_size, pattern):
            out[key] = w
            continue
        q, scales, biases = mx.quantize(w, group_size=group_size, bits=bits)
        module = key[: -len(".weight")]
        out[key], out[f"{module}.scales"], out[f"{module}.biases"] = q, scales, biases
        done.append(module)
    return out, done


def _layout(path: str, m: nn.Module, weights: dict[str, mx.array]) -> dict | bool:
    """to_quantized arguments for module `path` when `weights` hold it quantized, else False."""
    if f"{path}.scales" not in weights or not hasattr(m, "to_quantized") or _is_quantized(m):
        return False
    packed, scales = weights.get(f"{path}.weight"), weights[f"{path}.scales"]
    in_dims = m.weight.shape[1]
    if (
        packed is None
        or packed.dtype != mx.uint32
        or packed.ndim != 2
        or scales.ndim != 2
        or scales.shape[1] == 0
    ):
        raise CheckpointError(
            f"quantized weight {path!r} is malformed: expected uint32 weight and 2-D scales"
        )
    bits, group = packed.shape[1] * 32 // in_dims, in_dims // scales.shape[1]
    if (
        bits not in _LOADABLE_BITS
        or group not in GROUP_SIZES
        or packed.shape[1] * 32 != bits * in_dims
        or scales.shape[1] * group != in_dims
        or packed.shape[0] != m.weight.shape[0]
    ):
        raise CheckpointError(
            f"quantized weight {path!r} has packed shape {tuple(packed.shape)} and scales {tuple(scales.shape)}, "
            f"which fit no bits/group size for a layer of shape {tuple(m.weight.shape)}"
        )
    return {"group_size": group, "bits": bits, "mode": "affine"}


def _is_quantized(m: nn.Module) -> bool:
    return isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding, LoRAQuantizedLinear))


def quantize_like(module: nn.Module, weights: dict[str, mx.array]) -> int:
    """Turn every layer that `weights` hold quantized (a `<path>.scales` key) into its MLX quantized
    form, so that a strict load then matches; a no-op for float checkpoints. Returns the count."""
    if not any(k.endswith(".scales") for k in weights):
        return 0
    count = 0

    def predicate(path: str, m: nn.Module):
        nonlocal count
        layout = _layout(path, m, weights)
        count += bool(layout)
        return layout

    nn.quantize(module, class_predicate=predicate)
    return count


def quantize_model(module: nn.Module, bits: int, group_size: int, scope: str = "") -> list[str]:
    """Quantize an already loaded model in place: linear layers under `scope` whose input width is
    divisible by the group size. Returns the quantized module paths."""
    check_options(bits, group_size)
    done = []

    def predicate(path: str, m: nn.Module) -> bool:
        ok = isinstance(m, nn.Linear) and path.startswith(scope) and m.weight.shape[1] % group_size == 0
        if ok:
            done.append(path)
        return ok

    nn.quantize(module, group_size=group_size, bits=bits, class_predicate=predicate)
    return done


def weight_bytes(module: nn.Module) -> int:
    """Bytes held by a module's parameters (packed weights, scales and biases for quantized layers)."""
    return sum(v.nbytes for _, v in tree_flatten(module.parameters()))


class LoRAQuantizedLinear(nn.Module):
    """y = qlinear(x) + sum_i strength_i * (x @ A_i^T) @ B_i^T: LoRA kept beside a quantized weight."""

    def __init__(self, base: nn.QuantizedLinear):
        super().__init__()
        self.base = base
        self.lora_a: list[mx.array] = []
        self.lora_b: list[mx.array] = []
        self.strengths: list[float] = []

    def add(self, a: mx.array, b: mx.array, strength: float, dtype: mx.Dtype) -> None:
        self.lora_a.append(a.astype(dtype))  # (rank, in)
        self.lora_b.append(b.astype(dtype))  # (out, rank)
        self.strengths.append(float(strength))

    def __call__(self, x: mx.array) -> mx.array:
        y = self.base(x)
        for a, b, s in zip(self.lora_a, self.lora_b, self.strengths, strict=True):
            y = y + s * ((x @ a.T) @ b.T)
        return y
