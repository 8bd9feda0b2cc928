"""A contact sheet: N evenly spaced frames of a decode artifact in a grid, as a PNG."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from stages.mux import AUDIO_CONTAINERS


def pick(n_frames: int, n: int) -> list[int]:
    """`n` evenly spaced frame indices from the first to the last (all of them if there are fewer)."""
    if n_frames <= n:
        return list(range(n_frames))
    return [int(i) for i in np.linspace(0, n_frames - 1, n).round()]


def read_frames(art: Any, indices: list[int]) -> list[np.ndarray]:
    """The frames at `indices` of the artifact's "frames" array, streamed (one block in memory at a
    time) and checked against the checksum when the last block is read."""
    wanted, got, start = set(indices), {}, 0
    for block in art.iter_rows("frames", rows=8):
        for i in range(block.shape[0]):
            if start + i in wanted:
                got[start + i] = block[i].copy()
        start += block.shape[0]
    return [got[i] for i in indices]


def shrink(frame: np.ndarray, factor: int) -> np.ndarray:
    """Downscale by an integer factor (area average); factor 1 returns the frame as it is."""
    if factor <= 1:
        return frame
    h, w = frame.shape[0] // factor, frame.shape[1] // factor
    blocks = frame[: h * factor, : w * factor].reshape(h, factor, w, factor, -1).astype(np.float32)
    return blocks.mean(axis=(1, 3)).round().astype(np.uint8)


def sheet(frames: list[np.ndarray], columns: int = 4, cell_width: int = 512) -> np.ndarray:
    """Frames in a grid of `columns` (fewer if there are fewer frames), row by row, no gaps; cells wider
    than `cell_width` are shrunk by the smallest integer factor that fits. Empty cells are black."""
    factor = max(1, math.ceil(frames[0].shape[1] / cell_width))
    cells = [shrink(f, factor) for f in frames]
    h, w, c = cells[0].shape
    cols = max(1, min(columns, len(cells)))
    rows = math.ceil(len(cells) / cols)
    out = np.zeros((rows * h, cols * w, c), np.uint8)
    for i, cell in enumerate(cells):
        r, q = divmod(i, cols)
        out[r * h : (r + 1) * h, q * w : (q + 1) * w] = cell
    return out


def write_png(path: Path, image: np.ndarray) -> Path:
    """Atomically (a temp file beside it, then os.replace), with a plain file's mode."""
    import imageio.v3 as iio

    from stages import mux

    mux.write_output(iio.imwrite("<bytes>", image, extension=".png"), Path(path))
    return Path(path)


def contact_sheet(store: Any, key: str, path: Path, frames: int = 8, columns: int = 4) -> Path:
    """Write the contact sheet of decode artifact `key` to `path`."""
    art = store.open(key, verify=False)  # the frames read are checked by read_frames
    n_frames = int(art.manifest["arrays"]["frames"]["shape"][0])
    return write_png(path, sheet(read_frames(art, pick(n_frames, frames)), columns))


def beside(store: Any, nodes: dict[str, Any], output_path: Path) -> Path | None:
    """`ltx generate`'s preview: out/x.mp4 -> out/x.png from the run's decoded frames; None for an
    audio-only output or when the decoded frames are not in the cache."""
    node = nodes.get("decode")
    if node is None or Path(output_path).suffix.lower() in AUDIO_CONTAINERS or not store.exists(node.key):
        return None
    return contact_sheet(store, node.key, Path(output_path).with_suffix(".png"))
