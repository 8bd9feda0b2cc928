"""Goldens for the audio path: mel front-end, audio VAE encoder and decoder, vocoder (HiFi-GAN for
LTX-2.0, the bandwidth-extension vocoder for LTX-2.3). See make_goldens.py for the protocol.

The audio VAE keeps the sizes the pipelines hard-wire (ch 128 = z 8 x 16 latent bins, 64 mel bins,
three levels so time and frequency shrink x4) and is otherwise small; the vocoders keep the real
rates with few channels: x240 for 2.0 in the real five stages; 2.3: x160 to 16 kHz, then hop 80,
n_fft 512 and x240 -> 48 kHz, but in three stages each (real: 6 and 5). With random weights every
AMP stage grows the signal ~8x (residual units, SnakeBeta's positive bias), so the real stage counts
reach ~3e4 before the clamp, where even torch float32 differs from float64 by 3e-4 relative; three
stages keep the unclipped values ~1e2 and float32 parity at ~1e-5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WAVE_RATE = 44100  # not 16 kHz, so the reference's resampler is exercised
WAVE_SECONDS = 0.5
DECODER_FRAMES = 7
VOCODER_FRAMES = 26  # the vocoders run on mel[:, :, :VOCODER_FRAMES]

AUDIO_VAE = {
    "model": {
        "params": {
            "ddconfig": {
                "ch": 128,
                "ch_mult": [1, 1, 2],
                "num_res_blocks": 1,
                "z_channels": 8,
                "double_z": True,
                "in_channels": 2,
                "out_ch": 2,
                "resolution": 256,
                "attn_resolutions": [],
                "mid_block_add_attention": False,
                "norm_type": "pixel",
                "causality_axis": "height",
                "mel_bins": 64,
                "dropout": 0.0,
            },
            "sampling_rate": 16000,
        }
    },
    "preprocessing": {
        "stft": {"filter_length": 1024, "hop_length": 160, "win_length": 1024, "causal": True},
        "mel": {"n_mel_channels": 64, "mel_fmin": 0, "mel_fmax": 8000},
    },
}

_DILATIONS = [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
VOCODER_20 = {
    "resblock": "1",
    "stereo": True,
    "upsample_initial_channel": 64,
    "upsample_rates": [6, 5, 2, 2, 2],
    "upsample_kernel_sizes": [16, 15, 8, 4, 4],
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": _DILATIONS,
    "output_sampling_rate": 24000,
}
VOCODER_23 = {
    "vocoder": {
        "upsample_initial_channel": 32,
        "resblock": "AMP1",
        "upsample_rates": [5, 4, 8],
        "resblock_kernel_sizes": [3, 7, 11],
        "upsample_kernel_sizes": [11, 8, 16],
        "resblock_dilation_sizes": _DILATIONS,
        "stereo": True,
        "use_tanh_at_final": False,
        "activation": "snakebeta",
        "use_bias_at_final": False,
    },
    "bwe": {
        "upsample_initial_channel": 32,
        "resblock": "AMP1",
        "upsample_rates": [6, 5, 8],
        "resblock_kernel_sizes": [3, 7, 11],
        "upsample_kernel_sizes": [12, 11, 16],
        "resblock_dilation_sizes": _DILATIONS,
        "stereo": True,
        "use_tanh_at_final": False,
        "activation": "snakebeta",
        "use_bias_at_final": False,
        "apply_final_activation": False,
        "input_sampling_rate": 16000,
        "output_sampling_rate": 48000,
        "hop_length": 80,
        "n_fft": 512,
        "win_size": 512,
        "num_mels": 64,
    },
}


def config(variant: str) -> dict:
    return {"audio_vae": AUDIO_VAE, "vocoder": VOCODER_23 if variant == "2.3" else VOCODER_20}


def _shapes(module, prefix: str, stats_prefix: str | None = None) -> dict[str, list[int]]:
    out = {}
    for k, v in module.state_dict().items():
        if stats_prefix and k.startswith("per_channel_statistics."):
            out[stats_prefix + k.removeprefix("per_channel_statistics.")] = list(v.shape)
        else:
            out[prefix + k] = list(v.shape)
    return out


def contribute(variant: str) -> dict:
    import torch
    from ltx_core.model.audio_vae.model_configurator import (
        AudioDecoderConfigurator,
        AudioEncoderConfigurator,
        VocoderConfigurator,
    )

    cfg = config(variant)
    with torch.device("meta"):
        enc = AudioEncoderConfigurator.from_config(cfg)
        dec = AudioDecoderConfigurator.from_config(cfg)
        voc = VocoderConfigurator.from_config(cfg)
    stats = "audio_vae.per_channel_statistics."
    tensors = {
        **_shapes(enc, "audio_vae.encoder.", stats),
        **_shapes(dec, "audio_vae.decoder.", stats),
        **_shapes(voc, "vocoder."),
    }
    return {"model.safetensors": {"metadata": {"config": cfg}, "tensors": tensors, "dtype": "BF16"}}


def waveform() -> np.ndarray:
    """A deterministic stereo test signal (2, N) at WAVE_RATE: two tones, a chirp and a little noise."""
    n = int(WAVE_RATE * WAVE_SECONDS)
    t = np.arange(n) / WAVE_RATE
    rng = np.random.RandomState(1234)
    left = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * (300 + 4000 * t) * t)
    right = 0.3 * np.sin(2 * np.pi * 660 * t + 0.5) + 0.1 * np.sign(np.sin(2 * np.pi * 110 * t))
    return (np.stack([left, right]) + 0.02 * rng.standard_normal((2, n))).astype(np.float32)


def decoder_latent() -> np.ndarray:
    return np.random.RandomState(4321).standard_normal((1, 8, DECODER_FRAMES, 16)).astype(np.float32)


def _build(path: Path, configurator, sd_ops):
    import torch
    from ltx_core.loader.single_gpu_model_builder import SingleGPUModelBuilder

    model = SingleGPUModelBuilder(
        model_path=str(path), model_class_configurator=configurator, model_sd_ops=sd_ops
    ).build(device=torch.device("cpu"), dtype=torch.float32)
    meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type == "meta"]
    assert not meta, f"left on meta: {meta[:5]}"
    return model.eval()


def _bwe_parts(voc, mel) -> dict[str, np.ndarray]:
    """The BWE vocoder's stages, unclipped where the reference allows: with random tiny weights the final
    output is mostly clipped to +-1, so these are what make the comparison sensitive."""
    import torch.nn.functional as F

    voc.vocoder.apply_final_activation = False
    raw = voc.vocoder(mel)  # (1, 2, L) at 16 kHz, before the clamp
    voc.vocoder.apply_final_activation = True
    x = raw.clamp(-1, 1)
    if x.shape[-1] % voc.hop_length:
        x = F.pad(x, (0, voc.hop_length - x.shape[-1] % voc.hop_length))
    bwe_mel = voc._compute_mel(x).transpose(2, 3)  # (1, 2, frames, 64)
    return {
        "bwe_lowrate_raw": raw.numpy(),
        "bwe_mel": bwe_mel.numpy(),
        "bwe_residual": voc.bwe_generator(bwe_mel).numpy(),
        "bwe_skip": voc.resampler(x).numpy(),
    }


def run(variant: str, model_dir: Path) -> dict[str, np.ndarray]:
    import torch
    from ltx_core.model.audio_vae.model_configurator import (
        AUDIO_VAE_DECODER_COMFY_KEYS_FILTER,
        AUDIO_VAE_ENCODER_COMFY_KEYS_FILTER,
        VOCODER_COMFY_KEYS_FILTER,
        AudioDecoderConfigurator,
        AudioEncoderConfigurator,
        VocoderConfigurator,
    )
    from ltx_core.model.audio_vae.ops import AudioProcessor
    from ltx_core.types import Audio

    path = Path(model_dir) / "model.safetensors"
    enc = _build(path, AudioEncoderConfigurator, AUDIO_VAE_ENCODER_COMFY_KEYS_FILTER)
    dec = _build(path, AudioDecoderConfigurator, AUDIO_VAE_DECODER_COMFY_KEYS_FILTER)
    voc = _build(path, VocoderConfigurator, VOCODER_COMFY_KEYS_FILTER)
    processor = AudioProcessor(
        target_sample_rate=enc.sample_rate,
        mel_bins=enc.mel_bins,
        mel_hop_length=enc.mel_hop_length,
        n_fft=enc.n_fft,
    )
    wave = waveform()
    z = decoder_latent()
    with torch.no_grad():
        mel = processor.waveform_to_mel(Audio(waveform=torch.from_numpy(wave)[None], sampling_rate=WAVE_RATE))
        latent = enc(mel)
        decoded = dec(torch.from_numpy(z))
        audio = voc(mel[:, :, :VOCODER_FRAMES])
        extra = _bwe_parts(voc, mel[:, :, :VOCODER_FRAMES]) if variant == "2.3" else {}
    return {
        **extra,
        "waveform": wave,  # (2, N) at waveform_rate
        "waveform_rate": np.array(WAVE_RATE, np.int32),
        "mel": mel.numpy(),  # (1, 2, T, 64)
        "latent": latent.numpy(),  # (1, 8, T_a, 16)
        "decoder_latent": z,  # (1, 8, DECODER_FRAMES, 16)
        "decoder_mel": decoded.numpy(),  # (1, 2, 4 * DECODER_FRAMES - 3, 64)
        "vocoder_waveform": audio.numpy(),  # (1, 2, N_out), vocoder input = mel[:, :, :VOCODER_FRAMES]
        "vocoder_rate": np.array(voc.output_sampling_rate, np.int32),
    }
