"""Worker: one transformer forward of the PyTorch reference (ltx-core), run with .venv-ref.
The model is built by ltx-core's own configurator and loaded from the same safetensors file
with its checkpoint renaming map; timesteps are per token (B, T, 1), as ltx-pipelines passes them.
--device cuda --dtype bfloat16 runs it as the pipelines do on a GPU (bench/gpu_tf.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    common.transformer_args(ap)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--save", default=None)
    ap.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    a = ap.parse_args()
    device, dtype = torch.device(a.device), getattr(torch, a.dtype)
    from ltx_core.guidance.perturbations import BatchedPerturbationConfig
    from ltx_core.loader.single_gpu_model_builder import SingleGPUModelBuilder
    from ltx_core.model.transformer.modality import Modality
    from ltx_core.model.transformer.model_configurator import (
        LTXV_MODEL_COMFY_RENAMING_MAP,
        LTXModelConfigurator,
    )

    torch.set_grad_enabled(False)
    model = (
        SingleGPUModelBuilder(
            model_class_configurator=LTXModelConfigurator,
            model_path=a.weights,
            model_sd_ops=LTXV_MODEL_COMFY_RENAMING_MAP,
        )
        .build(device=device, dtype=dtype)
        .eval()
    )
    # latents and contexts in the compute dtype, sigmas and positions float32 (as the pipelines pass them)
    x = {
        k: torch.from_numpy(v).to(device, dtype if k.endswith(("_latent", "_context")) else torch.float32)
        for k, v in np.load(a.inputs).items()
    }

    def modality(stream):
        tok = x[f"{stream}_latent"]
        sigma = x[f"sigma_{stream}"]
        return Modality(
            latent=tok,
            sigma=sigma,
            timesteps=sigma.reshape(1, 1, 1).expand(1, tok.shape[1], 1),
            positions=x[f"{stream}_positions"],
            context=x[f"{stream}_context"],
        )

    video, audio = modality("video"), modality("audio")
    out = {}

    def fwd():
        out["v"], out["a"] = model(video, audio, BatchedPerturbationConfig.empty(1))
        if device.type == "cuda":
            torch.cuda.synchronize()

    times = common.timed(fwd, a.runs, warmup=1)
    if a.save:
        np.savez(a.save, **{k: out[s].float().cpu().numpy() for k, s in (("video", "v"), ("audio", "a"))})
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    common.emit(
        {
            "times": times,
            "peak_rss_mb": common.peak_rss_mb(),
            "threads": torch.get_num_threads(),
            "device_name": f"torch {torch.__version__} on {name}",
        }
    )


if __name__ == "__main__":
    main()
