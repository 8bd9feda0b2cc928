"""Goldens for the LTX-2.5 audio-video transformer (make_goldens.py protocol, 1.2.0 reference).

Runs in .venv-ref12 (ltx-core 1.2.0). The architecture comes from the checkpoint metadata
(`LTXModelConfigurator.from_metadata`): no video feed-forward bias (the audio one stays), the
keyframe absolute-position embedding added after `patchify_proj` to keyframe-flagged tokens, no
prompt AdaLN MLP, and 1.2.0's A-V cross-attention AdaLN (scale/shift from the modality's own
per-token timesteps, the gate from the other modality's sigma). Loaded from the tiny split
transformer file through SingleGPUModelBuilder with the ComfyUI renaming map, as DiffusionStage does.

The keyframe embedding is random here (the reference zero-initialises it; a trained one is not zero),
so every output below depends on it; `x0.no_keyframes` runs the same inputs with no mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tiny25

FPS = 24.0
VIDEO_GRID = (3, 2, 2)  # latent frames, height, width
AUDIO_TOKENS = 5
CONTEXT_LEN = 8
SIGMA_V, SIGMA_A = 0.8, 0.6


def _meta_model():
    import torch
    from ltx_core.model.transformer.model_configurator import LTXModelConfigurator

    with torch.device("meta"):
        return LTXModelConfigurator.from_metadata(tiny25.transformer_metadata())


def _connector_tensors() -> dict[str, list[int]]:
    import torch
    from ltx_core.text_encoders.gemma.embeddings_connector import (
        AudioEmbeddings1DConnectorConfigurator,
        Embeddings1DConnectorConfigurator,
    )

    meta = tiny25.transformer_metadata()
    out = {}
    with torch.device("meta"):
        for name, cfgr in (
            ("video_embeddings_connector", Embeddings1DConnectorConfigurator),
            ("audio_embeddings_connector", AudioEmbeddings1DConnectorConfigurator),
        ):
            for k, v in cfgr.from_metadata(meta).state_dict().items():
                out[f"model.diffusion_model.{name}.{k}"] = list(v.shape)
    return out


def contribute(variant: str) -> dict:
    model = _meta_model()
    tensors = {f"model.diffusion_model.{k}": list(v.shape) for k, v in model.state_dict().items()}
    tensors.update(_connector_tensors())
    return {
        tiny25.TRANSFORMER: {"metadata": tiny25.transformer_metadata(), "tensors": tensors, "dtype": "BF16"}
    }


def load(model_dir: Path):
    import torch
    from ltx_core.loader.single_gpu_model_builder import SingleGPUModelBuilder
    from ltx_core.model.transformer.model_configurator import (
        LTXV_MODEL_COMFY_RENAMING_MAP,
        LTXModelConfigurator,
    )

    model = SingleGPUModelBuilder(
        model_class_configurator=LTXModelConfigurator,
        model_path=str(Path(model_dir) / tiny25.TRANSFORMER),
        model_sd_ops=LTXV_MODEL_COMFY_RENAMING_MAP,
    ).build(device=torch.device("cpu"), dtype=torch.float32)
    meta = [n for n, p in [*model.named_parameters(), *model.named_buffers()] if p.device.type == "meta"]
    assert not meta, f"parameters left on meta: {meta[:5]}"
    assert model.supports_keyframes_abs_pos_embedding
    assert float(model.keyframes_abs_pos_embedding.abs().max()) > 0
    return model.eval()


def run(variant: str, model_dir: Path) -> dict[str, np.ndarray]:
    import torch
    from ltx_core.components.patchifiers import AudioPatchifier, VideoLatentPatchifier, get_pixel_coords
    from ltx_core.model.transformer.modality import Modality
    from ltx_core.model.transformer.model import X0Model
    from ltx_core.types import AudioLatentShape, SpatioTemporalScaleFactors, VideoLatentShape

    torch.set_grad_enabled(False)
    model = load(Path(model_dir))
    assert model.prompt_adaln_single is None and model.audio_prompt_adaln_single is None
    assert model.transformer_blocks[0].ff.net[0].proj.bias is None
    assert model.transformer_blocks[0].audio_ff.net[0].proj.bias is not None
    x0 = X0Model(model)
    rng = np.random.RandomState(5)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))  # noqa: E731
    out: dict[str, np.ndarray] = {}

    f, h, w = VIDEO_GRID
    v_lat = rng.standard_normal((1, 128, f, h, w)).astype(np.float32)
    a_lat = rng.standard_normal((1, 8, AUDIO_TOKENS, 16)).astype(np.float32)
    vp, ap = VideoLatentPatchifier(1), AudioPatchifier(1)
    v_tok, a_tok = vp.patchify(t(v_lat)), ap.patchify(t(a_lat))
    v_bounds = vp.get_patch_grid_bounds(VideoLatentShape(1, 128, f, h, w))
    v_pos = get_pixel_coords(v_bounds, SpatioTemporalScaleFactors.default(), True).float()
    v_pos[:, 0] = v_pos[:, 0] / FPS
    a_pos = ap.get_patch_grid_bounds(AudioLatentShape(1, 8, AUDIO_TOKENS, 16))
    v_ctx = rng.standard_normal((1, CONTEXT_LEN, 16)).astype(np.float32)
    a_ctx = rng.standard_normal((1, CONTEXT_LEN, 8)).astype(np.float32)
    tv = v_tok.shape[1]
    # the pipelines' mask: the first latent frame (h * w tokens) is a single pixel frame
    kf = np.zeros((1, tv, 1), np.float32)
    kf[:, : h * w] = 1.0
    out.update(
        {
            "in.video_latent": v_lat,
            "in.audio_latent": a_lat,
            "in.video_positions": v_pos.numpy(),
            "in.audio_positions": a_pos.numpy(),
            "in.video_context": v_ctx,
            "in.audio_context": a_ctx,
            "in.keyframes_mask": kf,
            "keyframes_embedding": model.keyframes_abs_pos_embedding.detach().numpy(),
        }
    )

    def modality(tok, pos, ctx, sigma, timesteps=None, keyframes=None):
        ts = torch.full((tok.shape[0], tok.shape[1], 1), sigma) if timesteps is None else t(timesteps)
        return Modality(
            latent=tok,
            sigma=torch.full((tok.shape[0],), sigma),
            timesteps=ts,
            positions=pos,
            context=t(ctx),
            keyframes_mask=None if keyframes is None else t(keyframes),
        )

    audio = modality(a_tok, a_pos, a_ctx, SIGMA_A)
    video = modality(v_tok, v_pos, v_ctx, SIGMA_V, keyframes=kf)
    # preprocessed arguments: patchified + keyframe embedding, AdaLN inputs, cross-attention AdaLN
    va = model.video_args_preprocessor.prepare(video, audio)
    aa = model.audio_args_preprocessor.prepare(audio, video)
    assert va.prompt_timestep is None
    for name, args in (("video", va), ("audio", aa)):
        out[f"{name}.x"] = args.x.numpy()
        out[f"{name}.cross_scale_shift"] = args.cross_scale_shift_timestep.numpy()
        out[f"{name}.cross_gate"] = args.cross_gate_timestep.numpy()
    # conditioned first frame: its tokens at timestep 0 (the per-token timesteps reach the A-V
    # cross-attention AdaLN in 1.2.0)
    v_ts = np.full((1, tv, 1), SIGMA_V, np.float32)
    v_ts[:, : h * w] = 0.0
    out["in.cond_video_timesteps"] = v_ts
    cases = {
        "keyframes": (video, audio),
        "no_keyframes": (modality(v_tok, v_pos, v_ctx, SIGMA_V), audio),
        "conditioned": (modality(v_tok, v_pos, v_ctx, SIGMA_V, v_ts, kf), audio),
        "video_only": (video, None),
    }
    for name, (v, a) in cases.items():
        dv, da = x0(v, a, None)
        out[f"x0.{name}.video"] = dv.numpy()
        if da is not None:
            out[f"x0.{name}.audio"] = da.numpy()
    out.update(released_parameters())
    return out


def released_parameters() -> dict[str, np.ndarray]:
    """Parameter counts the reference builds (on the meta device) from the released 2.5 configuration,
    with and without the prompt AdaLN MLP; and the duration head at its defaults."""
    import torch
    from ltx_core.duration_head import DurationHeadConfigurator
    from ltx_core.model.transformer.model_configurator import LTXModelConfigurator

    out = {}
    for tag, extra in (("", {}), ("_prompt_adaln", {"use_prompt_adaln_single": True})):
        meta = {
            "config": {"transformer": {**tiny25.RELEASED_TRANSFORMER_CONFIG, **extra}},
            "model_version": "2.5.0",
        }
        with torch.device("meta"):
            model = LTXModelConfigurator.from_metadata(meta)
        out[f"released.parameters{tag}"] = np.array(sum(p.numel() for p in model.parameters()), np.int64)
    with torch.device("meta"):
        head = DurationHeadConfigurator.from_metadata({"config": {}})
    out["released.duration_head_parameters"] = np.array(sum(p.numel() for p in head.parameters()), np.int64)
    return out
