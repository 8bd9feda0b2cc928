"""Goldens for the LTX-2.5 video decoders from the official 1.2.0 reference (ltx-core 1.2.0): the
diffusion decoder (`DiffusionVideoDecoder`, neighbourhood-attention stages, x0 output) untiled and tiled,
in both of the reference's pathways, and the convolutional decoder of the 2.5 conv VAE file.

A make_goldens.py module (`just goldens25 --only video_decoders`, in .venv-ref12): `contribute` gives the
tiny 2.5's two video VAE files (tiny25.VIDEO_VAE: encoder + diffusion decoder, tiny25.VIDEO_VAE_CONV:
encoder + conv decoder), `run` writes tests/goldens/2.5/video_decoders.safetensors.

Both decoders are built through the official loader (SingleGPUModelBuilder + VideoDecoderConfigurator +
video_decoder_sd_ops_for_checkpoint, which splits the fused `qkv` and renames the timestep MLP). The
diffusion decoder is run as built (the "combined" pathway: full-volume attention; natten's attention swapped for
the reference's eager equivalent, natten being CUDA-only) and as the pipelines run it (apply_diffvae_mode(CHUNKED_EAGER): W-chunked attention with replicated edges, the eager tiled-SDPA
neighbourhood attention on a CPU). Its noise is drawn by the reference from torch's generator; every draw
is replaced (torch.randn wrapped) by `noise_draw(seed, index, shape)`, numpy's, whose shapes are saved in
draw order, so the port's test injects the same noise.

The tiny diffusion decoder keeps the reference's hard-wired geometry (latent 128 channels, patch 4, the
four upsample hops (1,2,2) (2,1,1) (2,2,2) (2,2,2)) with narrow stages (head_dim 16), a stage-5 width
(32) unlike the context's (16), smaller kernels (3 and 5) and the released decode (one x0 step from noise).
Two more schedules reuse the same weights with other metadata: three x0 steps and two velocity steps.
"""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
from pathlib import Path

import numpy as np
import tiny25

DIFFUSION_FILE = tiny25.VIDEO_VAE  # the default 2.5 video VAE: encoder + diffusion decoder
CONV_FILE = tiny25.VIDEO_VAE_CONV  # the 2.5 conv VAE: encoder + convolutional decoder

ENCODER = {
    "dims": 3,
    "in_channels": 3,
    "out_channels": 128,
    "patch_size": 4,
    "norm_layer": "pixel_norm",
    "latent_log_var": "uniform",
    "spatial_padding_mode": "zeros",
    "blocks": [
        ["res_x", {"num_layers": 1}],
        ["compress_space_res", {"multiplier": 1}],
        ["compress_time_res", {"multiplier": 1}],
        ["compress_all_res", {"multiplier": 2}],
        ["compress_all_res", {"multiplier": 1}],
    ],
}
DIFFUSION_DECODER = {
    "in_channels": 128,
    "out_channels": 3,
    "patch_size": 4,
    "head_dim": 16,
    "t_emb_dim": 32,
    "stage_channels": [128, 64, 32, 32, 16],
    "stage_depths": [1, 1, 1, 1, 2],
    "stage_kernels": [[3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 5, 5], [3, 3, 3]],
    "upsamples": [[[1, 2, 2], 2], [[2, 1, 1], 2], [[2, 2, 2], 1], [[2, 2, 2], 2]],
    "stage5_kernel": [3, 5, 5],
    "stage5_channels": 32,
    "default_num_inference_steps": 1,
    "timestep_scale_multiplier": 1.0,
}
DIFFUSION_VAE = {
    "_class_name": "CausalDiffusionVAE",
    "latent_channels": 128,
    "model_output_type": "x0",
    "encoder": ENCODER,
    "decoder": DIFFUSION_DECODER,
}
CONV_VAE = {
    "dims": 3,
    "latent_channels": 128,
    "patch_size": 4,
    "norm_layer": "pixel_norm",
    "latent_log_var": "uniform",
    "spatial_padding_mode": "zeros",
    "timestep_conditioning": False,
    "encoder_blocks": ENCODER["blocks"],
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
    "decoder_base_channels": 8,
    "causal_decoder": False,
}
# Other decode schedules on the same weights (metadata only): (name, model_output_type, steps)
SCHEDULES = [("x0_3", "x0", 3), ("v_2", "v", 2)]
UNTILED_LATENT = (2, 1, 2)  # frames', height', width': all below the stage floor (3, 3, 3): padded
TILED_LATENT = (3, 1, 3)  # two temporal x two width tiles (H padded)
# (tile, overlap) per axis in frames / pixels: overlaps at the decoder's minimum (8 frames, 32 px)
TILING = {"frames": (16, 8), "height": (0, 0), "width": (64, 32)}
CONV_LATENT = (2, 1, 2)
SEED = 2025


