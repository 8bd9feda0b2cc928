"""Reading official LTX-2 checkpoints: safetensors headers, config metadata, strict loading.

Weights come from `mx.load`, which memory-maps safetensors lazily: a tensor is read from disk when
it is first evaluated, so loading never holds two copies of a large model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from ltx.weights.header import MAX_HEADER_BYTES, CheckpointError, read_header  # noqa: F401  (re-exported)


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
    from ltx.weights.quantize import quantize_like

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


def to_mlx_layout(
    weights: dict[str, mx.array],
    expected: dict[str, tuple[int, ...]],
    is_transposed_conv: Callable[[str], bool] = lambda k: False,
) -> dict[str, mx.array]:
    """PyTorch conv layouts -> MLX by the shape each parameter must have; idempotent.

    Conv1d (O, I, K) -> (O, K, I), Conv2d (O, I, H, W) -> (O, H, W, I), Conv3d (O, I, D, H, W) ->
    (O, D, H, W, I), ConvTranspose1d (I, O, K) -> (O, K, I). A weight already in the expected shape is
    kept (a layout whose transpose has the same shape, e.g. I == K, is ambiguous and never occurs in
    LTX checkpoints). Moved weights are made contiguous: MLX would re-lay a strided view out per call.
    """
    out = {}
    for k, v in weights.items():
        want = expected.get(k)
        perm = {
            3: (1, 2, 0) if is_transposed_conv(k) else (0, 2, 1),
            4: (0, 2, 3, 1),
            5: (0, 2, 3, 4, 1),
        }.get(v.ndim)
        if want is not None and perm is not None and tuple(v.shape) != tuple(want):
            if tuple(v.shape[i] for i in perm) == tuple(want):
                v = mx.contiguous(v.transpose(perm))
        out[k] = v
    return out
