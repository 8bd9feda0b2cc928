"""Tiled video decoding exactly as the reference (ltx_core/model/video_vae/tiling.py and
`VideoDecoder.tiled_decode`): per-axis spatial tile lengths rescaled by aspect, symmetric overlaps,
trapezoid blend masks, the causal temporal split that re-creates the first frame, and a generator that
yields finished frame chunks in order so a long video is never held whole.

Pure Python and numpy for the plan (testable without a model); MLX only in `tiled_decode`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402


@dataclass(frozen=True)
class TilingConfig:
    """Tile and overlap sizes in pixels (spatial) and frames (temporal); None disables that axis."""

    spatial: tuple[int, int] | None = None  # (tile_px, overlap_px)
    temporal: tuple[int, int] | None = None  # (tile_frames, overlap_frames)

    def __post_init__(self) -> None:
        if self.spatial is not None:
            size, ov = self.spatial
            if size < 64 or size % 32 or ov % 32 or not 0 <= ov < size:
                raise ValueError(
                    f"spatial tiling {size} px / {ov} px overlap is invalid: the tile must be >= 64 and "
                    "a multiple of 32, the overlap a multiple of 32 and smaller than the tile"
                )
        if self.temporal is not None:
            size, ov = self.temporal
            if size < 16 or size % 8 or ov % 8 or not 0 <= ov < size:
                raise ValueError(
                    f"temporal tiling {size} frames / {ov} frames overlap is invalid: the tile must be "
                    ">= 16 and a multiple of 8, the overlap a multiple of 8 and smaller than the tile"
                )


PRESETS: dict[str, TilingConfig | None] = {
    "none": None,
    "default": TilingConfig(spatial=(512, 64), temporal=(64, 24)),  # the reference's TilingConfig.default()
    "aggressive": TilingConfig(spatial=(256, 64), temporal=(32, 16)),  # small tiles: lowest memory
    "conservative": TilingConfig(spatial=(768, 128), temporal=(96, 32)),  # larger tiles: fewer seams
}
_EXPLICIT = re.compile(r"^(?:(\d+)[/:](\d+)|none),(?:(\d+)[/:](\d+)|none)$")


def parse_tiling(tiling: str | TilingConfig | None) -> TilingConfig | None:
    """A preset name (none, default, aggressive, conservative), explicit sizes "TILE_PX:OVERLAP_PX,TILE_FRAMES:
    OVERLAP_FRAMES" (or with "/"; either part may be "none"), a TilingConfig, or None. None means untiled."""
    if tiling is None:
        return None
    if isinstance(tiling, TilingConfig):
        return None if tiling.spatial is None and tiling.temporal is None else tiling
    if tiling in PRESETS:
        return PRESETS[tiling]
    m = _EXPLICIT.match(tiling.replace(" ", ""))
    if not m:
        raise ValueError(
            f"tiling {tiling!r} is neither a preset ({', '.join(PRESETS)}) nor explicit sizes like "
            "'512:64,64:24' (pixels:overlap, frames:overlap; 'none' disables an axis)"
        )
    g = m.groups()
    if not g[0] and not g[2]:
        return None
    return TilingConfig(
        spatial=(int(g[0]), int(g[1])) if g[0] else None, temporal=(int(g[2]), int(g[3])) if g[2] else None
    )


class Intervals(NamedTuple):
    starts: list[int]
    ends: list[int]
    left_ramps: list[int]
    right_ramps: list[int]


def split_symmetric(length: int, size: int, overlap: int) -> Intervals:
    if length <= size:
        return Intervals([0], [length], [0], [0])
    n = (length + size - 2 * overlap - 1) // (size - overlap)
    starts = [i * (size - overlap) for i in range(n)]
    ends = [s + size for s in starts]
    ends[-1] = length
    return Intervals(starts, ends, [0] + [overlap] * (n - 1), [overlap] * (n - 1) + [0])


