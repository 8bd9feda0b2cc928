"""Worker (.venv: MLX, .venv-ref: torch): the operations of one attention chunk and one
feed-forward at the benchmark's shapes, to show which operation caps MLX's CPU backend."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TORCH = "venv-ref" in sys.prefix


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=6144)
    ap.add_argument("--heads", type=int, default=8)
    a = ap.parse_args()
    h, tk, d = a.heads, a.tokens, 128
    tq = min(2048, tk)
    n = h * tq * tk
    if TORCH:
        import torch
        import torch.nn.functional as F

        torch.set_grad_enabled(False)
        g = torch.Generator().manual_seed(0)
        rnd = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
        q, k, v = rnd(1, h, tq, d), rnd(1, h, tk, d), rnd(1, h, tk, d)
        x, w, hid = rnd(tk, 1024), rnd(4096, 1024) * 0.03, rnd(tk, 4096)
        xq, sc, sh = rnd(1, tk, h * d), rnd(1, 1, h * d) * 0.1, rnd(1, 1, h * d) * 0.1  # a block's AdaLN
        s = (q @ k.transpose(-1, -2)) * d**-0.5
        ops = {
            "QK^T matmul": lambda: q @ k.transpose(-1, -2),
            "exp over the scores": lambda: torch.exp(s),
            "softmax over the scores": lambda: torch.softmax(s, -1),
            "PV matmul": lambda: s @ v,
            "fused attention (sdpa)": lambda: F.scaled_dot_product_attention(q, k, v),
            "linear 1024->4096": lambda: x @ w.T,
            "gelu(tanh) FF hidden": lambda: F.gelu(hid, approximate="tanh"),
            "RMSNorm + AdaLN modulation": lambda: F.rms_norm(xq, (h * d,), eps=1e-6) * (1 + sc) + sh,
        }
        run = lambda f: f()  # noqa: E731
    else:
        from ltx import backend  # noqa: F401  (MKL before mlx: keep this first)

        # isort: split
        import mlx.core as mx
        import mlx.nn as nn

        from ltx import ops as ltx_ops
        from ltx.kernels import activations, norms
        from ltx.kernels import attention as attention_kernels

        assert backend.BLAS != "reference" or not backend._candidates(), "mlx was imported before ltx.backend"

        mx.random.seed(0)
        q, k, v = (mx.random.normal((1, h, t, d)) for t in (tq, tk, tk))
        x, w, hid = (
            mx.random.normal((tk, 1024)),
            mx.random.normal((4096, 1024)) * 0.03,
            mx.random.normal((tk, 4096)),
        )
        s = (q @ k.swapaxes(-1, -2)) * d**-0.5
        hid_own = (
            hid + 0
        )  # activations.gelu_tanh works in place: its own buffer (values drift, time does not)
        xq = mx.random.normal((1, tk, h * d))  # a q projection, and its RoPE tables (split layout)
        qw = mx.random.uniform(0.5, 1.5, (h * d,))
        cos, sin = (f(mx.random.uniform(-3, 3, (1, tk, h, d // 2))) for f in (mx.cos, mx.sin))
        norm_rope = ltx_ops.compiled_norms(1e-6)[1]
        sc, sh = (mx.random.normal((1, 1, h * d)) * 0.1 for _ in range(2))  # a block's AdaLN scale, shift
        mx.eval(q, k, v, x, w, hid, s, hid_own, xq, qw, cos, sin, sc, sh)

        def sdpa_unblocked():
            blocked, attention_kernels.library = attention_kernels.library, lambda: None
            try:
                return mx.eval(ltx_ops.attention(q, k, v, d**-0.5))
            finally:
                attention_kernels.library = blocked

        ops = {
            "QK^T matmul": lambda: q @ k.swapaxes(-1, -2),
            "exp over the scores": lambda: mx.exp(s),
            "softmax over the scores": lambda: mx.softmax(s, -1),
            "PV matmul": lambda: s @ v,
            "fused attention (sdpa)": lambda: mx.fast.scaled_dot_product_attention(q, k, v, scale=d**-0.5),
            "ltx.ops.attention": lambda: ltx_ops.attention(q, k, v, d**-0.5),
            "ltx.ops.attention without the blocked path (MLX matmuls, numpy softmax)": sdpa_unblocked,
            "linear 1024->4096": lambda: x @ w.T,
            "gelu(tanh) FF hidden": lambda: nn.gelu_approx(hid),
            "gelu(tanh) FF hidden, ltx.ops.gelu_tanh (MLX compiled)": lambda: ltx_ops._gelu_tanh(hid),
            "gelu(tanh) FF hidden, ltx.kernels.activations.gelu_tanh (numpy, in place)": lambda: (
                activations.gelu_tanh(hid_own)
            ),
            "q RMSNorm + RoPE, MLX compiled": lambda: norm_rope(xq, qw, cos, sin),
            "q RMSNorm + RoPE, ltx.kernels.norms.rms_norm_rope (numpy)": lambda: norms.rms_norm_rope(
                xq, qw, cos, sin, 1e-6
            ),
            "RMSNorm + AdaLN modulation": lambda: ltx_ops.modulate(mx.fast.rms_norm(xq, None, 1e-6), sc, sh),
            "RMSNorm + AdaLN modulation, ltx.kernels.norms.rms_norm_modulate (numpy)": lambda: (
                norms.rms_norm_modulate(xq, 1e-6, scale=sc, shift=sh)
            ),
        }
        run = lambda f: mx.eval(f())  # noqa: E731
    flops = {
        "QK^T matmul": 2.0 * n * d,
        "PV matmul": 2.0 * n * d,
        "fused attention (sdpa)": 4.0 * n * d,
        "ltx.ops.attention": 4.0 * n * d,
        "ltx.ops.attention without the blocked path (MLX matmuls, numpy softmax)": 4.0 * n * d,
        "linear 1024->4096": 2.0 * tk * 1024 * 4096,
    }
    elements = {
        k_: (tk * 4096 if "gelu" in k_ or "linear" in k_ else tk * h * d if "RMSNorm" in k_ else n)
        for k_ in ops
    }
    out = {}
    for name, f in ops.items():
        times = common.timed(lambda f=f: run(f), a.runs, warmup=1)
        out[name] = (common.median(times), flops.get(name, 0.0))
    common.emit({"ops": out, "elements": elements, "shape": f"{h} heads x {tq} queries x {tk} keys x {d}"})


if __name__ == "__main__":
    main()
