"""What reading the heads in place buys the blocked CPU attention (ltx.kernels): every attention of
one layer of the benchmark transformer (8 heads, 6,144 video, 126 audio and 1,024 text tokens), on q, k
and v laid out as the projections make them ((B, T, H * D) viewed as (B, H, T, D)), through
ltx.model.attention.sdpa with MKL reading each head's rows at their stride (`in place`, what runs) and with
the heads first copied contiguous (`contiguous`, what ran before). The two alternate in one process so
that both see the same machine (its speed drifts by more than the difference within minutes). Medians
of --runs pairs after a warm-up, seconds; the ratio is the median of the per-pair ratios.

    .venv/bin/python bench/attn_layout_ab.py        # ~1 min
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ltx.kernels import attention as attention_kernels  # noqa: E402  (loads MKL before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from ltx.model.attention import sdpa  # noqa: E402

HEADS = 8
# (what, query tokens, key tokens, head size): one layer's attention calls at the benchmark's sizes
CALLS = [
    ("video self-attention", 6144, 6144, 128),
    ("video to text", 6144, 1024, 128),
    ("audio to video", 126, 6144, 64),
    ("video to audio", 6144, 126, 64),
    ("audio to text", 126, 1024, 64),
    ("audio self-attention", 126, 126, 64),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    if not attention_kernels.blocked_attention():
        raise SystemExit("needs MKL on the CPU backend (ltx.backend loads it from the mkl wheel)")
    in_place = attention_kernels._head_rows
    layouts = {"in place": in_place, "contiguous": lambda x: in_place(mx.contiguous(x))}
    rng = np.random.default_rng(0)
    print(f"Medians of {a.runs} interleaved pairs after a warm-up, seconds.\n")
    print("| attention | scores | in place | contiguous | in place / contiguous |")
    print("|---|---:|---:|---:|---:|")
    totals = {name: [0.0] * a.runs for name in layouts}
    try:
        for what, tq, tk, d in CALLS:

            def heads(t: int, d: int = d) -> mx.array:
                x = mx.array(rng.standard_normal((1, t, HEADS * d), dtype=np.float32) * 0.5)
                return x.reshape(1, t, HEADS, d).transpose(0, 2, 1, 3)

            q, k, v = heads(tq), heads(tk), heads(tk)
            mx.eval(q, k, v)
            times: dict[str, list[float]] = {name: [] for name in layouts}
            outs = {}
            for i in range(a.runs + 1):
                order = list(layouts) if i % 2 else list(layouts)[::-1]
                for name in order:
                    attention_kernels._head_rows = layouts[name]
                    t0 = time.perf_counter()
                    outs[name] = sdpa(q, k, v, d**-0.5)
                    mx.eval(outs[name])
                    if i:  # the first pair warms up
                        times[name].append(time.perf_counter() - t0)
                        totals[name][i - 1] += times[name][-1]
            if not mx.array_equal(outs["in place"], outs["contiguous"]):
                raise SystemExit(f"{what}: the two layouts disagree")
            med = {name: statistics.median(t) for name, t in times.items()}
            ratio = statistics.median(
                x / y for x, y in zip(times["in place"], times["contiguous"], strict=True)
            )
            scores = HEADS * tq * tk
            print(
                f"| {what} | {scores / 1e6:.1f}M | {med['in place']:.3f} | {med['contiguous']:.3f} | {ratio:.2f} |"
            )
    finally:
        attention_kernels._head_rows = in_place
    med = {name: statistics.median(t) for name, t in totals.items()}
    ratio = statistics.median(x / y for x, y in zip(totals["in place"], totals["contiguous"], strict=True))
    print(f"| one layer's attentions | | {med['in place']:.3f} | {med['contiguous']:.3f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
