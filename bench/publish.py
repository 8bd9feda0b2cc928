"""Publishing 513 frames of 128x192 (36 MB of uint8) through the store's RowWriter, in the decode's
32-frame blocks, with zarr's write_empty_chunks on (the store's setting) and off (zarr's default, which
compares every chunk with the fill value before writing it). Medians of 5 interleaved runs each.

    python bench/publish.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from cache import store as store_mod
from cache.keys import make_key


def publish(root: Path, frames: np.ndarray, empty_chunks: bool, i: int) -> float:
    store = store_mod.Store(root).ensure_writable()
    store_mod.WRITE_EMPTY_CHUNKS, saved = empty_chunks, store_mod.WRITE_EMPTY_CHUNKS
    try:
        t0 = time.perf_counter()
        key = make_key("publish", 1, {"i": i, "empty": empty_chunks})
        with store.writer(key, {"stage": "publish"}) as w:
            out = w.create("frames", frames.shape, np.uint8)
            for lo in range(0, len(frames), 32):
                out.write(frames[lo : lo + 32])
            w.commit()
        return time.perf_counter() - t0
    finally:
        store_mod.WRITE_EMPTY_CHUNKS = saved


def main() -> None:
    frames = np.random.default_rng(0).integers(0, 256, (513, 128, 192, 3), dtype=np.uint8)
    times: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(6):
            for empty in (True, False):
                dt = publish(Path(tmp), frames, empty, i)
                if i:  # the first round warms up
                    times[empty].append(dt)
    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(
        f"publish 36 MB: write_empty_chunks on {on:.3f} s, off (zarr's default) {off:.3f} s, ratio {on / off:.2f}"
    )


if __name__ == "__main__":
    main()