def split_temporal(length: int, size: int, overlap: int) -> Intervals:
    """Symmetric split, then every tile but the first starts one latent frame earlier (its decoded first frame
    is the causal re-creation of frame 0, blended in with weight 0)."""
    iv = split_symmetric(length, size, overlap)
    if len(iv.starts) == 1:
        return iv
    return Intervals(
        [iv.starts[0]] + [s - 1 for s in iv.starts[1:]],
        iv.ends,
        [iv.left_ramps[0]] + [r + 1 for r in iv.left_ramps[1:]],
        iv.right_ramps,
    )


def _linspace32(start: float, end: float, steps: int) -> np.ndarray:
    return np.linspace(start, end, steps, dtype=np.float64).astype(np.float32)


def trapezoid_mask(
    length: int, ramp_left: int, ramp_right: int, left_starts_from_0: bool = False
) -> np.ndarray:
    """Linear ramps that exclude 0 and 1 (or, with left_starts_from_0, a fade-in starting at exactly 0)."""
    if length <= 0:
        raise ValueError(f"mask length {length} must be positive")
    ramp_left, ramp_right = max(0, min(ramp_left, length)), max(0, min(ramp_right, length))
    mask = np.ones(length, np.float32)
    if ramp_left > 0:
        fade = (
            _linspace32(0.0, 1.0, ramp_left + 1)[:-1]
            if left_starts_from_0
            else _linspace32(0.0, 1.0, ramp_left + 2)[1:-1]
        )
        mask[:ramp_left] *= fade
    if ramp_right > 0:
        mask[-ramp_right:] *= _linspace32(1.0, 0.0, ramp_right + 2)[1:-1]
    return np.clip(mask, 0, 1)


def map_temporal(begin: int, end: int, left: int, right: int, scale: int) -> tuple[slice, np.ndarray]:
    start, stop = begin * scale, 1 + (end - 1) * scale
    left_frames = 0 if left == 0 else 1 + (left - 1) * scale
    return slice(start, stop), trapezoid_mask(stop - start, left_frames, right * scale, True)


def map_spatial(begin: int, end: int, left: int, right: int, scale: int) -> tuple[slice, np.ndarray]:
    start, stop = begin * scale, end * scale
    return slice(start, stop), trapezoid_mask(stop - start, left * scale, right * scale, False)


class Tile(NamedTuple):
    latent: tuple[slice, slice, slice]  # (t, h, w) in latent units
    out: tuple[slice, slice, slice]  # (t, h, w) in frames / pixels
    masks: tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]

    def blend_mask(self) -> np.ndarray:
        """(T, H, W) separable product of the 1-D masks (a missing one broadcasts as 1)."""
        m = [np.ones(1, np.float32) if x is None else x for x in self.masks]
        return m[0][:, None, None] * m[1][None, :, None] * m[2][None, None, :]


def plan_tiles(
    latent_shape: tuple[int, int, int], cfg: TilingConfig | None, scale: tuple[int, int, int] = (8, 32, 32)
) -> list[Tile]:
    """Tiles of a latent of (F', H', W') in the reference's order: time outermost, then height, then width."""
    f, h, w = latent_shape
    axes: list[tuple[list[slice], list[slice], list]] = []

    def whole(n: int, out: int) -> tuple[list[slice], list[slice], list]:
        return [slice(0, n)], [slice(0, out)], [None]

    def mapped(iv: Intervals, fn, s: int) -> tuple[list[slice], list[slice], list]:
        outs = [fn(*args, s) for args in zip(iv.starts, iv.ends, iv.left_ramps, iv.right_ramps, strict=True)]
        return (
            [slice(a, b) for a, b in zip(iv.starts, iv.ends, strict=True)],
            [o[0] for o in outs],
            [o[1] for o in outs],
        )

    if cfg is not None and cfg.temporal is not None:
        size, ov = cfg.temporal[0] // scale[0], cfg.temporal[1] // scale[0]
        axes.append(mapped(split_temporal(f, size, ov), map_temporal, scale[0]))
    else:
        axes.append(whole(f, 1 + (f - 1) * scale[0]))
    long_side = max(h, w)
    for n, s in ((h, scale[1]), (w, scale[2])):
        if cfg is not None and cfg.spatial is not None:
            size, ov = cfg.spatial[0] // s, cfg.spatial[1] // s
            tile = max(max(2, ov + 1), round(size * n / long_side))  # Python round, as the reference
            axes.append(mapped(split_symmetric(n, tile, ov), map_spatial, s))
        else:
            axes.append(whole(n, n * s))
    return [
        Tile(tuple(ins), tuple(outs), tuple(ms))
        for ins, outs, ms in zip(
            itertools.product(*(a[0] for a in axes)),
            itertools.product(*(a[1] for a in axes)),
            itertools.product(*(a[2] for a in axes)),
            strict=True,
        )
    ]