def _raw_decoder_shapes(dec) -> dict[str, list[int]]:
    """The checkpoint's own key names: the loader splits `attn.qkv` and renames `t_embedder.mlp.*`."""
    out: dict[str, list[int]] = {}
    for k, v in dec.state_dict().items():
        if k.startswith("per_channel_statistics."):
            out["vae." + k] = list(v.shape)
            continue
        if ".qkv.to_" in k:
            prefix, leaf = k.split(".qkv.to_")
            part, param = leaf.split(".")
            key = f"vae.decoder.{prefix}.qkv.{param}"
            if part == "q":
                out[key] = [3 * v.shape[0], *v.shape[1:]]
            continue
        k = k.replace("t_embedder.timestep_embedder.linear_1.", "t_embedder.mlp.0.")
        k = k.replace("t_embedder.timestep_embedder.linear_2.", "t_embedder.mlp.2.")
        out["vae.decoder." + k] = list(v.shape)
    return out


def _shapes(module, prefix: str) -> dict[str, list[int]]:
    return {
        ("vae." + k if k.startswith("per_channel_statistics.") else prefix + k): list(v.shape)
        for k, v in module.state_dict().items()
    }


def contribute(variant: str = "2.5") -> dict:
    import torch
    from ltx_core.model.video_vae.model_configurator import VideoDecoderConfigurator, VideoEncoderConfigurator

    diff_meta = {"config": {"vae": DIFFUSION_VAE}}
    conv_meta = {"config": {"vae": CONV_VAE}}
    with torch.device("meta"):
        denc = VideoEncoderConfigurator.from_metadata(diff_meta)
        ddec = VideoDecoderConfigurator.from_metadata(diff_meta)
        cenc = VideoEncoderConfigurator.from_metadata(conv_meta)
        cdec = VideoDecoderConfigurator.from_metadata(conv_meta)
    return {
        DIFFUSION_FILE: {
            "metadata": diff_meta,
            "tensors": {**_shapes(denc, "vae.encoder."), **_raw_decoder_shapes(ddec)},
            "dtype": "BF16",
        },
        CONV_FILE: {
            "metadata": conv_meta,
            "tensors": {**_shapes(cenc, "vae.encoder."), **_shapes(cdec, "vae.decoder.")},
            "dtype": "BF16",
        },
    }


def _build(path: Path, mode=None):
    import torch
    from ltx_core.loader.single_gpu_model_builder import SingleGPUModelBuilder
    from ltx_core.model.video_vae.model_configurator import (
        VideoDecoderConfigurator,
        video_decoder_sd_ops_for_checkpoint,
    )
    from ltx_core.model.video_vae.transformer import build_diffvae_mode_op

    builder = SingleGPUModelBuilder(
        model_path=str(path),
        model_class_configurator=VideoDecoderConfigurator,
        model_sd_ops=video_decoder_sd_ops_for_checkpoint(str(path)),
        module_ops=(build_diffvae_mode_op(mode),) if mode is not None else (),
    )
    model = builder.build(device=torch.device("cpu"), dtype=torch.float32)
    if mode is None:  # as built, the attention is natten's (absent on a CPU): its eager equivalent
        from ltx_core.model.video_vae.transformer import EagerSdpaAttention, NeighborhoodAttention3D

        for m in model.modules():
            if isinstance(m, NeighborhoodAttention3D):
                m.attention_function = EagerSdpaAttention()
    meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type == "meta"]
    assert not meta, f"left on meta: {meta[:5]}"
    return model.eval()


