"""Where one transformer forward spends its time, split the same way for this project (run with
.venv) and for the reference (run with .venv-ref): attention (the softmax(QK^T)V of every attention
call), linear layers, and the rest. Inputs and weights come from bench/tf_prepare.py:

    .venv/bin/python bench/tf_prepare.py --inputs /tmp/tf.npz --weights /tmp/tf.safetensors --layers 1
    .venv/bin/python bench/layer_profile.py --inputs /tmp/tf.npz --weights /tmp/tf.safetensors --layers 1
    .venv-ref/bin/python bench/layer_profile.py --inputs /tmp/tf.npz --weights /tmp/tf.safetensors --layers 1

Ours is timed with an evaluation barrier around each attention and linear call (MLX is lazy), the
reference with torch.profiler (self CPU time per operator); both after one warm-up forward. The
barriers cost a little, so ours' total here is a bit above bench/run.py's. Seconds per forward.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TORCH = "venv-ref" in sys.prefix


def profile_reference(a) -> dict[str, float]:
    import runpy

    from torch.profiler import ProfilerActivity, profile

    found: dict[str, float] = {}

    def timed(fn, runs, warmup=1):
        fn()
        with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            t0 = time.perf_counter()
            fn()
            found["total"] = time.perf_counter() - t0
        for e in prof.key_averages():
            kind = (
                "attention"
                if "scaled_dot_product" in e.key
                else "linear"
                if e.key in ("aten::addmm", "aten::mm", "aten::bmm")
                else None
            )
            if kind:
                found[kind] = found.get(kind, 0.0) + e.self_cpu_time_total / 1e6
                if kind == "linear":
                    found["linear GFLOP"] = found.get("linear GFLOP", 0.0) + e.flops / 1e9
        return [found["total"]]

    common.timed = timed
    common.emit = lambda result: None
    sys.argv = ["tf_ref.py", "--inputs", a.inputs, "--weights", a.weights, "--layers", str(a.layers)]
    sys.argv += ["--heads", str(a.heads), "--runs", "1"]
    runpy.run_path(str(Path(__file__).resolve().parent / "tf_ref.py"), run_name="__main__")
    return found


def profile_ours(a) -> dict[str, float]:
    from ltx import backend  # (MKL before mlx)

    # isort: split

    import mlx.core as mx
    import mlx.nn as nn
    import tf_ours

    from ltx import ops
    from ltx.model import attention

    spent: dict[str, float] = defaultdict(float)
    sdpa = ops.attention  # (the model's attention calls it as ops.attention)

    def timed_sdpa(q, k, v, *args, **kw):
        mx.eval(q, k, v)
        t0 = time.perf_counter()
        out = sdpa(q, k, v, *args, **kw)
        mx.eval(out)
        spent["attention"] += time.perf_counter() - t0
        return out

    inside = [False]  # attention.Linear (linear_kernels.linear) falls back to nn.Linear: count it once

    def timed_linear(linear):
        def call(self, x):
            if inside[0]:
                return linear(self, x)
            mx.eval(x)
            inside[0] = True
            t0 = time.perf_counter()
            try:
                out = linear(self, x)
                mx.eval(out)
            finally:
                inside[0] = False
            spent["linear"] += time.perf_counter() - t0
            spent["linear GFLOP"] += 2e-9 * (x.size // x.shape[-1]) * self.weight.size  # 2 rows in out
            return out

        return call

    # the blocked attention's GEMMs (MKL's or numpy's OpenBLAS's, one per block and product, on the
    # pool's threads): their thread-seconds against the attention's wall time x the pool's threads
    from ltx.kernels import attention as attention_kernels
    from ltx.kernels import blas
    from ltx.kernels import blas as cpu_blas

    lock = threading.Lock()

    def timed(gemm):
        def call(*args):
            t0 = time.perf_counter()
            gemm(*args)
            with lock:
                spent["attention GEMMs"] += time.perf_counter() - t0
                spent["attention GFLOP"] += 2e-9 * args[3] * args[4] * args[5]  # 2 m n k

        return call

    library = attention_kernels.library()
    spent["attention library"] = library
    if library == "mkl":
        timed_mkl = blas.mkl()._replace(compute=timed(blas.mkl().compute))
        blas.mkl = lambda: timed_mkl
    elif library == "openblas":
        serial = cpu_blas.serial_openblas()
        timed_openblas = serial._replace(sgemm=timed(serial.sgemm))
        cpu_blas.serial_openblas = lambda: timed_openblas
    ops.attention = timed_sdpa
    nn.Linear.__call__ = timed_linear(nn.Linear.__call__)
    attention.Linear.__call__ = timed_linear(attention.Linear.__call__)
    model, video, audio = tf_ours.load(a.weights, a.inputs, a.layers, a.heads)
    with backend.cpu_buffer_cache():  # as the denoising loops run it
        for _ in range(2):  # a warm-up, then the measured forward
            spent.clear()
            spent["attention library"] = library
            t0 = time.perf_counter()
            mx.eval(*model(video, audio))
            spent["total"] = time.perf_counter() - t0
    return dict(spent)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.transformer_args(ap, layers=1)
    a = ap.parse_args()
    t = profile_reference(a) if TORCH else profile_ours(a)
    rest = t["total"] - t.get("attention", 0.0) - t.get("linear", 0.0)
    who = "reference (torch)" if TORCH else "ours (MLX)"
    print(
        f"{who}: forward {t['total']:.2f} s = attention {t.get('attention', 0.0):.2f} s"
        f" + linear layers {t.get('linear', 0.0):.2f} s + the rest {rest:.2f} s"
    )
    if t.get("linear GFLOP"):
        print(
            f"  linear layers: {t['linear GFLOP']:.0f} GFLOP, {t['linear GFLOP'] / t['linear']:.0f} GFLOP/s"
        )
    if "attention GEMMs" in t:
        threads = os.cpu_count() or 1
        share = t["attention GEMMs"] / (threads * t["attention"])
        gflop = t["attention GFLOP"]
        print(
            f"  attention's {t['attention library']} GEMMs: {t['attention GEMMs']:.2f} thread-seconds, {share:.0%} of the"
            f" attention's {threads} threads x {t['attention']:.2f} s; {gflop:.0f} GFLOP (from 32K scores"
            f" up: the blocked attention's), {gflop / t['attention GEMMs']:.0f} GFLOP/s per thread"
        )


if __name__ == "__main__":
    main()
