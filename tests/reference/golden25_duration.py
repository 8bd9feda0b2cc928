"""Goldens for the LTX-2.5 duration head (make_goldens.py protocol, 1.2.0 reference).

The head (ltx_core/duration_head) reads the connectors' outputs, projects video and audio tokens to
a shared width, tags them with modality embeddings, pools them with learnable queries
(nn.MultiheadAttention) and regresses log-seconds. Loaded from the tiny split file
(`model_patches/duration_head.safetensors`) through DurationPredictor.from_checkpoint, the
pipelines' own path; its input widths come from that file's config.transformer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tiny25

TOKENS_V, TOKENS_A = 128, 128  # the connectors' output length (registers fill the padding)
FPS = 24.0
# (min_seconds, max_seconds) pairs the snapping is checked on
RANGES = [(1.0, 20.0), (0.1, 0.5), (3.0, 4.0), (0.05, 100.0)]


def metadata() -> dict:
    t = tiny25.TRANSFORMER_CONFIG
    return {
        "config": {
            "transformer": {
                "cross_attention_dim": t["cross_attention_dim"],
                "audio_cross_attention_dim": t["audio_cross_attention_dim"],
            },
            "duration_head": tiny25.DURATION_HEAD_CONFIG,
        },
        "model_version": tiny25.MODEL_VERSION,
    }


def contribute(variant: str) -> dict:
    import torch
    from ltx_core.duration_head import DurationHeadConfigurator

    with torch.device("meta"):
        head = DurationHeadConfigurator.from_metadata(metadata())
    tensors = {f"duration_head.{k}": list(v.shape) for k, v in head.state_dict().items()}
    return {tiny25.DURATION_HEAD: {"metadata": metadata(), "tensors": tensors, "dtype": "BF16"}}


def run(variant: str, model_dir: Path) -> dict[str, np.ndarray]:
    import torch
    from ltx_pipelines.utils.blocks import DurationPredictor

    torch.set_grad_enabled(False)
    pred = DurationPredictor.from_checkpoint(
        str(Path(model_dir) / tiny25.DURATION_HEAD), torch.float32, torch.device("cpu")
    )
    assert pred is not None, "the tiny duration head did not load"
    head = pred._head
    rng = np.random.RandomState(11)
    t = tiny25.TRANSFORMER_CONFIG
    v = rng.standard_normal((1, TOKENS_V, t["cross_attention_dim"])).astype(np.float32)
    a = rng.standard_normal((1, TOKENS_A, t["audio_cross_attention_dim"])).astype(np.float32)
    tv, ta = torch.from_numpy(v), torch.from_numpy(a)
    out = {
        "in.video": v,
        "in.audio": a,
        "seconds.both": head(tv, ta).numpy(),
        "seconds.video": head(tv, None).numpy(),
        "seconds.audio": head(None, ta).numpy(),
        # a batch of two (the head itself batches; the predictor refuses)
        "in.video2": np.concatenate([v, v[:, ::-1]]),
        "seconds.batch2": head(torch.from_numpy(np.concatenate([v, v[:, ::-1]]).copy()), None).numpy(),
        "ranges": np.array(RANGES, np.float32),
    }
    # scale the tokens so the raw predictions land inside and outside the ranges
    frames = []
    for scale in (0.0, 0.5, 1.0, 3.0):
        for lo, hi in RANGES:
            frames.append(pred(tv * scale, ta * scale, frame_rate=FPS, min_seconds=lo, max_seconds=hi))
        out[f"seconds.scale{scale}"] = head(tv * scale, ta * scale).numpy()
    out["frames"] = np.array(frames, np.int64)
    return out
