"""Goldens for the audio-video transformer, patchifiers and RoPE (make_goldens.py protocol).

Runs in the reference environment (torch, ltx-core). Inputs come from numpy RandomState; the
model is loaded from the tiny model directory through SingleGPUModelBuilder with the ComfyUI
renaming map, exactly as ltx-pipelines loads the 19B checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FIXED = {
    "dropout": 0.0,
    "attention_bias": True,
    "num_vector_embeds": None,
    "activation_fn": "gelu-approximate",
    "num_embeds_ada_norm": 1000,
    "use_linear_projection": False,
    "only_cross_attention": False,
    "cross_attention_norm": True,
    "double_self_attention": False,
    "upcast_attention": False,
    "standardization_norm": "rms_norm",
    "norm_elementwise_affine": False,
    "qk_norm": "rms_norm",
    "positional_embedding_type": "rope",
    "use_audio_video_cross_attention": True,
    "share_ff": False,
    "av_cross_ada_norm": True,
    "use_middle_indices_grid": True,
}
MODEL_VERSION = {"2.0": "2.0.0", "2.3": "2.3.0"}
FPS = 24.0
VIDEO_GRID = (3, 2, 2)  # latent frames, height, width
AUDIO_TOKENS = 5
CONTEXT_LEN = 8
SIGMA_V, SIGMA_A = 0.8, 0.6


def transformer_config(variant: str) -> dict:
    cfg = dict(FIXED)
    cfg.update(
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=128,
        out_channels=128,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_in_channels=128,
        audio_out_channels=128,
        cross_attention_dim=16,
        audio_cross_attention_dim=8,
        caption_channels=32,
        norm_eps=1e-6,
        positional_embedding_theta=10000.0,
        positional_embedding_max_pos=[20, 2048, 2048],
        audio_positional_embedding_max_pos=[20],
        timestep_scale_multiplier=1000,
        av_ca_timestep_scale_multiplier=1000.0,
        rope_type="split",
        frequencies_precision="float64",
        connector_num_attention_heads=2,
        connector_attention_head_dim=16,
        connector_num_layers=2,
        connector_num_learnable_registers=128,
        connector_positional_embedding_max_pos=[4096],
    )
    if variant == "2.3":
        # 2.3 switches, and the V2 text path (caption projection in the text encoder, connectors at
        # the transformer's inner widths): the same values golden_text.py writes
        cfg.update(
            apply_gated_attention=True,
            cross_attention_adaln=True,
            caption_proj_before_connector=True,
            caption_projection_first_linear=False,
            caption_proj_input_norm=False,
            caption_projection_second_linear=False,
            connector_apply_gated_attention=True,
            connector_attention_head_dim=8,
            audio_connector_num_attention_heads=2,
            audio_connector_attention_head_dim=4,
        )
    return cfg


def contribute(variant: str) -> dict:
    import torch
    from ltx_core.model.transformer.model_configurator import LTXModelConfigurator

    cfg = transformer_config(variant)
    with torch.device("meta"):
        model = LTXModelConfigurator.from_config({"transformer": cfg})
    tensors = {f"model.diffusion_model.{k}": list(v.shape) for k, v in model.state_dict().items()}
    return {
        "model.safetensors": {
            "metadata": {"config": {"transformer": cfg}, "model_version": MODEL_VERSION[variant]},
            "tensors": tensors,
            "dtype": "BF16",
        }
    }


def _load(model_dir: Path):
    import torch
    from ltx_core.loader.single_gpu_model_builder import SingleGPUModelBuilder
    from ltx_core.model.transformer.model_configurator import (
        LTXV_MODEL_COMFY_RENAMING_MAP,
        LTXModelConfigurator,
    )

    builder = SingleGPUModelBuilder(
        model_class_configurator=LTXModelConfigurator,
        model_path=str(model_dir / "model.safetensors"),
        model_sd_ops=LTXV_MODEL_COMFY_RENAMING_MAP,
    )
    model = builder.build(device=torch.device("cpu"), dtype=torch.float32)
    meta = [
        n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.device.type == "meta"
    ]
    assert not meta, f"parameters left on meta: {meta[:5]}"
    return model.eval()


def run(variant: str, model_dir: Path) -> dict[str, np.ndarray]:
    import torch
    from ltx_core.components.patchifiers import AudioPatchifier, VideoLatentPatchifier, get_pixel_coords
    from ltx_core.guidance.perturbations import (
        BatchedPerturbationConfig,
        Perturbation,
        PerturbationConfig,
        PerturbationType,
    )
    from ltx_core.model.transformer import attention as ref_attention
    from ltx_core.model.transformer.modality import Modality
    from ltx_core.model.transformer.model import X0Model
    from ltx_core.model.transformer.rope import LTXRopeType, generate_freq_grid_pytorch, precompute_freqs_cis
    from ltx_core.model.transformer.timestep_embedding import get_timestep_embedding
    from ltx_core.types import AudioLatentShape, VideoLatentShape

    assert ref_attention.memory_efficient_attention is None, "xformers would change the attention backend"
    torch.set_grad_enabled(False)
    model = _load(Path(model_dir))
    x0 = X0Model(model)
    rng = np.random.RandomState(3)
    out: dict[str, np.ndarray] = {}
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))  # noqa: E731

    # patchifiers and position grids
    f, h, w = VIDEO_GRID
    v_lat = rng.standard_normal((1, 128, f, h, w)).astype(np.float32)
    a_lat = rng.standard_normal((1, 8, AUDIO_TOKENS, 16)).astype(np.float32)
    vp, ap = VideoLatentPatchifier(1), AudioPatchifier(1)
    v_tok, a_tok = vp.patchify(t(v_lat)), ap.patchify(t(a_lat))
    v_pos = get_pixel_coords(
        vp.get_patch_grid_bounds(VideoLatentShape(1, 128, f, h, w)), (8, 32, 32), True
    ).float()
    v_pos[:, 0] = v_pos[:, 0] / FPS
    a_pos = ap.get_patch_grid_bounds(AudioLatentShape(1, 8, AUDIO_TOKENS, 16))
    out.update(
        {
            "in.video_latent": v_lat,
            "in.audio_latent": a_lat,
            "video_tokens": v_tok.numpy(),
            "audio_tokens": a_tok.numpy(),
            "video_positions": v_pos.numpy(),
            "audio_positions": a_pos.numpy(),
        }
    )

    inner = variant == "2.3"  # contexts arrive projected to the inner widths (16 video, 8 audio)
    v_ctx = rng.standard_normal((1, CONTEXT_LEN, 16 if inner else 32)).astype(np.float32)
    a_ctx = rng.standard_normal((1, CONTEXT_LEN, 8 if inner else 32)).astype(np.float32)
    out.update({"in.video_context": v_ctx, "in.audio_context": a_ctx})
    tv = v_tok.shape[1]

    def modality(tok, pos, ctx, sigma, timesteps=None, mask=None):
        ts = torch.full((tok.shape[0], tok.shape[1], 1), sigma) if timesteps is None else t(timesteps)
        return Modality(
            latent=tok,
            sigma=torch.full((tok.shape[0],), sigma),
            timesteps=ts,
            positions=pos,
            context=t(ctx).expand(tok.shape[0], -1, -1),
            attention_mask=mask,
        )

    video = modality(v_tok, v_pos, v_ctx, SIGMA_V)
    audio = modality(a_tok, a_pos, a_ctx, SIGMA_A)

    # timestep features and RoPE tables
    ts = np.array([0.0, 1.0, 250.5, 600.0, 999.0], np.float32)
    out["in.timesteps"] = ts
    out["timestep_sinusoid"] = get_timestep_embedding(
        t(ts), 256, flip_sin_to_cos=True, downscale_freq_shift=0
    ).numpy()
    va = model.video_args_preprocessor.prepare(video, audio)
    aa = model.audio_args_preprocessor.prepare(audio, video)
    for name, args in (("video", va), ("audio", aa)):
        out[f"{name}.pe_cos"], out[f"{name}.pe_sin"] = (x.numpy() for x in args.positional_embeddings)
        out[f"{name}.cross_pe_cos"], out[f"{name}.cross_pe_sin"] = (
            x.numpy() for x in args.cross_positional_embeddings
        )
        out[f"{name}.ada"] = args.timesteps.numpy()
        out[f"{name}.embedded_timestep"] = args.embedded_timestep.numpy()
        out[f"{name}.cross_scale_shift"] = args.cross_scale_shift_timestep.numpy()
        out[f"{name}.cross_gate"] = args.cross_gate_timestep.numpy()
        if args.prompt_timestep is not None:
            out[f"{name}.prompt_timestep"] = args.prompt_timestep.numpy()
    cos, sin = precompute_freqs_cis(
        v_pos,
        dim=16,
        out_dtype=torch.float32,
        max_pos=[20, 2048, 2048],
        use_middle_indices_grid=True,
        num_attention_heads=2,
        rope_type=LTXRopeType.INTERLEAVED,
        freq_grid_generator=generate_freq_grid_pytorch,
    )
    out["rope_interleaved_f32_cos"], out["rope_interleaved_f32_sin"] = cos.numpy(), sin.numpy()

    # one block
    bv, ba = model.transformer_blocks[0](va, aa, BatchedPerturbationConfig.empty(1))
    out["block0.video"], out["block0.audio"] = bv.x.numpy(), ba.x.numpy()

    def perturb(*items):
        return BatchedPerturbationConfig([PerturbationConfig([Perturbation(k, b) for k, b in items])])

    cases = {
        "plain": (video, audio, BatchedPerturbationConfig.empty(1)),
        "skip_video_self_attn": (video, audio, perturb((PerturbationType.SKIP_VIDEO_SELF_ATTN, [1]))),
        "skip_audio_self_attn": (video, audio, perturb((PerturbationType.SKIP_AUDIO_SELF_ATTN, None))),
        "skip_a2v": (video, audio, perturb((PerturbationType.SKIP_A2V_CROSS_ATTN, None))),
        "skip_v2a": (video, audio, perturb((PerturbationType.SKIP_V2A_CROSS_ATTN, [0]))),
        "video_only": (video, None, BatchedPerturbationConfig.empty(1)),
        "audio_only": (None, audio, BatchedPerturbationConfig.empty(1)),
    }
    # conditioned first frame (token timesteps 0) and a self-attention mask with zeros
    v_ts = np.full((1, tv, 1), SIGMA_V, np.float32)
    v_ts[:, : h * w] = 0.0
    mask = rng.uniform(0.0, 1.0, (1, tv, tv)).astype(np.float32)
    mask[mask < 0.2] = 0.0
    out["in.cond_video_timesteps"], out["in.cond_video_mask"] = v_ts, mask
    cond = modality(v_tok, v_pos, v_ctx, SIGMA_V, v_ts, t(mask))
    cases["conditioned"] = (cond, audio, BatchedPerturbationConfig.empty(1))
    # batch of two: sample 0 perturbed, sample 1 not (blended masks)
    v2 = modality(v_tok.expand(2, -1, -1), v_pos.expand(2, -1, -1, -1), v_ctx, SIGMA_V)
    a2 = modality(a_tok.expand(2, -1, -1), a_pos.expand(2, -1, -1, -1), a_ctx, SIGMA_A)
    mixed = BatchedPerturbationConfig(
        [
            PerturbationConfig(
                [
                    Perturbation(PerturbationType.SKIP_VIDEO_SELF_ATTN, [1]),
                    Perturbation(PerturbationType.SKIP_A2V_CROSS_ATTN, None),
                ]
            ),
            PerturbationConfig([]),
        ]
    )
    cases["batch_mixed"] = (v2, a2, mixed)
    for name, (v, a, p) in cases.items():
        dv, da = x0(v, a, p)
        if dv is not None:
            out[f"x0.{name}.video"] = dv.numpy()
        if da is not None:
            out[f"x0.{name}.audio"] = da.numpy()

    if variant == "2.3":
        return out
    # the 2.0 model with the caption projection moved to the text encoder (the LTX-2.3 layout)
    bare = _without_caption_projection(variant, Path(model_dir))
    v_in = rng.standard_normal((1, CONTEXT_LEN, 16)).astype(np.float32)
    a_in = rng.standard_normal((1, CONTEXT_LEN, 8)).astype(np.float32)
    out["in.video_context_inner"], out["in.audio_context_inner"] = v_in, a_in
    dv, da = X0Model(bare)(
        modality(v_tok, v_pos, v_in, SIGMA_V),
        modality(a_tok, a_pos, a_in, SIGMA_A),
        BatchedPerturbationConfig.empty(1),
    )
    out["x0.no_caption_projection.video"], out["x0.no_caption_projection.audio"] = dv.numpy(), da.numpy()
    return out


def _without_caption_projection(variant: str, model_dir: Path):
    from ltx_core.model.transformer.model_configurator import LTXModelConfigurator
    from safetensors.torch import load_file

    cfg = dict(
        transformer_config(variant),
        caption_proj_before_connector=True,
        caption_projection_first_linear=False,
        caption_proj_input_norm=False,
        caption_projection_second_linear=False,
    )
    model = LTXModelConfigurator.from_config({"transformer": cfg}).to_empty(device="cpu")
    prefix = "model.diffusion_model."
    sd = {
        k[len(prefix) :]: v.float()
        for k, v in load_file(str(model_dir / "model.safetensors")).items()
        if k.startswith(prefix)
    }
    missing, _ = model.load_state_dict(sd, strict=False)
    assert not missing, missing[:5]
    assert not hasattr(model, "caption_projection")
    return model.eval()
