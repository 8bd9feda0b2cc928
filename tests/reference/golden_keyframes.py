"""Goldens for the keyframe interpolation pipeline (ltx_pipelines/keyframe_interpolation.py), float32 on CPU
(make_goldens.py protocol).

The reference class hard-codes bf16 and CUDA calls, so `run` rebuilds its flow from the same pieces, as
golden_pipeline.py does for the other two-stage runs: text + DEFAULT_NEGATIVE_PROMPT -> stage 1 at half size,
LTX2Scheduler (3 steps), MultiModalGuider (golden_pipeline.GUIDERS), the images as appended keyframe tokens
(image_conditionings_by_adding_guiding_latent, the reference's own helper: frame 0 too) -> upsample ->
stage 2 with the tiny distilled LoRA fused (float32, golden_pipeline._fuse_lora_f32), the keyframe tokens
again at full size, stage-2 distilled sigmas -> decode video (tiled, default) -> audio decoder -> vocoder.
Images are made here (uint8, saved as image<i>) and read from PNGs with CRF 0 (no H.264 round trip).

Saved: image<i>; init.positions / init.denoise_mask / init.tokens: stage 1's video state after the
conditionings (before noise; tokens = the appended keyframe tokens); stage1_video, stage1_audio, upsampled,
stage2_video, stage2_audio, mel, waveform_every4 (every 4th sample); video_f16 = the float decoder output at frames [::4], rows and
columns [::2] (float16 bits); noise.<stream>.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

PROMPT = "a red fox trots through fresh snow"
HEIGHT, WIDTH, NUM_FRAMES, FPS = 64, 128, 17, 24.0
STEPS = 3
NOISE_SEED = 4321
# (frame, strength, image height, image width): frame 0, one off the latent grid, the last frame
KEYFRAMES = [(0, 1.0, 48, 80), (5, 0.8, 70, 60), (16, 1.0, 64, 128)]


def contribute(variant: str) -> dict:
    return {}


def make_image(i: int, height: int, width: int) -> np.ndarray:
    rng = np.random.RandomState(100 + i)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ph = rng.uniform(0, 6.28, 3)
    img = [127.5 + 120 * np.sin(xx / (5 + 2 * c) - yy / (9 + c) + ph[c]) for c in range(3)]
    return np.stack(img, -1).clip(0, 255).astype(np.uint8)


def setup(model_dir: Path, prompts: list[str]):
    """(ledger, components, text contexts): ModelLedger in float32 and the prompts through Gemma + connectors."""
    import torch
    from golden_pipeline import _no_meta
    from golden_text import _shrink_gemma_config
    from ltx_core.model.transformer import attention as ref_attention
    from ltx_pipelines.utils.model_ledger import ModelLedger
    from ltx_pipelines.utils.types import PipelineComponents

    assert ref_attention.memory_efficient_attention is None, "xformers would change the attention backend"
    _shrink_gemma_config()
    torch.manual_seed(0)
    torch.set_grad_enabled(False)
    dtype, device = torch.float32, torch.device("cpu")
    ledger = ModelLedger(
        dtype=dtype,
        device=device,
        checkpoint_path=str(model_dir / "model.safetensors"),
        gemma_root_path=str(model_dir / "gemma"),
        spatial_upsampler_path=str(model_dir / "upsampler.safetensors"),
    )
    encoder = ledger.text_encoder()
    _no_meta(encoder.model, "gemma")
    raw = [encoder.encode(p) for p in prompts]
    del encoder
    processor = ledger.gemma_embeddings_processor()
    contexts = [processor.process_hidden_states(hs, mask) for hs, mask in raw]
    return ledger, PipelineComponents(dtype=dtype, device=device), contexts


def initial_state(shape, conditionings, components):
    """The video state after `conditionings`, before noise (noise_video_state without the noiser)."""
    import torch
    from ltx_core.tools import VideoLatentTools
    from ltx_core.types import VideoLatentShape
    from ltx_pipelines.utils.helpers import state_with_conditionings

    latent_shape = VideoLatentShape.from_pixel_shape(
        shape=shape,
        latent_channels=components.video_latent_channels,
        scale_factors=components.video_scale_factors,
    )
    tools = VideoLatentTools(components.video_patchifier, latent_shape, shape.fps)
    state = tools.create_initial_state(torch.device("cpu"), torch.float32, None)
    return state_with_conditionings(state, conditionings, tools), latent_shape.token_count()


def loop(denoise_fn):
    from ltx_pipelines.utils.samplers import euler_denoising_loop

    def fn(sigmas, video_state, audio_state, stepper):
        return euler_denoising_loop(
            sigmas=sigmas,
            video_state=video_state,
            audio_state=audio_state,
            stepper=stepper,
            denoise_fn=denoise_fn,
        )

    return fn


def decoded(ledger, video_latent, audio_latent, noise) -> dict[str, np.ndarray]:
    from golden_pipeline import _decode_video, _f16_bits

    video = _decode_video(ledger.video_decoder(), video_latent, noise)
    mel = ledger.audio_decoder()(audio_latent)
    vocoder = ledger.vocoder()
    return {
        "video_f16": _f16_bits(video[::4, ::2, ::2]),
        "mel": mel.numpy(),
        "waveform_every4": vocoder(mel).squeeze(0).float().numpy()[:, ::4],
    }


def run(variant: str, model_dir: Path) -> dict[str, np.ndarray]:
    import torch
    from golden_pipeline import GUIDERS, _fuse_lora_f32, _injected_noiser, _Noise
    from ltx_core.components.diffusion_steps import EulerDiffusionStep
    from ltx_core.components.guiders import MultiModalGuiderParams, create_multimodal_guider_factory
    from ltx_core.components.schedulers import LTX2Scheduler
    from ltx_core.model.upsampler import upsample_video
    from ltx_core.types import VideoPixelShape
    from ltx_pipelines.utils.args import ImageConditioningInput
    from ltx_pipelines.utils.constants import DEFAULT_NEGATIVE_PROMPT, STAGE_2_DISTILLED_SIGMA_VALUES
    from ltx_pipelines.utils.helpers import (
        denoise_audio_video,
        image_conditionings_by_adding_guiding_latent,
        multi_modal_guider_factory_denoising_func,
        simple_denoising_func,
    )
    from PIL import Image

    model_dir = Path(model_dir)
    ledger, components, (ctx_p, ctx_n) = setup(model_dir, [PROMPT, DEFAULT_NEGATIVE_PROMPT])
    dtype, device = torch.float32, torch.device("cpu")
    out: dict[str, np.ndarray] = {}
    noise = _Noise(NOISE_SEED)
    with tempfile.TemporaryDirectory() as tmp:
        images = []
        for i, (frame, strength, h, w) in enumerate(KEYFRAMES):
            out[f"image{i}"] = img = make_image(i, h, w)
            path = str(Path(tmp) / f"key{i}.png")
            Image.fromarray(img).save(path)
            images.append(ImageConditioningInput(path, frame, strength, crf=0))
        encoder = ledger.video_encoder()
        s1 = VideoPixelShape(batch=1, frames=NUM_FRAMES, width=WIDTH // 2, height=HEIGHT // 2, fps=FPS)
        s2 = VideoPixelShape(batch=1, frames=NUM_FRAMES, width=WIDTH, height=HEIGHT, fps=FPS)
        conds1 = image_conditionings_by_adding_guiding_latent(
            images, s1.height, s1.width, encoder, dtype, device
        )
        conds2 = image_conditionings_by_adding_guiding_latent(
            images, s2.height, s2.width, encoder, dtype, device
        )
    state, n = initial_state(s1, conds1, components)
    assert state.attention_mask is None
    out["init.positions"] = state.positions.numpy()
    out["init.denoise_mask"] = state.denoise_mask.numpy()
    out["init.tokens"] = state.clean_latent[:, n:].numpy()

    base = ledger.transformer()
    guided = multi_modal_guider_factory_denoising_func(
        video_guider_factory=create_multimodal_guider_factory(
            MultiModalGuiderParams(**GUIDERS["video"]), negative_context=ctx_n.video_encoding
        ),
        audio_guider_factory=create_multimodal_guider_factory(
            MultiModalGuiderParams(**GUIDERS["audio"]), negative_context=ctx_n.audio_encoding
        ),
        v_context=ctx_p.video_encoding,
        a_context=ctx_p.audio_encoding,
        transformer=base,
    )
    stepper = EulerDiffusionStep()
    noiser, queue = _injected_noiser(noise, ["stage1_video", "stage1_audio", "stage2_video", "stage2_audio"])
    sig = LTX2Scheduler().execute(steps=STEPS).to(dtype=torch.float32)
    v1, a1 = denoise_audio_video(
        output_shape=s1, conditionings=conds1, noiser=noiser, sigmas=sig, stepper=stepper,
        denoising_loop_fn=loop(guided), components=components, dtype=dtype, device=device,
    )  # fmt: skip
    up = upsample_video(latent=v1.latent[:1], video_encoder=encoder, upsampler=ledger.spatial_upsampler())
    lora_model = ledger.transformer()
    _fuse_lora_f32(lora_model, model_dir / "distilled_lora.safetensors", 1.0)
    s2sig = torch.tensor(STAGE_2_DISTILLED_SIGMA_VALUES, dtype=torch.float32)
    v2, a2 = denoise_audio_video(
        output_shape=s2, conditionings=conds2, noiser=noiser, sigmas=s2sig, stepper=stepper,
        denoising_loop_fn=loop(simple_denoising_func(ctx_p.video_encoding, ctx_p.audio_encoding, lora_model)),
        components=components, dtype=dtype, device=device, noise_scale=s2sig[0],
        initial_video_latent=up, initial_audio_latent=a1.latent,
    )  # fmt: skip
    assert not queue
    out.update(
        {
            "stage1_video": v1.latent.numpy(),
            "stage1_audio": a1.latent.numpy(),
            "upsampled": up.numpy(),
            "stage2_video": v2.latent.numpy(),
            "stage2_audio": a2.latent.numpy(),
            **decoded(ledger, v2.latent, a2.latent, noise),
        }
    )
    for stream, a in noise.arrays.items():
        out[f"noise.{stream}"] = a
    return out
