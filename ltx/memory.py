"""Peak-memory estimates per stage, from checkpoint headers and the output size alone.

A stage's peak = the weights it holds (in the compute dtype; quantized layers as packed) + its
largest live activations, modelled from the layer widths in the checkpoint headers (`components`
records them as `Component.widths`; OFFICIAL_WIDTHS when a header does not give them) and the
output size. Every stage's model is checked against `mx.get_peak_memory` within 25% on the tiny
model and a widened (mid-size) one, at two output sizes each (tests/test_memory.py); each calibrated
constant's comment says what it was measured from.

- encode: the hidden states of every Gemma layer (the encoder holds them all for the feature
  extractor), plus the largest of: one Gemma layer's transients (attention masks, (H, T, T) scores,
  MLP), the feature extractor's ~5 copies of the stacked states, or one connector block.
- denoise, refine: the attention score matrix of the largest attention (chunked on the CPU to
  ATTENTION_CHUNK_ELEMENTS; none with ltx.kernels' blocked attention, whose per-core blocks of
  scores, at most 2,048 rows and 512K scores, are a few MB of numpy scratch) plus ~15 token-sized tensors per stream.
- upsample: the 3x3x3 conv workspaces of the upsampler's res blocks at the upsampled size.
- decode: the res-block conv workspaces of the video decoder's last level, one tile at a time.
- decode-audio: the 3x3 conv workspaces of the audio decoder's mel-resolution level.
- vocode: the dilated-conv res blocks of the vocoder level with the most channels x samples.

MLX's CPU convolutions are explicit GEMMs: a k-tap conv holds a k-times-wide im2col copy of its
input (the upsampler's 1024-wide convs); the VAE decoders' convs of up to 512 input channels and the
vocoder's 1-D convs run as ltx.kernels.conv.conv_taps instead, one shifted matmul per tap with no such
copy (the 3x3(x3) ones and the 1-D ones of 128-768 channels as Winograd convs, ltx.kernels.winograd, whose
float32 filters the decoders and the vocoder keep beside their weights and whose scratch is numpy's:
counted with `winograd`). And
the CPU stream frees an op's buffers asynchronously, so a few consecutive ops are live at
once (two or three convs; fewer while the lazily loaded weights' load and cast ops share the queue,
as on a stage's first run): the conv terms count several convs.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ltx import ops
from ltx.constants import audio_latent_frames
from ltx.kernels import activations, attention, conv, winograd
from ltx.weights.header import DTYPE_BYTES as _DTYPE_BYTES
from ltx.weights.header import read_header

STAGES = ("encode", "denoise", "upsample", "refine", "decode", "decode-audio", "vocode")
# live (B, T, D)-sized tensors in a block (residual, norms, q/k/v, 4x-wide ff hidden): tests/test_memory.py's
# four cases hold 10-21 of them at MLX's peak (the CPU's numpy norms 10 at the widest, MLX's own 14)
TOKEN_TENSORS = 15
CHUNK_ELEMENTS = ops.ATTENTION_CHUNK_ELEMENTS
BLOCKED_MIN_ELEMENTS = attention.BLOCKED_MIN_ELEMENTS


@dataclass
class Component:
    name: str
    parameters: int  # logical parameter count (a packed weight counts its unpacked elements)
    bytes: int  # resident bytes in the compute dtype
    dtypes: str  # e.g. "BF16" or "BF16 + U32 (8-bit, group 64)"
    widths: dict[str, int] = field(default_factory=dict)  # layer widths the activation models need
    # float32 bytes of the Winograd filters the CPU path keeps beside the weights (winograd_filter_bytes)
    winograd_bytes: int = 0
    config: Any = (
        None  # the diffusion decoder's DiffusionDecoderConfig (its activation model needs the whole)
    )


WINOGRAD_MAX_CHANNELS = conv.TAPS_MAX_CHANNELS  # the convs that run as conv_taps
WINOGRAD_CHUNK_ELEMENTS = winograd.CHUNK_ELEMENTS  # transformed inputs + products at once
WINOGRAD_TILE = winograd.TILE  # the kept filters' F(4x4, 3x3) up to ...
WINOGRAD_TILE_MAX_CHANNELS = winograd.TILE_MAX_CHANNELS  # input channels
WINOGRAD_TILE_WIDE = winograd.TILE_WIDE  # F(2x2, 3x3) above
WINOGRAD_TILE_VALUES = (WINOGRAD_TILE + 2) ** 2  # values per transformed 3x3 filter (and input tile)
RESAMPLE_CHUNK_VALUES = activations.RESAMPLE_CHUNK_VALUES  # an activation task's rows x channels


def winograd_filter_bytes(shape: list[int]) -> int:
    """Bytes of the float32 Winograd filters (ltx.kernels.winograd.Filters: 36 values per 3x3 where the weight
    has 9, 16 above WINOGRAD_TILE_MAX_CHANNELS inputs) that the CPU path keeps for a conv weight of this shape, PyTorch's (O, C, [3,] 3, 3) or
    MLX's (O, [3,] 3, 3, C): 0 unless it is a 3x3(x3) conv of up to WINOGRAD_MAX_CHANNELS inputs (the
    others run on MLX's conv)."""
    k = len(shape) - 2
    if k not in (2, 3):
        return 0
    if list(shape[2:]) == [3] * k:
        channels = shape[1]
    elif list(shape[1:-1]) == [3] * k:
        channels = shape[-1]
    else:
        return 0
    if conv.narrow_applies(3**k, shape[0], channels):  # one GEMM, no filters
        return 0
    if channels > WINOGRAD_MAX_CHANNELS:
        return 0
    tile = WINOGRAD_TILE if channels <= WINOGRAD_TILE_MAX_CHANNELS else WINOGRAD_TILE_WIDE
    return 4 * math.prod(shape) * (tile + 2) ** 2 // 9


