"""What MKL's in-place accumulation buys ltx.cpu_kernels.conv_taps: the video decoder (untiled), the
upsampler, the audio decoder and the vocoder at their real widths, each run with every tap's GEMM
added into the output in place by cblas_sgemm (`in place`, what runs with MKL) and with MLX's addmm
chain (`addmm`, what runs without MKL), alternated in one process so that both see the same machine
(this shared machine's speed drifts by more than the difference within minutes). Medians of
--runs pairs after a warm-up.

Needs the random real-width weights and inputs bench/vae_bench.py writes (run it once first):

    .venv/bin/python bench/taps_ab.py              # ~4 min; --no-decode skips the video decoder
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402  (bench/, the script's own directory)

from ltx import cpu_kernels  # noqa: E402  (loads MKL before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=str(common.VAE_BENCH_CACHE))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-decode", action="store_true", help="skip the video decoder (~8 s a call)")
    a = ap.parse_args()
    from ltx.audio_vae import load_audio_decoder
    from ltx.upsampler import load_upsampler
    from ltx.video_vae import load_video_decoder
    from ltx.vocoder import load_vocoder

    cache = Path(a.cache)
    if not (cache / "inputs.npz").exists():
        raise SystemExit(f"no weights in {cache}: run `python bench/vae_bench.py` first (or pass --cache)")
    real = cpu_kernels._cblas
    if real() is None:
        raise SystemExit("needs MKL (ltx.backend loads it from the mkl wheel)")
    x, noise = np.load(cache / "inputs.npz"), np.load(cache / "noise.npz")
    adec, voc = load_audio_decoder(cache / "audio.safetensors"), load_vocoder(cache / "vocoder.safetensors")
    ups = load_upsampler(cache / "upsampler.safetensors")
    za, zu = mx.array(x["audio_latent"]), mx.array(x["upsampler_latent"].transpose(0, 2, 3, 4, 1))
    mel = mx.array(x["mel"].transpose(0, 2, 3, 1))
    components = {
        "upsampler": lambda: ups(zu),
        "audio_decoder": lambda: adec.decode(za),
        "vocoder": lambda: voc(mel),
    }
    if not a.no_decode:
        dec = load_video_decoder(cache / "vae.safetensors")
        z, n = mx.array(x["video_latent"]), mx.array(noise["video"])
        components = {"vae_decode": lambda: dec.decode(z, tiling="none", noise=n), **components}
    paths = {"in place": real, "addmm": lambda: None}  # conv_taps asks _cblas() as it builds its graph
    print(f"Medians of {a.runs} interleaved pairs after a warm-up, seconds.\n")
    print("| component | in place | addmm | in place / addmm |")
    print("|---|---:|---:|---:|")
    try:
        for name, fn in components.items():
            times = {p: [] for p in paths}
            for i in range(a.runs + 1):
                for path, choice in paths.items():
                    cpu_kernels._cblas = choice
                    t0 = time.perf_counter()
                    mx.eval(fn())
                    if i:  # the first pair warms up
                        times[path].append(time.perf_counter() - t0)
            med = {p: statistics.median(t) for p, t in times.items()}
            print(
                f"| {name} | {med['in place']:.3f} | {med['addmm']:.3f} | {med['in place'] / med['addmm']:.2f} |"
            )
    finally:
        cpu_kernels._cblas = real


if __name__ == "__main__":
    main()
