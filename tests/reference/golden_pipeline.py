"""Goldens for whole tiny two-stage runs (make_goldens.py protocol), float32 on CPU.

The reference pipeline classes (ltx_pipelines/distilled.py, ti2vid_two_stages.py) hard-code bf16 and call
torch.cuda.synchronize, so `run` rebuilds the same flow from the same pieces: ModelLedger (the official
builders) in float32, `denoise_audio_video`, `euler_denoising_loop`, `simple_denoising_func`,
`multi_modal_guider_factory_denoising_func`, `upsample_video`, `VideoDecoder.tiled_decode` with
TilingConfig.default(), `decode_audio`. Two pipelines:

distilled  text -> stage 1 at half resolution (DISTILLED_SIGMA_VALUES, one pass per step) -> upsample ->
           stage 2 (STAGE_2_DISTILLED_SIGMA_VALUES, re-noise with noise_scale = 0.909375) -> decode video
           (tiled, default tiling) -> audio decoder -> vocoder.
dev        text + DEFAULT_NEGATIVE_PROMPT -> stage 1 with LTX2Scheduler().execute(steps=3) and
           MultiModalGuider (GUIDERS: the LTX-2 defaults with stg_blocks [1], exactly what
           stages/pipeline.py::_guiders gives the 2-block tiny transformer) -> upsample -> stage 2 with the
           tiny distilled LoRA (strength 1.0) fused, stage-2 distilled sigmas, single pass, positive
           context only -> decode as above.

LoRA fusion: ltx-core's `apply_loras` only fuses into bf16/fp8 weights. Here the float32 model is built
without LoRAs and W <- W + (B * strength) @ A is computed in float32 (the formula of
fuse_loras._prepare_deltas, no alpha/rank scaling) -- the same arithmetic as ltx/weights/lora.py on our side.

Noise is injected (never drawn from torch's RNG): numpy RandomState arrays in the patchified token
layout (B, T, C), consumed in the reference's draw order stage1_video, stage1_audio, stage2_video,
stage2_audio (then "decoder", in the latent layout (B, C, F, H, W), only if the tiny decoder is
timestep-conditioned). Both pipelines use the same noise arrays ("noise.<stream>").

Outputs, prefixed "distilled." / "dev.": stage1_video (1,128,F',H'/2,W'/2) and stage1_audio (1,8,T,16)
(unpatchified), upsampled, stage2_video, stage2_audio, video (F,H,W,3: the float decoder output in
[-1,1]-ish before the uint8 cast, stored as the raw bits of float16 in a uint16 array because
make_goldens.save_goldens widens every float array to float32), mel (1,2,T,64), waveform (2,N).
Also context.{video,audio}[_negative]_rows16: every 16th row of the text contexts (diagnostics).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PROMPT = "a red fox trots through fresh snow"
HEIGHT, WIDTH, NUM_FRAMES, FPS = 64, 128, 9, 24.0
DEV_STEPS = 3
NOISE_SEED = 1234
LORA_STRENGTH = 1.0
# LTX_2_PARAMS / LTX_2_3_PARAMS guidance with the STG block moved to the tiny transformer's last block
GUIDERS = {
    "video": dict(cfg_scale=3.0, stg_scale=1.0, rescale_scale=0.7, modality_scale=3.0, stg_blocks=[1]),
    "audio": dict(cfg_scale=7.0, stg_scale=1.0, rescale_scale=0.7, modality_scale=3.0, stg_blocks=[1]),
}


def contribute(variant: str) -> dict:
    return {}


class _Noise:
    """Numpy noise per stream, created on first use with the shape the reference asks for."""

    def __init__(self, seed: int):
        self.rng = np.random.RandomState(seed)
        self.arrays: dict[str, np.ndarray] = {}

    def get(self, stream: str, shape: tuple[int, ...]) -> np.ndarray:
        if stream not in self.arrays:
            self.arrays[stream] = self.rng.standard_normal(shape).astype(np.float32)
        a = self.arrays[stream]
        assert a.shape == tuple(shape), (stream, a.shape, shape)
        return a


def _injected_noiser(noise: _Noise, streams: list[str]):
    """A GaussianNoiser whose torch.randn returns the next stream's numpy noise (same arithmetic)."""
    import torch
    from ltx_core.components.noisers import GaussianNoiser

    queue = list(streams)

    class Injected(GaussianNoiser):
        def __call__(self, latent_state, noise_scale=1.0):
            stream = queue.pop(0)
            orig = torch.randn

            def fake(*size, dtype=None, device=None, generator=None, **kw):
                return torch.from_numpy(noise.get(stream, tuple(size)).copy()).to(dtype)

            torch.randn = fake
            try:
                return super().__call__(latent_state, noise_scale)
            finally:
                torch.randn = orig

    return Injected(torch.Generator().manual_seed(0)), queue


