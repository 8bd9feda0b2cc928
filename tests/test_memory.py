"""Memory: `ltx info` estimates against measured peaks; the streamed (low-memory) transformer."""

from __future__ import annotations

import gc
import json
import math
import tracemalloc
from pathlib import Path

import pytest

from ltx import backend  # noqa: F401

# isort: split

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402
from test_quantize import golden_inputs, write_widened  # noqa: E402

from ltx import memory, ops
from ltx.kernels import activations, conv, threads, winograd
from ltx.kernels import attention as attention_kernels  # noqa: E402
from ltx.model import patchify
from ltx.model import streaming as lowmem
from ltx.model.transformer import Modality, TransformerConfig, X0Model, load_transformer  # noqa: E402
from ltx.weights import loader, tiny


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mem")
    d = tiny.create("2.0", root / "tiny")
    return {"tiny": d / "model.safetensors", "mid": write_widened(root / "mid.safetensors", 64, 32, layers=4)}


def _inputs(cfg, frames: int, h: int, w: int, ta: int, s: int) -> tuple[Modality, Modality]:
    rng = np.random.RandomState(0)
    t = frames * h * w
    arr = lambda *shape: mx.array(rng.standard_normal(shape).astype(np.float32))  # noqa: E731
    ctx = arr(1, s, cfg.caption_channels)
    v = Modality(
        arr(1, t, 128),
        mx.full((1,), 0.8),
        mx.full((1, t, 1), 0.8),
        patchify.video_positions(frames, h, w, 24.0),
        ctx,
    )
    a = Modality(
        arr(1, ta, 128), mx.full((1,), 0.6), mx.full((1, ta, 1), 0.6), patchify.audio_positions(ta), ctx
    )
    mx.eval(v.latent, v.positions, a.latent, a.positions, ctx)
    return v, a


def _settle() -> None:
    """Free what earlier tests left in reference cycles now, not in the middle of a measurement
    (a collection between reading the baseline and the peak shifts both by what it frees)."""
    gc.collect()
    mx.clear_cache()


def _with_numpy(peak: int, run) -> int:
    """peak(run), plus numpy's peak (traced) where the Winograd convs run: their filters and scratch
    are numpy's, freed first so that this run allocates them as a stage's first run does."""
    if not conv.winograd_applies(mx.float32):
        return peak(run)
    threads.release_scratch()  # every thread's kernel scratch: Winograd, the resampled activations
    tracemalloc.start()
    try:
        return peak(run) + tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _filter_bytes(model) -> int:
    """What memory.winograd_filter_bytes counts for a model's convs (from their MLX shapes)."""
    return sum(
        memory.winograd_filter_bytes(list(m.weight.shape))
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Conv3d))
    )


def _measure(load, inputs) -> tuple[int, tuple]:
    _settle()
    base = mx.get_active_memory()
    mx.reset_peak_memory()
    model = load()
    mx.eval(model.parameters())
    out = X0Model(model)(*inputs)
    mx.eval(out)
    return mx.get_peak_memory() - base, out


@pytest.mark.parametrize("name", ["tiny", "mid"])
@pytest.mark.parametrize("size", [(3, 8, 8, 26, 64), (5, 16, 16, 51, 128)])
def test_transformer_estimate_within_25_percent(models, name, size):
    path = models[name]
    cfg = load_transformer(path, mx.float32).config
    comps = memory.components(path, path, path.parent / "none", 4)
    frames, h, w, ta, s = size
    inputs = _inputs(cfg, *size)
    measured, _ = _measure(lambda: load_transformer(path, mx.float32), inputs)
    blocked = attention_kernels.blocked_attention()
    est = comps["transformer"].bytes + memory.transformer_activations(
        cfg, frames * h * w, ta, s, 4, blocked_attention=blocked
    )
    assert abs(est - measured) <= 0.25 * measured, (name, size, est, measured)