def noise_draw(seed: int, index: int, shape) -> np.ndarray:
    """The noise injected for the reference's `index`-th torch.randn call (the port's test draws the same)."""
    return np.random.RandomState(seed * 1000 + index).standard_normal(tuple(shape)).astype(np.float32)


@contextlib.contextmanager
def _injected_randn(seed: int, record: list):
    import torch

    real = torch.randn

    def randn(*size, generator=None, dtype=None, device=None, **kwargs):
        shape = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else tuple(size)
        record.append(shape)
        return torch.from_numpy(noise_draw(seed, len(record) - 1, shape)).to(dtype or torch.float32)

    torch.randn = randn
    try:
        yield
    finally:
        torch.randn = real


def _decode(dec, latent: np.ndarray, tiling, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(video (B, 3, F, H, W), the shapes of the noise draws in order (N, 5), the chunk frame counts)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    drawn: list = []
    with torch.no_grad(), _injected_randn(seed, drawn):
        if tiling is None:
            chunks = [dec(torch.from_numpy(latent), generator=gen)]
        else:
            chunks = list(dec.tiled_decode(torch.from_numpy(latent), tiling, generator=gen))
    noise = np.array(drawn, np.int32).reshape(-1, 5)
    frames = np.array([c.shape[2] for c in chunks], np.int32)
    return torch.cat(chunks, dim=2).numpy(), noise, frames


def _with_schedule(src: Path, dst: Path, output_type: str, steps: int) -> Path:
    """A copy of the diffusion VAE file with another decode schedule in its metadata."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    vae = copy.deepcopy(DIFFUSION_VAE)
    vae["model_output_type"] = output_type
    vae["decoder"]["default_num_inference_steps"] = steps
    meta = {**meta, "config": json.dumps({"vae": vae}, sort_keys=True)}
    save_file(tensors, str(dst), metadata=meta)
    return dst


def run(variant: str, model_dir: Path) -> dict[str, np.ndarray]:
    from ltx_core.model.video_vae.transformer import DiffVAEMode
    from ltx_core.tiling import DimensionSizeConfig, TileSizeConfig

    model_dir = Path(model_dir)
    diff_path = model_dir / DIFFUSION_FILE
    rng = np.random.RandomState(SEED)
    z = rng.standard_normal((1, 128, *UNTILED_LATENT)).astype(np.float32)
    zt = rng.standard_normal((1, 128, *TILED_LATENT)).astype(np.float32)
    zc = rng.standard_normal((1, 128, *CONV_LATENT)).astype(np.float32)
    tiling = TileSizeConfig(**{axis: DimensionSizeConfig(*v) for axis, v in TILING.items()})
    out: dict[str, np.ndarray] = {"latent": z, "tiled_latent": zt, "conv_latent": zc}
    out["tiling"] = np.array([v for axis in ("frames", "height", "width") for v in TILING[axis]], np.int32)
    pathways = {"combined": None, "chunked": DiffVAEMode.CHUNKED_EAGER}
    for name, mode in pathways.items():
        dec = _build(diff_path, mode)
        out[f"{name}_video"], out[f"{name}_noise"], _ = _decode(dec, z, None, 11)
        out[f"{name}_tiled_video"], out[f"{name}_tiled_noise"], frames = _decode(dec, zt, tiling, 12)
        out[f"{name}_tiled_chunk_frames"] = frames
    with tempfile.TemporaryDirectory() as tmp:
        for name, output_type, steps in SCHEDULES:
            path = _with_schedule(diff_path, Path(tmp) / f"{name}.safetensors", output_type, steps)
            dec = _build(path, DiffVAEMode.CHUNKED_EAGER)
            out[f"{name}_video"], out[f"{name}_noise"], _ = _decode(dec, z, None, 13)
            if output_type == "x0":  # a multi-step schedule slices one full-size draw per tile
                out[f"{name}_tiled_video"], out[f"{name}_tiled_noise"], _ = _decode(dec, zt, tiling, 14)
    conv = _build(model_dir / CONV_FILE)
    out["conv_video"], _, _ = _decode(conv, zc, None, 15)
    out["config"] = np.frombuffer(json.dumps(DIFFUSION_VAE, sort_keys=True).encode(), np.uint8).copy()
    return out