def _no_meta(module, what: str) -> None:
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        if t.device.type == "meta":
            raise RuntimeError(f"{what}: {name} was left on the meta device (missing weight)")


def _fuse_lora_f32(x0_model, lora_path: Path, strength: float) -> int:
    """W <- W + (B * strength) @ A in float32, in place (see the module docstring)."""
    import torch
    from ltx_core.loader.sd_ops import LTXV_LORA_COMFY_RENAMING_MAP
    from safetensors.torch import load_file

    lora = {
        LTXV_LORA_COMFY_RENAMING_MAP.apply_to_key(k): v.float() for k, v in load_file(str(lora_path)).items()
    }
    params = dict(x0_model.velocity_model.named_parameters())
    n = 0
    with torch.no_grad():
        for key_a in [k for k in lora if k.endswith(".lora_A.weight")]:
            prefix = key_a[: -len(".lora_A.weight")]
            w = params[f"{prefix}.weight"]
            w += torch.matmul(lora[f"{prefix}.lora_B.weight"] * strength, lora[key_a])
            n += 1
    assert n == len(lora) // 2 and n > 0, (n, len(lora))
    return n


def _decode_video(decoder, latent, noise: _Noise):
    """Tiled decode (TilingConfig.default()) -> float (F, H, W, 3) before the uint8 cast."""
    import torch
    from ltx_core.model.video_vae import TilingConfig

    orig = torch.randn

    def fake(*size, dtype=None, device=None, generator=None, **kw):
        size = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else tuple(size)
        return torch.from_numpy(noise.get("decoder", size).copy()).to(dtype)

    if decoder.timestep_conditioning:
        torch.randn = fake
    try:
        chunks = list(
            decoder.tiled_decode(latent, TilingConfig.default(), generator=torch.Generator().manual_seed(0))
        )
    finally:
        torch.randn = orig
    video = torch.cat(chunks, dim=2)[0]  # (3, F, H, W)
    return video.permute(1, 2, 3, 0).numpy()


def _f16_bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.astype(np.float16)).view(np.uint16)


