"""LTX-2.5's diffusion video decoder at its REAL widths (ltx_core 1.2.0's defaults: stages 1024/512/256/256/128,
depths 4/6/4/2/8, kernels 3x7x7 .. 3x3x3, head 64; one x0 step), ours (MLX, CPU) against the 1.2.0 reference
(the pipelines' CHUNKED_EAGER mode: its eager tiled-SDPA neighbourhood attention, what runs without natten), on
the same random weights, latent and injected noise, in one run; and our conv decoder (LTX-2's real widths)
re-decoding the same latent beside it.

    .venv/bin/python bench/diffdec_bench.py            # latent (2, 7, 7): 9 frames of 224x224 (the decoder's
                                                       # smallest: its stage-1 kernel needs 7x7 latents)
    .venv/bin/python bench/diffdec_bench.py --runs 3 --latent 2,8,8
    .venv/bin/python bench/diffdec_bench.py --na 17,56,56   # stage 5's attention alone (that latent's), ~1 min

Each repetition runs the reference in a fresh .venv-ref12 process (this file with --worker: it loads the
weights through the official loader, decodes once to warm up, then times one decode) and then ours in this
process (warm-up, one timed decode), so both see the same machine load; medians are reported, with the
largest relative difference of the two outputs.
"""

# ruff: noqa: I001  (ltx.backend must be imported before mlx)
from __future__ import annotations

import argparse
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

from vae_bench import VAE as CONV_VAE  # noqa: E402  (LTX-2.0's real conv decoder widths)

CACHE = Path(os.environ.get("TMPDIR", "/tmp")) / "ltx-diffdec-bench"
DIFFUSION_VAE = {
    "_class_name": "CausalDiffusionVAE",
    "latent_channels": 128,
    "model_output_type": "x0",
    "decoder": {"default_num_inference_steps": 1},
}  # every other field: the reference's default
SEED = 7


def noise_draw(index: int, shape) -> np.ndarray:
    return np.random.RandomState(SEED * 1000 + index).standard_normal(tuple(shape)).astype(np.float32)


def _raw_name(key: str) -> str:
    key = key.replace("t_embedder.timestep_embedder.linear_1.", "t_embedder.mlp.0.")
    key = key.replace("t_embedder.timestep_embedder.linear_2.", "t_embedder.mlp.2.")
    return ("vae." if key.startswith("per_channel_statistics.") else "vae.decoder.") + key


def write_models(cache: Path) -> tuple[Path, Path]:
    """Random-weight safetensors (float32) of both decoders, named as the official files name them."""
    from ltx import backend  # noqa: F401  (before mlx: the BLAS)
    from mlx.utils import tree_flatten

    from ltx.video.diffusion_decoder import DiffusionDecoderConfig, DiffusionVideoDecoder
    from ltx.video.vae import VideoDecoder, VideoVAEConfig
    from ltx.weights import tiny

    cache.mkdir(parents=True, exist_ok=True)
    diff, conv = cache / "video_vae.safetensors", cache / "video_vae_conv.safetensors"
    if not diff.exists():
        model = DiffusionVideoDecoder(DiffusionDecoderConfig.from_vae(DIFFUSION_VAE))
        tensors = {
            _raw_name(k): tiny.synth(_raw_name(k), v.shape) for k, v in tree_flatten(model.parameters())
        }
        tiny.write_safetensors(diff, tensors, {"config": json.dumps({"vae": DIFFUSION_VAE})}, "F32")
    if not conv.exists():
        cfg = VideoVAEConfig.from_dict(CONV_VAE)
        tensors = {}
        for k, v in tree_flatten(VideoDecoder(cfg).parameters()):
            name = _raw_name(k)
            shape = v.shape if v.ndim != 5 else (v.shape[0], v.shape[4], *v.shape[1:4])  # PyTorch conv layout
            tensors[name] = tiny.synth(name, shape)
        tiny.write_safetensors(conv, tensors, {"config": json.dumps({"vae": CONV_VAE})}, "F32")
    return diff, conv


def worker(path: Path, latent_path: Path, out_path: Path) -> None:
    """The reference side (in .venv-ref12): official loader, CHUNKED_EAGER, one warm-up and one timed decode."""
    import torch
    from ltx_core.loader.single_gpu_model_builder import SingleGPUModelBuilder
    from ltx_core.model.video_vae.model_configurator import (
        VideoDecoderConfigurator,
        video_decoder_sd_ops_for_checkpoint,
    )
    from ltx_core.model.video_vae.transformer import DiffVAEMode, build_diffvae_mode_op

    dec = (
        SingleGPUModelBuilder(
            model_path=str(path),
            model_class_configurator=VideoDecoderConfigurator,
            model_sd_ops=video_decoder_sd_ops_for_checkpoint(str(path)),
            module_ops=(build_diffvae_mode_op(DiffVAEMode.CHUNKED_EAGER),),
        )
        .build(device=torch.device("cpu"), dtype=torch.float32)
        .eval()
    )
    latent = torch.from_numpy(np.load(latent_path))
    real, calls = torch.randn, []

    def randn(*size, generator=None, dtype=None, device=None, **kw):
        shape = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else tuple(size)
        calls.append(shape)
        return torch.from_numpy(noise_draw(len(calls) - 1, shape))

    torch.randn = randn
    times = []
    with torch.no_grad():
        for _ in range(2):
            calls.clear()
            t0 = time.perf_counter()
            video = dec(latent)
            times.append(time.perf_counter() - t0)
    torch.randn = real
    np.save(out_path, video.numpy())
    print("@@" + json.dumps({"seconds": times[-1], "threads": torch.get_num_threads()}))


