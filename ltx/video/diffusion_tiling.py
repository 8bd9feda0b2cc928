"""The diffusion video decoder's geometry and tile plan (ltx_core/model/video_vae/diffusion_tiling.py):
stage size floors, halos, the overlaps its stages need, and tiles cut on the stage-4 input grid.

Stages 1-3 run once on the whole (padded) latent; stages 4-5 run per tile. A tile is an interval of the
stage-4 grid on each axis, mapped to pixels through the last upsample (temporal: x2 less the duplicate
leading frame) and the patch, with symmetric trapezoid ramps, so the masks sum to one. Pure Python and
numpy: the plan is testable without a model.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

from ltx.video.tiling import trapezoid_mask


class Interval(NamedTuple):
    start: int
    end: int
    left: int  # ramp lengths
    right: int


class DiffTile(NamedTuple):
    s4: tuple[slice, slice, slice]  # (t, h, w) on the stage-4 input grid
    out: tuple[slice, slice, slice]  # (t, h, w) in frames / pixels of the padded video
    masks: tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def stage_min_latent(stage_kernels, upsamples, stage5_kernel) -> tuple[int, int, int]:
    """The latent floor (T, H, W) below which some stage's attention would be narrower than its kernel."""
    mins, cum = [1, 1, 1], (1, 1, 1)
    for kernel, (stride, _) in zip(stage_kernels, upsamples, strict=False):
        mins = [max(m, ceil_div(k, s)) for m, k, s in zip(mins, kernel, cum, strict=True)]
        cum = tuple(c * s for c, s in zip(cum, stride, strict=True))
    return tuple(max(m, ceil_div(k, s)) for m, k, s in zip(mins, stage5_kernel, cum, strict=True))


def tile_min_sizes(k4, k5, up3) -> tuple[int, int, int]:
    """The smallest stage-4 tile (T, H, W) for which stages 4 and 5 each see their kernel."""
    return tuple(max(k4[a], ceil_div(k5[a], up3[a])) for a in range(3))