def run(variant: str, model_dir: Path) -> dict[str, np.ndarray]:
    import torch
    from golden_text import _shrink_gemma_config
    from ltx_core.components.diffusion_steps import EulerDiffusionStep
    from ltx_core.components.guiders import MultiModalGuiderParams, create_multimodal_guider_factory
    from ltx_core.components.schedulers import LTX2Scheduler
    from ltx_core.model.transformer import attention as ref_attention
    from ltx_core.model.upsampler import upsample_video
    from ltx_core.types import VideoPixelShape
    from ltx_pipelines.utils.constants import (
        DEFAULT_NEGATIVE_PROMPT,
        DISTILLED_SIGMA_VALUES,
        STAGE_2_DISTILLED_SIGMA_VALUES,
    )
    from ltx_pipelines.utils.helpers import (
        denoise_audio_video,
        multi_modal_guider_factory_denoising_func,
        simple_denoising_func,
    )
    from ltx_pipelines.utils.model_ledger import ModelLedger
    from ltx_pipelines.utils.samplers import euler_denoising_loop
    from ltx_pipelines.utils.types import PipelineComponents

    assert ref_attention.memory_efficient_attention is None, "xformers would change the attention backend"
    model_dir = Path(model_dir)
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
    components = PipelineComponents(dtype=dtype, device=device)
    stepper = EulerDiffusionStep()
    noise = _Noise(NOISE_SEED)
    out: dict[str, np.ndarray] = {}

    # text (encode_prompts without its CUDA calls)
    encoder = ledger.text_encoder()
    _no_meta(encoder.model, "gemma")
    raw = [encoder.encode(p) for p in (PROMPT, DEFAULT_NEGATIVE_PROMPT)]
    del encoder
    processor = ledger.gemma_embeddings_processor()
    _no_meta(processor, "embeddings processor")
    ctx_p, ctx_n = (processor.process_hidden_states(hs, mask) for hs, mask in raw)
    del processor
    for tag, c in (("", ctx_p), ("_negative", ctx_n)):
        out[f"context.video{tag}_rows16"] = c.video_encoding[0, ::16].numpy()
        out[f"context.audio{tag}_rows16"] = c.audio_encoding[0, ::16].numpy()

    video_encoder, upsampler = ledger.video_encoder(), ledger.spatial_upsampler()
    video_decoder, audio_decoder, vocoder = ledger.video_decoder(), ledger.audio_decoder(), ledger.vocoder()
    for m, what in (
        (video_encoder, "video encoder"),
        (upsampler, "upsampler"),
        (video_decoder, "video decoder"),
        (audio_decoder, "audio decoder"),
        (vocoder, "vocoder"),
    ):
        _no_meta(m, what)
    base = ledger.transformer()
    _no_meta(base, "transformer")

    s1_shape = VideoPixelShape(batch=1, frames=NUM_FRAMES, width=WIDTH // 2, height=HEIGHT // 2, fps=FPS)
    s2_shape = VideoPixelShape(batch=1, frames=NUM_FRAMES, width=WIDTH, height=HEIGHT, fps=FPS)

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

    def two_stage(name: str, stage1_sigmas, stage1_denoise, stage2_transformer) -> None:
        noiser, queue = _injected_noiser(
            noise, ["stage1_video", "stage1_audio", "stage2_video", "stage2_audio"]
        )
        v1, a1 = denoise_audio_video(
            output_shape=s1_shape,
            conditionings=[],
            noiser=noiser,
            sigmas=stage1_sigmas,
            stepper=stepper,
            denoising_loop_fn=loop(stage1_denoise),
            components=components,
            dtype=dtype,
            device=device,
        )
        up = upsample_video(latent=v1.latent[:1], video_encoder=video_encoder, upsampler=upsampler)
        s2 = torch.tensor(STAGE_2_DISTILLED_SIGMA_VALUES, dtype=torch.float32)
        v2, a2 = denoise_audio_video(
            output_shape=s2_shape,
            conditionings=[],
            noiser=noiser,
            sigmas=s2,
            stepper=stepper,
            denoising_loop_fn=loop(
                simple_denoising_func(ctx_p.video_encoding, ctx_p.audio_encoding, stage2_transformer)
            ),
            components=components,
            dtype=dtype,
            device=device,
            noise_scale=s2[0],
            initial_video_latent=up,
            initial_audio_latent=a1.latent,
        )
        assert not queue
        video = _decode_video(video_decoder, v2.latent, noise)
        mel = audio_decoder(a2.latent)
        wave = vocoder(mel).squeeze(0).float()
        out.update(
            {
                f"{name}.stage1_video": v1.latent.numpy(),
                f"{name}.stage1_audio": a1.latent.numpy(),
                f"{name}.upsampled": up.numpy(),
                f"{name}.stage2_video": v2.latent.numpy(),
                f"{name}.stage2_audio": a2.latent.numpy(),
                f"{name}.video_f16": _f16_bits(video),
                f"{name}.mel": mel.numpy(),
                f"{name}.waveform": wave.numpy(),
            }
        )

    # a) distilled: one transformer, no guidance
    two_stage(
        "distilled",
        torch.tensor(DISTILLED_SIGMA_VALUES, dtype=torch.float32),
        simple_denoising_func(ctx_p.video_encoding, ctx_p.audio_encoding, base),
        base,
    )

    # b) dev two-stage: guided stage 1 with the base transformer, stage 2 with the distilled LoRA fused
    sig = LTX2Scheduler().execute(steps=DEV_STEPS).to(dtype=torch.float32)
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
    lora_model = ledger.transformer()
    _fuse_lora_f32(lora_model, model_dir / "distilled_lora.safetensors", LORA_STRENGTH)
    two_stage("dev", sig, guided, lora_model)

    for stream, a in noise.arrays.items():
        out[f"noise.{stream}"] = a
    out["decoder_timestep_conditioning"] = np.array(int(video_decoder.timestep_conditioning), np.int32)
    out["vocoder_rate"] = np.array(vocoder.output_sampling_rate, np.int32)
    return out
