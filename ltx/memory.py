"""Peak-memory estimates per stage, from checkpoint headers and the output size alone.

A stage's peak = the weights it holds (in the compute dtype; quantized layers as packed) + its
largest live activations. The transformer term is calibrated against `mx.get_peak_memory` on tiny
and widened configs (tests/test_memory.py: within 25%): the attention score matrix of the largest
attention (chunked on the CPU to ATTENTION_CHUNK_ELEMENTS) plus ~16 token-sized tensors per stream.
The video decode term (decode_activations) is a model of its res-block conv workspaces, checked the
same way on the tiny and a widened (base 32) decoder. The encode, upsample, decode-audio and vocode terms
are still rough (a few copies of the largest feature map), not checked, and labelled "rough".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ltx.safetensors_header import DTYPE_BYTES as _DTYPE_BYTES
from ltx.safetensors_header import read_header

STAGES = ("encode", "denoise", "upsample", "refine", "decode", "decode-audio", "vocode")
TOKEN_TENSORS = 16  # live (B, T, D)-sized tensors in a block (residual, norms, q/k/v, 4x-wide ff hidden)
CHUNK_ELEMENTS = 1 << 27  # ltx.attention.ATTENTION_CHUNK_ELEMENTS


@dataclass
class Component:
    name: str
    parameters: int  # logical parameter count (a packed weight counts its unpacked elements)
    bytes: int  # resident bytes in the compute dtype
    dtypes: str  # e.g. "BF16" or "BF16 + U32 (8-bit, group 64)"
    widths: dict[str, int] = field(default_factory=dict)  # layer widths the activation models need


def _component(path: Path, name: str, keep, itemsize: int, quant: dict | None) -> Component:
    header, _ = read_header(path)
    params = nbytes = 0
    dtypes = set()
    for key, info in header.items():
        if not keep(key):
            continue
        count = 1
        for s in info["shape"]:
            count *= int(s)
        dtypes.add(info["dtype"])
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
    return Component(name, params, nbytes, what)


def _prefix(*prefixes: str):
    return lambda k: k.startswith(prefixes)


def components(checkpoint: Path, upsampler: Path, gemma: Path, itemsize: int) -> dict[str, Component]:
    """Parameter counts and resident bytes of every component of a model directory."""
    _, meta = read_header(checkpoint)
    quant = json.loads(meta["ltx_mlx_quantization"]) if meta.get("ltx_mlx_quantization") else None
    tr = "model.diffusion_model."
    text = (
        "model.diffusion_model.video_embeddings_connector.",
        "model.diffusion_model.audio_embeddings_connector.",
        "text_embedding_projection.",
    )
    out = {
        "transformer": _component(
            checkpoint, "transformer", lambda k: k.startswith(tr) and not k.startswith(text), itemsize, quant
        ),
        "text_projection": _component(
            checkpoint, "text projection + connectors", _prefix(*text), itemsize, None
        ),
        "video_encoder": _component(
            checkpoint, "video VAE encoder", _prefix("vae.encoder.", "vae.per_channel"), itemsize, None
        ),
        "video_decoder": _component(
            checkpoint, "video VAE decoder", _prefix("vae.decoder.", "vae.per_channel"), itemsize, None
        ),
        "audio_decoder": _component(
            checkpoint,
            "audio VAE decoder",
            _prefix("audio_vae.decoder.", "audio_vae.per_channel"),
            itemsize,
            None,
        ),
        "vocoder": _component(checkpoint, "vocoder", _prefix("vocoder."), itemsize, None),
        "upsampler": _component(upsampler, "spatial upsampler", lambda k: True, itemsize, None),
    }
    conv_out = read_header(checkpoint)[0].get("vae.decoder.conv_out.conv.weight")
    if conv_out is not None:  # PyTorch layout (O, C, 3, 3, 3): O = 3 * patch**2, C = the last level's width
        out["video_decoder"].widths = {
            "channels": int(conv_out["shape"][1]),
            "patch_pixels": int(conv_out["shape"][0]) // 3,
        }
    files = sorted(Path(gemma).glob("model*.safetensors"))
    g_quant = None
    if files:
        _, gm = read_header(files[0])
        g_quant = json.loads(gm["ltx_mlx_quantization"]) if gm.get("ltx_mlx_quantization") else None
    parts = [
        _component(f, "gemma", lambda k: "vision" not in k and "multi_modal" not in k, itemsize, g_quant)
        for f in files
    ]
    out["gemma"] = Component(
        "Gemma 3 (language model)",
        sum(p.parameters for p in parts),
        sum(p.bytes for p in parts),
        " + ".join(sorted({p.dtypes for p in parts})),
    )
    return out


def transformer_activations(
    cfg: Any, video_tokens: int, audio_tokens: int, text_tokens: int, itemsize: int, batch: int = 1
) -> int:
    """Largest live activations of one transformer forward pass (cfg: ltx.transformer.TransformerConfig)."""
    h, ha = cfg.num_attention_heads, cfg.audio_num_attention_heads

    def scores(heads: int, tq: int, tk: int) -> int:
        elements = batch * heads * tq * tk
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


DECODE_CONV_WIDTHS = 70  # per output voxel of the last decoder level, in units of its channel count C
DECODE_FRAME_BUFFERS = 12  # per output pixel: blend buffer, weights, previous group, chunk, decoded tile


def decode_activations(
    channels: int,
    patch_pixels: int,
    tile_frames: int,
    tile_h: int,
    tile_w: int,
    height: int,
    width: int,
    itemsize: int,
) -> int:
    """Largest live activations of decoding one video tile (ltx.video_vae.decode_stream, one tile at a time).

    The peak is a res block of the last decoder level, which holds the most voxels (tile frames x tile pixels
    / patch_pixels) at the decoder's base width C. The CPU conv is an explicit GEMM: each 3x3x3 conv holds a
    27C im2col copy, its output and the padded/concatenated input (~31C), and the pixel-norm / scale-shift /
    SiLU temporaries add ~4C; the two convs of a res block are in flight together (the CPU stream frees an
    op's temporaries asynchronously), so ~2 x 35C = 70C per voxel (measured 67-71C at C=8 and 32). On top:
    the tiled-decode frame buffers of the temporal group at full width (12 values per output pixel)."""
    voxels = tile_frames * tile_h * tile_w // patch_pixels
    return itemsize * (
        DECODE_CONV_WIDTHS * channels * voxels + DECODE_FRAME_BUFFERS * tile_frames * height * width
    )


def video_tokens(height: int, width: int, frames: int) -> int:
    return ((frames - 1) // 8 + 1) * (height // 32) * (width // 32)


def audio_tokens(frames: int, fps: float) -> int:
    return round((frames / fps) * 25) + 1


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
    gemma_hidden: int = 3840,
    gemma_layers: int = 48,
) -> list[Estimate]:
    """Estimated peak of each stage. streamed_block_bytes: the low-memory mode's per-block weights
    (then the transformer stages hold the top level plus one block)."""
    h1, w1 = (height // 2, width // 2) if two_stage else (height, width)
    ta = audio_tokens(frames, fps)
    tr = comps["transformer"].bytes
    if streamed_block_bytes is not None:
        tr = tr - cfg.num_layers * streamed_block_bytes + streamed_block_bytes
    lat = lambda h, w: 128 * ((frames - 1) // 8 + 1) * (h // 32) * (w // 32) * itemsize  # noqa: E731
    out = [
        Estimate(
            "encode",
            comps["gemma"].bytes + comps["text_projection"].bytes,
            text_tokens * gemma_hidden * (gemma_layers + 1) * itemsize * 2,
            "rough",
        ),
        Estimate(
            "denoise",
            tr,
            transformer_activations(cfg, video_tokens(h1, w1, frames), ta, text_tokens, itemsize),
        ),
    ]
    if two_stage:
        out.append(
            Estimate("upsample", comps["upsampler"].bytes, 8 * 1024 // 128 * lat(height, width), "rough")
        )
        out.append(
            Estimate(
                "refine",
                tr,
                transformer_activations(cfg, video_tokens(height, width, frames), ta, text_tokens, itemsize),
            )
        )
    # the default tiling (ltx.tiling.PRESETS["default"]): 512 px spatial, 64 frames temporal tiles
    tile_frames = min(frames, 65)
    dec = comps["video_decoder"].widths or {"channels": 128, "patch_pixels": 16}  # the official decoder
    out += [
        Estimate(
            "decode",
            comps["video_decoder"].bytes,
            decode_activations(
                dec["channels"],
                dec["patch_pixels"],
                tile_frames,
                min(512, height),
                min(512, width),
                height,
                width,
                itemsize,
            ),
            "tiled",
        ),
        Estimate("decode-audio", comps["audio_decoder"].bytes, 3 * 512 * (ta * 4) * 64 * itemsize, "rough"),
        Estimate("vocode", comps["vocoder"].bytes, 3 * 1024 * (ta * 4) * 240 // 8 * itemsize, "rough"),
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