def test_streamed_is_bit_identical_and_lowers_peak(models):
    inputs = golden_inputs("2.0")
    normal = X0Model(load_transformer(models["tiny"], mx.float32))(*inputs)
    streamed_model = lowmem.load_streamed_transformer(models["tiny"], mx.float32)
    streamed = X0Model(streamed_model)(*inputs)
    for n, s in zip(normal, streamed, strict=True):
        assert np.array_equal(np.array(n), np.array(s))
    assert streamed_model.streaming_source[0].reads == 2  # each block read once per forward
    # peak: the widened 4-block model, where the block weights dominate
    cfg = load_transformer(models["mid"], mx.float32).config
    small = _inputs(cfg, 3, 2, 2, 5, 8)
    peak_normal, out_n = _measure(lambda: load_transformer(models["mid"], mx.float32), small)
    peak_streamed, out_s = _measure(
        lambda: lowmem.load_streamed_transformer(models["mid"], mx.float32), small
    )
    assert all(np.array_equal(np.array(a), np.array(b)) for a, b in zip(out_n, out_s, strict=True))
    assert peak_streamed < 0.6 * peak_normal, (peak_streamed, peak_normal)


def test_streamed_with_lora_matches_fused(tmp_path):
    from ltx.weights import lora

    d = tiny.create("2.0", tmp_path / "m")
    path = d / "distilled_lora.safetensors"
    fused = load_transformer(d / "model.safetensors", mx.float32)
    lora.fuse_loras(fused, [(path, 0.8)])
    streamed = lowmem.load_streamed_transformer(d / "model.safetensors", mx.float32, loras=[(path, 0.8)])
    inputs = golden_inputs("2.0")
    for a, b in zip(X0Model(fused)(*inputs), X0Model(streamed)(*inputs), strict=True):
        assert np.array_equal(np.array(a), np.array(b))


def test_plan_budget(models):
    cfg = load_transformer(models["mid"], mx.float32).config
    comps = memory.components(models["mid"], models["mid"], models["mid"].parent / "none", 4)
    for c in ("text_projection", "video_decoder", "audio_decoder", "vocoder", "upsampler", "gemma"):
        comps[c] = memory.Component(c, 0, 0, "-")
    block = comps["transformer"].bytes // 8
    keep = lambda es: [e for e in es if e.stage in ("denoise", "refine")]  # noqa: E731
    normal = keep(memory.estimate_stages(comps, cfg, 64, 64, 9, text_tokens=8))
    streamed = keep(memory.estimate_stages(comps, cfg, 64, 64, 9, text_tokens=8, streamed_block_bytes=block))
    worst, worst_streamed = max(e.peak for e in normal), max(e.peak for e in streamed)
    assert worst_streamed < worst
    assert memory.plan(worst, normal, streamed) is False
    assert memory.plan(worst - 1, normal, streamed) is True
    with pytest.raises(ValueError, match="--memory-budget"):
        memory.plan(worst_streamed - 1, normal, streamed)


def _decoder(base_channels: int | None):
    """The tiny 2.0 video decoder, or the same widened to `base_channels` (synthesised weights, in memory)."""
    from mlx.utils import tree_flatten, tree_unflatten

    from ltx import ops
    from ltx.video.vae import VideoDecoder, VideoVAEConfig

    cfg = json.loads(
        json.dumps(tiny.load_manifest("2.0")["files"]["model.safetensors"]["metadata"]["config"])
    )
    vae = cfg["vae"]
    if base_channels is not None:
        vae["decoder_base_channels"] = base_channels
    model = VideoDecoder(VideoVAEConfig.from_dict(vae))
    flat = tree_flatten(model.parameters())
    model.update(tree_unflatten([(k, mx.array(tiny.synth("vae.decoder." + k, v.shape))) for k, v in flat]))
    ops.lay_out(model)  # as load_video_decoder does
    return model


