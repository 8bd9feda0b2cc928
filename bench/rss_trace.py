"""Where a streaming decode's process RSS goes: `ltx decode` (default tiling, tiny model, 128x192) on a
video of 129 and of 513 frames, each in a fresh process that samples, every 2 ms, its RSS, MLX's active
+ cached memory, and the Python / numpy allocations tracemalloc sees. Prints one line per length and
the growth from the shorter to the longer (the README's streaming-decode note quotes it).

`--chunks` instead measures what one streamed write costs the process at two zarr chunk sizes
(cache.store.CHUNK_BYTES): 8 MB of 128x192 frames written through the store's own RowWriter, the
anonymous-memory peak above the level before the write, and its time (medians of 5 writes).

    .venv/bin/python bench/rss_trace.py            # ~1 min
    .venv/bin/python bench/rss_trace.py --chunks   # ~5 s
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SAMPLER = r"""
import resource, sys, threading, time, tracemalloc
sys.argv = ["ltx"] + sys.argv[1:]
import ltx.backend
import mlx.core as mx
from stages import cli
peak = {"rss": 0.0, "mlx": 0.0}
done = threading.Event()
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
def sample():
    while not done.is_set():
        peak["rss"] = max(peak["rss"], rss_mb())
        peak["mlx"] = max(peak["mlx"], (mx.get_active_memory() + mx.get_cache_memory()) / 2**20)
        time.sleep(0.002)
tracemalloc.start()
thread = threading.Thread(target=sample, daemon=True)
thread.start()
try:
    cli.main()
except SystemExit as e:
    if e.code:
        raise
done.set()
thread.join()
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RSS_TRACE", maxrss, peak["mlx"], tracemalloc.get_traced_memory()[1] / 2**20, file=sys.stderr)
"""


def ltx(cache: Path, *args: str, sampler: bool = False) -> subprocess.CompletedProcess:
    code = (
        SAMPLER
        if sampler
        else "import sys; sys.argv = ['ltx'] + sys.argv[1:]; from stages import cli; cli.main()"
    )
    cmd = [sys.executable, "-c", code, "--cache-dir", str(cache), *args]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"ltx {' '.join(args)} failed:\n{p.stderr[-2000:]}")
    return p


CHUNKS = r"""
import statistics, sys, tempfile, threading, time
import numpy as np
import cache.store as cs
from cache.keys import make_key
cs.CHUNK_BYTES = int(sys.argv[1])
def anon_mb():
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("RssAnon")) / 1024
peak, stop = [0.0], threading.Event()
def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], anon_mb())
        time.sleep(0.0005)
threading.Thread(target=sample, daemon=True).start()
frames = np.random.default_rng(0).integers(0, 255, (113, 128, 192, 3), np.uint8)  # 8 MB
spikes, times = [], []
with tempfile.TemporaryDirectory() as tmp:
    store = cs.Store(tmp)
    with store.writer(make_key("t", 1, {}), {"stage": "t", "inputs": {}}) as w:
        out = w.create("frames", (7 * len(frames),) + frames.shape[1:], np.uint8)
        for i in range(7):
            time.sleep(0.02)
            base = peak[0] = anon_mb()
            t0 = time.perf_counter()
            out.write(frames)
            times.append(time.perf_counter() - t0)
            time.sleep(0.01)
            spikes.append(peak[0] - base)
        w.commit()
stop.set()
print("CHUNKS", statistics.median(spikes[2:]), statistics.median(times[2:]))
"""


def chunk_spikes() -> None:
    for size in (8 << 20, 2 << 20):
        p = subprocess.run(
            [sys.executable, "-c", CHUNKS, str(size)], cwd=ROOT, capture_output=True, text=True
        )
        if p.returncode:
            raise SystemExit(f"chunk measurement failed:\n{p.stderr[-2000:]}")
        spike, dt = map(float, p.stdout.split()[1:])
        print(
            f"CHUNK_BYTES {size >> 20} MB: writing 8 MB of frames peaks {spike:.0f} MB above the "
            f"level before it, {dt * 1e3:.0f} ms"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", default="129,513")
    ap.add_argument("--chunks", action="store_true", help="the chunk-size measurement instead")
    a = ap.parse_args()
    if a.chunks:
        chunk_spikes()
        return
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for frames in map(int, a.frames.split(",")):
            run = f"rss{frames}"
            opts = ["--prompt", "a fox", "--num-frames", str(frames), "--height", "128", "--width", "192"]
            ltx(cache, "refine", run, *opts)  # everything upstream of decode
            p = ltx(cache, "decode", run, "--tiling", "default", sampler=True)
            line = next(x for x in p.stderr.splitlines() if x.startswith("RSS_TRACE"))
            rows[frames] = [float(v) for v in line.split()[1:]]
            rss, mlx, py = rows[frames]
            print(
                f"{frames} frames: peak RSS {rss:.0f} MB, MLX active+cache {mlx:.0f} MB, tracemalloc {py:.0f} MB"
            )
    (f0, r0), (f1, r1) = list(rows.items())[0], list(rows.items())[-1]
    names = ("peak RSS", "MLX active+cache", "tracemalloc")
    print(
        f"{f1} vs {f0} frames: "
        + ", ".join(f"{n} {b - a:+.0f} MB" for n, a, b in zip(names, r0, r1, strict=True))
    )


if __name__ == "__main__":
    main()
