"""What ltx.kernels.conv.conv3d_frames buys the latent upsampler: its 3-D convs as one MKL GEMM per
temporal tap over a spatial im2col, the taps that read zero padding frames skipped (`frames`, what
runs on the CPU with MKL), against MLX's conv3d (`mlx`, what runs without MKL), alternated in one
process so that both see the same machine. Two clips at the real width (1024): the bench's 2 latent
frames, where the skipped taps are a third of the conv work, and 8 frames, where they are 1/12.
Medians of --runs pairs after a warm-up.

`--memory` instead reports each path's peak memory over one run per clip, after a first run that
lays out the weights: MLX's peak allocation plus numpy's (the frame convs' im2col), as tracemalloc
sees it, in units of C = 1024 floats per upsampled voxel.

Needs the random real-width weights bench/vae_bench.py writes (run it once first):

    .venv/bin/python bench/frames_ab.py            # ~3 min
    .venv/bin/python bench/frames_ab.py --memory   # ~1 min
"""

from __future__ import annotations

import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402  (bench/, the script's own directory)

from ltx.kernels import conv  # noqa: E402  (loads MKL before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402


def main() -> None:
    ap = common.vae_ab_parser(__doc__)
    ap.add_argument("--memory", action="store_true", help="peak memory of each path instead of times")
    a = ap.parse_args()
    from ltx.video.upsampler import load_upsampler

    path = Path(a.cache) / "upsampler.safetensors"
    if not path.exists():
        raise SystemExit(f"no weights in {a.cache}: run `python bench/vae_bench.py` first (or pass --cache)")
    if not conv.conv3d_frames_applies(mx.float32):
        raise SystemExit("needs MLX's CPU backend with MKL (ltx.backend loads it from the mkl wheel)")
    models = {"frames": load_upsampler(path)}  # weights laid out per temporal tap
    conv.FRAMES_CONV = False
    models["mlx"] = load_upsampler(path)  # MLX's own layout, as loaded without MKL
    rng = np.random.default_rng(0)
    if a.memory:
        print("| upsampler input (F x H x W latent) | path | MLX peak MB | numpy peak MB | total per voxel |")
        print("|---|---|---:|---:|---:|")
        for frames in (2, 8):
            z = mx.array(rng.standard_normal((1, frames, 8, 12, 128)).astype(np.float32))
            for name, model in models.items():
                conv.FRAMES_CONV = name == "frames"
                mx.eval(model(z))  # the first run lays out the weights
                mx.clear_cache()
                base = mx.get_active_memory()
                mx.reset_peak_memory()
                tracemalloc.start()
                mx.eval(model(z))
                numpy_peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                peak = mx.get_peak_memory() - base
                per_voxel = (peak + numpy_peak) / (frames * 16 * 24 * 1024 * 4)
                print(
                    f"| {frames} x 8 x 12 | {name} | {peak / 1e6:.0f} | {numpy_peak / 1e6:.0f} | {per_voxel:.1f}C |"
                )
        conv.FRAMES_CONV = True
        return
    print(f"Medians of {a.runs} interleaved pairs after a warm-up, seconds.\n")
    print("| upsampler input (F x H x W latent) | frames | mlx | frames / mlx |")
    print("|---|---:|---:|---:|")
    for frames in (2, 8):
        z = mx.array(rng.standard_normal((1, frames, 8, 12, 128)).astype(np.float32))
        times: dict[str, list[float]] = {p: [] for p in models}
        outs = {}
        for i in range(a.runs + 1):
            for name, model in models.items():
                conv.FRAMES_CONV = name == "frames"
                t0 = time.perf_counter()
                outs[name] = model(z)
                mx.eval(outs[name])
                if i:  # the first pair warms up
                    times[name].append(time.perf_counter() - t0)
        err = float(mx.abs(outs["frames"] - outs["mlx"]).max() / mx.abs(outs["mlx"]).max())
        assert err < 1e-4, f"the two paths disagree: max rel err {err:.1e}"
        med = {p: statistics.median(t) for p, t in times.items()}
        print(
            f"| {frames} x 8 x 12 | {med['frames']:.3f} | {med['mlx']:.3f} | {med['frames'] / med['mlx']:.2f} |"
        )
    conv.FRAMES_CONV = True


if __name__ == "__main__":
    main()