@pytest.mark.parametrize("base", [8, 32])  # 8: the tiny decoder; 32: a mid-size one
@pytest.mark.parametrize("size", [(128, 192, 9), (128, 192, 17)])
def test_decode_estimate_within_25_percent(base, size):
    from ltx.video.tiling import parse_tiling

    h, w, frames = size
    latent = mx.array(
        np.random.RandomState(0).standard_normal((1, 128, (frames - 1) // 8 + 1, h // 32, w // 32))
    )
    latent = latent.astype(mx.float32)
    mx.eval(latent)
    _settle()
    base_mem = mx.get_active_memory()
    model = _decoder(base)
    mx.eval(model.parameters())
    weights = mx.get_active_memory() - base_mem

    def run() -> int:
        mx.reset_peak_memory()  # building the synthetic weights has its own transients; loading is apart
        for chunk in model.decode_stream(latent, parse_tiling("default"), seed=0):
            np.array(chunk)
        return mx.get_peak_memory() - base_mem

    measured = _with_numpy(lambda f: f(), run)
    patch = model.conv_out.conv.weight.shape[0] // 3
    wino = conv.winograd_applies(mx.float32)
    est = weights + (_filter_bytes(model) if wino else 0)
    est += memory.decode_activations(base, patch, frames, h, w, h, w, 4, winograd=wino)
    assert abs(est - measured) <= 0.25 * measured, (base, size, est, measured)


def test_decode_widths_from_checkpoint(models):
    comps = memory.components(models["tiny"], models["tiny"], models["tiny"].parent / "none", 4)
    assert comps["video_decoder"].widths == {"channels": 8, "patch_pixels": 16}


def _narrow(weight: mx.array) -> bool:
    o, *kernel, c = weight.shape
    return conv.narrow_applies(math.prod(kernel), o, c)


def test_winograd_filter_bytes_from_checkpoint(models):
    """The header's count of the Winograd filters the decoders keep equals what their modules hold
    after a decode, and covers every conv that made them."""
    from ltx.audio.vae import load_audio_decoder
    from ltx.video.vae import load_video_decoder

    assert conv.winograd_applies(mx.float32)
    comps = memory.components(models["tiny"], models["tiny"], models["tiny"].parent / "none", 4)
    video = load_video_decoder(models["tiny"], mx.float32)
    np.array(video.decode(mx.zeros((1, 128, 2, 2, 3))))
    audio = load_audio_decoder(models["tiny"], mx.float32)
    np.array(audio.decode(mx.zeros((1, 8, 5, 16))))
    for name, model in (("video_decoder", video), ("audio_decoder", audio)):
        convs = [m for m in model.modules() if isinstance(m, (ops.Conv2d, ops.Conv3d)) and m.uses_taps()]
        convs = [m for m in convs if m.weight.shape[-2] == 3]  # (the audio resnets' 1x1 shortcuts)
        narrow = [m for m in convs if _narrow(m.weight)]  # one GEMM, no filters
        assert len(narrow) == (name == "audio_decoder")  # its conv_out to 2 channels
        convs = [m for m in convs if not _narrow(m.weight)]
        assert convs and all(m.filters.filters is not None for m in convs), name  # all ran Winograd
        assert comps[name].winograd_bytes == sum(m.filters.filters.nbytes for m in convs), name
        assert _filter_bytes(model) == comps[name].winograd_bytes, name  # the MLX layout reads the same


def test_vocoder_winograd_filter_bytes_from_checkpoint(dirs, widened):
    """The header's count of the 1-D Winograd filters the vocoder keeps (the widened 2.0's 128-channel
    level and conv_pre) equals what its convs hold after a run."""
    from ltx.audio.vocoder import Conv1d, load_vocoder

    assert conv.winograd_applies(mx.float32)
    ckpt = widened["vocoder-2.0"]
    voc = load_vocoder(ckpt, mx.float32)
    np.array(voc(_normal(1, 9, 64, 2)))
    convs = [m for m in voc.modules() if isinstance(m, Conv1d) and m.filters.filters is not None]
    assert len(convs) == 1 + 3 * 6  # conv_pre (128 inputs) and the first level's three res blocks
    held = sum(m.filters.filters.nbytes for m in convs)
    assert _components(ckpt, dirs)["vocoder"].winograd_bytes == held
    torch_layout = sum(  # the official layout (O, C, K) reads the same
        memory.winograd1d_filter_bytes([m.weight.shape[0], m.weight.shape[2], m.weight.shape[1]])
        for m in voc.modules()
        if isinstance(m, Conv1d)
    )
    assert torch_layout == held


def test_memory_constants_match_the_kernels():
    """ltx.memory keeps copies of the CPU kernels' limits (it imports no model code)."""
    assert memory.WINOGRAD_MAX_CHANNELS == conv.TAPS_MAX_CHANNELS
    assert memory.WINOGRAD_CHUNK_ELEMENTS == winograd.CHUNK_ELEMENTS
    assert memory.WINOGRAD_TILE == winograd.TILE
    assert memory.WINOGRAD_TILE_MAX_CHANNELS == winograd.TILE_MAX_CHANNELS
    assert memory.WINOGRAD_TILE_WIDE == winograd.TILE_WIDE
    assert memory.WINOGRAD_MIN_CHANNELS_1D == winograd.MIN_CHANNELS_1D
    assert memory.WINOGRAD_MAX_CHANNELS_1D == winograd.MAX_CHANNELS_1D
    assert memory.RESAMPLE_CHUNK_VALUES == activations.RESAMPLE_CHUNK_VALUES


# ----------------------------------------------------------------------------------------------
# encode, upsample, decode-audio, vocode: the `ltx info` estimate of each against the measured peak of
# the stage's own computation (its components loaded inside the measurement, lazily, as the stage loads
# them, and held to the end, as stages.runtime holds them: a module dropped after building the graph
# would free each weight once used), on the tiny model and a widened one in the official layout.

PROMPT = "a red fox trots through fresh snow"


def _peak(run) -> int:
    """run()'s peak above the memory in use before it; the larger of two runs: a buffer of an earlier
    test that MLX frees during a run lowers that run's reading (the mid 2.3 encode read 58 MB once in
    ~10 full-file runs, 74 MB otherwise)."""
    peaks = []
    for _ in range(2):
        _settle()
        base = mx.get_active_memory()
        mx.reset_peak_memory()
        run()
        peaks.append(mx.get_peak_memory() - base)
    return max(peaks)


def _normal(*shape: int) -> mx.array:
    x = mx.array(np.random.RandomState(0).standard_normal(shape).astype(np.float32))
    mx.eval(x)
    return x


def _tiny_config(variant: str) -> dict:
    return json.loads(
        json.dumps(tiny.load_manifest(variant)["files"]["model.safetensors"]["metadata"]["config"])
    )


def _write(path: Path, module, config: dict | None, rename=lambda k: k, layouts: dict | None = None) -> Path:
    """`module`'s parameters with synthesised weights under the keys `rename(key)`, `config` as metadata.
    MLX layout, which the loaders keep, except the fixed buffers in `layouts` (key suffix -> permutation
    to the official layout, in which tiny.synth computes their values)."""
    from mlx.utils import tree_flatten

    tensors = {}
    for k, v in tree_flatten(module.parameters()):
        perm = next((p for suffix, p in (layouts or {}).items() if k.endswith(suffix)), None)
        tensors[rename(k)] = tiny.synth(rename(k), [v.shape[i] for i in perm] if perm else v.shape)
    tiny.write_safetensors(path, tensors, {} if config is None else {"config": json.dumps(config)}, "BF16")
    return path


def _estimate(comps: dict, stage: str, height: int, width: int, frames: int, **kw) -> memory.Estimate:
    """`ltx info`'s estimate of one stage (the transformer config only matters for denoise and refine)."""
    cfg = TransformerConfig.from_dict(_tiny_config("2.0")["transformer"])
    return next(
        e for e in memory.estimate_stages(comps, cfg, height, width, frames, **kw) if e.stage == stage
    )


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, models) -> dict[str, Path]:
    """The tiny model directories of both variants."""
    return {
        "2.0": models["tiny"].parent,
        "2.3": tiny.create("2.3", tmp_path_factory.mktemp("mem23") / "tiny"),
    }


def _components(checkpoint: Path, dirs, upsampler: Path | None = None, gemma: Path | None = None) -> dict:
    up = upsampler or dirs["2.0"] / "upsampler.safetensors"
    return memory.components(checkpoint, up, gemma or checkpoint.parent / "none", 4)


# Gemma widened and deepened so that its hidden states dominate the encode peak, as they do at the official
# size, and outweigh the weights (so that the 25% bound on the total bounds the activation model)
MID_GEMMA = {"hidden_size": 256, "num_hidden_layers": 16, "intermediate_size": 256, "head_dim": 64}
MID_GEMMA.update(num_attention_heads=2, num_key_value_heads=1, query_pre_attn_scalar=64)


@pytest.fixture(scope="module")
def text_models(dirs, tmp_path_factory) -> dict[tuple[str, str], tuple[Path, Path]]:
    """(checkpoint, Gemma directory) per (variant, "tiny" | "mid"): mid = a Gemma directory widened to
    MID_GEMMA (tiny tokenizer) and a checkpoint with a text projection and connectors that fit it."""
    import shutil

    from ltx.text.encoder import KEY_MAP, EmbeddingsProcessor, TextConfig
    from ltx.text.gemma import GemmaConfig, GemmaTextModel

    root = tmp_path_factory.mktemp("text")
    back = {v: k for k, v in KEY_MAP.items()}  # module prefix -> checkpoint prefix
    out = {}
    for variant, d in dirs.items():
        out[variant, "tiny"] = (d / "model.safetensors", d / "gemma")
        gemma = root / f"gemma-{variant}"
        shutil.copytree(d / "gemma", gemma, ignore=shutil.ignore_patterns("*.safetensors"))
        raw = json.loads((gemma / "config.json").read_text())
        raw["text_config"].update(MID_GEMMA)
        (gemma / "config.json").write_text(json.dumps(raw))
        model = GemmaTextModel(GemmaConfig.from_dict(raw))
        _write(gemma / "model.safetensors", model, None, lambda k: "language_model.model." + k)
        t = _tiny_config(variant)["transformer"]
        hidden, states = MID_GEMMA["hidden_size"], MID_GEMMA["num_hidden_layers"] + 1
        if variant == "2.0":  # feature extractor V1 keeps Gemma's width, and the connectors run at it
            t["connector_attention_head_dim"] = hidden // t["connector_num_attention_heads"]
        proc = EmbeddingsProcessor(TextConfig.from_dict(t, hidden, states))
        rename = lambda k: next(back[p] + k[len(p) :] for p in back if k.startswith(p))  # noqa: E731
        out[variant, "mid"] = (
            _write(root / f"text-{variant}.safetensors", proc, {"transformer": t}, rename),
            gemma,
        )
    return out


@pytest.mark.parametrize("variant", ["2.0", "2.3"])  # feature extractor V1, V2
@pytest.mark.parametrize("name,tokens", [("tiny", 1024), ("tiny", 512), ("mid", 1024), ("mid", 512)])
def test_encode_estimate_within_25_percent(dirs, text_models, variant, name, tokens):
    """tiny: attention (masks, scores) dominates; mid: the hidden states and the feature extractor."""
    from ltx.text.encoder import load_text_encoder
    from ltx.text.gemma import GemmaTokenizer

    ckpt, gemma = text_models[variant, name]
    tokenizer = GemmaTokenizer(gemma, max_length=tokens)  # the stage pads every prompt to 1024 tokens

    def run():
        encoder = load_text_encoder(ckpt, gemma, mx.float32)
        encoder.tokenizer = tokenizer
        encoder.encode(PROMPT)

    measured = _peak(run)
    est = _estimate(_components(ckpt, dirs, gemma=gemma), "encode", 256, 384, 17, text_tokens=tokens)
    assert abs(est.peak - measured) <= 0.25 * measured, (variant, name, tokens, est, measured)


@pytest.fixture(scope="module")
def widened(dirs, tmp_path_factory) -> dict[str, Path]:
    """Mid-size upsampler (width 128, two blocks per stage), audio decoder (the official ch_mult (1, 2, 4)
    and two res blocks), vocoders (2.0: 256 initial channels; 2.3: 128 and 32, the 16 kHz generator the
    larger, where the tiny's BWE generator is), synthesised weights in the official key layout."""
    from ltx.audio.vae import AudioDecoder, AudioVAEConfig
    from ltx.audio.vocoder import BWEConfig, Vocoder, VocoderWithBWE, vocoder_config_from_dict
    from ltx.video.upsampler import LatentUpsampler, UpsamplerConfig

    root = tmp_path_factory.mktemp("widened")
    up = json.loads(loader.read_header(dirs["2.0"] / "upsampler.safetensors")[1]["config"])
    up.update(mid_channels=128, num_blocks_per_stage=2)
    audio = _tiny_config("2.0")["audio_vae"]
    audio["model"]["params"]["ddconfig"].update(ch_mult=[1, 2, 4], num_res_blocks=2)
    stats = "per_channel_statistics."
    out = {
        "upsampler": _write(
            root / "upsampler.safetensors", LatentUpsampler(UpsamplerConfig.from_dict(up)), up
        ),
        "audio": _write(
            root / "audio.safetensors",
            AudioDecoder(AudioVAEConfig.from_dict(audio)),
            {"audio_vae": audio},
            lambda k: "audio_vae." + k if k.startswith(stats) else "audio_vae.decoder." + k,
        ),
    }
    voc20 = _tiny_config("2.0")["vocoder"]
    voc20["upsample_initial_channel"] = 256
    voc23 = _tiny_config("2.3")["vocoder"]
    voc23["vocoder"]["upsample_initial_channel"], voc23["bwe"]["upsample_initial_channel"] = 128, 32
    for variant, config in (("2.0", voc20), ("2.3", voc23)):
        cfg = vocoder_config_from_dict(config)
        model = VocoderWithBWE(cfg) if isinstance(cfg, BWEConfig) else Vocoder(cfg)
        basis = {"forward_basis": (0, 2, 1)}  # the STFT basis, (2 * (n_fft // 2 + 1), 1, n_fft) officially
        path = root / f"vocoder-{variant}.safetensors"
        out[f"vocoder-{variant}"] = _write(path, model, {"vocoder": config}, lambda k: "vocoder." + k, basis)
    return out


def test_frame_conv_chunk_matches_the_kernel():
    """memory mirrors the frame convs' im2col chunk (it reads no kernel module)."""
    from ltx.kernels import conv

    assert memory.FRAME_COLS_ELEMENTS == conv.FRAME_COLS_ELEMENTS


@pytest.mark.parametrize("name", ["tiny", "mid"])  # width 32, one res block per stage; width 128, two
@pytest.mark.parametrize("size", [(384, 512, 33), (512, 768, 49)])  # (height, width, frames) of the output
def test_upsample_estimate_within_25_percent(dirs, widened, name, size, kernels, monkeypatch):
    from ltx.video.upsampler import load_upsampler, upsample_video
    from ltx.video.vae import load_video_encoder

    h, w, frames = size
    path = dirs["2.0"] / "upsampler.safetensors" if name == "tiny" else widened["upsampler"]
    latent = _normal(1, 128, (frames - 1) // 8 + 1, h // 2 // 32, w // 2 // 32)  # the stage-1 latent

    from ltx.kernels import conv

    monkeypatch.setattr(conv, "FRAME_COLS_ELEMENTS", memory.FRAME_COLS_ELEMENTS)  # the real chunk

    def run():  # as stages/upsample.py (the encoder: only its statistics are read)
        encoder = load_video_encoder(dirs["2.0"] / "model.safetensors", mx.float32)
        upsampler = load_upsampler(path, mx.float32)  # held, as the stage's runtime holds it
        np.array(upsample_video(latent, encoder, upsampler))

    cpu = kernels == "cpu"
    if cpu:  # the frame convs' im2col is numpy's: traced, and added to MLX's peak
        tracemalloc.start()
    measured = _peak(run)
    if cpu:
        measured += tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    comps = _components(dirs["2.0"] / "model.safetensors", dirs, upsampler=path)
    est = _estimate(comps, "upsample", *size, cpu_norms=cpu, frame_convs=cpu)
    assert abs(est.peak - measured) <= 0.25 * measured, (name, size, kernels, est, measured)


@pytest.mark.parametrize("name", ["tiny", "mid"])  # ch_mult (1, 1, 2), one res block; (1, 2, 4), two
@pytest.mark.parametrize("frames", [25, 49])  # at 24 fps: 26 and 51 audio latent frames
def test_decode_audio_estimate_within_25_percent(dirs, widened, name, frames):
    from ltx.audio.vae import load_audio_decoder
    from ltx.constants import audio_latent_frames

    ckpt = dirs["2.0"] / "model.safetensors" if name == "tiny" else widened["audio"]
    latent = _normal(1, 8, audio_latent_frames(frames, 24.0), 16)

    def run():  # as stages/decode_audio.py
        decoder = load_audio_decoder(ckpt, mx.float32)  # held, as the stage's runtime holds it
        np.array(decoder.decode(latent).transpose(0, 3, 1, 2))

    measured = _with_numpy(_peak, run)
    wino = conv.winograd_applies(mx.float32)
    est = _estimate(_components(ckpt, dirs), "decode-audio", 256, 384, frames, winograd=wino)
    assert abs(est.peak - measured) <= 0.25 * measured, (name, frames, est, measured)


@pytest.mark.parametrize("name", ["tiny", "mid"])
@pytest.mark.parametrize(  # HiFi-GAN; BigVGAN vocoder + bandwidth extension (3x the work per mel frame)
    "variant,frames",
    [
        ("2.0", 17),
        ("2.0", 33),
        ("2.3", 9),
        ("2.3", 13),
        ("2.3", 49),
    ],  # at 24 fps: 69, 133; 33, 53, 197 mel frames
)
def test_vocode_estimate_within_25_percent(dirs, widened, variant, name, frames):
    from ltx.audio.vocoder import load_vocoder
    from ltx.constants import audio_latent_frames

    ckpt = dirs[variant] / "model.safetensors" if name == "tiny" else widened[f"vocoder-{variant}"]
    mel = _normal(1, 4 * audio_latent_frames(frames, 24.0) - 3, 64, 2)  # the audio decoder's output

    def run():  # as stages/vocode.py
        vocoder = load_vocoder(ckpt, mx.float32)  # held, as the stage's runtime holds it
        np.array(vocoder(mel)[0].T)

    measured = _with_numpy(_peak, run)  # the mid 2.0's first level (128 channels) runs as 1-D Winograd
    wino, resampling = conv.winograd_applies(mx.float32), activations.resampling_applies(mx.float32)
    est = _estimate(_components(ckpt, dirs), "vocode", 256, 384, frames, winograd=wino, resampling=resampling)
    assert abs(est.peak - measured) <= 0.25 * measured, (variant, name, frames, est, measured)


def test_stage_widths_from_checkpoint(dirs):
    """The widths the stage models read from the headers are those of the modules the loaders build."""
    from ltx.audio.vae import load_audio_decoder
    from ltx.text.encoder import load_embeddings_processor
    from ltx.text.gemma import load_gemma
    from ltx.video.upsampler import load_upsampler

    for d in dirs.values():
        ckpt = d / "model.safetensors"
        comps = memory.components(ckpt, d / "upsampler.safetensors", d / "gemma", 4)
        g = load_gemma(d / "gemma").config
        assert comps["gemma"].widths == {
            "hidden": g.hidden_size,
            "layers": g.num_hidden_layers,
            "intermediate": g.intermediate_size,
            "heads": g.num_attention_heads,
            "head_dim": g.head_dim,
        }
        proc = load_embeddings_processor(ckpt, None, g.hidden_size, g.num_hidden_layers + 1)
        assert comps["text_projection"].widths == {
            "video_dim": proc.video_connector.dim,
            "audio_dim": proc.audio_connector.dim,
            "video_heads": proc.video_connector.heads,
            "audio_heads": proc.audio_connector.heads,
        }
        assert comps["upsampler"].widths == {
            "channels": load_upsampler(d / "upsampler.safetensors").cfg.mid_channels
        }
        audio = comps["audio_decoder"].widths
        levels = load_audio_decoder(ckpt).up
        conv1 = [level.block[0].conv1.conv.weight.shape for level in levels]  # MLX layout (O, 3, 3, I)
        assert audio["levels"] == len(conv1) and audio["latent_bins"] == 16
        assert [(audio[f"level{i}_in"], audio[f"level{i}"]) for i in range(len(conv1))] == [
            (s[3], s[0]) for s in conv1
        ]
    # the largest vocoder level: 2.0, 64 initial channels, rates (6, 5, 2, 2, 2): 16 channels x 30 samples per
    # frame at level 1 (levels 1-4 tie); 2.3, its BWE generator (32 channels, rates (6, 5, 8)) on 2 mel frames
    # (hop 80) per 160 samples of the 16 kHz vocoder: 4 channels x 480 at its last level
    # (no level is wide enough for the 1-D Winograd convs: winograd_channel_samples 0)
    assert _components(dirs["2.0"] / "model.safetensors", dirs)["vocoder"].widths == {
        "channels": 16,
        "samples_per_frame": 30,
        "amp": 0,
        "winograd_channel_samples": 0,
    }
    assert _components(dirs["2.3"] / "model.safetensors", dirs)["vocoder"].widths == {
        "channels": 4,
        "samples_per_frame": 480,
        "amp": 1,
        "winograd_channel_samples": 0,
    }


@pytest.mark.parametrize("variant", ["2.0", "2.3"])
def test_tiny_headers_from_the_manifest_match_the_written_files(tmp_path, variant):
    """The pre-flight estimates a tiny model before its files exist, from headers built from its manifest:
    they must be the headers `tiny.create` writes."""
    from ltx.weights import tiny
    from ltx.weights.header import read_header

    root = tiny.create(variant, tmp_path / "m")
    expected = tiny.headers(variant, root)
    written = {p: read_header(p) for p in root.rglob("*.safetensors")}
    assert written.keys() == expected.keys()
    for path, (infos, meta) in written.items():
        assert (infos, meta) == expected[path], path


@pytest.mark.parametrize(
    "latent,tiling",
    [
        ((2, 3, 4), None),
        ((3, 4, 6), ((16, 8), None, (64, 32))),
    ],  # 9 x 96 x 128 whole; 17 x 128 x 192 in 10 tiles
)
def test_diffusion_decode_estimate_within_25_percent(latent, tiling):
    """The diffusion video decoder (a new peak of LTX-2.5's decode) at 4x the tiny 2.5 widths."""
    from mlx.utils import tree_flatten, tree_unflatten

    from ltx.video.diffusion_decoder import DiffusionDecoderConfig, DiffusionVideoDecoder

    cfg = DiffusionDecoderConfig(
        head_dim=32,
        t_emb_dim=32,
        stage_channels=[512, 256, 128, 128, 64],
        stage_depths=[1, 1, 1, 1, 2],
        stage_kernels=[[3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 5, 5], [3, 3, 3]],
        stage5_kernel=[3, 5, 5],
        stage5_channels=128,
        default_num_inference_steps=1,
        model_output_type="x0",
    )
    model = DiffusionVideoDecoder(cfg)
    flat = tree_flatten(model.parameters())
    model.update(tree_unflatten([(k, mx.array(tiny.synth("vae.decoder." + k, v.shape))) for k, v in flat]))
    mx.eval(model.parameters())
    z = mx.array(np.random.RandomState(0).standard_normal((1, 128, *latent)).astype(np.float32))
    held = mx.get_active_memory()
    mx.reset_peak_memory()
    mx.eval(model.decode(z, tiling, seed=0))
    measured = mx.get_peak_memory() - held
    f, h, w = latent
    est = memory.diffusion_decode_activations(cfg, (f - 1) * 8 + 1, 32 * h, 32 * w, 4, tiling)
    assert 0.75 <= est / measured <= 1.25, (est, measured)


def test_decode_estimate_with_the_diffusion_decoder(models, tmp_path):
    """`ltx info` / the pre-flight estimate decode with the diffusion decoder when it is the one chosen:
    its weights (from its own file's header) plus diffusion_decode_activations at the default tiling."""
    from ltx.video.diffusion_decoder import tiling_for
    from ltx.video.tiling import PRESETS

    vae = tiny.headers("2.5", tmp_path)
    path = tmp_path / "vae/video_vae.safetensors"
    headers = {**vae, models["tiny"]: loader.read_header(models["tiny"])}
    comps = memory.components(
        models["tiny"], models["tiny"], tmp_path / "none", 4, headers, diffusion_vae=path
    )
    diff = comps["diffusion_decoder"]
    assert diff.parameters == sum(
        math.prod(i["shape"]) for k, i in vae[path][0].items() if "encoder" not in k
    )
    cfg = TransformerConfig.from_dict(
        json.loads(loader.read_header(models["tiny"])[1]["config"])["transformer"]
    )
    by = {
        d: {e.stage: e for e in memory.estimate_stages(comps, cfg, 256, 384, 33, decoder=d)}
        for d in ("conv", "diffusion")
    }
    assert by["conv"]["decode"].weights == comps["video_decoder"].bytes
    est = by["diffusion"]["decode"]
    tiles = tiling_for(PRESETS["default"], diff.config.overlaps, preset=True)
    assert est.weights == diff.bytes and est.note == "diffusion decoder, tiled"
    assert est.activations == memory.diffusion_decode_activations(diff.config, 33, 256, 384, 4, tiles) > 0
    # with tiling, stage 5 holds one tile: a long video costs less than decoding it whole
    long = memory.diffusion_decode_activations(diff.config, 257, 256, 384, 4, tiles)
    assert long < memory.diffusion_decode_activations(diff.config, 257, 256, 384, 4, None) / 2


def test_preflight_sizes_stage_1_from_the_upsampler(tmp_path):
    """The pre-flight estimates stage 1 where pipeline.build runs it: half the output with the x2 upsampler,
    2/3 with x1.5 (96x192 -> 64x128), so the x1.5 run's denoise costs what a 64x128 one-stage denoise does."""
    from cache.store import Store
    from stages import budget, pipeline

    store = Store(tmp_path)
    by = {}
    for up, h, w, pipe in (("tiny:x1.5", 96, 192, "distilled"), ("tiny:x2", 128, 256, "distilled"),
                           (None, 64, 128, "dev")):  # fmt: skip
        opts = pipeline.Options(prompt="a fox", height=h, width=w, pipeline=pipe, spatial_upsampler_path=up)
        nodes, o, files = pipeline.build(opts, store, preflight=False)
        by[up] = {e.stage: e for e in budget._stage_estimates(files, o)[0]}
        if up is not None:
            assert (nodes["denoise"].params.height, nodes["denoise"].params.width) == (64, 128)
    for up in ("tiny:x1.5", "tiny:x2"):
        assert by[up]["denoise"].activations == by[None]["denoise"].activations
    assert by["tiny:x1.5"]["refine"].activations < by["tiny:x2"]["refine"].activations
