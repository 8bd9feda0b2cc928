"""Worker (.venv): a model directory in the official layout whose video decoder has the real widths.

The tiny LTX-2.0 model (ltx.weights.tiny) with its video decoder and per-channel statistics replaced by those of
a real-width decoder checkpoint (random weights, written by `vae_ref.py --prepare`), and the checkpoint's
config 'vae' section given that decoder's fields. `ltx generate/refine/decode --model DIR` then runs the
tiny pipeline but decodes at the real cost, so bench/run.py can time what the cache and CLI add to a
decode of the real model's size."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ltx import backend  # noqa: E402,F401  (MKL before mlx)

# isort: split

import common  # noqa: E402
import mlx.core as mx  # noqa: E402

from ltx.weights import tiny  # noqa: E402

DECODER_PREFIXES = ("vae.decoder.", "vae.per_channel_statistics.")
DECODER_FIELDS = ("decoder_base_channels", "decoder_blocks", "timestep_conditioning", "causal_decoder")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--decoder", required=True, help="real-width decoder checkpoint (vae_ref.py --prepare)")
    ap.add_argument("--out", required=True, help="new model directory")
    a = ap.parse_args()
    out = tiny.create("2.0", Path(a.out))
    ckpt = out / "model.safetensors"
    weights, meta = mx.load(str(ckpt), return_metadata=True)
    real, real_meta = mx.load(a.decoder, return_metadata=True)
    weights = {k: v for k, v in weights.items() if not k.startswith(DECODER_PREFIXES)}
    weights.update({k: v for k, v in real.items() if k.startswith(DECODER_PREFIXES)})
    config = json.loads(meta["config"])
    real_vae = json.loads(real_meta["config"])["vae"]
    config["vae"].update({k: real_vae[k] for k in DECODER_FIELDS})
    mx.save_safetensors(str(ckpt), weights, metadata={**meta, "config": json.dumps(config)})
    common.emit({"model": str(out), "decoder_tensors": sum(k.startswith(DECODER_PREFIXES) for k in weights)})


if __name__ == "__main__":
    main()
