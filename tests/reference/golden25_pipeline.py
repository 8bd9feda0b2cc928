"""Golden for a whole tiny LTX-2.5 distilled run with the 1.2.0 reference (make_goldens.py protocol), float32.

DistilledPipeline hard-codes bfloat16, so `run` drives the same flow with the same official blocks in
float32 (ltx_pipelines/distilled.py's __call__ step by step): the Gemma 4 text encoder and embeddings
processor (golden25_text's builders), DurationPredictor (the frame count is predicted from the prompt:
`--num-frames` omitted), DiffusionStage with stage 1 sampled by EulerAncestralDiffusionStep(eta 1,
s_noise 1) in euler_ancestral_denoising_loop and stage 2 by Euler, VideoUpsampler, the conv VideoDecoder
of vae/video_vae_conv.safetensors (untiled: the video is one default tile), AudioDecoder (audio VAE + vocoder).

Noise is injected (never drawn from torch's RNG): numpy RandomState arrays in the patchified token layout
(B, T, C): the GaussianNoiser's draws "stage1_video", "stage1_audio", "stage2_video", "stage2_audio", and
the ancestral loop's per-step draws "ancestral.<step>.<video|audio>" (its new_noise_fn).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import tiny25

PROMPT = "a red fox trots through fresh snow"
HEIGHT, WIDTH, FPS, SEED = 64, 128, 24.0, 10
NOISE_SEED = 2525
STREAMS = ["stage1_video", "stage1_audio", "stage2_video", "stage2_audio"]


def contribute(variant: str) -> dict:
    return {}


class _Noise:
    def __init__(self, seed: int):
        self.rng = np.random.RandomState(seed)
        self.arrays: dict[str, np.ndarray] = {}

    def get(self, stream: str, shape) -> np.ndarray:
        if stream not in self.arrays:
            self.arrays[stream] = self.rng.standard_normal(tuple(shape)).astype(np.float32)
        assert self.arrays[stream].shape == tuple(shape), (stream, self.arrays[stream].shape, shape)
        return self.arrays[stream]


def _injected_noiser(noise: _Noise):
    import torch
    from ltx_core.components.noisers import GaussianNoiser

    queue = list(STREAMS)

    class Injected(GaussianNoiser):
        def __call__(self, latent_state, noise_scale=1.0):
            stream = queue.pop(0)
            orig = torch.randn

            def fake(*size, dtype=None, device=None, generator=None, **kw):
                size = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else tuple(size)
                return torch.from_numpy(noise.get(stream, size).copy()).to(dtype)

            torch.randn = fake
            try:
                return super().__call__(latent_state, noise_scale)
            finally:
                torch.randn = orig

    return Injected(torch.Generator().manual_seed(0)), queue


def _ancestral_noise(noise: _Noise):
    """new_noise_fn(latent, generator) of the ancestral loop: per step, video first, then audio."""
    import torch

    calls = [0]

    def draw(latent, generator):
        i = calls[0]
        calls[0] += 1
        name = f"ancestral.{i // 2}.{('video', 'audio')[i % 2]}"
        return torch.from_numpy(noise.get(name, latent.shape).copy()).to(latent.dtype)

    return draw


def run(variant: str, model_dir: Path) -> dict[str, np.ndarray]:
    import golden25_text
    import torch
    from ltx_core.components.diffusion_steps import EulerAncestralDiffusionStep
    from ltx_pipelines.distilled import ANCESTRAL_ETA, ANCESTRAL_NOISE_SEED_OFFSET, ANCESTRAL_S_NOISE
    from ltx_pipelines.utils.blocks import DiffusionStage, DurationPredictor, VideoUpsampler
    from ltx_pipelines.utils.constants import DISTILLED_SIGMAS, STAGE_2_DISTILLED_SIGMAS
    from ltx_pipelines.utils.denoisers import SimpleDenoiser
    from ltx_pipelines.utils.samplers import euler_ancestral_denoising_loop
    from ltx_pipelines.utils.types import ModalitySpec

    model_dir = Path(model_dir)
    f = {
        k: str(model_dir / getattr(tiny25, k))
        for k in ("TRANSFORMER", "VIDEO_VAE", "VIDEO_VAE_CONV", "AUDIO_VAE")
    }
    f |= {k: str(model_dir / getattr(tiny25, k)) for k in ("UPSAMPLER", "DURATION_HEAD")}
    torch.set_grad_enabled(False)
    dtype, device = torch.float32, torch.device("cpu")
    noise = _Noise(NOISE_SEED)
    out: dict[str, np.ndarray] = {}

    enc_builder, proc_builder = golden25_text._builders(
        str(model_dir / tiny25.TEXT_ENCODER_DIR), (f["TRANSFORMER"],)
    )
    encoder = enc_builder.build(device=device, dtype=dtype).eval()
    ((states, mask),) = encoder.encode([PROMPT])
    del encoder
    processor = proc_builder.build(device=device, dtype=dtype).eval()
    ctx = processor.process_hidden_states(states, mask)
    del processor
    v_ctx, a_ctx = ctx.video_encoding, ctx.audio_encoding
    out["context.video_rows16"] = v_ctx[0, ::16].numpy()
    out["context.audio_rows16"] = a_ctx[0, ::16].numpy()

    predictor = DurationPredictor.from_checkpoint(f["DURATION_HEAD"], dtype, device)
    assert predictor is not None
    num_frames = predictor(v_ctx, a_ctx, frame_rate=FPS)  # AutoDuration() defaults: 1 s .. 20 s
    out["num_frames"] = np.array(num_frames, np.int64)
    out["duration_seconds"] = predictor._head(v_ctx, a_ctx).numpy()

    class Float32Stage(DiffusionStage):  # the reference builds the transformer in the file's dtype (bf16)
        def _build_transformer(self, *, device=None, **kwargs):
            return super()._build_transformer(device=device, dtype=self._dtype, **kwargs)

    stage = Float32Stage.from_checkpoint(f["TRANSFORMER"], dtype, device)
    noiser, queue = _injected_noiser(noise)
    s1 = DISTILLED_SIGMAS.to(torch.float32)
    loop = partial(
        euler_ancestral_denoising_loop,
        noise_seed=SEED + ANCESTRAL_NOISE_SEED_OFFSET,
        model_dtype=dtype,
        new_noise_fn=_ancestral_noise(noise),
    )
    v1, a1 = stage(
        denoiser=SimpleDenoiser(v_ctx, a_ctx),
        sigmas=s1,
        noiser=noiser,
        width=WIDTH // 2,
        height=HEIGHT // 2,
        frames=num_frames,
        fps=FPS,
        video=ModalitySpec(context=v_ctx),
        audio=ModalitySpec(context=a_ctx),
        stepper=EulerAncestralDiffusionStep(eta=ANCESTRAL_ETA, s_noise=ANCESTRAL_S_NOISE),
        loop=loop,
    )
    up = VideoUpsampler(f["VIDEO_VAE"], f["UPSAMPLER"], dtype, device)(v1.latent[:1])
    s2 = STAGE_2_DISTILLED_SIGMAS.to(torch.float32)
    v2, a2 = stage(
        denoiser=SimpleDenoiser(v_ctx, a_ctx),
        sigmas=s2,
        noiser=noiser,
        width=WIDTH,
        height=HEIGHT,
        frames=num_frames,
        fps=FPS,
        video=ModalitySpec(context=v_ctx, noise_scale=s2[0].item(), initial_latent=up),
        audio=ModalitySpec(context=a_ctx, noise_scale=s2[0].item(), initial_latent=a1.latent),
    )
    assert not queue, queue
    return out | decoded_outputs(f, dtype, device, (v1, a1, up, v2, a2), a2.latent, noise)


def decoded_outputs(f, dtype, device, latents, heard_audio, noise: _Noise, seed: int = SEED) -> dict:
    """A two-stage run's golden arrays: the latents (stage-1 video and audio, upsampled, stage-2 video and
    audio), the stage-2 video through the conv VideoDecoder (untiled), `heard_audio` through AudioDecoder,
    and the noise drawn."""
    import torch
    from ltx_pipelines.utils.blocks import AudioDecoder, VideoDecoder

    v1, a1, up, v2, a2 = latents
    chunks = VideoDecoder(f["VIDEO_VAE_CONV"], dtype, device)(
        v2.latent, None, torch.Generator().manual_seed(seed)
    )
    video = torch.cat(list(chunks), dim=0).numpy()  # (F, H, W, 3) floats in [0, 1]
    audio = AudioDecoder(f["AUDIO_VAE"], dtype, device)(heard_audio)
    out = {
        "stage1_video": v1.latent.numpy(),
        "stage1_audio": a1.latent.numpy(),
        "upsampled": up.numpy(),
        "stage2_video": v2.latent.numpy(),
        "stage2_audio": a2.latent.numpy(),
        "video_f16": np.ascontiguousarray(video.astype(np.float16)).view(np.uint16),
        "waveform": audio.waveform.numpy(),
    }
    return out | {f"noise.{k}": v for k, v in noise.arrays.items()}