def tile_halos(k4, depth4: int, k5, depth5: int, up3) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """How far (stage-4 cells) information travels through stage 4's and stage 5's attention stacks."""
    halo4 = tuple(depth4 * (k4[a] // 2) for a in range(3))
    halo5 = tuple(ceil_div(depth5 * (k5[a] // 2), up3[a]) for a in range(3))
    return halo4, halo5


def pixel_scale(up3, patch: int) -> tuple[int, int, int]:
    """Frames / pixels per stage-4 cell."""
    return up3[0], up3[1] * patch, up3[2] * patch


def required_overlaps(halos, scale) -> tuple[int, int]:
    """The smallest (temporal frames, spatial pixels) overlap the tiles need (multiples of 8 and 32)."""
    dom = [max(h[a] for h in halos) for a in range(3)]
    return ceil_div(dom[0] * scale[0], 8) * 8, ceil_div(max(dom[1], dom[2]) * scale[1], 32) * 32


def stage4_shape(strides, t: int, h: int, w: int) -> tuple[int, int, int]:
    """Stage-4 input (T, H, W) of a latent after the first three upsample hops (leading frame dropped)."""
    for st, sh, sw in strides[:3]:
        t, h, w = t * st - (1 if st == 2 else 0), h * sh, w * sw
    return t, h, w


def split_by_size(length: int, size: int, overlap: int, min_size: int) -> list[Interval]:
    """The reference's split_by_size with min_tile_size: a short last tile grows leftwards to min_size."""
    if length < min_size or length <= size:
        return [Interval(0, length, 0, 0)]
    n = (length + size - 2 * overlap - 1) // (size - overlap)
    ivs = [Interval(0, size, 0, overlap)]
    ivs += [
        Interval(i * (size - overlap), i * (size - overlap) + size, overlap, overlap) for i in range(1, n - 1)
    ]
    ivs.append(Interval((n - 1) * (size - overlap), length, overlap, 0))
    last = ivs[-1]
    if len(ivs) > 1 and last.end - last.start < min_size:
        start = last.end - min_size
        ov = ivs[-2].end - start
        ivs[-2:] = [ivs[-2]._replace(right=ov), last._replace(start=start, left=ov)]
    for i, iv in enumerate(ivs):
        if iv.end - iv.start < min_size or (i and ivs[i - 1].end - iv.start != iv.left):
            raise ValueError(
                f"cannot tile {length} cells by {size} with overlap {overlap} (min tile {min_size})"
            )
    return ivs


def _to_pixels(iv: Interval, stride: int, scale: int, temporal: bool) -> Interval:
    s, e, left, right = iv.start * stride, iv.end * stride, iv.left * stride, iv.right * stride
    if temporal and stride == 2:  # the pixel shuffle's duplicate leading frame, dropped on the origin tile
        e -= 1
        if iv.start != 0:
            s -= 1
    k = scale // stride
    return Interval(s * k, e * k, left * k, right * k)


def plan_tiles(
    s4: tuple[int, int, int],
    tiling: tuple | None,
    up3: tuple[int, int, int],
    patch: int,
    min_sizes: tuple[int, int, int],
    overlaps: tuple[int, int],
) -> list[DiffTile]:
    """Tiles over the stage-4 grid `s4`, time outermost. `tiling`: per axis (frames, height, width) a
    (tile, overlap) in frames / pixels, or None for an untiled axis."""
    scale = pixel_scale(up3, patch)
    if tiling is None:
        return [DiffTile((slice(None),) * 3, (slice(None),) * 3, (None, None, None))]
    axes = []
    for a, (n, cfg) in enumerate(zip(s4, tiling, strict=True)):
        if cfg is None:
            axes.append([(slice(None), slice(None), None)])
            continue
        size, ov = cfg
        need = overlaps[0] if a == 0 else overlaps[1]
        if size % scale[a] or ov % scale[a] or size < 2 * scale[a] or ov < need:
            raise ValueError(
                f"{('frames', 'height', 'width')[a]} tiling {size}/{ov} is invalid for the diffusion decoder: tile "
                f">= {2 * scale[a]} and both multiples of {scale[a]}, overlap >= {need}"
            )
        cells, ov_cells = max(max(2, ov // scale[a] + 1), size // scale[a]), ov // scale[a]
        spec = []
        for iv in split_by_size(n, cells, ov_cells, min_sizes[a]):
            px = _to_pixels(iv, up3[a], scale[a] if a else up3[0], a == 0)
            spec.append(
                (
                    slice(iv.start, iv.end),
                    slice(px.start, px.end),
                    trapezoid_mask(px.end - px.start, px.left, px.right),
                )
            )
        axes.append(spec)
    return [
        DiffTile(tuple(s[0] for s in combo), tuple(s[1] for s in combo), tuple(s[2] for s in combo))
        for combo in itertools.product(*axes)
    ]


def resize_axis(x, axis: int, size: int, mode: str):
    """The reference's resize_axis on an MLX or numpy array: pad by repeating the edge ("repeat_last": the
    end only; "symmetric": need // 2 before, the rest after) or crop the same way."""
    import mlx.core as mx

    n = x.shape[axis]
    if n == size:
        return x
    take = lambda a, b: x[(slice(None),) * axis + (slice(a, b),)]  # noqa: E731
    if n > size:
        before = 0 if mode == "repeat_last" else (n - size) // 2
        return take(before, before + size)
    need = size - n
    before = 0 if mode == "repeat_last" else need // 2
    parts = []
    if before:
        parts.append(mx.repeat(take(0, 1), before, axis=axis))
    parts.append(x)
    if need - before:
        parts.append(mx.repeat(take(n - 1, n), need - before, axis=axis))
    return mx.concatenate(parts, axis=axis)
