"""Sigma schedules: pure functions returning lists of floats (float32 values), terminal 0 included.

`ltx2_sigmas` reproduces ltx-core's `LTX2Scheduler.execute` bit for bit in float32, including
torch's `linspace` rounding and its `scalar / tensor` = `reciprocal(tensor) * scalar` order.
"""

from __future__ import annotations

import math

import numpy as np

from ltx.constants import DISTILLED_SIGMAS, STAGE_2_DISTILLED_SIGMAS, validate_steps

BASE_SHIFT_ANCHOR = 1024
MAX_SHIFT_ANCHOR = 4096
_f32 = np.float32


def _linspace_f32(start: float, end: float, n: int) -> np.ndarray:
    # torch's CPU linspace: float32 step, start + step * i for the first half, end - step * (n - 1 - i)
    # after, each a fused multiply-add (one rounding; emulated exactly in float64 for these sizes).
    if n == 1:
        return np.array([start], np.float32)
    step = np.float64((_f32(end) - _f32(start)) / _f32(n - 1))
    idx = np.arange(n)
    fwd = np.float64(_f32(start)) + step * idx
    bwd = np.float64(_f32(end)) - step * (n - idx - 1)
    return np.where(idx < n // 2, fwd, bwd).astype(np.float32)


def sigma_shift(tokens: int, max_shift: float = 2.05, base_shift: float = 0.95) -> float:
    """The log-SNR shift for a token count: linear through (1024, base_shift) and (4096, max_shift)."""
    mm = (max_shift - base_shift) / (MAX_SHIFT_ANCHOR - BASE_SHIFT_ANCHOR)
    b = base_shift - mm * BASE_SHIFT_ANCHOR
    return tokens * mm + b


def ltx2_sigmas(
    steps: int,
    tokens: int | None = None,
    max_shift: float = 2.05,
    base_shift: float = 0.95,
    stretch: bool = True,
    terminal: float = 0.1,
) -> list[float]:
    """LTX2Scheduler: `steps + 1` sigmas from 1.0 to 0.0.

    tokens: latent token count F'*H'*W' of the stage; None gives the reference's default of 4096
    (what the TI2Vid, keyframe, a2vid and retake pipelines use, whatever the resolution).
    """
    validate_steps(steps)
    if tokens is not None and tokens < 1:
        raise ValueError(f"token count {tokens} must be a positive integer")
    n_tokens = MAX_SHIFT_ANCHOR if tokens is None else tokens
    sig = _linspace_f32(1.0, 0.0, steps + 1)
    e = _f32(math.exp(sigma_shift(n_tokens, max_shift, base_shift)))
    nz = sig != 0
    with np.errstate(divide="ignore"):
        inv = (_f32(1.0) / sig).astype(np.float32)
    den = (e + (inv - _f32(1.0))).astype(np.float32)
    shifted = ((_f32(1.0) / den).astype(np.float32) * e).astype(np.float32)
    sig = np.where(nz, shifted, _f32(0.0)).astype(np.float32)
    if stretch:
        one_minus_z = (_f32(1.0) - sig[nz]).astype(np.float32)
        scale = (one_minus_z[-1] / _f32(1.0 - terminal)).astype(np.float32)
        sig[nz] = (_f32(1.0) - (one_minus_z / scale).astype(np.float32)).astype(np.float32)
    return [float(s) for s in sig]


def distilled_sigmas(stage: int = 1) -> list[float]:
    """The fixed distilled schedules (8 steps for stage 1, 3 for stage 2), rounded to float32 as the
    reference's sigma tensors are."""
    if stage not in (1, 2):
        raise ValueError(f"distilled stage {stage} must be 1 or 2")
    return [float(_f32(s)) for s in (DISTILLED_SIGMAS if stage == 1 else STAGE_2_DISTILLED_SIGMAS)]


def res2s_sigmas(sigmas: list[float]) -> list[float]:
    """The res_2s loop replaces a terminal 0 by [0.0011, 0.0]; all values rounded to float32."""
    sig = [float(_f32(s)) for s in sigmas]
    return [*sig[:-1], float(_f32(0.0011)), 0.0] if sig and sig[-1] == 0 else sig
