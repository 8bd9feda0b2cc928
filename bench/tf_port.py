"""Worker: one transformer forward of the public MLX port `mlx-video-with-audio` (module mlx_video),
run with .venv-port. MKL is loaded before mlx exactly as ltx/backend.py does, so both MLX runs use
the same BLAS. Timesteps are per token, as the port's own pipeline (generate_av.py) passes them."""

from __future__ import annotations

import argparse
import ctypes
import glob
import inspect
import os
import sys
from pathlib import Path

_mkl = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")))
if _mkl:
    ctypes.CDLL(_mkl[0], mode=ctypes.RTLD_GLOBAL)
    os.environ.setdefault("MKL_INTERFACE_LAYER", "LP64")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402
from mlx_video.models.ltx import transformer as port_transformer  # noqa: E402
from mlx_video.models.ltx.config import LTXModelConfig, LTXModelType, LTXRopeType  # noqa: E402
from mlx_video.models.ltx.ltx import LTXModel  # noqa: E402
from mlx_video.models.ltx.model.transformer import Modality  # noqa: E402

# mlx_video.utils.rms_norm is mx.compile(shapeless=True) around mx.ones((x.shape[-1],)): the first
# width it sees is baked in, so the audio stream (a different width) fails on MLX 0.32. Use the
# same fused kernel without the compiled wrapper (no extra work; the port's own math otherwise).
port_transformer.rms_norm = lambda x, eps=1e-6: mx.fast.rms_norm(x, None, eps)


def port_key(k: str) -> str:
    """Checkpoint name -> the port's (its convert.py renames)."""
    k = (
        k.removeprefix("model.diffusion_model.")
        .replace(".linear_1.", ".linear1.")
        .replace(".linear_2.", ".linear2.")
    )
    k = (
        k.replace(".to_out.0.", ".to_out.")
        .replace("ff.net.0.proj.", "ff.proj_in.")
        .replace("ff.net.2.", "ff.proj_out.")
    )
    return k


def main() -> None:
    ap = argparse.ArgumentParser()
    common.transformer_args(ap)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--save", default=None)
    a = ap.parse_args()
    cfg = common.transformer_config(a.layers, a.heads)
    names = set(inspect.signature(LTXModelConfig).parameters)
    kw = {k: v for k, v in cfg.items() if k in names}
    kw.update(
        model_type=LTXModelType.AudioVideo,
        rope_type=LTXRopeType(cfg["rope_type"]),
        double_precision_rope=cfg["frequencies_precision"] == "float64",
        audio_caption_channels=3840,
    )
    model = LTXModel(LTXModelConfig(**kw))
    weights = [(port_key(k), v) for k, v in mx.load(a.weights).items()]
    unknown = {k for k, _ in weights} - {k for k, _ in tree_flatten(model.parameters())}
    assert not unknown, f"weights the port does not have: {sorted(unknown)[:5]}"
    model.load_weights(weights, strict=False)  # the port also builds 2.3-only prompt tables (unused for 2.0)
    mx.eval(model.parameters())
    x = {k: mx.array(v) for k, v in np.load(a.inputs).items()}
    tv, ta = x["video_latent"].shape[1], x["audio_latent"].shape[1]
    video = Modality(
        latent=x["video_latent"],
        timesteps=mx.full((1, tv), float(x["sigma_video"][0])),
        positions=x["video_positions"],
        context=x["video_context"],
        sigma=x["sigma_video"],
    )
    audio = Modality(
        latent=x["audio_latent"],
        timesteps=mx.full((1, ta), float(x["sigma_audio"][0])),
        positions=x["audio_positions"],
        context=x["audio_context"],
        sigma=x["sigma_audio"],
    )
    out = {}

    def fwd():
        v, au = model(video, audio)
        mx.eval(v, au)
        out["v"], out["a"] = v, au

    times = common.timed(fwd, a.runs, warmup=1)
    if a.save:
        np.savez(a.save, video=np.array(out["v"]), audio=np.array(out["a"]))
    common.emit({"times": times, "peak_rss_mb": common.peak_rss_mb()})


if __name__ == "__main__":
    main()
