"""The tiny LTX-2.5's remaining component files (make_goldens.py protocol, 1.2.0 reference; no goldens
of their own: the whole-pipeline golden runs them).

- vae/audio_vae.safetensors: the audio VAE and the bandwidth-extension vocoder, LTX-2.3's tiny
  configuration (1.2.0 keeps both architectures), keys `audio_vae.*` / `vocoder.*` as in the release;
- latent_upscale_models/spatial_upscaler_x2.safetensors: the x2 spatial latent upsampler;
- loras/distilled_lora.safetensors: a rank-2 ComfyUI-keyed LoRA over every 2-D linear weight of the
  2.5 transformer's blocks (for dev-two-stage's stage 2).
Tensor names and shapes are read off 1.2.0's own modules built from this metadata.
"""

from __future__ import annotations

import re

import golden_audio
import golden_video_vae
import tiny25

LORA_RANK = 2
_TARGET = re.compile(r"^model\.diffusion_model\.(transformer_blocks\.\d+\..*)\.weight$")


def _shapes(module, prefix: str, stats_prefix: str | None = None) -> dict[str, list[int]]:
    out = {}
    for k, v in module.state_dict().items():
        if stats_prefix and k.startswith("per_channel_statistics."):
            out[stats_prefix + k.removeprefix("per_channel_statistics.")] = list(v.shape)
        else:
            out[prefix + k] = list(v.shape)
    return out


def audio_metadata() -> dict:
    return {"config": golden_audio.config("2.3"), "model_version": tiny25.MODEL_VERSION}


def contribute(variant: str) -> dict:
    import golden25_transformer
    import torch
    from ltx_core.model.audio_vae.model_configurator import (
        AudioDecoderConfigurator,
        AudioEncoderConfigurator,
        VocoderConfigurator,
    )
    from ltx_core.model.upsampler.model_configurator import LatentUpsamplerConfigurator

    meta = audio_metadata()
    ups_meta = {"config": golden_video_vae.UPSAMPLER}
    with torch.device("meta"):
        enc = AudioEncoderConfigurator.from_metadata(meta)
        dec = AudioDecoderConfigurator.from_metadata(meta)
        voc = VocoderConfigurator.from_metadata(meta)
        ups = LatentUpsamplerConfigurator.from_metadata(ups_meta)
    stats = "audio_vae.per_channel_statistics."
    audio = {
        **_shapes(enc, "audio_vae.encoder.", stats),
        **_shapes(dec, "audio_vae.decoder.", stats),
        **_shapes(voc, "vocoder."),
    }
    lora = {}
    for key, shape in golden25_transformer.contribute(variant)[tiny25.TRANSFORMER]["tensors"].items():
        if (m := _TARGET.match(key)) and len(shape) == 2:
            lora[f"diffusion_model.{m.group(1)}.lora_A.weight"] = [LORA_RANK, shape[1]]
            lora[f"diffusion_model.{m.group(1)}.lora_B.weight"] = [shape[0], LORA_RANK]
    return {
        tiny25.AUDIO_VAE: {"metadata": meta, "tensors": audio, "dtype": "BF16"},
        tiny25.UPSAMPLER: {"metadata": ups_meta, "tensors": _shapes(ups, ""), "dtype": "BF16"},
        tiny25.DISTILLED_LORA: {"metadata": {}, "tensors": lora, "dtype": "BF16"},
        # the video VAE files (golden25_video_decoders.py) carry the generation too: the image
        # conditioning CRF default is read from the video VAE checkpoint (detect_params)
        **{
            f: {"metadata": {"model_version": tiny25.MODEL_VERSION}, "tensors": {}, "dtype": "BF16"}
            for f in (tiny25.VIDEO_VAE, tiny25.VIDEO_VAE_CONV)
        },
    }
