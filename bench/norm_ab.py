"""What the numpy RMSNorm (+ AdaLN modulation) buys one transformer forward on the CPU: the
benchmark's transformer (bench/tf_prepare.py's inputs and weights) run with the block norms, their
AdaLN modulation and the q/k norms without RoPE in ltx.cpu_kernels.rms_norm_modulate (`numpy`, what
runs) and with MLX's mx.fast.rms_norm plus the compiled modulation (`mlx`, what ran before, and what
GPUs run), alternated in one process so that both see the same machine. Medians of --runs pairs
after a warm-up, seconds per forward; the ratio is the median of the per-pair ratios.

    .venv/bin/python bench/tf_prepare.py --inputs /tmp/tf.npz --weights /tmp/tf.safetensors --layers 1
    .venv/bin/python bench/norm_ab.py --inputs /tmp/tf.npz --weights /tmp/tf.safetensors --layers 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ltx import backend  # noqa: E402,F401  (MKL before mlx)

# isort: split

import common  # noqa: E402
import mlx.core as mx  # noqa: E402
import tf_ours  # noqa: E402

from ltx import attention, transformer_block  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.transformer_args(ap, layers=1)
    ap.add_argument("--runs", type=int, default=8)
    a = ap.parse_args()
    tb = transformer_block
    variants = {
        "numpy": (tb._rms, tb._rms_modulate, attention._norm_any),
        "mlx": (
            lambda x, eps: mx.fast.rms_norm(x, None, eps),
            lambda x, eps, scale, shift: tb._modulate(mx.fast.rms_norm(x, None, eps), scale, shift),
            lambda compiled, x, weight, eps: compiled(x, weight),
        ),
    }
    model, video, audio = tf_ours.load(a.weights, a.inputs, a.layers, a.heads)
    times: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for i in range(a.runs + 1):
            for name in list(variants) if i % 2 else list(variants)[::-1]:
                tb._rms, tb._rms_modulate, attention._norm_any = variants[name]
                t0 = time.perf_counter()
                mx.eval(*model(video, audio))
                if i:  # the first pair warms up
                    times[name].append(time.perf_counter() - t0)
    finally:
        tb._rms, tb._rms_modulate, attention._norm_any = variants["numpy"]
    med = {name: statistics.median(t) for name, t in times.items()}
    ratios = [x / y for x, y in zip(times["numpy"], times["mlx"], strict=True)]
    print(
        f"Medians of {a.runs} interleaved pairs after a warm-up, {a.layers} layer(s), seconds per forward.\n"
    )
    print("| norms | forward | numpy / mlx (per-pair median, range) |")
    print("|---|---:|---:|")
    print(f"| numpy (rms_norm_modulate) | {med['numpy']:.3f} | {statistics.median(ratios):.2f} "
          f"({min(ratios):.2f}-{max(ratios):.2f}) |")  # fmt: skip
    print(f"| mlx (mx.fast.rms_norm + compiled modulation) | {med['mlx']:.3f} | |")


if __name__ == "__main__":
    main()
