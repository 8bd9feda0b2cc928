"""Worker (.venv): times this project's video VAE decode of the checkpoint vae_ref.py --prepare wrote."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ltx import backend  # noqa: E402,F401

# isort: split

import common  # noqa: E402
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from ltx.video import tiling as tiling_mod  # noqa: E402
from ltx.video.vae import load_video_decoder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tiled", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    dec = load_video_decoder(a.model, mx.float32)
    mx.eval(dec.parameters())
    z = mx.array(np.load(a.model + ".latent.npy"))
    (st, so), (tt, to) = common.VAE_TILING
    tiling = tiling_mod.TilingConfig(spatial=(st, so), temporal=(tt, to)) if a.tiled else None
    out = {}

    def run():
        v = dec.decode(z, tiling=tiling)
        mx.eval(v)
        out["v"] = v

    times = common.timed(run, a.runs, warmup=1)
    ref = Path(a.model + (".ref_tiled.npy" if a.tiled else ".ref.npy"))
    err = None
    if ref.exists():
        r = np.load(ref)  # (B, 3, F, H, W)
        o = np.array(out["v"]).transpose(0, 4, 1, 2, 3)
        err = (
            float(np.abs(o - r).max() / max(1e-12, np.abs(r).max()))
            if o.shape == r.shape
            else f"shape {o.shape} vs {r.shape}"
        )
    common.emit({"times": times, "peak_rss_mb": common.peak_rss_mb(), "err": err})


if __name__ == "__main__":
    main()
