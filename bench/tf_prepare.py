"""Worker (.venv): write the transformer benchmark's inputs (.npz) and random weights at the real
widths (.safetensors with the checkpoint's names and config metadata, float32)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ltx import backend  # noqa: E402,F401

# isort: split

import common  # noqa: E402
import numpy as np  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from ltx.model.transformer import LTXModel, TransformerConfig  # noqa: E402
from ltx.weights.tiny import write_safetensors  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    common.transformer_args(ap)
    ap.add_argument("--grid", default="16x16x24")
    a = ap.parse_args()
    grid = tuple(int(v) for v in a.grid.split("x"))
    common.VIDEO_GRID = grid
    cfg = common.transformer_config(a.layers, a.heads)
    shapes = {
        f"model.diffusion_model.{k}": v.shape
        for k, v in tree_flatten(LTXModel(TransformerConfig.from_dict(cfg)).parameters())
    }
    write_safetensors(
        Path(a.weights), common.synth_weights(shapes), {"config": json.dumps({"transformer": cfg})}, "F32"
    )
    x = common.transformer_inputs()
    np.savez(a.inputs, **x)
    common.emit(
        {"tokens": [x["video_latent"].shape[1], x["audio_latent"].shape[1], x["video_context"].shape[1]]}
    )


if __name__ == "__main__":
    main()
