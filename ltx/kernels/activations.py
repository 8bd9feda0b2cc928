"""GELU (tanh approximation) and BigVGAN's anti-aliased SnakeBeta activation (the LTX-2.3 vocoder's)
as numpy passes over cache-sized blocks on both cores.
"""

from __future__ import annotations

from typing import NamedTuple

from ltx.kernels import threads  # noqa: F401  (ltx.backend: the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

_GELU_C = float(np.sqrt(2.0 / np.pi))


def _gelu_blocks(spans: list, x: np.ndarray) -> None:
    # x flat, in place: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), one cached block at a time
    for lo, hi in spans:
        blk = x[lo:hi]
        t = blk * blk
        t *= 0.044715 * _GELU_C
        t += _GELU_C
        t *= blk
        np.tanh(t, out=t)
        t += 1.0
        t *= 0.5
        blk *= t


def gelu_tanh(x: mx.array) -> mx.array:
    """GELU (tanh approximation) of a float32 array, computed in place in x's buffer; x must be a
    fresh result nothing else reads (here: the feed-forward's hidden projection)."""
    mx.eval(x)
    flat = np.array(x, copy=False).reshape(-1)  # a view (numpy 2: copy=False never copies)
    step = threads.BLOCK_ELEMENTS
    threads.run(
        lambda part: _gelu_blocks(part, flat),
        [(i, min(flat.size, i + step)) for i in range(0, flat.size, step)],
    )
    return x


# Off: BigVGAN's anti-aliased activations run as MLX's grouped convs (the tests' "mlx" kernels)
RESAMPLING = True


# snake_resampled computes about this many output values (rows x channels) per task, every pass of
# a task over arrays that stay in the core's cache (bench/ab_results.md, `--what activation`)
RESAMPLE_CHUNK_VALUES = 1 << 16


def resampling_applies(dtype: mx.Dtype) -> bool:
    """Whether BigVGAN's anti-aliased activations computing in dtype run as snake_resampled here:
    float32 on the CPU backend."""
    return RESAMPLING and dtype == mx.float32 and threads.cpu_backend()


class Resampling(NamedTuple):
    """An anti-aliased activation's two filters as taps over rows, for snake_resampled. The signal
    upsampled `ratio` times is kept as its ratio phases: phase p row q is upsampled row ratio q + p,
    sum(coefficient * x[q + offset]) over up[p]'s (offset, coefficient), rows outside x reading its
    nearest edge row. Output row r is sum(coefficient * phase[r + offset]) over down's (phase, offset,
    coefficient): the downsampling filter's stride equals the ratio."""

    ratio: int
    up: tuple[tuple[tuple[int, float], ...], ...]
    down: tuple[tuple[int, int, float], ...]


def snake_resampled(
    x: np.ndarray, taps: Resampling, scale: np.ndarray, gain: np.ndarray, out: np.ndarray
) -> None:
    """out = downsample(SnakeBeta(upsample(x))) for x and out (L, C) float32, SnakeBeta being
    y + gain sin^2(y scale) per channel: BigVGAN's anti-aliased activation (ltx.audio.vocoder.Activation1d).
    The upsampled signal, where the activation runs, is clamped to its own edges, as the downsampling
    filter's replicate padding reads it.

    Both filters are the same for every channel, so each tap is one multiply-add over contiguous
    rows x channels; the rows are split into tasks of RESAMPLE_CHUNK_VALUES that run on both cores,
    each through every pass while its few arrays sit in the core's cache. No pass over the whole
    upsampled signal: it exists one task's rows at a time."""
    if not all(a.dtype == np.float32 and a.flags.c_contiguous for a in (x, out)) or out.shape != x.shape:
        raise ValueError("snake_resampled: x and out must be C-contiguous float32 arrays of one (L, C) shape")
    length, c = x.shape
    rows = min(length, max(1, RESAMPLE_CHUNK_VALUES // c))
    lo = min(offset for _, offset, _ in taps.down)
    hi = max(offset for _, offset, _ in taps.down)
    n = rows + hi - lo  # phase rows a task computes, at most
    scale_rows = np.tile(scale.astype(np.float32, copy=False), n)  # per-channel factors of n rows:
    gain_rows = np.tile(gain.astype(np.float32, copy=False), n)  # flat passes, not broadcasts
    tasks = [(r, min(length, r + rows)) for r in range(0, length, rows)]
    threads.run(lambda part: _snake_resampled_rows(part, x, taps, scale_rows, gain_rows, out, lo, hi), tasks)


def _snake_resampled_rows(
    tasks: list, x, taps: Resampling, scale_rows, gain_rows, out, lo: int, hi: int
) -> None:
    length, c = x.shape
    u = taps.ratio
    x_lo = min(offset for phase in taps.up for offset, _ in phase)
    x_hi = max(offset for phase in taps.up for offset, _ in phase)
    for r0, r1 in tasks:
        q0, q1 = r0 + lo, r1 + hi  # the phase rows this task's output rows read
        n = (q1 - q0) * c
        a0, a1 = q0 + x_lo, q1 + x_hi  # the input rows those read
        if 0 <= a0 and a1 <= length:
            window = x[a0:a1].reshape(-1)
        else:  # replicate padding: each row index clamped into [0, L)
            window = threads.scratch_rows("snake_x", a1 - a0, c)
            np.take(x, np.clip(np.arange(a0, a1), 0, length - 1), axis=0, out=window)
            window = window.reshape(-1)
        phases = threads.scratch_floats("snake_phases", u * n)[: u * n].reshape(u, n)
        tmp = threads.scratch_floats("snake_tmp", n)[:n]
        for acc, phase_taps in zip(phases, taps.up, strict=True):
            for i, (offset, coefficient) in enumerate(phase_taps):
                src = window[(offset - x_lo) * c :][:n]
                if i == 0:
                    np.multiply(src, coefficient, out=acc)
                else:
                    np.multiply(src, coefficient, out=tmp)
                    acc += tmp
            np.multiply(acc, scale_rows[:n], out=tmp)  # SnakeBeta in place
            np.sin(tmp, out=tmp)
            np.multiply(tmp, tmp, out=tmp)
            np.multiply(tmp, gain_rows[:n], out=tmp)
            acc += tmp
        if q0 < 0 or q1 > length:  # upsampled rows outside [0, u L) read its nearest edge row
            grid = phases.reshape(u, q1 - q0, c)
            for q in [*range(q0, min(0, q1)), *range(max(length, q0), q1)]:
                for p in range(u):
                    m = min(max(q * u + p, 0), u * length - 1)
                    grid[p, q - q0] = grid[m % u, m // u - q0]
        m = (r1 - r0) * c
        dst, tmp = out[r0:r1].reshape(-1), tmp[:m]
        for i, (p, offset, coefficient) in enumerate(taps.down):
            src = phases[p, (offset - lo) * c :][:m]
            if i == 0:
                np.multiply(src, coefficient, out=dst)
            else:
                np.multiply(src, coefficient, out=tmp)
                dst += tmp
