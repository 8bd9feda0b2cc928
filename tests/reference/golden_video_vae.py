"""Goldens for the video path: video VAE encoder, decoder (untiled and tiled), latent upsampler and
image preprocessing. See make_goldens.py for the protocol.

The tiny VAE keeps what the reference hard-wires (latent 128 channels, patch 4, three temporal and
three spatial x2 stages so the scale factors stay (8, 32, 32)) and is otherwise narrow.
- LTX-2.0: real block types (compress_*_res encoder, residual compress_all decoder), padding key absent
  (encoder zeros, decoder reflect), timestep-conditioned decoder (decode noise injected, per tile too).
- LTX-2.3: spatial_padding_mode "zeros" for both, plain decoder, the other decoder block types
  (compress_space, compress_time, non-residual compress_all) and an encoder block with multiplier 2.
Tiled decode: latent (4, 2, 3) with 64 px / 32 px and 24 / 8 frame tiles gives two temporal tiles (the
second shifted back one latent frame) x two width tiles.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

VAE_20 = {
    "dims": 3,
    "latent_channels": 128,
    "patch_size": 4,
    "norm_layer": "pixel_norm",
    "latent_log_var": "uniform",
    "encoder_blocks": [
        ["res_x", 1],
        ["compress_space_res", {"multiplier": 1}],
        ["compress_time_res", {"multiplier": 1}],
        ["compress_all_res", {"multiplier": 1}],
        ["compress_all_res", {"multiplier": 1}],
    ],
    "decoder_blocks": [
        ["res_x", {"num_layers": 1}],
        ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 2}],
        ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 1}],
        ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 1}],
    ],
    "decoder_base_channels": 8,
    "causal_decoder": False,
    "timestep_conditioning": True,
}
VAE_23 = {
    **{
        k: v
        for k, v in VAE_20.items()
        if k not in ("encoder_blocks", "decoder_blocks", "timestep_conditioning")
    },
    "spatial_padding_mode": "zeros",
    "timestep_conditioning": False,
    "encoder_blocks": [
        ["res_x", {"num_layers": 1}],
        ["compress_space_res", {"multiplier": 1}],
        ["compress_time_res", {"multiplier": 1}],
        ["compress_all_res", {"multiplier": 2}],
        ["compress_all_res", {"multiplier": 1}],
    ],
    "decoder_blocks": [
        ["res_x", {"num_layers": 1}],
        ["compress_space", {"multiplier": 2}],
        ["res_x", {"num_layers": 1}],
        ["compress_time", {"multiplier": 2}],
        ["res_x", {"num_layers": 1}],
        ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 1}],
        ["compress_all", {"multiplier": 2}],
    ],
}
UPSAMPLER = {
    "in_channels": 128,
    "mid_channels": 32,
    "num_blocks_per_stage": 1,
    "dims": 3,
    "spatial_upsample": True,
    "temporal_upsample": False,
    "spatial_scale": 2.0,
    "rational_resampler": True,
}
ENCODER_VIDEO = (9, 32, 64)  # frames, height, width
DECODER_LATENT = (2, 2, 2)  # untiled decode: frames', height', width'
TILED_LATENT = (4, 2, 3)
TILING = {"spatial": (64, 32), "temporal": (24, 8)}  # (tile, overlap) in pixels and frames
UPSAMPLER_LATENT = (2, 2, 3)
IMAGE = (45, 61)  # odd sizes: the CRF round trip crops to even
IMAGE_TARGET = (32, 48)
SEED = 2024


def vae_config(variant: str) -> dict:
    return VAE_23 if variant == "2.3" else VAE_20


def _shapes(module, prefix: str, stats_prefix: str) -> dict[str, list[int]]:
    out = {}
    for k, v in module.state_dict().items():
        if k.startswith("per_channel_statistics."):
            out[stats_prefix + k.removeprefix("per_channel_statistics.")] = list(v.shape)
        else:
            out[prefix + k] = list(v.shape)
    return out


def contribute(variant: str) -> dict:
    import torch
    from ltx_core.model.upsampler.model_configurator import LatentUpsamplerConfigurator
    from ltx_core.model.video_vae.model_configurator import VideoDecoderConfigurator, VideoEncoderConfigurator

    cfg = {"vae": vae_config(variant)}
    with torch.device("meta"):
        enc = VideoEncoderConfigurator.from_config(cfg)
        dec = VideoDecoderConfigurator.from_config(cfg)
        ups = LatentUpsamplerConfigurator.from_config(UPSAMPLER)
    stats = "vae.per_channel_statistics."
    tensors = {**_shapes(enc, "vae.encoder.", stats), **_shapes(dec, "vae.decoder.", stats)}
    return {
        "model.safetensors": {"metadata": {"config": cfg}, "tensors": tensors, "dtype": "BF16"},
        "upsampler.safetensors": {
            "metadata": {"config": UPSAMPLER},
            "tensors": {k: list(v.shape) for k, v in ups.state_dict().items()},
            "dtype": "BF16",
        },
    }


def _build(path: Path, configurator, sd_ops=None):
    import torch
    from ltx_core.loader.single_gpu_model_builder import SingleGPUModelBuilder

    kwargs = {"model_sd_ops": sd_ops} if sd_ops is not None else {}
    model = SingleGPUModelBuilder(
        model_path=str(path), model_class_configurator=configurator, **kwargs
    ).build(device=torch.device("cpu"), dtype=torch.float32)
    meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type == "meta"]
    assert not meta, f"left on meta: {meta[:5]}"
    return model.eval()


def test_image() -> np.ndarray:
    """A deterministic (45, 61, 3) uint8 RGB image: gradients, a disc and a little noise."""
    h, w = IMAGE
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 255 * x / (w - 1)
    g = 255 * y / (h - 1)
    b = 255 * (((x - 30) ** 2 + (y - 20) ** 2) < 150)
    img = np.stack([r, g, 0.5 * b + 60], -1) + np.random.RandomState(7).uniform(-20, 20, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _image_goldens() -> dict[str, np.ndarray]:
    import torch
    from ltx_pipelines.utils.media_io import load_image_conditioning, preprocess
    from PIL import Image

    img = test_image()
    out = {"image": img, "image_crf33_round_trip": preprocess(img, 33)}
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "image.png"
        Image.fromarray(img).save(png)
        for crf in (0, 33):
            cond = load_image_conditioning(
                str(png), *IMAGE_TARGET, dtype=torch.float32, device=torch.device("cpu"), crf=crf
            )
            out[f"image_cond_crf{crf}"] = cond.numpy()  # (1, 3, 1, H, W)
    return out


def _tiled_noise(dec, latent, tiling, seed: int):
    """The decode noise the reference draws per tile, in tile order, from one generator (as tiled_decode does)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(latent[t.in_coords].shape, generator=gen, dtype=latent.dtype)
        for t in dec._prepare_tiles(latent, tiling)
    ]


