"""Shared pieces of the benchmarks (numpy, the standard library and the cheap `import ltx` only: every
venv imports it).

The transformer benchmark configuration is LTX-2 (2.0) at its real head sizes and the token counts
of a stage-1 default video, with fewer layers and heads so that it fits a CPU machine.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import ltx  # noqa: E402,F401  (before numpy: ltx sets OpenBLAS's thread timeout, read as numpy loads it)

# isort: split

import numpy as np  # noqa: E402

# where bench/vae_bench.py writes its real-width random weights and inputs (bench/ab.py's VAE-side
# experiments and bench/vae_profile.py read them)
VAE_BENCH_CACHE = Path(os.environ.get("TMPDIR", "/tmp")) / "ltx-vae-bench"

# stage-1 default: 121 frames at 512x768 -> latent (16, 16, 24) = 6,144 tokens; 126 audio tokens
VIDEO_GRID = (16, 16, 24)
AUDIO_TOKENS = 126
TEXT_TOKENS = 1024
FPS = 24.0


def transformer_config(layers: int = 2, heads: int = 8) -> dict:
    """LTX-2 (2.0) transformer config with `layers` blocks and `heads` heads of the real sizes."""
    return {
        "dropout": 0.0,
        "attention_bias": True,
        "num_vector_embeds": None,
        "activation_fn": "gelu-approximate",
        "num_embeds_ada_norm": 1000,
        "use_linear_projection": False,
        "only_cross_attention": False,
        "cross_attention_norm": True,
        "double_self_attention": False,
        "upcast_attention": False,
        "standardization_norm": "rms_norm",
        "norm_elementwise_affine": False,
        "qk_norm": "rms_norm",
        "positional_embedding_type": "rope",
        "use_audio_video_cross_attention": True,
        "share_ff": False,
        "av_cross_ada_norm": True,
        "use_middle_indices_grid": True,
        "num_layers": layers,
        "num_attention_heads": heads,
        "attention_head_dim": 128,
        "in_channels": 128,
        "out_channels": 128,
        "cross_attention_dim": heads * 128,
        "audio_num_attention_heads": heads,
        "audio_attention_head_dim": 64,
        "audio_in_channels": 128,
        "audio_out_channels": 128,
        "audio_cross_attention_dim": heads * 64,
        "caption_channels": 3840,
        "norm_eps": 1e-6,
        "positional_embedding_theta": 10000.0,
        "positional_embedding_max_pos": [20, 2048, 2048],
        "audio_positional_embedding_max_pos": [20],
        "timestep_scale_multiplier": 1000,
        "av_ca_timestep_scale_multiplier": 1000.0,
        "rope_type": "split",
        "frequencies_precision": "float64",
    }


def transformer_flops(cfg: dict, tv: int, ta: int, s: int) -> float:
    """Multiply-add FLOPs (2 per MAC) of one forward: every linear layer and both attention matmuls."""
    dv, da = (
        cfg["num_attention_heads"] * cfg["attention_head_dim"],
        cfg["audio_num_attention_heads"] * cfg["audio_attention_head_dim"],
    )
    lin = lambda t, i, o: 2.0 * t * i * o  # noqa: E731
    att = lambda tq, tk, d: 2.0 * 2.0 * tq * tk * d  # QK^T and PV over all heads (d = inner)  # noqa: E731
    per = 0.0
    # video self, text cross, ff
    per += 4 * lin(tv, dv, dv) + att(tv, tv, dv)
    per += 2 * lin(tv, dv, dv) + 2 * lin(s, dv, dv) + att(tv, s, dv)
    per += lin(tv, dv, 4 * dv) + lin(tv, 4 * dv, dv)
    # audio self, text cross, ff
    per += 4 * lin(ta, da, da) + att(ta, ta, da)
    per += 2 * lin(ta, da, da) + 2 * lin(s, da, da) + att(ta, s, da)
    per += lin(ta, da, 4 * da) + lin(ta, 4 * da, da)
    # a2v (q video, kv audio, inner = audio inner) and v2a (q audio, kv video)
    per += lin(tv, dv, da) + 2 * lin(ta, da, da) + att(tv, ta, da) + lin(tv, da, dv)
    per += lin(ta, da, da) + 2 * lin(tv, dv, da) + att(ta, tv, da) + lin(ta, da, da)
    total = per * cfg["num_layers"]
    # patchify, caption projections, output heads
    total += lin(tv, cfg["in_channels"], dv) + lin(ta, cfg["audio_in_channels"], da)
    total += (
        lin(s, cfg["caption_channels"], dv)
        + lin(s, dv, dv)
        + lin(s, cfg["caption_channels"], da)
        + lin(s, da, da)
    )
    total += lin(tv, dv, cfg["out_channels"]) + lin(ta, da, cfg["audio_out_channels"])
    return total


def video_bounds(frames: int, height: int, width: int, fps: float = FPS) -> np.ndarray:
    """(1, 3, T, 2) pixel-space [start, end) bounds of each latent patch (causal VAE), time in seconds."""
    f, h, w = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    lat = np.stack([f, h, w]).reshape(3, -1).astype(np.float32)  # (3, T)
    bounds = np.stack([lat, lat + 1], axis=-1) * np.array([8, 32, 32], np.float32)[:, None, None]
    bounds[0] = np.clip(bounds[0] + 1 - 8, 0, None)  # causal first frame
    bounds[0] /= fps
    return bounds[None].astype(np.float32)


def audio_bounds(n: int) -> np.ndarray:
    """(1, 1, T, 2) bounds in seconds of audio latent frames (16 kHz, hop 160, 4x downsampling)."""

    def sec(i):
        return np.clip(i * 4 - 3, 0, None) * 160 / 16000

    i = np.arange(n, dtype=np.float32)
    return np.stack([sec(i), sec(i + 1)], axis=-1)[None, None].astype(np.float32)


def transformer_inputs(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(seed)
    f, h, w = VIDEO_GRID
    tv = f * h * w
    return {
        "video_latent": rng.standard_normal((1, tv, 128)).astype(np.float32),
        "audio_latent": rng.standard_normal((1, AUDIO_TOKENS, 128)).astype(np.float32),
        "video_positions": video_bounds(f, h, w),
        "audio_positions": audio_bounds(AUDIO_TOKENS),
        "video_context": rng.standard_normal((1, TEXT_TOKENS, 3840)).astype(np.float32),
        "audio_context": rng.standard_normal((1, TEXT_TOKENS, 3840)).astype(np.float32),
        "sigma_video": np.array([0.8], np.float32),
        "sigma_audio": np.array([0.8], np.float32),
    }


def synth_weights(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights scaled so that activations stay O(1): fan-in scaled matrices, ~1 norms."""
    rng = np.random.RandomState(seed)
    out = {}
    for name in sorted(shapes):
        shape = tuple(shapes[name])
        n = rng.standard_normal(shape).astype(np.float32)
        if len(shape) >= 2:
            n /= np.float32(np.sqrt(np.prod(shape[1:])))
        elif name.endswith(".bias") or "scale_shift_table" in name:
            n *= np.float32(0.02)
        elif name.endswith(".weight"):
            n = 1.0 + 0.1 * n
        out[name] = n.astype(np.float32)
    return out


