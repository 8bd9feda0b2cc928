"""The transformer forward at the full 19B width on a GPU, this project on MLX's CUDA backend
(`mlx-cuda-13`) against the reference (ltx-core on torch's CUDA), in one run on the same inputs and
weights: 32 heads (video 4,096 wide, head 128; audio 2,048, head 64), the stage-1 default's token
counts (6,144 video, 126 audio, 1,024 text), --layers of the 48, bfloat16 on both sides, as the
pipelines run on GPUs. Medians of --runs forwards after a warm-up, each side in its own process, one
after the other (two processes on one GPU would share it); seconds per layer, achieved TFLOP/s and
the outputs' relative difference. Writes a markdown table to --output.

It runs where one Python has torch (CUDA), mlx with mlx-cuda-13, and ltx-core; bench/gpu_wheels.sh
fetches the wheels the device machines lack and says how to carry and install them there (README,
"GPU"). On a CPU machine it runs too (MLX's CPU backend against torch's CPU, in float32), which is
how to try it without a GPU: `.venv/bin/python bench/gpu_tf.py --device cpu --heads 2 --layers 1
--grid 2x4x4 --ref-python .venv-ref/bin/python` (there the two live in separate venvs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import numpy as np  # noqa: E402

BENCH = Path(__file__).resolve().parent


def worker(script: str, args: list[str], env: dict | None = None, python: str = sys.executable) -> dict:
    """Run bench/<script> with `python`; its BENCH_RESULT line (exits on a failure)."""
    t0 = time.perf_counter()
    p = subprocess.run(
        [python, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(BENCH.parent), **(env or {})},
    )
    for line in p.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            print(f"  {script}: {time.perf_counter() - t0:.0f} s", flush=True)
            return json.loads(line[len("BENCH_RESULT ") :])
    sys.exit(f"{script} failed (exit {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=32, help="32: the 19B model's width")
    ap.add_argument("--grid", default="x".join(map(str, common.VIDEO_GRID)), help="video latent F x H x W")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--work", default="/tmp/ltx-gpu-bench", help="inputs, weights and outputs")
    ap.add_argument("--output", default="gpu_results.md")
    ap.add_argument("--ref-python", default=sys.executable, help="the interpreter with torch and ltx-core")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    inputs, weights = work / "inputs.npz", work / "weights.safetensors"
    size = ["--layers", str(a.layers), "--heads", str(a.heads)]
    files = ["--inputs", str(inputs), "--weights", str(weights)]
    prep = worker("tf_prepare.py", files + size + ["--grid", a.grid])
    tv, ta, s = prep["tokens"]
    dtype = "bfloat16" if a.device == "cuda" else "float32"
    runs = ["--runs", str(a.runs)]
    ours = worker(
        "tf_ours.py", files + size + runs + ["--save", str(work / "ours.npz")], {"LTX_DTYPE": dtype}
    )
    ref = worker(
        "tf_ref.py",
        files + size + runs + ["--save", str(work / "ref.npz"), "--device", a.device, "--dtype", dtype],
        python=a.ref_python,
    )
    got, want = np.load(work / "ours.npz"), np.load(work / "ref.npz")
    diff = ", ".join(f"{k} {relative(got[k], want[k]):.1e}" for k in ("video", "audio"))
    common.VIDEO_GRID = tuple(int(v) for v in a.grid.split("x"))
    flops = common.transformer_flops(common.transformer_config(a.layers, a.heads), tv, ta, s)
    med = {"ours": common.median(ours["times"]), "ref": common.median(ref["times"])}
    lines = [
        "# Transformer forward on a GPU",
        "",
        f"Command: `python bench/gpu_tf.py {' '.join(sys.argv[1:])}` ({time.strftime('%Y-%m-%d %H:%M')};"
        f" {ref.get('device_name', a.device)}; {ours.get('device', '')}). {a.layers} layers x {a.heads}"
        f" heads, {tv} video + {ta} audio + {s} text tokens, {dtype} on both sides; medians of"
        f" {a.runs} forwards after a warm-up.",
        "",
        "| | s/layer | TFLOP/s | ours / reference |",
        "|---|---:|---:|---:|",
        f"| ours (MLX) | {med['ours'] / a.layers:.4f} | {flops / med['ours'] / 1e12:.0f} |"
        f" {med['ours'] / med['ref']:.2f} |",
        f"| reference (ltx-core, torch) | {med['ref'] / a.layers:.4f} | {flops / med['ref'] / 1e12:.0f} | |",
        "",
        f"Outputs, max |ours - ref| / max |ref|: {diff}. {flops / 1e12:.1f} TFLOP per forward.",
    ]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    Path(a.output).write_text(text)


if __name__ == "__main__":
    main()
