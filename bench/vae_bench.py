"""VAE-side benchmark: the LTX-2.0 video VAE decoder (untiled and tiled), the x2 latent upsampler, the
audio VAE decoder and the HiFi-GAN vocoder at their REAL channel widths, and LTX-2.3's BigVGAN vocoder
+ bandwidth extension (`vocoder_bwe`, at the widths public ports of its checkpoint list: VOCODER_23),
ours (MLX) against the PyTorch reference (ltx-core), on the same random weights and the same inputs.

    .venv/bin/python bench/vae_bench.py            # ~5-8 min on a 2-core machine; writes bench/vae_results.md
    .venv/bin/python bench/vae_bench.py --quick    # smaller inputs (same widths), ~2 min

The reference runs in a persistent worker process (.venv-ref, this same file with --worker) that builds
every model with ltx-core's own configurators and SingleGPUModelBuilder from the safetensors files that
the worker writes once (random weights, ltx.weights.tiny.write_safetensors; cached in --cache). Timing is
interleaved: for every repetition the reference runs once, then ours, so both see the same machine load;
the table reports medians after one warm-up. Each timed call follows `--pause` seconds of idle (0.05
by default), so that neither side's threads still spin into the other's call: torch's OpenMP threads
spin on for some milliseconds after a call, ours ~20 us (OPENBLAS_THREAD_TIMEOUT=16, KMP_BLOCKTIME=0). Longer idle
(0.5 s, what ran before) costs ours time on this VM that torch does not pay: its many thread
hand-offs per call then wake idle vCPUs; `--pause 0.05,0.5` measures both in one run. FLOPs are counted on the reference with forward hooks
(2 per MAC of every conv / linear). `--micro` adds micro-benchmarks of the ops that cap the ratios
(same shapes, MLX vs torch, also interleaved).
"""

# ruff: noqa: B023, I001  (worker closures are built once; ltx.backend must be imported before mlx)
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (imports ltx before numpy)
import numpy as np  # noqa: E402