def transformer_args(ap, layers: int = 2) -> None:
    """The options every transformer worker takes: tf_prepare.py's inputs and weights, and the size."""
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--layers", type=int, default=layers)
    ap.add_argument("--heads", type=int, default=8)


def timed(fn, runs: int, warmup: int = 1) -> list[float]:
    """Wall seconds of `runs` calls of fn() after `warmup` untimed calls. With BENCH_INTERLEAVE=1
    (bench/run.py's interleaved()), it reports the end of the warm-up on stdout, then each timed call
    waits for a line on stdin and reports its time as it ends: two workers take turns call by call."""
    serve = os.environ.get("BENCH_INTERLEAVE") == "1"
    for _ in range(warmup):
        fn()
    if serve:  # the coordinator starts the first timed call once every worker has warmed up
        sys.stdout.write("BENCH_READY\n")
        sys.stdout.flush()
    times = []
    for _ in range(runs):
        if serve and not sys.stdin.readline():
            break  # the coordinator has stopped
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if serve:
            sys.stdout.write(f"BENCH_TIME {times[-1]}\n")
            sys.stdout.flush()
    return times


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def emit(result: dict) -> None:
    """Workers print one JSON line, prefixed so that library chatter on stdout is ignored."""
    sys.stdout.write("BENCH_RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# the LTX-2 video VAE decoder at its real widths (1024 -> 512 -> 256 -> 128 channels, 5 res layers a level)
VAE_DECODER = {
    "dims": 3,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 128,
    "patch_size": 4,
    "norm_layer": "pixel_norm",
    "latent_log_var": "uniform",
    "causal_decoder": False,
    "timestep_conditioning": False,
    "decoder_base_channels": 128,
    "encoder_blocks": [
        ["res_x", {"num_layers": 4}],
        ["compress_space_res", {"multiplier": 2}],
        ["res_x", {"num_layers": 6}],
        ["compress_time_res", {"multiplier": 2}],
        ["res_x", {"num_layers": 6}],
        ["compress_all_res", {"multiplier": 2}],
        ["res_x", {"num_layers": 2}],
        ["compress_all_res", {"multiplier": 2}],
        ["res_x", {"num_layers": 2}],
    ],
    "decoder_blocks": [
        ["res_x", {"num_layers": 5, "inject_noise": False}],
        ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 5, "inject_noise": False}],
        ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 5, "inject_noise": False}],
        ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 5, "inject_noise": False}],
    ],
}

# latent F', H', W' -> 9 frames of 64 x 96 (run.py --quick sets a smaller one for its workers)
VAE_LATENT = tuple(int(v) for v in os.environ.get("LTX_BENCH_VAE_LATENT", "2x2x3").split("x"))
VAE_TILING = ((64, 32), (16, 8))  # spatial (tile, overlap) pixels, temporal (tile, overlap) frames