def groups_by_time(tiles: list) -> list[list]:
    """Consecutive tiles sharing one output time range (`tile.out[0]`), each group blended before the next."""
    groups: list[list] = []
    for tile in tiles:
        if groups and groups[-1][0].out[0] == tile.out[0]:
            groups[-1].append(tile)
        else:
            groups.append([tile])
    return groups


def tiled_decode(
    decode: Callable[[mx.array], mx.array],
    latent: mx.array,
    cfg: TilingConfig,
    scale: tuple[int, int, int] = (8, 32, 32),
    on_tile: Callable[[], None] | None = None,
) -> Iterator[mx.array]:
    """Decode (B, F', H', W', C) tile by tile with `decode` (latent tile -> (B, T, H, W, 3) video tile) and
    yield finished (B, T_i, H, W, 3) chunks in order. Accumulates in the latent's dtype, as the reference.
    `on_tile()` is called after each tile is decoded (progress; `plan_tiles` gives their number)."""
    b, f, h, w, _ = latent.shape
    height, width = h * scale[1], w * scale[2]
    dtype = latent.dtype
    prev = prev_w = prev_t = None
    for group in groups_by_time(plan_tiles((f, h, w), cfg, scale)):
        t_slice = group[0].out[0]
        t_len = t_slice.stop - t_slice.start
        buf = mx.zeros((b, t_len, height, width, 3), dtype)
        wts = mx.zeros((1, t_len, height, width, 1), dtype)
        for tile in group:
            video = decode(latent[:, tile.latent[0], tile.latent[1], tile.latent[2]])  # (B, T, h, w, 3)
            n = min(t_len, video.shape[1])
            mask = mx.array(tile.blend_mask()[:n] if tile.masks[0] is not None else tile.blend_mask(), dtype)
            mask = mask[None, :, :, :, None]  # (1, T, h, w, 1)
            hs, ws = tile.out[1], tile.out[2]
            buf[:, :n, hs, ws] = buf[:, :n, hs, ws] + video[:, :n] * mask
            wts[:, :n, hs, ws] = wts[:, :n, hs, ws] + mx.broadcast_to(mask, (1, n) + mask.shape[2:])
            mx.eval(buf, wts)
            if on_tile is not None:
                on_tile()
        if prev is not None:
            if prev_t.stop > t_slice.start:
                k = prev_t.stop - t_slice.start
                off = t_slice.start - prev_t.start
                prev[:, off:] = prev[:, off:] + buf[:, :k]
                prev_w[:, off:] = prev_w[:, off:] + wts[:, :k]
                buf[:, :k] = prev[:, off:]
                wts[:, :k] = prev_w[:, off:]
            done = t_slice.start - prev_t.start
            chunk = prev[:, :done] / mx.maximum(prev_w[:, :done], 1e-8)
            mx.eval(chunk, buf, wts)
            yield chunk
        prev, prev_w, prev_t = buf, wts, t_slice
    if prev is not None:
        chunk = prev / mx.maximum(prev_w, 1e-8)
        mx.eval(chunk)
        yield chunk
