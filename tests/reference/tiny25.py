"""The tiny LTX-2.5: its file layout and the config sections every golden25_*.py module shares.

LTX-2.5 ships one file per component (Lightricks/LTX-2.5: diffusion_models/, text_encoders/, vae/,
latent_upscale_models/, loras/, model_patches/); the tiny model mirrors that layout so that the split
loading path is the one exercised. Each file carries the metadata its own loader reads (1.2.0's
configurators take the whole metadata: `from_metadata`). torch-free: safe to import
from either venv and from make_goldens.py.

Owners: the transformer file (DiT + connectors), audio VAE, upsampler, distilled LoRA and duration head
are written by golden25_transformer.py / golden25_duration.py / golden25_pipeline.py; the Gemma 4 text
encoder (and its feature extractor) by golden25_text.py; the two video VAE files by
golden25_video_decoders.py.
"""

from __future__ import annotations

MODEL_VERSION = "2.5.0"
# The tiny Gemma 4's own config.json declares this gemma_version; the transformer file asserts it
# (gemma_source_checkpoint), as the released checkpoint asserts "gemma4-12b-ltx-v1".
GEMMA_VERSION = "tiny-gemma4-ltx-v1"

TRANSFORMER = "diffusion_models/transformer.safetensors"
TEXT_ENCODER_DIR = "text_encoders/gemma4"  # a Gemma 4 folder (config.json, tokenizer, weights)
VIDEO_VAE = "vae/video_vae.safetensors"  # encoder + diffusion decoder (the 2.5 default)
VIDEO_VAE_CONV = "vae/video_vae_conv.safetensors"  # encoder + convolutional decoder
AUDIO_VAE = "vae/audio_vae.safetensors"  # audio VAE + vocoder
UPSAMPLER = "latent_upscale_models/spatial_upscaler_x2.safetensors"
DISTILLED_LORA = "loras/distilled_lora.safetensors"
DURATION_HEAD = "model_patches/duration_head.safetensors"

# The checkpoint's assertion of which Gemma it was trained with (a mismatch is an error).
GEMMA_SOURCE = {"gemma_version": GEMMA_VERSION}

from golden_transformer import FIXED as _FIXED  # noqa: E402  (the settings 1.0.0 and 1.2.0 share)

# config.transformer of the tiny 2.5: the 2.3 layout (gated attention, cross-attention AdaLN, feature
# extractor V2 projecting to the inner widths, connectors at those widths) plus the 2.5 switches:
# no video feed-forward bias (audio keeps it), no connector feed-forward bias, the keyframe
# absolute-position embedding, and the prompt AdaLN MLP dropped (K/V cacheable per prompt).
TRANSFORMER_CONFIG = {
    **_FIXED,
    "num_layers": 2,
    "num_attention_heads": 2,
    "attention_head_dim": 8,
    "in_channels": 128,
    "out_channels": 128,
    "audio_num_attention_heads": 2,
    "audio_attention_head_dim": 4,
    "audio_in_channels": 128,
    "audio_out_channels": 128,
    "cross_attention_dim": 16,
    "audio_cross_attention_dim": 8,
    "caption_channels": 32,
    "norm_eps": 1e-6,
    "positional_embedding_theta": 10000.0,
    "positional_embedding_max_pos": [20, 2048, 2048],
    "audio_positional_embedding_max_pos": [20],
    "timestep_scale_multiplier": 1000,
    "av_ca_timestep_scale_multiplier": 1000.0,
    "rope_type": "split",
    "frequencies_precision": "float64",
    "apply_gated_attention": True,
    "cross_attention_adaln": True,
    "caption_proj_before_connector": True,
    "caption_projection_first_linear": False,
    "caption_proj_input_norm": False,
    "caption_projection_second_linear": False,
    "connector_apply_gated_attention": True,
    "connector_num_attention_heads": 2,
    "connector_attention_head_dim": 8,
    "audio_connector_num_attention_heads": 2,
    "audio_connector_attention_head_dim": 4,
    "connector_num_layers": 2,
    "connector_num_learnable_registers": 128,
    "connector_positional_embedding_max_pos": [4096],
    # the 2.5 switches
    "ff_bias": False,
    "audio_ff_bias": True,
    "connector_ff_bias": False,
    "use_keyframes_abs_pos_embedding": True,
    "use_prompt_adaln_single": False,
}

# The duration head's own section (1.2.0 reads it from config.duration_head; its input widths are
# config.transformer's cross_attention_dim / audio_cross_attention_dim).
DURATION_HEAD_CONFIG = {"pooler_hidden_dim": 16, "num_queries": 2, "num_pooler_heads": 2, "mlp_hidden": 8}


def transformer_metadata() -> dict:
    return {
        "config": {"transformer": TRANSFORMER_CONFIG},
        "model_version": MODEL_VERSION,
        "gemma_source_checkpoint": GEMMA_SOURCE,
    }


# The released LTX-2.5 (22B) transformer's architecture as this code knows it: the reference's defaults at
# full width (48 layers, 32 x 128 video and 32 x 64 audio heads, 4096 / 2048 cross-attention), the 2.3
# layout (gated attention, cross-attention AdaLN, the caption projection in the text encoder) and the 2.5
# switches; connectors at the reference's defaults for 2.3-style widths. Its parameter count is a golden.
RELEASED_TRANSFORMER_CONFIG = {
    **_FIXED,
    "num_layers": 48,
    "num_attention_heads": 32,
    "attention_head_dim": 128,
    "in_channels": 128,
    "out_channels": 128,
    "audio_num_attention_heads": 32,
    "audio_attention_head_dim": 64,
    "audio_in_channels": 128,
    "audio_out_channels": 128,
    "cross_attention_dim": 4096,
    "audio_cross_attention_dim": 2048,
    "positional_embedding_max_pos": [20, 2048, 2048],
    "audio_positional_embedding_max_pos": [20],
    "av_ca_timestep_scale_multiplier": 1000.0,
    "rope_type": "split",
    "frequencies_precision": "float64",
    "apply_gated_attention": True,
    "cross_attention_adaln": True,
    "caption_proj_before_connector": True,
    "caption_projection_first_linear": False,
    "caption_proj_input_norm": False,
    "caption_projection_second_linear": False,
    "ff_bias": False,
    "audio_ff_bias": True,
    "use_keyframes_abs_pos_embedding": True,
    "use_prompt_adaln_single": False,
}