def vae_flops(latent: tuple[int, int, int]) -> float:
    """Conv FLOPs of the decoder above: 3x3x3 convs, two per res layer, plus conv_in/upsample/conv_out."""
    f, h, w = latent
    total, ch = 0.0, 1024
    conv = lambda vox, ci, co: 2.0 * vox * ci * co * 27  # noqa: E731
    vox = f * h * w
    total += conv(vox, 128, ch)
    for level in range(4):
        total += 10 * conv(vox, ch, ch)
        if level < 3:
            total += conv(vox, ch, ch * 8 // 2)  # compress_all upsample conv: ch -> (ch/2) * 8
            f, h, w = 2 * f - 1, 2 * h, 2 * w
            vox, ch = f * h * w, ch // 2
    total += conv(vox, ch, 48)
    return total


def machine() -> str:
    """The CPU, its core count and the load at start, for a results file's header."""
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.machine()} {cpu}, {os.cpu_count()} cores, load average {load:.1f} at start"


def vae_components(cache: Path, decode: bool = True) -> dict:
    """The real-width VAE-side components on bench/vae_bench.py's weights and inputs in `cache`, as
    name -> fn() returning the (lazy) output: the video decoder untiled (unless decode=False; ~8 s a
    call on 2 cores), the upsampler, the audio decoder, the vocoder and LTX-2.3's vocoder +
    bandwidth extension. Needs the .venv (MLX)."""
    if not (cache / "inputs.npz").exists():
        raise SystemExit(f"no weights in {cache}: run `python bench/vae_bench.py` first (or pass --cache)")
    import mlx.core as mx

    from ltx.audio.vae import load_audio_decoder
    from ltx.audio.vocoder import load_vocoder
    from ltx.video.upsampler import load_upsampler
    from ltx.video.vae import load_video_decoder

    x, noise = np.load(cache / "inputs.npz"), np.load(cache / "noise.npz")
    adec, voc = load_audio_decoder(cache / "audio.safetensors"), load_vocoder(cache / "vocoder.safetensors")
    voc23 = load_vocoder(cache / "vocoder23.safetensors")
    ups = load_upsampler(cache / "upsampler.safetensors")
    za, zu = mx.array(x["audio_latent"]), mx.array(x["upsampler_latent"].transpose(0, 2, 3, 4, 1))
    mel = mx.array(x["mel"].transpose(0, 2, 3, 1))
    components = {
        "upsampler": lambda: ups(zu),
        "audio_decoder": lambda: adec.decode(za),
        "vocoder": lambda: voc(mel),
        "vocoder_bwe": lambda: voc23(mel),
    }
    if decode:
        dec = load_video_decoder(cache / "vae.safetensors")
        z, n = mx.array(x["video_latent"]), mx.array(noise["video"])
        components = {"vae_decode": lambda: dec.decode(z, tiling="none", noise=n), **components}
    return components


def alternate(fn, variants: dict, use, runs: int, swap: bool = False, settle: int = 0, outputs=None):
    """One evaluated fn() (a lazy MLX result) per variant and round: use(variants[v]), `settle`
    untimed calls (for a variant whose state builds up, as a cache does over a denoising loop's
    steps), then the timed one; runs + 1 rounds, the first a warm-up, with swap the order reversed
    every other round (the warm-up's first). Returns variant -> seconds per round (the i-th entries
    of two variants are one pair); `outputs`, a dict, gets each variant's last result. Needs the .venv
    (MLX)."""
    import mlx.core as mx

    times: dict[str, list[float]] = {v: [] for v in variants}
    for i in range(runs + 1):
        for v in list(variants) if not swap or i % 2 else list(variants)[::-1]:
            use(variants[v])
            for _ in range(settle):
                mx.eval(fn())
            t0 = time.perf_counter()
            out = fn()
            mx.eval(out)
            if i:  # the first round warms up
                times[v].append(time.perf_counter() - t0)
            if outputs is not None:
                outputs[v] = out
    return times


def interleaved_ab(fns: dict, variants: dict, use, runs: int) -> dict[str, dict[str, float]]:
    """alternate() for every fns[name], the variants in the same order every round. Returns name ->
    variant -> median seconds."""
    return {
        name: {v: statistics.median(t) for v, t in alternate(fn, variants, use, runs).items()}
        for name, fn in fns.items()
    }


def forward_pairs(a, variants: dict, use, settle: int = 0) -> dict[str, list[float]]:
    """alternate() on the benchmark transformer's forward (bench/tf_prepare.py's a.inputs / a.weights,
    a.layers, a.heads), the order swapped every pair, a.runs pairs, inside ltx.backend's buffer cache
    as the denoising loops run (a variant may set its own limit). Returns name -> seconds per forward."""
    import tf_ours

    from ltx import backend

    model, video, audio = tf_ours.load(a.weights, a.inputs, a.layers, a.heads)
    with backend.cpu_buffer_cache():
        return alternate(lambda: model(video, audio), variants, use, a.runs, swap=True, settle=settle)
