"""What the conv kernels' two choices buy, on the video decoder (untiled), the upsampler, the audio
decoder and the vocoder at their real widths, each A/B alternated in one process so that both sides
see the same machine (this shared machine's speed drifts by more than the differences within
minutes). Medians of --runs rounds (one call of each variant) after a warm-up.

- `--what winograd` (the default): the VAEs' 3x3(x3) convs as Winograd F(2x2, 3x3) and the
  vocoder's 1-D convs as F(4, 3) / F(4, 4) (ltx.kernels.winograd) against one GEMM per tap
  (conv.WINOGRAD off), both on the BLAS ltx.kernels.blas.gemm picks.
- `--what tile`: the Winograd convs' output tile: F(4x4, 3x3) up to winograd.TILE_MAX_CHANNELS (256,
  what runs), F(4x4) at every width the kept filters serve (up to 512 channels), and F(2x2, 3x3)
  everywhere, all with the same GEMM transforms; each variant's filters are made once and kept.
- `--what wide1d`: LTX-2.3's vocoder + BWE with its 768-channel level's 1-D convs as Winograd convs
  (winograd.MAX_CHANNELS_1D = 768, what runs) against one GEMM per tap there (512).
- `--what taps`: ltx.kernels.conv.conv_taps with every tap's GEMM added into the output in place by
  the BLAS's sgemm (`in place`: MKL or numpy's OpenBLAS) against MLX's addmm chain (`addmm`, what
  runs with neither), Winograd off in both.
- `--what activation`: one BigVGAN anti-aliased activation (ltx.audio.vocoder.Activation1d, random filters)
  at the channels x samples of LTX-2.3's vocoder and BWE levels on 101 mel frames, three ways:
  activations.snake_resampled in tasks of RESAMPLE_CHUNK_VALUES on both cores (what runs), the same
  as one task over the whole signal (one core, every pass over arrays larger than its cache), and
  MLX's grouped convs. Needs no bench weights.
- `--what vocoder`: the vocoder alone, three ways: its 1-D convs as Winograd F(4, 3) / F(4, 4) (from
  winograd.MIN_CHANNELS_1D input channels) and its transposed convs as in-place GEMMs
  (conv.conv_transpose1d), what runs; the 1-D convs one GEMM per tap; and both that and
  the transposed convs as MLX's matmul + overlap-add (what ran before either).
- `--what cache`: not a conv choice but MLX's buffer cache on the CPU: ltx.backend's limit (a
  fraction of the machine's memory, what runs) against MLX's default 32 MB, every component.

Needs the random real-width weights and inputs bench/vae_bench.py writes (run it once first):

    .venv/bin/python bench/taps_ab.py              # ~4 min; --no-decode skips the video decoder
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402  (bench/, the script's own directory)

from ltx.kernels import (
    activations,
    blas,
    conv,  # noqa: E402  (loads MKL before mlx)
)


def main() -> None:
    ap = common.vae_ab_parser(__doc__)
    ap.add_argument(
        "--what",
        choices=("winograd", "tile", "wide1d", "taps", "vocoder", "activation", "cache"),
        default="winograd",
    )
    ap.add_argument("--no-decode", action="store_true", help="skip the video decoder (~8 s a call)")
    a = ap.parse_args()
    real = blas.gemm
    if real() is None:
        raise SystemExit("needs MKL or numpy's OpenBLAS (ltx.kernels.blas.gemm found neither)")
    if a.what == "activation":
        activation_ab(a.runs)
        return
    components = common.vae_components(Path(a.cache), decode=not a.no_decode)
    print(f"Medians of {a.runs} interleaved rounds (one call of each variant) after a warm-up, seconds.\n")
    if a.what == "taps":
        conv.WINOGRAD = False
        paths = {"in place": real, "addmm": lambda: None}
        common.conv_gemm_ab(components, paths, a.runs, ("in place", "addmm"))
        return
    if a.what == "vocoder":
        vocoder_ab(components["vocoder"], a.runs)
        return
    if a.what == "wide1d":
        from ltx.kernels import winograd

        saved, fns = winograd.MAX_CHANNELS_1D, {"vocoder_bwe": components["vocoder_bwe"]}
        choices = {"768": 768, "512": 512}
        try:
            med = common.interleaved_ab(
                fns, choices, lambda c: setattr(winograd, "MAX_CHANNELS_1D", c), a.runs
            )
        finally:
            winograd.MAX_CHANNELS_1D = saved
        print("| component | Winograd to 768 ch | to 512 ch | 768 / 512 |\n|---|---:|---:|---:|")
        m = med["vocoder_bwe"]
        print(f"| vocoder_bwe | {m['768']:.3f} | {m['512']:.3f} | {m['768'] / m['512']:.2f} |")
        return
    if a.what == "cache":
        import mlx.core as mx

        from ltx import backend

        choices = {"cache": backend.cpu_cache_bytes(), "32 MB": 1 << 25}
        try:
            med = common.interleaved_ab(components, choices, mx.set_cache_limit, a.runs)
        finally:
            mx.set_cache_limit(choices["cache"])
        print(
            f"| component | cache limit {choices['cache'] >> 20} MB | 32 MB | / 32 MB |\n|---|---:|---:|---:|"
        )
        for name, m in med.items():
            print(f"| {name} | {m['cache']:.3f} | {m['32 MB']:.3f} | {m['cache'] / m['32 MB']:.2f} |")
        return
    if a.what == "tile":
        tile_ab({k: v for k, v in components.items() if k in ("vae_decode", "audio_decoder")}, a.runs)
        return
    choices = {"winograd": True, "per tap": False}
    med = common.interleaved_ab(components, choices, lambda on: setattr(conv, "WINOGRAD", on), a.runs)
    conv.WINOGRAD = True
    print("| component | winograd | per tap | winograd / per tap |")
    print("|---|---:|---:|---:|")
    for name, m in med.items():
        print(f"| {name} | {m['winograd']:.3f} | {m['per tap']:.3f} | {m['winograd'] / m['per tap']:.2f} |")


def tile_ab(components: dict, runs: int) -> None:
    from ltx.kernels import winograd

    kept: dict[tuple[int, int], tuple] = {}

    def of(self, weight):  # a Filters per (module, tile), so that switching tiles remakes none
        key = (id(self), winograd.tile_for(weight.shape[-1]) if weight.ndim > 3 else 0)
        if key not in kept or kept[key][0] is not weight:
            kept[key] = (weight, winograd.transform_weight(weight))
        return kept[key][1]

    saved = winograd.TILE_MAX_CHANNELS, winograd.Filters.of
    choices = {"F(4x4) to 256 ch": saved[0], "F(4x4) to 512 ch": 512, "F(2x2)": -1}
    winograd.Filters.of = of
    try:
        med = common.interleaved_ab(
            components, choices, lambda c: setattr(winograd, "TILE_MAX_CHANNELS", c), runs
        )
    finally:
        winograd.TILE_MAX_CHANNELS, winograd.Filters.of = saved
    print(f"| component | {' | '.join(choices)} | / F(2x2) |")
    print("|---|" + "---:|" * (len(choices) + 1))
    for name, m in med.items():
        ratios = ", ".join(f"{m[c] / m['F(2x2)']:.2f}" for c in list(choices)[:2])
        print(f"| {name} | {' | '.join(f'{m[c]:.3f}' for c in choices)} | {ratios} |")


def activation_ab(runs: int) -> None:
    import mlx.core as mx
    import numpy as np

    from ltx.audio.vocoder import Activation1d

    saved = activations.RESAMPLE_CHUNK_VALUES, activations.RESAMPLING
    choices = {  # (RESAMPLE_CHUNK_VALUES, RESAMPLING)
        "chunks": saved,
        "one task": (1 << 62, True),
        "MLX grouped convs": (saved[0], False),
    }

    def use(setting) -> None:
        activations.RESAMPLE_CHUNK_VALUES, activations.RESAMPLING = setting

    rng = np.random.default_rng(0)
    fns = {}
    # (channels, samples) of the LTX-2.3 vocoder's levels (1,536 initial channels, 160 samples per
    # mel frame) and its BWE generator's (512, 480 per frame), 101 mel frames
    for c, n in (
        (768, 505),
        (384, 1010),
        (96, 4040),
        (48, 8080),
        (24, 16160),
        (256, 1212),
        (64, 12120),
        (32, 24240),
        (16, 48480),
    ):
        act = Activation1d(c)
        act.upsample.filter = mx.array(rng.standard_normal((1, 1, 12)).astype(np.float32))
        act.downsample.lowpass.filter = mx.array(rng.standard_normal((1, 1, 12)).astype(np.float32))
        x = mx.array(rng.standard_normal((1, n, c)).astype(np.float32))
        fns[f"{c} x {n}"] = lambda act=act, x=x: act(x)
    med = common.interleaved_ab(fns, choices, use, runs)
    use(saved)
    print("| activation (channels x samples) | chunks, both cores ms | one task ms | MLX grouped convs ms |")
    print("|---|---:|---:|---:|")
    for name, m in med.items():
        print(f"| {name} | " + " | ".join(f"{1e3 * m[v]:.2f}" for v in choices) + " |")


def vocoder_ab(fn, runs: int) -> None:
    from ltx.kernels import winograd

    wide = winograd.MIN_CHANNELS_1D
    choices = {  # (MIN_CHANNELS_1D, TRANSPOSED_CONV)
        "winograd, in-place transposed": (wide, True),
        "per tap, in-place transposed": (1 << 30, True),
        "per tap, overlap-add": (1 << 30, False),
    }

    def use(setting) -> None:
        winograd.MIN_CHANNELS_1D, conv.TRANSPOSED_CONV = setting

    med = common.interleaved_ab({"vocoder": fn}, choices, use, runs)["vocoder"]
    use((wide, True))
    base = med["per tap, overlap-add"]
    print("| vocoder | seconds | / per tap, overlap-add |")
    print("|---|---:|---:|")
    for name, t in med.items():
        print(f"| {name} | {t:.3f} | {t / base:.2f} |")


if __name__ == "__main__":
    main()
