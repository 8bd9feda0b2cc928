"""Goldens for a whole tiny audio-to-video run (ltx_pipelines/a2vid_two_stage.py's A2VidPipelineTwoStage),
float32 on CPU, rebuilt from the reference's pieces as golden_pipeline.py does (the class hard-codes bf16
and CUDA calls).

audio      golden_audio_io's WAV, read by decode_audio_from_file from START for num_frames / frame_rate
           seconds (the reference CLI's default --audio-max-duration), encoded by the audio VAE encoder
           (encode_audio: resample, mel, encoder) and cut to AudioLatentShape.from_duration's frames.
stage 1    denoise_video_only at half resolution: LTX2Scheduler().execute(steps=3) (default token count),
           Euler, multi_modal_guider_denoising_func with the video guider of golden_pipeline.GUIDERS and the
           negative prompt, the audio guider MultiModalGuiderParams() without a negative context (so the
           unconditional pass keeps the positive audio context); the audio latent is the encoded one,
           noise_scale 0 and a zero denoise mask (frozen).
stage 2    upsample, then denoise_video_only with the tiny distilled LoRA (strength 1.0) fused,
           STAGE_2_DISTILLED_SIGMA_VALUES, re-noise at 0.909375, positive contexts, audio frozen again.
output     the tiled video decode; the audio is the waveform that was read (the reference returns the
           input audio, not a decoded one).

Noise injected as in golden_pipeline ("noise.stage1_video", "noise.stage2_video"; the frozen audio
states draw noise that noise_scale 0 discards, not stored). Outputs, prefixed "a2v.": audio_latent
(1, 8, T, 16) (cut), stage1_video, upsampled, stage2_video, video_f16, waveform (2, N), waveform_rate.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from golden_audio_io import START, wav_bytes
from golden_pipeline import (
    DEV_STEPS,
    FPS,
    GUIDERS,
    HEIGHT,
    LORA_STRENGTH,
    NOISE_SEED,
    NUM_FRAMES,
    PROMPT,
    WIDTH,
    _decode_video,
    _f16_bits,
    _fuse_lora_f32,
    _injected_noiser,
    _no_meta,
    _Noise,
)


def contribute(variant: str) -> dict:
    return {}


def setup(model_dir: Path):
    """(ledger, positive contexts, negative contexts, components) in float32 on CPU."""
    import torch
    from golden_text import _shrink_gemma_config
    from ltx_core.model.transformer import attention as ref_attention
    from ltx_pipelines.utils.constants import DEFAULT_NEGATIVE_PROMPT
    from ltx_pipelines.utils.model_ledger import ModelLedger
    from ltx_pipelines.utils.types import PipelineComponents

    assert ref_attention.memory_efficient_attention is None
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
    raw = [encoder.encode(p) for p in (PROMPT, DEFAULT_NEGATIVE_PROMPT)]
    processor = ledger.gemma_embeddings_processor()
    ctx_p, ctx_n = (processor.process_hidden_states(hs, mask) for hs, mask in raw)
    return ledger, ctx_p, ctx_n, PipelineComponents(dtype=dtype, device=device)


def run(variant: str, model_dir: Path) -> dict[str, np.ndarray]:
    import torch
    from ltx_core.components.diffusion_steps import EulerDiffusionStep
    from ltx_core.components.guiders import MultiModalGuider, MultiModalGuiderParams
    from ltx_core.components.schedulers import LTX2Scheduler
    from ltx_core.model.audio_vae import encode_audio as vae_encode_audio
    from ltx_core.model.upsampler import upsample_video
    from ltx_core.types import AudioLatentShape, VideoPixelShape
    from ltx_pipelines.utils.constants import STAGE_2_DISTILLED_SIGMA_VALUES
    from ltx_pipelines.utils.helpers import (
        denoise_video_only,
        multi_modal_guider_denoising_func,
        simple_denoising_func,
    )
    from ltx_pipelines.utils.media_io import decode_audio_from_file
    from ltx_pipelines.utils.samplers import euler_denoising_loop

    model_dir = Path(model_dir)
    ledger, ctx_p, ctx_n, components = setup(model_dir)
    dtype, device = torch.float32, torch.device("cpu")
    noise = _Noise(NOISE_SEED)
    stepper = EulerDiffusionStep()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audio.wav"
        path.write_bytes(wav_bytes())
        audio = decode_audio_from_file(str(path), device, START, NUM_FRAMES / FPS)
    audio_encoder = ledger.audio_encoder()
    _no_meta(audio_encoder, "audio encoder")
    latent = vae_encode_audio(audio, audio_encoder)
    frames = AudioLatentShape.from_duration(
        batch=1, duration=NUM_FRAMES / FPS, channels=8, mel_bins=16
    ).frames
    latent = latent[:, :, :frames]

    def loop(denoise_fn):
        def fn(sigmas, video_state, audio_state, stepper):
            return euler_denoising_loop(
                sigmas=sigmas,
                video_state=video_state,
                audio_state=audio_state,
                stepper=stepper,
                denoise_fn=denoise_fn,
            )

        return fn

    noiser, queue = _injected_noiser(noise, ["stage1_video", "frozen1", "stage2_video", "frozen2"])
    base = ledger.transformer()
    s1 = VideoPixelShape(batch=1, frames=NUM_FRAMES, width=WIDTH // 2, height=HEIGHT // 2, fps=FPS)
    guided = multi_modal_guider_denoising_func(
        video_guider=MultiModalGuider(
            params=MultiModalGuiderParams(**GUIDERS["video"]), negative_context=ctx_n.video_encoding
        ),
        audio_guider=MultiModalGuider(params=MultiModalGuiderParams()),
        v_context=ctx_p.video_encoding,
        a_context=ctx_p.audio_encoding,
        transformer=base,
    )
    v1 = denoise_video_only(
        output_shape=s1,
        conditionings=[],
        noiser=noiser,
        sigmas=LTX2Scheduler().execute(steps=DEV_STEPS).to(dtype=torch.float32),
        stepper=stepper,
        denoising_loop_fn=loop(guided),
        components=components,
        dtype=dtype,
        device=device,
        initial_audio_latent=latent,
    )
    up = upsample_video(
        latent=v1.latent[:1], video_encoder=ledger.video_encoder(), upsampler=ledger.spatial_upsampler()
    )
    lora_model = ledger.transformer()
    _fuse_lora_f32(lora_model, model_dir / "distilled_lora.safetensors", LORA_STRENGTH)
    s2_sigmas = torch.tensor(STAGE_2_DISTILLED_SIGMA_VALUES, dtype=torch.float32)
    v2 = denoise_video_only(
        output_shape=VideoPixelShape(batch=1, frames=NUM_FRAMES, width=WIDTH, height=HEIGHT, fps=FPS),
        conditionings=[],
        noiser=noiser,
        sigmas=s2_sigmas,
        stepper=stepper,
        denoising_loop_fn=loop(simple_denoising_func(ctx_p.video_encoding, ctx_p.audio_encoding, lora_model)),
        components=components,
        dtype=dtype,
        device=device,
        noise_scale=s2_sigmas[0],
        initial_video_latent=up,
        initial_audio_latent=latent,
    )
    assert not queue
    video = _decode_video(ledger.video_decoder(), v2.latent, noise)
    out = {
        "a2v.audio_latent": latent.numpy(),
        "a2v.stage1_video": v1.latent.numpy(),
        "a2v.upsampled": up.numpy(),
        "a2v.stage2_video": v2.latent.numpy(),
        "a2v.video_f16": _f16_bits(video),
        "a2v.waveform": audio.waveform[0].numpy(),
        "a2v.waveform_rate": np.array(audio.sampling_rate, np.int32),
    }
    for stream in ("stage1_video", "stage2_video", "decoder"):
        if stream in noise.arrays:
            out[f"noise.{stream}"] = noise.arrays[stream]
    return out