# ---------------------------------------------------------------------------------------- configurations
VAE = {
    "dims": 3,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 128,
    "patch_size": 4,
    "norm_layer": "pixel_norm",
    "latent_log_var": "uniform",
    "encoder_blocks": [],
    "decoder_blocks": [  # LTX-2.0 (§1.3): res_x(5) and three residual compress_all (x2 each), 1024 at the latent end
        ["res_x", {"num_layers": 5}],
        ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 5}],
        ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 5}],
        ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 5}],
    ],
    "decoder_base_channels": 128,
    "causal_decoder": False,
    "timestep_conditioning": True,
}
UPSAMPLER = {
    "in_channels": 128,
    "mid_channels": 1024,
    "num_blocks_per_stage": 4,
    "dims": 3,
    "spatial_upsample": True,
    "temporal_upsample": False,
    "spatial_scale": 2.0,
    "rational_resampler": True,
}
AUDIO = {
    "audio_vae": {
        "model": {
            "params": {
                "ddconfig": {
                    "ch": 128,
                    "ch_mult": [1, 2, 4],
                    "num_res_blocks": 2,
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
    },
    "vocoder": {
        "resblock": "1",
        "stereo": True,
        "upsample_initial_channel": 1024,
        "upsample_rates": [6, 5, 2, 2, 2],
        "upsample_kernel_sizes": [16, 15, 8, 4, 4],
        "resblock_kernel_sizes": [3, 7, 11],
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        "output_sampling_rate": 24000,
    },
}
# LTX-2.3's vocoder (BigVGAN-v2, 16 kHz) + bandwidth extension to 48 kHz, with the widths and rates of
# the config that public ports of the official LTX-2.3 checkpoint list (no weights here to read it from)
VOCODER_23 = {
    "vocoder": {
        "vocoder": {
            "upsample_initial_channel": 1536,
            "resblock": "AMP1",
            "upsample_rates": [5, 2, 2, 2, 2, 2],
            "resblock_kernel_sizes": [3, 7, 11],
            "upsample_kernel_sizes": [11, 4, 4, 4, 4, 4],
            "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
            "stereo": True,
            "use_tanh_at_final": False,
            "activation": "snakebeta",
            "use_bias_at_final": False,
        },
        "bwe": {
            "upsample_initial_channel": 512,
            "resblock": "AMP1",
            "upsample_rates": [6, 5, 2, 2, 2],
            "resblock_kernel_sizes": [3, 7, 11],
            "upsample_kernel_sizes": [12, 11, 4, 4, 4],
            "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
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
}
SIZES = {
    # video latent (F', H', W') -> 9 frames x 256 x 384 px (full) or 64 x 96 (quick); tiling: (px, overlap px,
    # frames, overlap frames), full: the spatial tiles of the smallest preset (aggressive); the reference's
    # tiled_decode needs a temporal config: 16 / 8 frames is one temporal tile for 2 latent frames
    "full": {"latent": (2, 8, 12), "tiling": (256, 64, 16, 8), "audio_frames": 26},
    "quick": {"latent": (2, 2, 3), "tiling": (64, 32, 16, 8), "audio_frames": 8},
}
COMPONENTS = ("vae_decode", "vae_decode_tiled", "upsampler", "audio_decoder", "vocoder", "vocoder_bwe")
NOISE_SEED, TILED_NOISE_SEED = 11, 12


def _weight(key: str, shape: list[int]) -> np.ndarray:
    """ltx.weights.tiny.synth's scaling rules, with a fast float32 generator for the big conv weights."""
    from ltx.weights import tiny

    if len(shape) >= 2 and int(np.prod(shape)) > 1 << 16:
        rng = np.random.default_rng(tiny._seed(key))
        return rng.standard_normal(tuple(shape), dtype=np.float32) / np.float32(np.sqrt(np.prod(shape[1:])))
    return tiny.synth(key, shape)


# ---------------------------------------------------------------------------------------- reference worker
def worker(cache: Path) -> None:
    """Runs in .venv-ref. Reads one JSON command a line on stdin, answers one '@@'-prefixed JSON line."""
    import torch

    from ltx.weights import tiny
    from ltx_core.loader.single_gpu_model_builder import SingleGPUModelBuilder
    from ltx_core.model.audio_vae.model_configurator import (
        AUDIO_VAE_DECODER_COMFY_KEYS_FILTER,
        VOCODER_COMFY_KEYS_FILTER,
        AudioDecoderConfigurator,
        VocoderConfigurator,
    )
    from ltx_core.model.upsampler.model_configurator import LatentUpsamplerConfigurator
    from ltx_core.model.video_vae.model_configurator import (
        VAE_DECODER_COMFY_KEYS_FILTER,
        VideoDecoderConfigurator,
    )
    from ltx_core.model.video_vae.tiling import SpatialTilingConfig, TemporalTilingConfig, TilingConfig

    torch.set_grad_enabled(False)
    out = sys.stdout
    sys.stdout = sys.stderr  # library prints must not break the protocol

    def reply(obj) -> None:
        out.write("@@" + json.dumps(obj) + "\n")
        out.flush()

    def write(path: Path, module, prefix: str, config: dict, stats_prefix: str | None = None) -> None:
        if path.exists():
            return
        tensors = {}
        for k, v in module.state_dict().items():
            name = (
                stats_prefix + k.removeprefix("per_channel_statistics.")
                if stats_prefix and k.startswith("per_channel_statistics.")
                else prefix + k
            )
            tensors[name] = _weight(name, list(v.shape))
        if "vae.decoder.timestep_scale_multiplier" in tensors:
            tensors["vae.decoder.timestep_scale_multiplier"] = np.array(1000.0, np.float32)
        tmp = path.with_suffix(".tmp")
        tiny.write_safetensors(tmp, tensors, {"config": json.dumps(config)}, "F32")
        os.replace(tmp, path)

    def build(path: Path, configurator, sd_ops=None):
        kw = {"model_sd_ops": sd_ops} if sd_ops is not None else {}
        return (
            SingleGPUModelBuilder(model_path=str(path), model_class_configurator=configurator, **kw)
            .build(device=torch.device("cpu"), dtype=torch.float32)
            .eval()
        )

    models, flops = {}, {}
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "prepare":
            cache.mkdir(parents=True, exist_ok=True)
            with torch.device("meta"):
                dec = VideoDecoderConfigurator.from_config({"vae": VAE})
                ups = LatentUpsamplerConfigurator.from_config(UPSAMPLER)
                adec = AudioDecoderConfigurator.from_config(AUDIO)
                voc = VocoderConfigurator.from_config(AUDIO)
                voc23 = VocoderConfigurator.from_config(VOCODER_23)
            write(cache / "vae.safetensors", dec, "vae.decoder.", {"vae": VAE}, "vae.per_channel_statistics.")
            write(cache / "upsampler.safetensors", ups, "", UPSAMPLER)
            write(
                cache / "audio.safetensors",
                adec,
                "audio_vae.decoder.",
                AUDIO,
                "audio_vae.per_channel_statistics.",
            )
            write(cache / "vocoder.safetensors", voc, "vocoder.", AUDIO)
            write(cache / "vocoder23.safetensors", voc23, "vocoder.", VOCODER_23)
            dec = build(cache / "vae.safetensors", VideoDecoderConfigurator, VAE_DECODER_COMFY_KEYS_FILTER)
            ups = build(cache / "upsampler.safetensors", LatentUpsamplerConfigurator)
            adec = build(
                cache / "audio.safetensors", AudioDecoderConfigurator, AUDIO_VAE_DECODER_COMFY_KEYS_FILTER
            )
            voc = build(cache / "vocoder.safetensors", VocoderConfigurator, VOCODER_COMFY_KEYS_FILTER)
            voc23 = build(cache / "vocoder23.safetensors", VocoderConfigurator, VOCODER_COMFY_KEYS_FILTER)
            x = {k: torch.from_numpy(v) for k, v in np.load(cmd["inputs"]).items()}
            tiling = TilingConfig(
                SpatialTilingConfig(*cmd["tiling"][:2]), TemporalTilingConfig(*cmd["tiling"][2:])
            )
            noises = [
                torch.randn(x["video_latent"][t.in_coords].shape, generator=torch.Generator().manual_seed(0))
                for t in dec._prepare_tiles(x["video_latent"], tiling)
            ]
            gen = torch.Generator().manual_seed(TILED_NOISE_SEED)
            noises = [torch.randn(n.shape, generator=gen) for n in noises]  # as tiled_decode draws them
            np.savez(
                cmd["noise"],
                video=torch.randn(
                    x["video_latent"].shape, generator=torch.Generator().manual_seed(NOISE_SEED)
                ).numpy(),
                tiled=np.concatenate([n.numpy().reshape(-1) for n in noises]),
            )
            models = {
                "vae_decode": lambda: dec(
                    x["video_latent"], generator=torch.Generator().manual_seed(NOISE_SEED)
                ),
                "vae_decode_tiled": lambda: torch.cat(
                    list(
                        dec.tiled_decode(
                            x["video_latent"],
                            tiling,
                            generator=torch.Generator().manual_seed(TILED_NOISE_SEED),
                        )
                    ),
                    dim=2,
                ),
                "upsampler": lambda: ups(x["upsampler_latent"]),
                "audio_decoder": lambda: adec(x["audio_latent"]),
                "vocoder": lambda: voc(x["mel"]),
                "vocoder_bwe": lambda: voc23(x["mel"]),
            }
            mods = {
                "vae_decode": dec,
                "vae_decode_tiled": dec,
                "upsampler": ups,
                "audio_decoder": adec,
                "vocoder": voc,
                "vocoder_bwe": voc23,
            }
            reply({"threads": torch.get_num_threads(), "torch": torch.__version__})
        elif op == "run":
            name = cmd["name"]
            if name not in flops:  # first call: count FLOPs, save the output
                count = [0.0]
                hooks = [
                    m.register_forward_hook(_flop_hook(count))
                    for m in mods[name].modules()
                    if isinstance(
                        m,
                        (
                            torch.nn.Conv1d,
                            torch.nn.Conv2d,
                            torch.nn.Conv3d,
                            torch.nn.ConvTranspose1d,
                            torch.nn.Linear,
                        ),
                    )
                ]
                t0 = time.perf_counter()
                y = models[name]()
                dt = time.perf_counter() - t0
                for h in hooks:
                    h.remove()
                flops[name] = count[0]
                np.save(cache / f"ref_{name}.npy", y.numpy())
            else:
                t0 = time.perf_counter()
                models[name]()
                dt = time.perf_counter() - t0
            reply({"t": dt, "flops": flops[name]})
        elif op == "micro":
            reply({"t": _torch_micro(cmd["what"], cmd["shape"], cmd["runs"])})
        elif op == "quit":
            return


def _flop_hook(count):
    import torch

    def hook(m, inp, out):
        if isinstance(m, torch.nn.Linear):
            count[0] += 2.0 * out.numel() * m.in_features
        elif isinstance(m, torch.nn.ConvTranspose1d):
            count[0] += 2.0 * inp[0].numel() * m.out_channels * m.kernel_size[0] / m.groups
        else:
            count[0] += 2.0 * out.numel() * (m.in_channels // m.groups) * int(np.prod(m.kernel_size))

    return hook


def _torch_micro(what: str, shape: list[int], runs: int) -> float:
    """Median seconds of one torch op (channels-first, as the reference runs it)."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    if what == "conv3d":
        c, f, h, w = shape
        x = torch.randn(1, c, f + 2, h + 2, w + 2, generator=g)
        wt = torch.randn(c, c, 3, 3, 3, generator=g) / 50
        fn = lambda: F.conv3d(x, wt)  # noqa: E731
    elif what == "conv2d":
        c, t, f = shape
        x = torch.randn(1, c, t + 2, f + 2, generator=g)
        wt = torch.randn(c, c, 3, 3, generator=g) / 50
        fn = lambda: F.conv2d(x, wt)  # noqa: E731
    elif what == "conv1d":
        c, n, k, d = shape
        x = torch.randn(1, c, n, generator=g)
        wt = torch.randn(c, c, k, generator=g) / 50
        fn = lambda: F.conv1d(x, wt, padding=d * (k - 1) // 2, dilation=d)  # noqa: E731
    elif what == "conv_transpose1d":
        c, n, k, u = shape
        x = torch.randn(1, c, n, generator=g)
        wt = torch.randn(c, c // 2, k, generator=g) / 50
        fn = lambda: F.conv_transpose1d(x, wt, stride=u, padding=(k - u) // 2)  # noqa: E731
    elif what == "matmul":
        m, k, n = shape
        x, wt = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
        fn = lambda: x @ wt  # noqa: E731
    elif what == "norm_silu":
        c, n = shape
        x = torch.randn(1, c, n, generator=g)
        fn = lambda: F.silu(x / torch.sqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8))  # noqa: E731
    elif what == "groupnorm_silu":
        c, n = shape
        x = torch.randn(1, c, n, generator=g)
        gn = torch.nn.GroupNorm(32, c)
        fn = lambda: F.silu(gn(x))  # noqa: E731
    else:
        raise ValueError(what)
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        fn()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


class RefWorker:
    def __init__(self, cache: Path):
        py = ROOT / ".venv-ref" / "bin" / "python"
        self.proc = subprocess.Popen(
            [str(py), __file__, "--worker", "--cache", str(cache)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    def ask(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith("@@"):
                return json.loads(line[2:])
        raise RuntimeError("reference worker exited (see its stderr above)")

    def close(self) -> None:
        try:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        self.proc.wait(timeout=60)


# ---------------------------------------------------------------------------------------- ours
def make_inputs(size: dict, path: Path) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(2024)
    f, h, w = size["latent"]
    t = size["audio_frames"]
    x = {
        "video_latent": rng.standard_normal((1, 128, f, h, w)).astype(np.float32),
        "upsampler_latent": rng.standard_normal((1, 128, f, h, w)).astype(np.float32),
        "audio_latent": rng.standard_normal((1, 8, t, 16)).astype(np.float32),
        "mel": (rng.standard_normal((1, 2, 4 * t - 3, 64)) - 3.0).astype(np.float32),
    }
    np.savez(path, **x)
    return x


def our_models(cache: Path, x: dict[str, np.ndarray], noise: dict[str, np.ndarray], tiling: tuple[int, int]):
    from ltx import backend  # noqa: F401
    import mlx.core as mx

    from ltx.audio.vae import load_audio_decoder
    from ltx.video.tiling import TilingConfig
    from ltx.video.upsampler import load_upsampler
    from ltx.video.vae import load_video_decoder
    from ltx.audio.vocoder import load_vocoder

    dec = load_video_decoder(cache / "vae.safetensors")
    ups = load_upsampler(cache / "upsampler.safetensors")
    adec = load_audio_decoder(cache / "audio.safetensors")
    voc = load_vocoder(cache / "vocoder.safetensors")
    voc23 = load_vocoder(cache / "vocoder23.safetensors")
    z = mx.array(x["video_latent"])
    zu = mx.array(x["upsampler_latent"].transpose(0, 2, 3, 4, 1))
    za = mx.array(x["audio_latent"])
    mel = mx.array(x["mel"].transpose(0, 2, 3, 1))
    n_video = mx.array(noise["video"])
    flat = noise["tiled"]

    def tiled_noise():
        pos = [0]

        def draw(shape):
            n = int(np.prod(shape))
            a = flat[pos[0] : pos[0] + n].reshape(shape)
            pos[0] += n
            return mx.array(a)

        return draw

    cfg = TilingConfig(spatial=tuple(tiling[:2]), temporal=tuple(tiling[2:]))

    def run(fn):
        def go():
            y = fn()
            mx.eval(y)
            return y

        return go

    return {
        "vae_decode": run(lambda: dec.decode(z, tiling="none", noise=n_video)),  # (B, F, H, W, 3)
        "vae_decode_tiled": run(lambda: dec.decode(z, tiling=cfg, noise=tiled_noise())),
        "upsampler": run(lambda: ups(zu)),  # (B, F, H, W, C)
        "audio_decoder": run(lambda: adec.decode(za)),  # (B, T, F, 2)
        "vocoder": run(lambda: voc(mel)),  # (B, N, 2)
        "vocoder_bwe": run(lambda: voc23(mel)),  # (B, 3 N', 2) at 48 kHz
    }


def to_ref_layout(name: str, y: np.ndarray) -> np.ndarray:
    if name.startswith("vae") or name == "upsampler":
        return y.transpose(0, 4, 1, 2, 3)
    if name == "audio_decoder":
        return y.transpose(0, 3, 1, 2)
    return y.transpose(0, 2, 1)


# ---------------------------------------------------------------------------------------- micro-benchmarks
def _taps(x, wt, dilation: int = 1, pad: int = 0, variant: str = "taps"):
    """What ltx's CPU convs run up to 512 channels (ltx.kernels.conv.conv_taps on tap-major weights):
    `winograd`, the 3x3(x3) convs as Winograd F(2x2, 3x3) on filters transformed once (as a module
    keeps them), and 1-D convs (the vocoder's) as Winograd F(4, 3) / F(4, 4) at any width;
    `winograd_percall`, on filters transformed at every call (the decoder's convs wider than 512
    channels, from conv.WINOGRAD_WIDE_MIN_VOXELS); `taps`, one GEMM per tap with the BLAS's
    in-place GEMMs (MKL or numpy's OpenBLAS, ltx.kernels.blas.gemm); `taps_mlx`, as with neither, MLX's
    addmm chain."""
    import mlx.core as mx

    from ltx.kernels import conv
    from ltx.kernels import blas
    from ltx.kernels import winograd

    wl = conv.taps_layout(wt)
    filters = winograd.Filters()

    def fn():
        gemm, wino, wide = blas.gemm, conv.WINOGRAD, winograd.MIN_CHANNELS_1D
        if variant == "taps_mlx":
            blas.gemm = lambda: None  # only consulted while conv_taps builds its graph
        conv.WINOGRAD = variant.startswith("winograd")
        winograd.MIN_CHANNELS_1D = 1
        try:
            xin = mx.pad(x, [(0, 0), (pad, pad), (0, 0)]) if pad else x
            kept = None if variant == "winograd_percall" else filters
            return conv.conv_taps(xin, wl, None, dilation, filters=kept)
        finally:
            blas.gemm, conv.WINOGRAD, winograd.MIN_CHANNELS_1D = gemm, wino, wide

    return fn


def mlx_micro(what: str, shape: list[int], runs: int, variant: str = "native") -> float:
    from ltx import backend  # noqa: F401
    import mlx.core as mx
    import mlx.nn as nn

    mx.random.seed(0)
    if what == "conv3d":
        c, f, h, w = shape
        x = mx.random.normal((1, f + 2, h + 2, w + 2, c))
        wt = mx.random.normal((c, 3, 3, 3, c)) / 50
        if variant == "native":
            fn = lambda: mx.conv3d(x, wt)  # noqa: E731
        elif variant == "conv2d_taps":  # sum over the 3 time taps of a 2-D conv over all frames
            w2 = [wt[:, d] for d in range(3)]

            def fn():
                y = None
                for d in range(3):
                    t = mx.conv2d(x[:, d : d + f].reshape(f, h + 2, w + 2, c), w2[d])
                    y = t if y is None else y + t
                return y
        elif variant == "conv2d_stack":  # time taps stacked on channels, one 2-D conv with 3C inputs
            w3 = wt.transpose(0, 2, 3, 1, 4).reshape(c, 3, 3, 3 * c)

            def fn():
                xs = mx.concatenate([x[:, d : d + f] for d in range(3)], axis=-1).reshape(
                    f, h + 2, w + 2, 3 * c
                )
                return mx.conv2d(xs, w3)
        elif variant in (
            "winograd",
            "winograd_percall",
            "taps",
            "taps_mlx",
        ):  # ltx/video/blocks.py's CPU convs
            fn = _taps(x, wt, variant=variant)
        elif variant == "im2col":
            wm = wt.reshape(c, 27 * c).T

            def fn():
                cols = mx.concatenate(
                    [
                        x[:, a : a + f, b : b + h, e : e + w]
                        for a in range(3)
                        for b in range(3)
                        for e in range(3)
                    ],
                    axis=-1,
                )
                return cols.reshape(-1, 27 * c) @ wm
        else:
            raise ValueError(variant)
    elif what == "conv2d":
        c, t, f = shape
        x = mx.random.normal((1, t + 2, f + 2, c))
        wt = mx.random.normal((c, 3, 3, c)) / 50
        if variant in ("winograd", "taps", "taps_mlx"):  # ltx/audio/vae.py's CPU convs up to 512 channels
            fn = _taps(x, wt, variant=variant)
        else:
            fn = lambda: mx.conv2d(x, wt)  # noqa: E731
    elif what == "conv1d":
        c, n, k, d = shape
        x = mx.random.normal((1, n, c))
        wt = mx.random.normal((c, k, c)) / 50
        if variant == "im2col":  # what ltx/audio/vocoder.py runs off the CPU
            from ltx.ops import conv1d_mm

            fn = lambda: conv1d_mm(x, wt, None, d * (k - 1) // 2, d)  # noqa: E731
        elif variant in (
            "taps",
            "taps_mlx",
            "winograd",
        ):  # ltx/audio/vocoder.py's CPU convs up to 512 channels
            fn = _taps(x, wt, d, d * (k - 1) // 2, variant=variant)
        else:
            fn = lambda: mx.conv1d(x, wt, padding=d * (k - 1) // 2, dilation=d)  # noqa: E731
    elif what == "conv_transpose1d":
        c, n, k, u = shape
        x = mx.random.normal((1, n, c))
        wt = mx.random.normal((c // 2, k, c)) / 50
        if variant in ("matmul_ola", "blas"):  # what ltx/audio/vocoder.py runs off / on the CPU with a BLAS
            from ltx.kernels import conv
            from ltx.kernels import norms
            from ltx.audio.vocoder import ConvTranspose1d

            m = ConvTranspose1d(c, c // 2, k, stride=u, padding=(k - u) // 2, bias=False)
            m.weight = conv.taps_layout(wt) if variant == "blas" else wt

            def fn():
                on = conv.TRANSPOSED_CONV
                conv.TRANSPOSED_CONV = variant == "blas"
                try:
                    return m(x)
                finally:
                    conv.TRANSPOSED_CONV = on
        else:
            fn = lambda: mx.conv_transpose1d(x, wt, stride=u, padding=(k - u) // 2)  # noqa: E731
    elif what == "matmul":
        m, k, n = shape
        x, wt = mx.random.normal((m, k)), mx.random.normal((k, n))
        fn = lambda: x @ wt  # noqa: E731
    elif what == "norm_silu":
        c, n = shape
        x = mx.random.normal((1, n, c))
        f0 = lambda: nn.silu(x * mx.rsqrt(mx.mean(x * x, axis=-1, keepdims=True) + 1e-8))  # noqa: E731
        if variant == "numpy":  # what ltx/video/blocks.py runs on the CPU
            from ltx.kernels import conv
            from ltx.kernels import norms

            x4 = x.reshape(1, 1, n, 1, c)
            fn = lambda: norms.pixel_norm_silu(x4, 1e-8)  # noqa: E731
        else:
            fn = mx.compile(f0) if variant == "compiled" else f0
    elif what == "groupnorm_silu":
        c, n = shape
        x = mx.random.normal((1, n, c))
        gn = nn.GroupNorm(32, c, pytorch_compatible=True)
        f0 = lambda: nn.silu(gn(x))  # noqa: E731
        if variant == "numpy":  # what ltx/video/upsampler.py runs on the CPU
            from ltx.kernels import conv
            from ltx.kernels import norms

            fn = lambda: norms.group_norm_silu(x, 32, gn.weight, gn.bias, gn.eps)  # noqa: E731
        else:
            fn = mx.compile(f0) if variant == "compiled" else f0
    else:
        raise ValueError(what)
    mx.eval(x)
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        mx.eval(fn())
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


MICRO = [
    # (what, shape, flops, mlx variants); conv3d shapes are the decoder's res_x levels at the full size
    (
        "conv3d",
        [1024, 2, 8, 12],
        None,
        ("native", "conv2d_taps", "conv2d_stack", "im2col", "taps", "winograd_percall"),
    ),
    ("conv3d", [1024, 9, 16, 16], None, ("native", "winograd_percall")),  # a default 512 px tile's latent
    (
        "conv3d",
        [512, 3, 16, 24],
        None,
        ("native", "conv2d_taps", "conv2d_stack", "im2col", "taps_mlx", "taps", "winograd"),
    ),
    (
        "conv3d",
        [256, 5, 32, 48],
        None,
        ("native", "conv2d_taps", "conv2d_stack", "taps_mlx", "taps", "winograd"),
    ),
    ("conv3d", [128, 9, 64, 96], None, ("native", "taps_mlx", "taps", "winograd")),
    ("norm_silu", [128, 9 * 64 * 96], None, ("eager", "compiled", "numpy")),
    ("groupnorm_silu", [1024, 2 * 8 * 12], None, ("eager", "compiled", "numpy")),
    ("groupnorm_silu", [1024, 2 * 16 * 24], None, ("eager", "numpy")),  # after the x2 upsampling
    ("conv2d", [512, 26, 16], None, ("native", "taps_mlx", "taps", "winograd")),  # the audio decoder's levels
    ("conv2d", [128, 101, 64], None, ("native", "taps_mlx", "taps", "winograd")),
    (
        "conv1d",
        [512, 606, 11, 5],
        None,
        ("native", "im2col", "taps_mlx", "taps", "winograd"),
    ),  # vocoder, kernel 11, dilation 5
    ("conv1d", [512, 606, 3, 1], None, ("taps", "winograd")),
    ("conv1d", [256, 3030, 11, 5], None, ("taps", "winograd")),
    ("conv1d", [128, 6060, 7, 3], None, ("native", "im2col", "taps_mlx", "taps", "winograd")),
    (
        "conv1d",
        [128, 6060, 3, 1],
        None,
        ("taps", "winograd"),
    ),  # where Winograd stops paying (MIN_CHANNELS_1D)
    ("conv1d", [64, 12120, 7, 3], None, ("taps", "winograd")),
    ("conv1d", [32, 24240, 11, 1], None, ("taps_mlx", "taps", "winograd")),  # the vocoder's last level
    ("conv_transpose1d", [1024, 101, 16, 6], None, ("native", "matmul_ola", "blas")),
    ("conv_transpose1d", [256, 1212, 8, 2], None, ("native", "matmul_ola", "blas")),
    ("matmul", [4096, 2048, 2048], None, ("native",)),  # the BLAS ceiling under the current machine load
]


def micro_flops(what: str, shape: list[int]) -> float | None:
    if what == "conv3d":
        c, f, h, w = shape
        return 2.0 * 27 * c * c * f * h * w
    if what == "conv2d":
        c, t, f = shape
        return 2.0 * 9 * c * c * t * f
    if what == "conv1d":
        c, n, k, _ = shape
        return 2.0 * c * c * k * n
    if what == "conv_transpose1d":
        c, n, k, _ = shape
        return 2.0 * c * (c // 2) * k * n
    if what == "matmul":
        return 2.0 * shape[0] * shape[1] * shape[2]
    return None


# ---------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller inputs (same real widths)")
    ap.add_argument("--runs", type=int, default=3, help="timed repetitions per side after one warm-up")
    ap.add_argument("--components", default=",".join(COMPONENTS))
    ap.add_argument("--micro", action="store_true", help="also micro-benchmark the capping ops")
    ap.add_argument(
        "--pause",
        default="0.05",
        help="seconds of idle before each timed call (a comma list: one row per component and value)",
    )
    ap.add_argument("--micro-only", action="store_true")
    ap.add_argument("--cache", default=str(common.VAE_BENCH_CACHE))
    ap.add_argument("--out", default=str(ROOT / "bench" / "vae_results.md"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    cache = Path(a.cache)
    if a.worker:
        worker(cache)
        return
    size = SIZES["quick" if a.quick else "full"]
    cache.mkdir(parents=True, exist_ok=True)
    t_start, host = time.perf_counter(), common.machine()
    ref = RefWorker(cache)
    lines: list[str] = []
    try:
        from ltx import ops

        info = ops.describe()
        if not a.micro_only:
            x = make_inputs(size, cache / "inputs.npz")
            meta = ref.ask(
                op="prepare",
                inputs=str(cache / "inputs.npz"),
                noise=str(cache / "noise.npz"),
                tiling=list(size["tiling"]),
            )
            noise = dict(np.load(cache / "noise.npz"))
            ours = our_models(cache, x, noise, size["tiling"])
            f, h, w = size["latent"]
            lines += [
                f"Inputs: video latent {f}x{h}x{w} ({8 * (f - 1) + 1} frames x {32 * h} x {32 * w} px); tiled: spatial "
                f"tiles {size['tiling'][0]} px / {size['tiling'][1]} px overlap; upsampler latent {f}x{h}x{w}; audio "
                f"latent {size['audio_frames']} frames -> mel {4 * size['audio_frames'] - 3} frames; vocoder (LTX-2.0 "
                f"HiFi-GAN, 24 kHz) and vocoder_bwe (LTX-2.3 BigVGAN + BWE, 48 kHz) on that mel. Medians of {a.runs} interleaved runs after one warm-up, each timed call after {a.pause} s idle (`--pause`). mlx {info['mlx']} ({info['blas']}, "
                f"{info['dtype']}; conv kernels' GEMM {info['conv_gemm']}), torch {meta['torch']} "
                f"({meta['threads']} threads), float32 both.",
                "",
                "| component | ours s | torch s | ratio ours/torch | per pair: median (range) | GFLOP | ours GFLOP/s | "
                "torch GFLOP/s | max rel err |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            ]
            pauses = [float(p) for p in a.pause.split(",")]
            for name, pause in itertools.product(a.components.split(","), pauses):
                to, tr, fl, err = [], [], 0.0, float("nan")
                for i in range(a.runs + 1):
                    time.sleep(pause)  # our idle BLAS threads stop spinning before the reference runs
                    r = ref.ask(op="run", name=name)
                    time.sleep(pause)  # and torch's before ours
                    t0 = time.perf_counter()
                    y = ours[name]()
                    dt = time.perf_counter() - t0
                    if i == 0:
                        yr = np.load(cache / f"ref_{name}.npy")
                        yo = to_ref_layout(name, np.array(y))
                        err = (
                            float(np.abs(yo - yr).max() / max(np.abs(yr).max(), 1e-12))
                            if yo.shape == yr.shape
                            else float("inf")
                        )
                        fl = r["flops"]
                    else:
                        to.append(dt)
                        tr.append(r["t"])
                    del y
                mo, mr = statistics.median(to), statistics.median(tr)
                pairs = [
                    o / r for o, r in zip(to, tr, strict=True)
                ]  # each of ours with the reference call before it
                row = (
                    f"| {name}{f' (idle {pause:g} s)' if len(pauses) > 1 else ''} | {mo:.3f} | {mr:.3f} | {mo / mr:.2f} | {statistics.median(pairs):.2f} "
                    f"({min(pairs):.2f}-{max(pairs):.2f}) | {fl / 1e9:.1f} | {fl / 1e9 / mo:.0f} | "
                    f"{fl / 1e9 / mr:.0f} | {err:.1e} |"
                )
                print(row, flush=True)
                lines.append(row)
            lines.append("")
        if a.micro or a.micro_only:
            lines += [
                "Micro-benchmarks of the ops that cap the ratios (median of 5, interleaved; channels-last MLX vs "
                "channels-first torch; conv inputs pre-padded, C->C):",
                "",
                "| op | shape | MLX variant | MLX ms | torch ms | ratio | MLX GFLOP/s | torch GFLOP/s |",
                "|---|---|---|---:|---:|---:|---:|---:|",
            ]
            for what, shape, _, variants in MICRO:
                fl = micro_flops(what, shape)
                for v in variants:
                    tm = mlx_micro(what, shape, 5, v)
                    tt = ref.ask(op="micro", what=what, shape=shape, runs=5)["t"]
                    gf = (f"{fl / 1e9 / tm:.0f} | {fl / 1e9 / tt:.0f}") if fl else "- | -"
                    row = (
                        f"| {what} | {shape} | {v} | {tm * 1e3:.1f} | {tt * 1e3:.1f} | {tm / tt:.2f} | {gf} |"
                    )
                    print(row, flush=True)
                    lines.append(row)
            lines.append("")
    finally:
        ref.close()
    cmd = "python bench/vae_bench.py" + " ".join([""] + sys.argv[1:])
    text = (
        f"# VAE-side benchmark (ours / torch)\n\nCommand: `{cmd}` ({time.perf_counter() - t_start:.0f} s total; {host})\n\n"
        + "\n".join(lines)
        + "\n"
    )
    Path(a.out).write_text(text)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
