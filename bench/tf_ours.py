"""Worker: one transformer forward of this project (run with .venv). See bench/run.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ltx import backend  # noqa: E402  (MKL before mlx)

# isort: split

import common  # noqa: E402
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from ltx.model.transformer import LTXModel, TransformerConfig, make_modality  # noqa: E402


def unfuse() -> None:
    """The transformer as it was before the performance pass: nn.gelu_approx (tanh), and unfused
    AdaLN modulation, gated residuals and q/k RMSNorm + RoPE (one MLX kernel per elementwise op)."""
    import mlx.nn as nn

    from ltx import ops
    from ltx.model import block as transformer_block

    ops._gelu_tanh = nn.gelu_approx
    ops.modulate = lambda xn, scale, shift: xn * (1 + scale) + shift
    transformer_block._gated = lambda x, y, gate: x + y * gate

    def plain(eps):
        return (
            lambda x, w: mx.fast.rms_norm(x, w, eps),
            lambda x, w, cos, sin: ops.apply_rope(mx.fast.rms_norm(x, w, eps), (cos, sin)),
        )

    ops.compiled_norms = plain


def load(weights: str, inputs: str, layers: int, heads: int):
    """(model, video, audio): the benchmark transformer with tf_prepare.py's weights, and its inputs."""
    model = LTXModel(TransformerConfig.from_dict(common.transformer_config(layers, heads)))
    w = mx.load(weights)
    dtype = backend.default_dtype()  # float32 on the CPU, bfloat16 on GPUs (LTX_DTYPE overrides)
    model.load_weights(
        [(k.removeprefix("model.diffusion_model."), v.astype(dtype)) for k, v in w.items()], strict=True
    )
    mx.eval(model.parameters())
    x = {k: mx.array(v) for k, v in np.load(inputs).items()}
    video = make_modality(x["video_latent"], x["video_positions"], x["video_context"], x["sigma_video"])
    audio = make_modality(x["audio_latent"], x["audio_positions"], x["audio_context"], x["sigma_audio"])
    return model, video, audio


def main() -> None:
    ap = argparse.ArgumentParser()
    common.transformer_args(ap)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--save", default=None, help="write the velocities here (.npz)")
    ap.add_argument("--baseline", action="store_true", help="undo the kernel fusions (A/B of bench/README)")
    a = ap.parse_args()
    if a.baseline:
        unfuse()
    model, video, audio = load(a.weights, a.inputs, a.layers, a.heads)
    out = {}

    def fwd():
        v, au = model(video, audio)
        mx.eval(v, au)
        out["v"], out["a"] = v, au

    with backend.cpu_buffer_cache():  # as the denoising loops run it (stages/diffuse.py)
        times = common.timed(fwd, a.runs, warmup=1)
    if a.save:
        np.savez(
            a.save, **{k: np.array(out[s].astype(mx.float32)) for k, s in (("video", "v"), ("audio", "a"))}
        )
    device = f"mlx {mx.__version__} on {mx.default_device()}"
    common.emit({"times": times, "peak_rss_mb": common.peak_rss_mb(), "device": device})


if __name__ == "__main__":
    main()
