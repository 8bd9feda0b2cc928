"""How long the BLAS libraries let their idle threads spin, A/B on the VAE-side components (and,
with --transformer, the transformer forward), ours only.

After a call, OpenBLAS's worker threads busy-wait for 2^OPENBLAS_THREAD_TIMEOUT cycles (28 by
default: ~0.1 s) and MKL's OpenMP threads for KMP_BLOCKTIME ms (200 by default) before they sleep.
The conv kernels' GEMMs run on OpenBLAS and MLX's matmuls on MKL, and what follows a call (numpy
passes on both cores, the other library, MLX's ops) then shares the two cores with a spinning
thread. ltx sets OPENBLAS_THREAD_TIMEOUT=16 (ltx/__init__.py) and KMP_BLOCKTIME=0 (ltx/backend.py)
unless they are set. Both are read once, when the library loads, so each variant runs in its own
process: every round starts one process per variant (the order swapped every round), each times
every component --runs times after a warm-up. The table gives the medians over all rounds.

    .venv/bin/python bench/spin_ab.py --rounds 3 --timeouts 28,16  # ~5 min on 2 cores (vae_bench.py's weights)
    .venv/bin/python bench/spin_ab.py --rounds 2 --runs 3 --transformer /tmp/tf.npz /tmp/tf.safetensors \
        --variants "OPENBLAS_THREAD_TIMEOUT=28 KMP_BLOCKTIME=200" "OPENBLAS_THREAD_TIMEOUT=16 KMP_BLOCKTIME=0"
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(a) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    sys.path.insert(0, str(ROOT))
    from ltx import backend  # noqa: F401  (MKL before mlx)

    # isort: split

    import common
    import mlx.core as mx

    fns = common.vae_components(Path(a.cache), decode=not a.no_decode)
    if a.transformer:
        import tf_ours

        model, video, audio = tf_ours.load(a.transformer[1], a.transformer[0], a.layers, a.heads)
        fns["transformer"] = lambda: model(video, audio)
    out = {}
    for name, fn in fns.items():
        mx.eval(fn())
        times = []
        for _ in range(a.runs):
            t = time.perf_counter()
            mx.eval(fn())
            times.append(time.perf_counter() - t)
        out[name] = times
    print("@@" + json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--timeouts", default="28,16", help="OPENBLAS_THREAD_TIMEOUT values, the first the baseline"
    )
    ap.add_argument(
        "--variants",
        nargs="+",
        help="environments instead of --timeouts, each 'NAME=VALUE NAME=VALUE', the first the baseline",
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=2, help="timed calls per component per process")
    ap.add_argument("--cache", default="/tmp/ltx-vae-bench", help="vae_bench.py's weights and inputs")
    ap.add_argument("--no-decode", action="store_true", help="skip the video decoder (~8 s a call)")
    ap.add_argument("--transformer", nargs=2, metavar=("INPUTS", "WEIGHTS"), help="tf_prepare.py's files")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a)
        return
    args = [
        sys.executable,
        __file__,
        "--child",
        "--cache",
        a.cache,
        "--runs",
        str(a.runs),
        "--layers",
        str(a.layers),
    ]
    args += ["--heads", str(a.heads)]
    args += ["--no-decode"] * a.no_decode + (["--transformer", *a.transformer] if a.transformer else [])
    times: dict[str, dict[str, list[float]]] = {}
    variants = a.variants or [f"OPENBLAS_THREAD_TIMEOUT={t}" for t in a.timeouts.split(",")]
    for r in range(a.rounds):
        order = variants if r % 2 == 0 else list(reversed(variants))
        for variant in order:
            env = {**os.environ, **dict(kv.split("=", 1) for kv in variant.split())}
            proc = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
            line = next(x for x in proc.stdout.splitlines() if x.startswith("@@"))
            for name, ts in json.loads(line[2:]).items():
                times.setdefault(name, {}).setdefault(variant, []).extend(ts)
            print(f"round {r + 1}/{a.rounds}: {variant} done", file=sys.stderr, flush=True)
    print(f"Medians of {a.rounds} rounds x {a.runs} calls, seconds (and / the first column's);")
    print("one process per environment and round.\n")
    print("| component | " + " | ".join(f"`{v}`" for v in variants) + " |")
    print("|---|" + "---:|" * len(variants))
    for name, per in times.items():
        m = [statistics.median(per[v]) for v in variants]
        cells = [f"{m[0]:.3f}"] + [f"{x:.3f} ({x / m[0]:.2f})" for x in m[1:]]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nRange (fastest - slowest call), seconds:\n")
    print("| component | " + " | ".join(f"`{v}`" for v in variants) + " |")
    print("|---|" + "---:|" * len(variants))
    for name, per in times.items():
        print(f"| {name} | " + " | ".join(f"{min(per[v]):.3f}-{max(per[v]):.3f}" for v in variants) + " |")


if __name__ == "__main__":
    main()
