"""Where one VAE-side component spends its time, layer by layer, for this project and the reference:
every conv (by kind, channels in -> out, kernel, dilation and output size) and every anti-aliased
activation, summed over the layers of the same shape, and the rest (norms, resampling, adds...).
It shows which operations set bench/vae_bench.py's ratio. Runs on bench/vae_bench.py's weights and
inputs (run that once first):

    .venv/bin/python bench/vae_profile.py --component vocoder_bwe   # or audio_decoder, vocoder

Run with .venv: it profiles ours, then the reference in .venv-ref (this file with --reference), and
prints one table. Ours is timed with an evaluation barrier around each profiled layer (MLX is lazy),
the reference with forward hooks; each side runs one warm-up call, then --runs calls (per-layer times
are their sums divided by --runs). Milliseconds per call.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (imports ltx before numpy)
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = ("audio_decoder", "vocoder", "vocoder_bwe")


def _key(kind: str, c: int, o: int, kernel, dilation, size) -> str:
    return json.dumps([kind, c, o, list(kernel), dilation, list(size)])


def profile_ours(cache: Path, component: str, runs: int) -> dict[str, float]:
    from ltx import backend  # noqa: F401  (MKL before mlx)

    # isort: split

    import mlx.core as mx

    from ltx.audio import vae as audio_vae
    from ltx.audio import vocoder

    spent: dict[str, float] = defaultdict(float)

    def wrap(cls, describe):
        call = cls.__call__

        def timed(self, x):
            mx.eval(x)
            t0 = time.perf_counter()
            y = call(self, x)
            mx.eval(y)
            spent[describe(self, x, y)] += time.perf_counter() - t0
            return y

        cls.__call__ = timed

    def conv(kind):
        def describe(m, x, y):
            w = m.conv.weight if hasattr(m, "conv") else m.weight
            dilation = getattr(m, "dilation", 1)
            return _key(kind, x.shape[-1], y.shape[-1], w.shape[1:-1], dilation, y.shape[1:-1])

        return describe

    wrap(audio_vae.CausalConv2d, conv("conv2d"))
    wrap(vocoder.Conv1d, conv("conv1d"))
    wrap(vocoder.ConvTranspose1d, conv("conv_transpose1d"))
    wrap(
        vocoder.Activation1d,
        lambda m, x, y: _key("activation", x.shape[-1], y.shape[-1], [], 1, x.shape[1:-1]),
    )
    fn = common.vae_components(cache, decode=False)[component]
    mx.eval(fn())
    spent.clear()
    t0 = time.perf_counter()
    for _ in range(runs):
        mx.eval(fn())
    spent["total"] = time.perf_counter() - t0
    return {k: v / runs for k, v in spent.items()}


def profile_reference(cache: Path, component: str, runs: int) -> dict[str, float]:
    import torch
    from ltx_core.loader.single_gpu_model_builder import SingleGPUModelBuilder
    from ltx_core.model.audio_vae.model_configurator import (
        AUDIO_VAE_DECODER_COMFY_KEYS_FILTER,
        VOCODER_COMFY_KEYS_FILTER,
        AudioDecoderConfigurator,
        VocoderConfigurator,
    )

    torch.set_grad_enabled(False)
    torch.set_num_threads(2)
    path, configurator, ops = {
        "audio_decoder": ("audio.safetensors", AudioDecoderConfigurator, AUDIO_VAE_DECODER_COMFY_KEYS_FILTER),
        "vocoder": ("vocoder.safetensors", VocoderConfigurator, VOCODER_COMFY_KEYS_FILTER),
        "vocoder_bwe": ("vocoder23.safetensors", VocoderConfigurator, VOCODER_COMFY_KEYS_FILTER),
    }[component]
    model = (
        SingleGPUModelBuilder(
            model_path=str(cache / path), model_class_configurator=configurator, model_sd_ops=ops
        )
        .build(device=torch.device("cpu"), dtype=torch.float32)
        .eval()
    )
    x = np.load(cache / "inputs.npz")["audio_latent" if component == "audio_decoder" else "mel"]
    x = torch.from_numpy(x)
    spent: dict[str, float] = defaultdict(float)
    started: dict[int, float] = {}

    def describe(m, inp, out) -> str | None:
        name = type(m).__name__
        if name == "Activation1d":
            return _key("activation", inp[0].shape[1], out.shape[1], [], 1, inp[0].shape[2:])
        kind = {
            torch.nn.Conv2d: "conv2d",
            torch.nn.Conv1d: "conv1d",
            torch.nn.ConvTranspose1d: "conv_transpose1d",
        }
        kind = next((v for k, v in kind.items() if type(m) is k), None)
        if kind is None:
            return None
        return _key(kind, m.in_channels, m.out_channels, m.kernel_size, m.dilation[0], out.shape[2:])

    def pre(m, inp):
        started[id(m)] = time.perf_counter()

    def post(m, inp, out):
        key = describe(m, inp, out)
        if key is not None:
            spent[key] += time.perf_counter() - started[id(m)]

    for m in model.modules():
        if type(m).__name__ == "Activation1d" or isinstance(
            m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.ConvTranspose1d)
        ):
            m.register_forward_pre_hook(pre)
            m.register_forward_hook(post)
    model(x)
    spent.clear()
    t0 = time.perf_counter()
    for _ in range(runs):
        model(x)
    spent["total"] = time.perf_counter() - t0
    return {k: v / runs for k, v in spent.items()}


def _label(key: str) -> str:
    kind, c, o, kernel, dilation, size = json.loads(key)
    if kind == "activation":
        return f"activation {c} ch x {size[0]}"
    k = "x".join(map(str, kernel))
    dil = f" dil {dilation}" if dilation != 1 else ""
    return f"{kind} {c}->{o} k{k}{dil} -> {'x'.join(map(str, size))}"


def table(ours: dict[str, float], ref: dict[str, float]) -> str:
    keys = sorted((set(ours) | set(ref)) - {"total"}, key=lambda k: ref.get(k, 0.0) - ours.get(k, 0.0))
    rows = [(_label(k), ours.get(k, 0.0), ref.get(k, 0.0)) for k in keys]
    rest = [
        (
            "the rest",
            ours["total"] - sum(ours.get(k, 0.0) for k in keys),
            ref["total"] - sum(ref.get(k, 0.0) for k in keys),
        )
    ]
    kinds: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for k in keys:
        kind = json.loads(k)[0]
        kinds[kind][0] += ours.get(k, 0.0)
        kinds[kind][1] += ref.get(k, 0.0)
    lines = ["| layers (same shape, summed) | ours ms | torch ms | ratio |", "|---|---:|---:|---:|"]
    for label, a, b in [("**total**", ours["total"], ref["total"])]:
        lines.append(f"| {label} | {1e3 * a:.1f} | {1e3 * b:.1f} | {a / b:.2f} |")
    for kind, (a, b) in sorted(kinds.items()):
        lines.append(f"| all {kind} | {1e3 * a:.1f} | {1e3 * b:.1f} | {a / b:.2f} |")
    for label, a, b in rest + rows:
        ratio = f"{a / b:.2f}" if b > 0 else "-"
        lines.append(f"| {label} | {1e3 * a:.1f} | {1e3 * b:.1f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--component", choices=COMPONENTS, default="vocoder_bwe")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cache", default=str(common.VAE_BENCH_CACHE))
    ap.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)  # the .venv-ref side
    a = ap.parse_args()
    cache = Path(a.cache)
    if not (cache / "inputs.npz").exists():
        raise SystemExit(f"no weights in {cache}: run `python bench/vae_bench.py` first (or pass --cache)")
    if a.reference:
        print("@@" + json.dumps(profile_reference(cache, a.component, a.runs)))
        return
    ours = profile_ours(cache, a.component, a.runs)
    py = ROOT / ".venv-ref" / "bin" / "python"
    cmd = [
        str(py),
        __file__,
        "--reference",
        "--component",
        a.component,
        "--runs",
        str(a.runs),
        "--cache",
        a.cache,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    ref = json.loads(next(line[2:] for line in out.splitlines() if line.startswith("@@")))
    print(f"{a.component}: {common.machine()}, medians not taken: sums over {a.runs} calls / {a.runs}\n")
    print(table(ours, ref))


if __name__ == "__main__":
    main()
