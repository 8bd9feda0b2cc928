"""Worker: the decode that `ltx decode RUN --tiling T` does, with no cache or CLI around it (run with
.venv): load the video decoder, stream-decode a run's latents with the tiling, convert to uint8
frames. Reading the latents from the cache is timed apart (read_s) so that bench/run.py (generate)
can leave it out of the process's wall time. The bench's runs use the tiny LTX-2.0 model."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ltx import backend  # noqa: E402,F401  (MKL before mlx)

# isort: split

import common  # noqa: E402
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from ltx.video.tiling import parse_tiling  # noqa: E402
from ltx.video.vae import load_video_decoder, to_uint8  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--tiling", default="aggressive")
    ap.add_argument("--checkpoint", help="the run's checkpoint (default: the cache's tiny LTX-2.0 model)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    from cache.store import Store

    store = Store(Path(a.cache))
    recipe = store.load_run(a.run)["recipes"]["decode"]
    latent = store.open(recipe["inputs"]["latents"])["video_latent"]
    checkpoint = a.checkpoint or next((store.root / "models").glob("tiny-2.0-*")) / "model.safetensors"
    read_s = time.perf_counter() - t0
    decoder = load_video_decoder(checkpoint)
    frames = [
        np.array(to_uint8(chunk[0]))
        for chunk in decoder.decode_stream(mx.array(latent), parse_tiling(a.tiling))
    ]
    common.emit(
        {"read_s": read_s, "decode_s": time.perf_counter() - t0 - read_s, "frames": sum(map(len, frames))}
    )


if __name__ == "__main__":
    main()