WINOGRAD_MIN_CHANNELS_1D = winograd.MIN_CHANNELS_1D  # the vocoder convs that run as 1-D Winograd
WINOGRAD_MAX_CHANNELS_1D = winograd.MAX_CHANNELS_1D


def winograd1d_filter_bytes(shape: list[int]) -> int:
    """Bytes of the float32 1-D Winograd filters (ltx.kernels.winograd.transform_weight_1d) the CPU path keeps
    for a vocoder conv weight of this shape, PyTorch's (O, C, K) or MLX's (O, K, C): 6 values per 3-tap
    kernel, 7 per chunk of 4 taps of a longer one; 0 unless K >= 3 and WINOGRAD_MIN_CHANNELS_1D <= C <=
    WINOGRAD_MAX_CHANNELS_1D (the others run one GEMM per tap, or MLX's conv). The kernel is the shorter
    of the last two axes: the convs counted read more channels than they have taps."""
    if len(shape) != 3:
        return 0
    o, k, c = shape[0], min(shape[1:]), max(shape[1:])
    if k < 3 or not WINOGRAD_MIN_CHANNELS_1D <= c <= WINOGRAD_MAX_CHANNELS_1D:
        return 0
    values = 6 if k == 3 else 7 * -(-k // 4)
    return 4 * o * c * values


def winograd1d_scratch_bytes(channel_samples: int) -> int:
    """Bytes of ltx.kernels.winograd.conv1d's float32 scratch for a C -> C conv: the input tiles copied out and
    transformed (2 x 7/4 values per input value) and the products and outputs (11/4 per output value),
    at most WINOGRAD_CHUNK_ELEMENTS. channel_samples: C x output samples."""
    return 4 * min(WINOGRAD_CHUNK_ELEMENTS, 25 * channel_samples // 4)


def snake_resampled_scratch_bytes() -> int:
    """Bytes of ltx.kernels.activations.snake_resampled's float32 scratch (BigVGAN's anti-aliased activations
    on the CPU): on each core's thread a task's two upsampled phases, a temporary and an edge window
    (4 x RESAMPLE_CHUNK_VALUES), and the per-channel factors tiled over a task's rows (2 x)."""
    return 4 * RESAMPLE_CHUNK_VALUES * (4 * (os.cpu_count() or 1) + 2)


def winograd_scratch_bytes(channel_pixels: int) -> int:
    """Bytes of ltx.kernels.winograd's float32 scratch for a conv of up to WINOGRAD_TILE_MAX_CHANNELS inputs
    (the levels whose scratch is the largest), at most WINOGRAD_CHUNK_ELEMENTS: per 4x4 outputs, 36
    values of each input channel twice (input tiles, transformed) and of each output channel once
    (products) plus the 16 outputs, so at most 4.5 values per output pixel and channel.
    channel_pixels: (C_in + C_out) x output pixels (or voxels)."""
    per_pixel = 2 * WINOGRAD_TILE_VALUES / WINOGRAD_TILE**2
    return 4 * min(WINOGRAD_CHUNK_ELEMENTS, int(per_pixel * channel_pixels))


def _component(path: Path, name: str, keep, itemsize: int, quant: dict | None, read=read_header) -> Component:
    header, _ = read(path)
    params = nbytes = winograd = 0
    dtypes = set()
    for key, info in header.items():
        if not keep(key):
            continue
        count = 1
        for s in info["shape"]:
            count *= int(s)
        dtypes.add(info["dtype"])
        if key.endswith("conv.weight"):
            winograd += winograd_filter_bytes([int(s) for s in info["shape"]])
        elif name == "vocoder" and key.endswith(".weight") and ".ups." not in key:  # not the transposed convs
            winograd += winograd1d_filter_bytes([int(s) for s in info["shape"]])
        if info["dtype"] == "U32" and key.endswith(".weight"):  # packed: 32 / bits weights per element
            params += count * 32 // quant["bits"] if quant else count
            nbytes += count * 4
        elif key.endswith((".scales", ".biases")) and quant:
            nbytes += count * itemsize
        else:
            params += count
            nbytes += count * (
                itemsize if info["dtype"] in ("F32", "F16", "BF16") else _DTYPE_BYTES[info["dtype"]]
            )
    what = " + ".join(sorted(dtypes))
    if quant and "U32" in dtypes:
        what += f" ({quant['bits']}-bit, group {quant['group_size']})"
    return Component(name, params, nbytes, what, winograd_bytes=winograd)


def _prefix(*prefixes: str):
    return lambda k: k.startswith(prefixes)


def components(
    checkpoint: Path,
    upsampler: Path,
    gemma: Path,
    itemsize: int,
    headers: dict | None = None,
    diffusion_vae: Path | None = None,
    video_vae: Path | None = None,
    audio_vae: Path | None = None,
    conv_vae: Path | None = None,
    duration_head: Path | None = None,
    gemma_label: str = "Gemma",
) -> dict[str, Component]:
    """Parameter counts and resident bytes of every component of a model directory. headers: {path:
    (tensor infos, metadata)} to use instead of reading those files (a model not yet written to disk);
    diffusion_vae: the file of an LTX-2.5 diffusion video decoder ("diffusion_decoder"); video_vae,
    audio_vae, conv_vae: a split model's component files (None: in the checkpoint); duration_head: LTX-2.5's
    duration head file ("duration_head"; read by the encode stage); gemma_label: "Gemma 3" or "Gemma 4"."""
    read = (lambda p: headers[Path(p)] if Path(p) in headers else read_header(p)) if headers else read_header  # noqa: E731
    video_vae, audio_vae = video_vae or checkpoint, audio_vae or checkpoint
    conv_vae = conv_vae or (video_vae if video_vae != diffusion_vae else checkpoint)
    _, meta = read(checkpoint)
    quant = json.loads(meta["ltx_mlx_quantization"]) if meta.get("ltx_mlx_quantization") else None
    tr = "model.diffusion_model."
    text = (
        "model.diffusion_model.video_embeddings_connector.",
        "model.diffusion_model.audio_embeddings_connector.",
        "text_embedding_projection.",
    )
    out = {
        "transformer": _component(
            checkpoint,
            "transformer",
            lambda k: k.startswith(tr) and not k.startswith(text),
            itemsize,
            quant,
            read,
        ),
        "text_projection": _component(
            checkpoint, "text projection + connectors", _prefix(*text), itemsize, None, read
        ),
        "video_encoder": _component(
            video_vae, "video VAE encoder", _prefix("vae.encoder.", "vae.per_channel"), itemsize, None, read
        ),
        "video_decoder": _component(
            conv_vae,
            "conv video decoder" if diffusion_vae is not None else "video VAE decoder",  # LTX-2.5: both
            _prefix("vae.decoder.", "vae.per_channel"),
            itemsize,
            None,
            read,
        ),
        "audio_decoder": _component(
            audio_vae,
            "audio VAE decoder",
            _prefix("audio_vae.decoder.", "audio_vae.per_channel"),
            itemsize,
            None,
            read,
        ),
        "vocoder": _component(audio_vae, "vocoder", _prefix("vocoder."), itemsize, None, read),
        "upsampler": _component(upsampler, "spatial upsampler", lambda k: True, itemsize, None, read),
    }
    if duration_head is not None:
        out["duration_head"] = _component(
            duration_head, "duration head", lambda k: True, itemsize, None, read
        )
    if diffusion_vae is not None:
        from ltx.video.diffusion_decoder import DiffusionDecoderConfig

        keep = _prefix("vae.decoder.", "decoder.", "vae.per_channel", "per_channel")
        out["diffusion_decoder"] = _component(
            diffusion_vae, "diffusion video decoder", keep, itemsize, None, read
        )
        vae = json.loads(read(diffusion_vae)[1].get("config", "{}")).get("vae", {})
        out["diffusion_decoder"].config = DiffusionDecoderConfig.from_vae(vae)
    header = read(checkpoint)[0]

    def config_of(path) -> dict:
        try:
            c = json.loads(read(path)[1].get("config", "{}"))
        except json.JSONDecodeError:
            c = {}
        return c if isinstance(c, dict) else {}

    config = config_of(checkpoint)
    v_header, a_header, a_config = read(video_vae)[0], read(audio_vae)[0], config_of(audio_vae)
    conv_out = v_header.get("vae.decoder.conv_out.conv.weight")
    if conv_out is not None:  # PyTorch layout (O, C, 3, 3, 3): O = 3 * patch**2, C = the last level's width
        out["video_decoder"].widths = {
            "channels": int(conv_out["shape"][1]),
            "patch_pixels": int(conv_out["shape"][0]) // 3,
        }
    # Widths below are read from dimension 0 (the output channels), which is the same in the PyTorch and
    # the MLX layouts of a linear or conv weight.
    init = read(upsampler)[0].get("initial_conv.weight")
    if init is not None:
        out["upsampler"].widths = {"channels": int(init["shape"][0])}
    out["audio_decoder"].widths = _audio_decoder_widths(a_header, a_config.get("audio_vae", {}))
    out["vocoder"].widths = _vocoder_widths(a_header, a_config.get("vocoder", {}))
    out["text_projection"].widths = _connector_widths(header, config.get("transformer", {}))
    files = sorted(
        [
            p
            for p in headers
            if p.parent == Path(gemma) and p.name.startswith("model") and p.suffix == ".safetensors"
        ]
        if headers and not Path(gemma).is_dir()
        else [Path(gemma)]  # LTX-2.5's packed text encoder: one file
        if Path(gemma).is_file()
        else Path(gemma).glob("model*.safetensors")
    )
    lm_only = (
        "vision",
        "multi_modal",
        "embed_audio",
        "audio_projector",
        "text_embedding_projection",
        "hf_asset__",
        "tokenizer_json",
    )
    g_quant = None
    if files:
        _, gm = read(files[0])
        g_quant = json.loads(gm["ltx_mlx_quantization"]) if gm.get("ltx_mlx_quantization") else None
    parts = [
        _component(f, "gemma", lambda k: not any(s in k for s in lm_only), itemsize, g_quant, read)
        for f in files
    ]
    out["gemma"] = Component(
        f"{gemma_label} (language model)",
        sum(p.parameters for p in parts),
        sum(p.bytes for p in parts),
        " + ".join(sorted({p.dtypes for p in parts})),
        _gemma_widths(files, read),
    )
    return out


def _dim0(header: dict, key: str) -> int | None:
    info = header.get(key)
    return int(info["shape"][0]) if info is not None else None


def _audio_decoder_widths(header: dict, config: dict) -> dict[str, int]:
    """Per level i (0 = full resolution): its width C_i and the width entering it (the upsample conv of
    level i + 1 or, at the top, the mid block); the latent's frequency bins (ch = z_channels x bins)."""
    p = "audio_vae.decoder."
    widths: dict[str, int] = {}
    i = 0
    while (c := _dim0(header, f"{p}up.{i}.block.0.conv1.conv.weight")) is not None:
        widths[f"level{i}"] = c
        i += 1
    if not i:
        return {}
    for j in range(i):
        key = f"{p}up.{j + 1}.upsample.conv.conv.weight" if j + 1 < i else f"{p}mid.block_2.conv2.conv.weight"
        widths[f"level{j}_in"] = _dim0(header, key) or widths[f"level{j}"]
    dd = config.get("model", {}).get("params", {}).get("ddconfig", {})
    widths["levels"] = i
    widths["latent_bins"] = int(dd.get("ch", 128)) // int(dd.get("z_channels", 8))
    return widths


def _vocoder_widths(header: dict, config: dict) -> dict[str, int]:
    """The generator level with the most channels x samples: its width (from the header), its samples per
    input mel frame (from the config's upsample rates) and whether it is BigVGAN's AMP (anti-aliased);
    and the most channels x samples per frame of a level whose convs run as 1-D Winograd convs on the
    CPU (winograd_channel_samples: their scratch)."""
    if "bwe" in config:  # LTX-2.3: 16 kHz vocoder, then the BWE generator on the mel of its output
        voc, bwe = config.get("vocoder", {}), config["bwe"]
        base = math.prod(voc.get("upsample_rates", [])) / bwe.get("hop_length", 80)
        gens = [(voc, "vocoder.vocoder.", 1.0), (bwe, "vocoder.bwe_generator.", base)]
    else:
        gens = [(config, "vocoder.", 1.0)]
    best = {"channels": 0, "samples_per_frame": 0, "amp": 0}
    winograd = 0.0  # the most channels x samples per frame of a level whose convs run as 1-D Winograd
    for cfg, prefix, frames in gens:
        n = len(cfg.get("resblock_kernel_sizes", [3, 7, 11]))
        samples = frames
        for i, rate in enumerate(cfg.get("upsample_rates", [6, 5, 2, 2, 2])):
            samples *= rate
            c = _dim0(header, f"{prefix}resblocks.{i * n}.convs1.0.weight")
            if c is not None and c * samples > best["channels"] * best["samples_per_frame"]:
                amp = int(f"{prefix}resblocks.{i * n}.acts1.0.act.alpha" in header)
                best = {"channels": c, "samples_per_frame": round(samples), "amp": amp}
            if c is not None and WINOGRAD_MIN_CHANNELS_1D <= c <= WINOGRAD_MAX_CHANNELS_1D:
                winograd = max(winograd, c * samples)
    return {**best, "winograd_channel_samples": round(winograd)} if best["channels"] else {}


def _connector_widths(header: dict, config: dict) -> dict[str, int]:
    """Widths (learnable registers: (128, D)) and heads (config) of the video and audio connectors."""
    p = "model.diffusion_model."
    reg = lambda s: header.get(f"{p}{s}_embeddings_connector.learnable_registers")  # noqa: E731
    if reg("video") is None or reg("audio") is None:
        return {}
    heads = int(config.get("connector_num_attention_heads", 30))
    return {
        "video_dim": int(reg("video")["shape"][1]),
        "audio_dim": int(reg("audio")["shape"][1]),
        "video_heads": heads,
        "audio_heads": int(config.get("audio_connector_num_attention_heads") or heads),
    }


def _gemma_widths(files: list[Path], read=read_header) -> dict[str, int]:
    """Hidden size, layers, MLP width, heads and head width of the Gemma language model, from its headers."""
    header: dict[str, Any] = {}
    for f in files:
        header.update({k: v for k, v in read(f)[0].items() if "vision" not in k})
    layer = next(
        (k[: -len("self_attn.q_proj.weight")] for k in header if k.endswith(".0.self_attn.q_proj.weight")),
        None,
    )
    if layer is None or _dim0(header, layer + "self_attn.q_norm.weight") is None:
        return {}
    head_dim = _dim0(header, layer + "self_attn.q_norm.weight")
    q = _dim0(header, layer + "self_attn.q_proj.weight")
    stem = layer[: -len("0.")]
    layers = len({k[len(stem) :].split(".")[0] for k in header if k.startswith(stem)})
    return {
        "hidden": _dim0(header, layer + "input_layernorm.weight"),
        "layers": layers,
        "intermediate": _dim0(header, layer + "mlp.gate_proj.weight"),
        "heads": q // head_dim,
        "head_dim": head_dim,
    }


def transformer_activations(
    cfg: Any,
    video_tokens: int,
    audio_tokens: int,
    text_tokens: int,
    itemsize: int,
    batch: int = 1,
    blocked_attention: bool = False,
) -> int:
    """Largest live activations of one transformer forward pass (cfg: ltx.model.transformer.TransformerConfig).
    blocked_attention: the CPU's blocked attention (ltx.kernels.attention.blocked_attention()) runs the
    attentions big enough for it (ltx.kernels.attention.BLOCKED_MIN_ELEMENTS scores) without a score matrix."""
    h, ha = cfg.num_attention_heads, cfg.audio_num_attention_heads

    def scores(heads: int, tq: int, tk: int) -> int:
        elements = batch * heads * tq * tk
        if blocked_attention and elements >= BLOCKED_MIN_ELEMENTS:
            return 0
        if elements > CHUNK_ELEMENTS:  # the CPU path chunks over queries
            elements = batch * heads * tk * max(1, CHUNK_ELEMENTS // (batch * heads * tk))
        return elements * itemsize

    attn = max(
        scores(h, video_tokens, video_tokens),
        scores(ha, audio_tokens, audio_tokens),
        scores(h, video_tokens, max(audio_tokens, text_tokens)),
        scores(ha, audio_tokens, video_tokens),
    )
    tokens = batch * (video_tokens * cfg.inner_dim + audio_tokens * cfg.audio_inner_dim) * itemsize
    text = batch * text_tokens * (cfg.inner_dim + cfg.audio_inner_dim) * itemsize * 4
    return attn + TOKEN_TENSORS * tokens + text


DECODE_RES_WIDTHS = 8  # per voxel of the last decoder level, in units of its channel count C
DECODE_TILE_FLOATS = 8  # per pixel of the tile being decoded
DECODE_GROUP_FLOATS = 5  # per pixel of the temporal group at full size


def decode_activations(
    channels: int,
    patch_pixels: int,
    tile_frames: int,
    tile_h: int,
    tile_w: int,
    height: int,
    width: int,
    itemsize: int,
    winograd: bool = False,
) -> int:
    """Largest live activations of decoding one video tile (ltx.video.vae.decode_stream, one tile at a time).

    The larger of two phases of the tile, plus the temporal group's buffers. A res block of the last
    decoder level, which holds the most voxels (tile frames x tile pixels / patch_pixels) at the base
    width C: its input, the norm + SiLU output, the padded copy, the shifted-matmul conv's running sum
    and next partial sum on the padded grid and the cropped result, ~8C per voxel (the CPU convs of
    ltx.kernels make no im2col copy). Or the last conv and unpatchify, ~8 values per tile pixel
    (3 x patch_pixels conv outputs per voxel on the padded grid, the conv's input, unpatchify's copy;
    evaluated before the tile is blended, measured 7 on the tiny decoder). On top:
    the blend buffer and weights, previous group and chunk at full width, ~5 values per pixel. Fitted
    on decoders of base width 8-128 at 128x192 and 256x384 (tests/test_memory.py checks 8 and 32).
    With winograd (the CPU's Winograd convs, ltx.kernels.winograd) their numpy scratch too, which keeps the
    largest transformed input (a last-level conv's, C channels) and the largest products (the last
    conv's 3 x patch_pixels channels, or C) of the decode (winograd_scratch_bytes). The wider convs'
    per-call filters (conv.WINOGRAD_WIDE_MIN_VOXELS: from 1,024 latent voxels, where the last
    level holds 512x the voxels at 1/8 the width) are transient and below that level's peak."""
    voxels = tile_frames * tile_h * tile_w // patch_pixels
    tile = max(DECODE_RES_WIDTHS * channels * voxels, DECODE_TILE_FLOATS * tile_frames * tile_h * tile_w)
    out = max(channels, 3 * patch_pixels)
    scratch = winograd_scratch_bytes((channels + out) * voxels) if winograd else 0
    return itemsize * (tile + DECODE_GROUP_FLOATS * tile_frames * height * width) + scratch


# The official components' widths, for a Component whose header did not give them.
OFFICIAL_WIDTHS = {
    "gemma": {"hidden": 3840, "layers": 48, "intermediate": 15360, "heads": 16, "head_dim": 256},
    "text_projection": {"video_dim": 3840, "audio_dim": 3840, "video_heads": 30, "audio_heads": 30},
    "upsampler": {"channels": 512},
    "audio_decoder": {  # ch 128, ch_mult (1, 2, 4)
        "levels": 3,
        "latent_bins": 16,
        **{"level0": 128, "level0_in": 256, "level1": 256, "level1_in": 512, "level2": 512, "level2_in": 512},
    },
    "vocoder": {  # HiFi-GAN, 1024 initial channels: levels 1-4 tie; 1 and 2 run as 1-D Winograd
        "channels": 256,
        "samples_per_frame": 30,
        "amp": 0,
        "winograd_channel_samples": 7680,
    },
}

GEMMA_SCORES_PER_HEAD = 1.16  # (T, T) score matrices per head (scaled, masked, soft-maxed in place)
GEMMA_MASKS = 2  # the additive global and sliding-window masks, (T, T) each, live through all layers
GEMMA_QKV_TENSORS = 11  # (T, H * head_dim)-sized: q, k, v, their norms, RoPE, GQA-repeated k/v, output
GEMMA_MLP_TENSORS = 3  # (T, intermediate): gate, up, GELU(gate) * up
GEMMA_RESIDUAL_TENSORS = 7  # (T, hidden): residual stream, four norms, attention and MLP outputs
FEATURE_COPIES = 5  # of all stacked hidden states, beside the list the encoder holds
CONNECTOR_SCORES_PER_HEAD = 1.03  # (T, T) score matrices per head (no mask: scaled and soft-maxed in place)
CONNECTOR_TOKEN_TENSORS = 30  # (T, D): q/k/v, q/k norms and RoPE temporaries, 4x-wide GELU feed-forward


def encode_activations(gemma: dict[str, int], connectors: dict[str, int], tokens: int, itemsize: int) -> int:
    """Largest live activations of encoding one prompt (ltx.text.encoder.TextEncoder.encode: Gemma, the
    feature extractor and both connectors, evaluated as one graph) padded to `tokens` tokens.

    TextEncoder.encode holds the hidden states of every layer (layers + 1 of (T, hidden)) to the end. On
    top, the largest of three phases (fitted on the tiny Gemma at T = 384-1024, where attention dominates,
    and on widened ones (hidden 256-1024, 8-16 layers) at T = 256-1024, where the states do, as at the
    official size): a Gemma layer (the two masks, ~1.16 (T, T) score matrices per head, ~11 q-sized, 3
    MLP-wide and 7 hidden-wide tensors per token); the feature extractor (~5 more copies of the stacked
    states: the (B, T, D, L) stack and the masked / min / max / normalised temporaries of its
    normalisation; measured 5.4-6.2 x the states in all with the weights loaded lazily, as the stage loads
    them, ~7 with resident weights); or a connector block (~1.03 score matrices per head and ~30 tensors
    of its width per token) beside the extractor's outputs."""
    t = tokens
    states = t * gemma["hidden"] * (gemma["layers"] + 1)
    qkv = gemma["heads"] * gemma["head_dim"]
    layer = (
        (GEMMA_MASKS + GEMMA_SCORES_PER_HEAD * gemma["heads"]) * t * t
        + GEMMA_QKV_TENSORS * t * qkv
        + GEMMA_MLP_TENSORS * t * gemma["intermediate"]
        + GEMMA_RESIDUAL_TENSORS * t * gemma["hidden"]
    )
    features = FEATURE_COPIES * states
    dims = connectors["video_dim"] + connectors["audio_dim"]
    connector = t * dims + max(
        CONNECTOR_SCORES_PER_HEAD * connectors[f"{s}_heads"] * t * t
        + CONNECTOR_TOKEN_TENSORS * t * connectors[f"{s}_dim"]
        for s in ("video", "audio")
    )
    return int(itemsize * (states + max(layer, features, connector)))


UPSAMPLE_CONV_WIDTHS = 72  # per upsampled voxel, in units of the upsampler's width C (MLX's GroupNorm)
UPSAMPLE_CONV_WIDTHS_CPU = 38  # the same with ltx.kernels' GroupNorm + SiLU (the CPU backend)
UPSAMPLE_FRAME_CONV_WIDTHS = 8  # the same with ltx.kernels' frame convs too (the CPU with MKL)
FRAME_COLS_ELEMENTS = 1 << 25  # ltx.kernels.conv.FRAME_COLS_ELEMENTS: the frame convs' im2col chunk


def upsample_activations(
    channels: int,
    voxels: int,
    itemsize: int,
    cpu_norms: bool = False,
    frames: int = 1,
    frame_convs: bool = False,
) -> int:
    """Largest live activations of the latent upsampler (ltx.video.upsampler.upsample_video), `voxels` = latent
    frames x upsampled latent height x width.

    The peak is in the res blocks after the x2 pixel shuffle, at the upsampled size and the upsampler's
    width C. Each 3x3x3 conv holds its 27C im2col copy, its padded input and output (~31C). With MLX's
    GroupNorm / SiLU (cpu_norms False: the GPU backends) their temporaries add a few C and two
    consecutive convs are in flight together (the stream frees asynchronously, and the lazily loaded
    weights' load / cast ops take their share of the ops in flight): ~72C per voxel (measured 71-76C
    at C = 32, 128 and 256 with 1-4 blocks per stage, 288 to 13824 voxels, on the CPU with the numpy
    norms switched off). With ltx.kernels.norms.group_norm_silu (cpu_norms: the CPU backend) each norm
    evaluates its input, so one conv is in flight and the norm's temporaries are numpy's: ~38C
    (measured 31-45C at C = 32 and 128, tests/test_memory.py; 36C at C = 1024).

    With the frame convs too (frame_convs: ltx.kernels.conv.conv3d_frames, the CPU with MKL) no conv
    makes a 27C copy: the MLX arrays are ~8C per voxel (7C measured at C = 1024), plus the frame
    convs' numpy im2col, 9C per voxel of `frames` frames or of as many whole frames as
    FRAME_COLS_ELEMENTS holds, and the first run's weight relayout, one 27 C^2 conv weight at a time."""
    if not frame_convs:
        per_voxel = UPSAMPLE_CONV_WIDTHS_CPU if cpu_norms else UPSAMPLE_CONV_WIDTHS
        return itemsize * voxels * per_voxel * channels
    per_frame = voxels // max(1, frames) * 9 * channels
    cols = per_frame * min(max(1, frames), max(1, FRAME_COLS_ELEMENTS // max(1, per_frame)))
    return itemsize * (voxels * UPSAMPLE_FRAME_CONV_WIDTHS * channels + cols + 27 * channels * channels)


AUDIO_IN_VALUES = 2  # per pixel of an audio decoder level, per channel of the width entering it
AUDIO_OUT_VALUES = 4  # per pixel of an audio decoder level, per channel of its own width


def audio_decode_activations(
    widths: dict[str, int], latent_frames: int, itemsize: int, winograd: bool = False
) -> int:
    """Largest live activations of the audio VAE decoder (ltx.audio.vae.AudioDecoder.decode) on a latent
    of `latent_frames` frames.

    Level i (0 = the mel resolution) runs at ((T_a - 1) 2^(L-1-i) + 1) x bins 2^(L-1-i) pixels. On the CPU
    each 3x3 causal conv is one shifted matmul per tap (ltx.kernels.conv.conv_taps, no im2col copy),
    each added into the conv's output in place (MKL): it holds its padded input and its output; with
    the norm + SiLU output and the upsample's nearest-x2 copy of the entering width C_in that is
    ~2 C_in + 4 C per pixel (fitted on ch_mult (1, 1, 2) and (1, 2, 4), the official, at 26 and 51
    latent frames; tests/test_memory.py checks them within 25%; without MKL, MLX's addmm chain also
    holds a partial sum: ~1.4x); the largest level wins. With winograd (the CPU's Winograd convs,
    ltx.kernels.winograd) their numpy scratch too, for the largest level's first conv (winograd_scratch_bytes)."""
    levels = widths["levels"]
    peak = scratch = 0
    for i in range(levels):
        scale = 2 ** (levels - 1 - i)
        pixels = ((latent_frames - 1) * scale + 1) * widths["latent_bins"] * scale
        per_pixel = AUDIO_IN_VALUES * widths[f"level{i}_in"] + AUDIO_OUT_VALUES * widths[f"level{i}"]
        peak = max(peak, per_pixel * pixels)
        scratch = max(scratch, (widths[f"level{i}_in"] + widths[f"level{i}"]) * pixels)
    return itemsize * peak + (winograd_scratch_bytes(scratch) if winograd else 0)


# per channel x sample of the largest level: HiFi-GAN "1", BigVGAN AMP1 (with the CPU's numpy
# activations, plus their scratch; AMP1_MLX_VALUES with MLX's grouped convs)
VOCODER_VALUES = {0: 11, 1: 9}
AMP1_MLX_VALUES = 36


def vocode_activations(
    widths: dict[str, int], mel_frames: int, itemsize: int, winograd: bool = False, resampling: bool = False
) -> int:
    """Largest live activations of the vocoder (ltx.audio.vocoder: HiFi-GAN, or LTX-2.3's vocoder + BWE
    generator) on `mel_frames` mel frames, at the generator level with the most channels x samples.

    A level's three res blocks read the same input and are summed; on the CPU each dilated conv is one
    shifted matmul per tap (ltx.kernels.conv.conv_taps, no im2col copy) or a 1-D Winograd conv, added
    into its output in place, holding its padded input and output, beside the level's input, the
    activations and the running sum of the blocks; the transposed convs add into their output in
    place too (conv.conv_transpose1d): ~11 values per channel and sample for HiFi-GAN (MLX's
    peak measured 9-10 at 64 and 256 initial channels, 17 and 33 frames, and the run's traced Python
    and numpy allocations add ~1 MB at the tiny width; MLX frees buffers on its stream thread, so the
    same run's peak varies by up to ~1.5x at the tiny width). BigVGAN's AMP blocks' anti-aliased
    SnakeBeta activations: with resampling (the CPU's, ltx.kernels.activations.snake_resampled) only their
    output and a fixed scratch (snake_resampled_scratch_bytes), ~9 values in all (measured 9.5-10.4
    with the scratch on the LTX-2.3 vocoder + BWE at 49 and 97 frames, numpy traced;
    tests/test_memory.py checks 9, 13 and 49 frames within 25%); with MLX's
    grouped convs, which hold x2-upsampled temporaries, ~36 (measured 34-37). All with the
    (3, 7, 11) res-block kernels of every LTX vocoder, and the
    weights loaded lazily, as the stage does. Without a BLAS, MLX's addmm chain also holds a partial
    sum and the transposed convs an overlap-add buffer: ~1.5-2x. With winograd (the CPU's 1-D
    Winograd convs) their numpy scratch too, for the widest level they run on
    (winograd1d_scratch_bytes)."""
    cl = widths["channels"] * widths["samples_per_frame"] * mel_frames
    scratch = widths.get("winograd_channel_samples", 0) * mel_frames
    extra = winograd1d_scratch_bytes(scratch) if winograd and scratch else 0
    values = AMP1_MLX_VALUES if widths["amp"] and not resampling else VOCODER_VALUES[widths["amp"]]
    if widths["amp"] and resampling:
        extra += snake_resampled_scratch_bytes()
    return itemsize * values * cl + extra


def video_tokens(height: int, width: int, frames: int) -> int:
    return ((frames - 1) // 8 + 1) * (height // 32) * (width // 32)


def audio_tokens(frames: int, fps: float) -> int:
    return audio_latent_frames(frames, fps)  # the audio latent's length, as the denoise stage makes it


@dataclass
class Estimate:
    stage: str
    weights: int
    activations: int
    note: str = ""

    @property
    def peak(self) -> int:
        return self.weights + self.activations


def estimate_stages(
    comps: dict[str, Component],
    cfg: Any,
    height: int,
    width: int,
    frames: int,
    fps: float = 24.0,
    itemsize: int = 4,
    two_stage: bool = True,
    text_tokens: int = 1024,
    streamed_block_bytes: int | None = None,
    blocked_attention: bool = False,
    cpu_norms: bool = False,
    frame_convs: bool = False,
    winograd: bool = False,
    resampling: bool = False,
    decoder: str = "conv",
    stage1: tuple[int, int] | None = None,
) -> list[Estimate]:
    """Estimated peak of each stage. streamed_block_bytes: the low-memory mode's per-block weights
    (then the transformer stages hold the top level plus one block); blocked_attention: see
    transformer_activations; cpu_norms, frame_convs: see upsample_activations; winograd: the CPU's
    Winograd convs, whose filters the VAE decoders and the vocoder keep beside their weights
    (Component.winograd_bytes) and whose scratch adds to their activations; resampling: the CPU's
    band-GEMM anti-aliased activations (BigVGAN vocoders, vocode_activations); decoder: "diffusion"
    estimates decode with the model's diffusion decoder (comps["diffusion_decoder"]), else the conv one.
    stage1: a two-stage run's stage-1 (height, width), default half the output (an x2 upsampler; x1.5: 2/3)."""
    extra = lambda name: comps[name].winograd_bytes if winograd else 0  # noqa: E731
    h1, w1 = (stage1 or (height // 2, width // 2)) if two_stage else (height, width)
    ta = audio_tokens(frames, fps)
    tr = comps["transformer"].bytes
    if streamed_block_bytes is not None:
        tr = tr - cfg.num_layers * streamed_block_bytes + streamed_block_bytes
    widths = lambda name: comps[name].widths or OFFICIAL_WIDTHS[name]  # noqa: E731
    out = [
        Estimate(
            "encode",
            comps["gemma"].bytes
            + comps["text_projection"].bytes
            + (comps["duration_head"].bytes if "duration_head" in comps else 0),
            encode_activations(widths("gemma"), widths("text_projection"), text_tokens, itemsize),
        ),
        Estimate(
            "denoise",
            tr,
            transformer_activations(
                cfg,
                video_tokens(h1, w1, frames),
                ta,
                text_tokens,
                itemsize,
                blocked_attention=blocked_attention,
            ),
        ),
    ]
    if two_stage:
        latent_frames = (frames - 1) // 8 + 1
        voxels = latent_frames * (height // 32) * (width // 32)  # the upsampled latent: the output's grid
        out.append(
            Estimate(
                "upsample",
                comps["upsampler"].bytes,  # the video encoder is loaded too, but only its statistics are read
                upsample_activations(
                    widths("upsampler")["channels"],
                    voxels,
                    itemsize,
                    cpu_norms=cpu_norms,
                    frames=latent_frames,
                    frame_convs=frame_convs,
                ),
            )
        )
        out.append(
            Estimate(
                "refine",
                tr,
                transformer_activations(
                    cfg,
                    video_tokens(height, width, frames),
                    ta,
                    text_tokens,
                    itemsize,
                    blocked_attention=blocked_attention,
                ),
            )
        )
    # the default tiling (ltx.video.tiling.PRESETS["default"]): 512 px spatial, 64 frames temporal tiles
    tile_frames = min(frames, 65)
    dec = comps["video_decoder"].widths or {"channels": 128, "patch_pixels": 16}  # the official decoder
    conv_decode = Estimate(
        "decode",
        comps["video_decoder"].bytes + extra("video_decoder"),
        decode_activations(
            dec["channels"],
            dec["patch_pixels"],
            tile_frames,
            min(512, height),
            min(512, width),
            height,
            width,
            itemsize,
            winograd,
        ),
        "tiled",
    )
    if decoder == "diffusion":
        from ltx.video.diffusion_decoder import tiling_for
        from ltx.video.tiling import PRESETS

        diff = comps["diffusion_decoder"]
        tiles = tiling_for(PRESETS["default"], diff.config.overlaps, preset=True)
        acts = diffusion_decode_activations(diff.config, frames, height, width, itemsize, tiles)
        conv_decode = Estimate("decode", diff.bytes, acts, "diffusion decoder, tiled")
    out += [
        conv_decode,
        Estimate(
            "decode-audio",
            comps["audio_decoder"].bytes + extra("audio_decoder"),
            audio_decode_activations(widths("audio_decoder"), ta, itemsize, winograd),
        ),
        Estimate(  # the audio decoder's mel: 4 T_a - 3 frames (LATENT_DOWNSAMPLE_FACTOR 4)
            "vocode",
            comps["vocoder"].bytes + extra("vocoder"),
            vocode_activations(widths("vocoder"), 4 * ta - 3, itemsize, winograd, resampling),
        ),
    ]
    return out


def plan(budget_bytes: int, normal: list[Estimate], streamed: list[Estimate]) -> bool:
    """Whether the transformer must be streamed to stay within the budget; ValueError if even that does not fit."""
    worst = max(e.peak for e in normal)
    if worst <= budget_bytes:
        return False
    over = [e for e in streamed if e.peak > budget_bytes]
    if over:
        e = max(over, key=lambda x: x.peak)
        raise ValueError(
            f"--memory-budget {budget_bytes / 1e9:.1f} GB is below the {e.stage} stage's estimated peak "
            f"{e.peak / 1e9:.1f} GB even with streamed transformer blocks; lower the resolution or frames, "
            f"or quantize (`ltx convert --quantize 8`)"
        )
    return True


# live (tokens, c5)-sized values of a stage-5 block: x, norms, q/k/v and RoPE copies, the stacked key/value
# regions of the neighbourhood attention (~5x its keys), its output, the 4x-wide SwiGLU: measured 20-21.5 on
# decoders of c5 64 and 128 at 13K-26K stage-5 tokens (the attention's scores stay in its blocked kernel)
DIFF_TOKEN_WIDTHS = 20


def diffusion_decode_activations(
    cfg: Any, frames: int, height: int, width: int, itemsize: int, tiling: tuple | None = None
) -> int:
    """Largest live activations of the diffusion video decoder (ltx.video.diffusion_decoder): the larger of
    its whole-volume stages 1-3 and one stage-5 tile (the largest of `tiling`'s plan; the whole padded video
    untiled), each token ~DIFF_TOKEN_WIDTHS values of its stage's width, beside the resident stage-4 input
    features and the temporal group's blend buffers. tests/test_memory.py checks it within 25% on a
    4x-widened tiny decoder."""
    from ltx.video import diffusion_tiling as dt

    lat = ((frames - 1) // 8 + 1, height // 32, width // 32)
    lat = tuple(
        max(n, m)
        for n, m in zip(
            lat, dt.stage_min_latent(cfg.stage_kernels, cfg.upsamples, cfg.stage5_kernel), strict=True
        )
    )
    strides = [tuple(s) for s, _ in cfg.upsamples]
    s4 = dt.stage4_shape(strides, lat[0] + (cfg.stage_kernels[0][0] // 2) * 2, lat[1], lat[2])
    full = ((lat[0] - 1) * 8 + 1, lat[1] * 32, lat[2] * 32)
    up3 = strides[3]
    min_tile = dt.tile_min_sizes(cfg.stage_kernels[3], cfg.stage5_kernel, up3)
    plan = dt.plan_tiles(dt.stage4_shape(strides, *lat), tiling, up3, cfg.patch_size, min_tile, cfg.overlaps)
    extent = [max(len(range(*t.out[a].indices(full[a]))) for t in plan) for a in range(3)]
    extent[0] = max(extent[0], cfg.stage5_kernel[0])
    stage5 = (
        extent[0]
        * extent[1]
        * extent[2]
        // cfg.patch_size**2
        * (DIFF_TOKEN_WIDTHS * cfg.c5 + cfg.stage_channels[-1])
    )
    t, h, w, det = lat[0] + (cfg.stage_kernels[0][0] // 2) * 2, lat[1], lat[2], 0
    for i in range(3):  # stages 1-3 on the whole volume (at each stage's input)
        det = max(det, t * h * w * DIFF_TOKEN_WIDTHS * cfg.stage_channels[i])
        st, sh, sw = strides[i]
        t, h, w = t * st - (1 if st == 2 else 0), h * sh, w * sw
    feat = math.prod(s4) * cfg.stage_channels[3]
    blend = DECODE_GROUP_FLOATS * extent[0] * full[1] * full[2]
    return int(itemsize * (max(stage5, det) + feat + blend))
