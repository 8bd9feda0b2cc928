"""Fractional-position rotary embeddings of LTX-2 (ltx_core/model/transformer/rope.py).

Angles: omega_k * (2 * midpoint_a / max_pos_a - 1), frequency-major and axis-minor, with the
frequency ladder omega_k = theta ** linspace(0, 1, n) * pi / 2 (numpy float64 when the checkpoint
says `frequencies_precision: float64`). Tables are computed in float32 and cast to the compute dtype.

Table layouts (ltx.ops.apply_rope rotates with them; unlike the reference, heads stay after tokens so q/k need no transpose):
    split:       (cos, sin) each (B, T, H, Dh/2); rotates the two halves of every head.
    interleaved: (cos, sin) each (B, T, dim); rotates adjacent pairs.
"""

from __future__ import annotations

import math
from functools import lru_cache

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

ROPE_TYPES = ("split", "interleaved")


@lru_cache(maxsize=16)
def _ladder(theta: float, n_axes: int, dim: int, double_precision: bool) -> np.ndarray:
    n = dim // (2 * n_axes)
    if double_precision:
        exps = np.linspace(np.log(1.0) / np.log(theta), np.log(theta) / np.log(theta), n, dtype=np.float64)
        return (np.power(theta, exps) * math.pi / 2).astype(np.float32)
    # float32 path, torch.linspace's two-sided evaluation then theta ** x * pi / 2 in float32
    i = np.arange(n, dtype=np.float32)
    step = np.float32(1.0 / (n - 1)) if n > 1 else np.float32(0.0)
    half = n // 2
    lin = np.where(i < half, i * step, np.float32(1.0) - (np.float32(n - 1) - i) * step).astype(np.float32)
    return (np.power(np.float32(theta), lin) * np.float32(math.pi) / np.float32(2)).astype(np.float32)


def frequency_ladder(theta: float, n_axes: int, dim: int, double_precision: bool = True) -> mx.array:
    """(dim // (2 * n_axes),) float32 angular frequencies."""
    return mx.array(_ladder(float(theta), int(n_axes), int(dim), bool(double_precision)))


def rope_angles(
    positions: mx.array,
    dim: int,
    max_pos: list[int] | tuple[int, ...],
    theta: float = 10000.0,
    double_precision: bool = True,
    use_middle: bool = True,
) -> mx.array:
    """(B, n_axes, T, 2) bounds -> (B, T, n * n_axes) float32 angles."""
    n_axes = positions.shape[1]
    if n_axes != len(max_pos):
        raise ValueError(f"positions have {n_axes} axes but max_pos {list(max_pos)} has {len(max_pos)}")
    pos = positions.astype(mx.float32) if positions.dtype != mx.bfloat16 else positions
    grid = (pos[..., 0] + pos[..., 1]) / 2.0 if use_middle else pos[..., 0]  # (B, A, T), reference dtype
    frac = mx.stack([grid[:, a] / max_pos[a] for a in range(n_axes)], axis=-1)  # (B, T, A)
    frac = (frac * 2 - 1).astype(mx.float32)
    omega = frequency_ladder(theta, n_axes, dim, double_precision)  # (n,)
    angles = omega[:, None] * frac[:, :, None, :]  # (B, T, n, A): frequency-major, axis-minor
    return angles.reshape(*angles.shape[:2], -1)


def precompute_rope(
    positions: mx.array,
    dim: int,
    heads: int,
    max_pos: list[int] | tuple[int, ...],
    rope_type: str = "split",
    theta: float = 10000.0,
    double_precision: bool = True,
    dtype: mx.Dtype = mx.float32,
    use_middle: bool = True,
) -> tuple[mx.array, mx.array]:
    """cos/sin tables for `dim` channels split over `heads` (layouts in the module docstring)."""
    angles = rope_angles(positions, dim, max_pos, theta, double_precision, use_middle)  # (B, T, N)
    cos, sin = mx.cos(angles), mx.sin(angles)
    b, t, n = angles.shape
    if rope_type == "split":
        pad = dim // 2 - n
        if pad:
            cos = mx.concatenate([mx.ones((b, t, pad), cos.dtype), cos], axis=-1)
            sin = mx.concatenate([mx.zeros((b, t, pad), sin.dtype), sin], axis=-1)
        cos, sin = cos.reshape(b, t, heads, -1), sin.reshape(b, t, heads, -1)
    elif rope_type == "interleaved":
        cos, sin = mx.repeat(cos, 2, axis=-1), mx.repeat(sin, 2, axis=-1)
        pad = dim % (2 * positions.shape[1])
        if pad:
            cos = mx.concatenate([mx.ones((b, t, pad), cos.dtype), cos], axis=-1)
            sin = mx.concatenate([mx.zeros((b, t, pad), sin.dtype), sin], axis=-1)
    else:
        raise ValueError(f"rope_type {rope_type!r} is not one of {ROPE_TYPES}")
    return cos.astype(dtype), sin.astype(dtype)