def run(variant: str, model_dir: Path) -> dict[str, np.ndarray]:
    import torch
    from ltx_core.model.upsampler.model import upsample_video
    from ltx_core.model.upsampler.model_configurator import LatentUpsamplerConfigurator
    from ltx_core.model.video_vae.model_configurator import (
        VAE_DECODER_COMFY_KEYS_FILTER,
        VAE_ENCODER_COMFY_KEYS_FILTER,
        VideoDecoderConfigurator,
        VideoEncoderConfigurator,
    )
    from ltx_core.model.video_vae.tiling import SpatialTilingConfig, TemporalTilingConfig, TilingConfig

    model_dir = Path(model_dir)
    enc = _build(model_dir / "model.safetensors", VideoEncoderConfigurator, VAE_ENCODER_COMFY_KEYS_FILTER)
    dec = _build(model_dir / "model.safetensors", VideoDecoderConfigurator, VAE_DECODER_COMFY_KEYS_FILTER)
    ups = _build(model_dir / "upsampler.safetensors", LatentUpsamplerConfigurator)
    rng = np.random.RandomState(SEED + (23 if variant == "2.3" else 20))
    f, h, w = ENCODER_VIDEO
    video = np.clip(rng.standard_normal((1, 3, f, h, w)) * 0.5, -1, 1).astype(np.float32)
    z = rng.standard_normal((1, 128, *DECODER_LATENT)).astype(np.float32)
    zt = rng.standard_normal((1, 128, *TILED_LATENT)).astype(np.float32)
    zu = rng.standard_normal((1, 128, *UPSAMPLER_LATENT)).astype(np.float32)
    tiling = TilingConfig(SpatialTilingConfig(*TILING["spatial"]), TemporalTilingConfig(*TILING["temporal"]))
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        out["encoder_video"] = video
        out["encoder_latent"] = enc(torch.from_numpy(video)).numpy()
        out["decoder_latent"] = z
        out["tiled_latent"] = zt
        gen = None
        if dec.timestep_conditioning:
            out["decoder_noise"] = torch.randn(z.shape, generator=torch.Generator().manual_seed(11)).numpy()
            noises = _tiled_noise(dec, torch.from_numpy(zt), tiling, 12)
            out["tiled_noise"] = np.concatenate(
                [n.numpy().reshape(-1) for n in noises]
            )  # flat, in tile order
            gen = torch.Generator().manual_seed(11)
        out["decoder_video"] = dec(torch.from_numpy(z), generator=gen).numpy()
        gen = torch.Generator().manual_seed(12) if dec.timestep_conditioning else None
        chunks = list(dec.tiled_decode(torch.from_numpy(zt), tiling, generator=gen))
        out["tiled_video"] = torch.cat(chunks, dim=2).numpy()
        out["tiled_chunk_frames"] = np.array([c.shape[2] for c in chunks], np.int32)
        out["tiling"] = np.array([*TILING["spatial"], *TILING["temporal"]], np.int32)
        out["upsampler_latent"] = zu
        out["upsampled_latent"] = upsample_video(torch.from_numpy(zu), enc, ups).numpy()
        out["timestep_conditioning"] = np.array(int(dec.timestep_conditioning), np.int32)
    out.update(_image_goldens())
    out["config"] = np.frombuffer(json.dumps(vae_config(variant), sort_keys=True).encode(), np.uint8).copy()
    return out