def na_worker(shape: str, out: Path) -> None:
    """The reference's eager neighbourhood attention alone (stage 5's 3x7x7, 2 heads of 64), warm, best of 2."""
    import torch
    from ltx_core.model.video_vae.transformer.fallback_na.eager import na3d

    t, h, w = (int(x) for x in shape.split(","))
    q, k, v = (torch.from_numpy(noise_draw(i, (1, t, h, w, 2, 64))) for i in range(3))
    na3d(q, k, v, [3, 7, 7], scale=0.125)
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        o = na3d(q, k, v, [3, 7, 7], scale=0.125)
        times.append(time.perf_counter() - t0)
    np.save(out, o.numpy())
    print("@@" + json.dumps({"seconds": min(times)}))


def na_only(shape: str) -> None:
    """Stage 5's attention alone at `shape` (T, H, W tokens), ours against the reference's eager fallback."""
    from ltx import backend  # noqa: F401  (before mlx: the BLAS)

    import mlx.core as mx

    from ltx.video.neighborhood import na3d

    py = ROOT / ".venv-ref12" / "bin" / "python"
    CACHE.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [str(py), __file__, "--na-worker", shape, str(CACHE / "na.npy")],
        capture_output=True,
        text=True,
        check=True,
    )
    ref_s = json.loads(out.stdout.split("@@")[-1])["seconds"]
    t, h, w = (int(x) for x in shape.split(","))
    q, k, v = (mx.array(noise_draw(i, (1, t, h, w, 2, 64)).reshape(1, t, h, w, 128)) for i in range(3))
    mine = min(common.timed(lambda: mx.eval(na3d(q, k, v, (3, 7, 7), 2, 0.125)), runs=2))
    o = np.array(na3d(q, k, v, (3, 7, 7), 2, 0.125)).reshape(1, t, h, w, 2, 64)
    ref = np.load(CACHE / "na.npy")
    print(f"machine: {common.machine()}")
    print(f"neighbourhood attention 3x7x7, 2 heads of 64, {t}x{h}x{w} tokens, best of 2:")
    print(
        f"  reference eager na3d {ref_s:.2f} s, ours {mine:.2f} s, ratio {mine / ref_s:.2f}"
        f" (max rel. diff {float(np.abs(o - ref).max() / np.abs(ref).max()):.1e})"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--latent", default="2,7,7", help="frames', height', width' of the latent")
    ap.add_argument("--na", metavar="T,H,W", help="stage 5's attention alone at T,H,W tokens (e.g. 17,56,56)")
    ap.add_argument("--worker", nargs=3, metavar=("MODEL", "LATENT", "OUT"))
    ap.add_argument("--na-worker", nargs=2, metavar=("SHAPE", "OUT"))
    args = ap.parse_args()
    if args.worker:
        return worker(*(Path(a) for a in args.worker))
    if args.na_worker:
        return na_worker(args.na_worker[0], Path(args.na_worker[1]))
    if args.na:
        return na_only(args.na)

    from ltx import backend  # noqa: F401  (before mlx: the BLAS)

    import mlx.core as mx

    from ltx.video.diffusion_decoder import load_diffusion_decoder
    from ltx.video.vae import load_video_decoder

    diff_path, conv_path = write_models(CACHE)
    f, h, w = (int(x) for x in args.latent.split(","))
    latent = np.random.RandomState(SEED).standard_normal((1, 128, f, h, w)).astype(np.float32)
    np.save(CACHE / "latent.npy", latent)
    ours, conv = load_diffusion_decoder(diff_path, mx.float32), load_video_decoder(conv_path, mx.float32)
    z = mx.array(latent)

    def draws():
        n = iter(range(1 << 20))
        return lambda shape: mx.array(noise_draw(next(n), shape))

    ref_s, ours_s, conv_s, diffs = [], [], [], []
    py = ROOT / ".venv-ref12" / "bin" / "python"
    for _ in range(args.runs):
        out = subprocess.run(
            [
                str(py),
                __file__,
                "--worker",
                str(diff_path),
                str(CACHE / "latent.npy"),
                str(CACHE / "ref.npy"),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        ref_s.append(json.loads(out.stdout.split("@@")[-1])["seconds"])
        mine = common.timed(lambda: mx.eval(ours.decode(z, None, draws())), runs=1)
        ours_s.append(mine[0])
        video = np.array(ours.decode(z, None, draws())).transpose(0, 4, 1, 2, 3)
        ref = np.load(CACHE / "ref.npy")
        diffs.append(float(np.abs(video - ref).max() / np.abs(ref).max()))
        conv_s.append(common.timed(lambda: mx.eval(conv.decode(z, "none", seed=0)), runs=1)[0])
    med = statistics.median
    frames = (f - 1) * 8 + 1
    print(f"machine: {common.machine()}")
    print(f"latent {f}x{h}x{w} -> {frames} frames {32 * h}x{32 * w}, {args.runs} run(s), medians:")
    print(f"  diffusion decoder, reference (1.2.0, CHUNKED_EAGER, eager NA): {med(ref_s):.2f} s")
    print(
        f"  diffusion decoder, ours (MLX CPU):                             {med(ours_s):.2f} s"
        f"  ratio ours/ref {med(ours_s) / med(ref_s):.2f}  (max rel. diff {max(diffs):.1e})"
    )
    print(
        f"  conv decoder re-decode, ours (LTX-2 widths):                   {med(conv_s):.2f} s"
        f"  diffusion/conv {med(ours_s) / med(conv_s):.2f}"
    )


if __name__ == "__main__":
    main()
