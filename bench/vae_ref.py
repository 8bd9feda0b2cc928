"""Worker (.venv-ref): `--prepare` writes a checkpoint with the real-width video VAE decoder (random
weights, the official key layout and config metadata); otherwise times the reference decode of it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prepare", action="store_true")
    ap.add_argument("--tiled", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    from ltx_core.model.video_vae.model_configurator import (
        VAE_DECODER_COMFY_KEYS_FILTER,
        VideoDecoderConfigurator,
    )

    torch.set_grad_enabled(False)
    cfg = {"vae": common.VAE_DECODER}
    if a.prepare:
        from ltx.weights.tiny import write_safetensors

        with torch.device("meta"):
            dec = VideoDecoderConfigurator.from_config(cfg)
        shapes = {}
        for k, v in dec.state_dict().items():
            if k.startswith("per_channel_statistics."):
                shapes["vae.per_channel_statistics." + k.removeprefix("per_channel_statistics.")] = tuple(
                    v.shape
                )
            else:
                shapes["vae.decoder." + k] = tuple(v.shape)
        w = common.synth_weights(shapes)
        for k in w:
            if k.endswith("std-of-means"):
                w[k] = np.abs(w[k]) + 0.5
        write_safetensors(Path(a.model), w, {"config": json.dumps(cfg)}, "F32")
        np.save(
            str(a.model) + ".latent.npy",
            np.random.RandomState(0).standard_normal((1, 128, *common.VAE_LATENT)).astype(np.float32),
        )
        common.emit({"flops": common.vae_flops(common.VAE_LATENT)})
        return
    from ltx_core.loader.single_gpu_model_builder import SingleGPUModelBuilder
    from ltx_core.model.video_vae.tiling import SpatialTilingConfig, TemporalTilingConfig, TilingConfig

    dec = (
        SingleGPUModelBuilder(
            model_path=a.model,
            model_class_configurator=VideoDecoderConfigurator,
            model_sd_ops=VAE_DECODER_COMFY_KEYS_FILTER,
        )
        .build(device=torch.device("cpu"), dtype=torch.float32)
        .eval()
    )
    z = torch.from_numpy(np.load(a.model + ".latent.npy"))
    (st, so), (tt, to) = common.VAE_TILING
    tiling = TilingConfig(SpatialTilingConfig(st, so), TemporalTilingConfig(tt, to))
    out = {}

    def run():
        out["v"] = torch.cat(list(dec.tiled_decode(z, tiling)), dim=2) if a.tiled else dec(z)

    times = common.timed(run, a.runs, warmup=1)
    np.save(a.model + (".ref_tiled.npy" if a.tiled else ".ref.npy"), out["v"].numpy())
    common.emit({"times": times, "peak_rss_mb": common.peak_rss_mb()})


if __name__ == "__main__":
    main()
