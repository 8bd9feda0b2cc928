"""Goldens for the float32 RoPE frequency ladders (issue #27): `generate_freq_grid_pytorch`, the
ladder ltx-core builds for checkpoints without `frequencies_precision: "float64"`.

Variant-independent: one file, tests/goldens/rope_ladders.safetensors (make_goldens.py saves a module
with SHARED once, from run(None, None)). For LTX-2.0 and LTX-2.3, at the tiny widths (the configs the
other golden modules write into the manifests) and at the real widths, the reference's own
configurators build every module that makes a RoPE table (on the meta device: no weights), and the
(theta, position axes, inner dim) each one passes to the ladder are read off it:
    video, audio:     the transformer's self-attention (3 axes for video, 1 for audio);
    cross:            the audio-video cross-attention (positions[:, 0:1], audio_cross_attention_dim),
                      the same ladder on both streams;
    video_connector, audio_connector: the text connectors (one position axis, theta never passed:
                      the 10000 default).
Saved: "combo/<variant>/<tiny|real>/<module>" (and the PROBES) = [theta, axes, dim] (float32, exact small integers)
and "ladder/<theta>/<axes>/<dim>" = the ladder, once per distinct triple (the few-KB file).
"torch_vector_floats" records the CPU build's Vectorized<float> width the ladders came from
(16 with AVX-512, 8 with AVX2): torch's pow rounds differently in its vector loop and its tail.
"""

from __future__ import annotations

import numpy as np

SHARED = "rope_ladders.safetensors"
VARIANTS = ("2.0", "2.3")

# The official checkpoints' widths (LTX-2.0 19B; LTX-2.3 22B), over the tiny transformer config.
REAL = {
    "num_layers": 1,  # the ladder does not depend on depth; one layer keeps the meta build quick
    "connector_num_layers": 1,
    "num_attention_heads": 32,
    "attention_head_dim": 128,
    "audio_num_attention_heads": 32,
    "audio_attention_head_dim": 64,
    "cross_attention_dim": 4096,
    "audio_cross_attention_dim": 2048,
    "caption_channels": 3840,
    "positional_embedding_theta": 10000.0,
    "positional_embedding_max_pos": [20, 2048, 2048],
    "audio_positional_embedding_max_pos": [20],
    "connector_num_attention_heads": 30,
    "connector_attention_head_dim": 128,
}
# Not a module's: the width issue #27 quotes (64, one axis: 32 entries, one whole AVX-512 double vector).
PROBES = {"probe/issue27/width64": (10000.0, 1, 64)}
REAL_23 = {
    "connector_num_attention_heads": 32,
    "connector_attention_head_dim": 128,
    "audio_connector_num_attention_heads": 32,
    "audio_connector_attention_head_dim": 64,
}


def contribute(variant: str) -> dict:
    return {}


def configs(variant: str) -> dict[str, dict]:
    from golden_transformer import transformer_config

    tiny = transformer_config(variant)
    real = {**tiny, **REAL, **(REAL_23 if variant == "2.3" else {})}
    for cfg in (tiny, real):
        cfg.pop("frequencies_precision", None)  # the float32 ladder
    return {"tiny": tiny, "real": real}


def combos(cfg: dict) -> dict[str, tuple[float, int, int]]:
    """(theta, axes, dim) of every ladder the reference builds for this transformer config."""
    import torch
    from ltx_core.model.transformer.model_configurator import LTXModelConfigurator
    from ltx_core.text_encoders.gemma.embeddings_connector import (
        AudioEmbeddings1DConnectorConfigurator,
        Embeddings1DConnectorConfigurator,
    )

    with torch.device("meta"):
        model = LTXModelConfigurator.from_config({"transformer": cfg})
        video_conn = Embeddings1DConnectorConfigurator.from_config({"transformer": cfg})
        audio_conn = AudioEmbeddings1DConnectorConfigurator.from_config({"transformer": cfg})
    out = {}
    for stream in ("video", "audio"):
        pre = getattr(model, f"{stream}_args_preprocessor")
        simple = pre.simple_preprocessor
        assert not simple.double_precision_rope
        out[stream] = (simple.positional_embedding_theta, len(simple.max_pos), simple.inner_dim)
        cross = (simple.positional_embedding_theta, 1, pre.audio_cross_attention_dim)
        assert out.setdefault("cross", cross) == cross, "the two streams' cross-attention ladders differ"
    for name, conn in (("video_connector", video_conn), ("audio_connector", audio_conn)):
        assert not conn.double_precision_rope
        out[name] = (conn.positional_embedding_theta, 1, conn.inner_dim)  # indices_grid (1, 1, T)
    return out


def run(variant, model_dir) -> dict[str, np.ndarray]:
    import torch
    from ltx_core.model.transformer.rope import generate_freq_grid_pytorch

    out: dict[str, np.ndarray] = {}
    found = {
        f"{v}/{scale}/{m}": c
        for v in VARIANTS
        for scale, cfg in configs(v).items()
        for m, c in combos(cfg).items()
    }
    for name, (theta, axes, dim) in {**found, **PROBES}.items():
        out[f"combo/{name}"] = np.array([theta, axes, dim], np.float32)
        ladder = generate_freq_grid_pytorch(theta, axes, dim)
        assert ladder.dtype == torch.float32 and ladder.shape == (dim // (2 * axes),)
        key = f"ladder/{theta:g}/{axes}/{dim}"
        if key in out:
            assert np.array_equal(out[key], ladder.numpy())
        out[key] = ladder.numpy().copy()
    vec = {"AVX512": 16, "AVX2": 8, "DEFAULT": 0}.get(torch.backends.cpu.get_cpu_capability())
    if vec is None:
        raise RuntimeError(f"unsupported CPU capability {torch.backends.cpu.get_cpu_capability()}")
    out["torch_vector_floats"] = np.array([vec], np.int32)
    return out


if __name__ == "__main__":  # write just this golden, without touching the manifests
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_goldens import GOLDENS, save_goldens

    arrays = run(None, None)
    save_goldens(GOLDENS / SHARED, arrays)
    for k, a in arrays.items():
        print(k, a.shape, a if k.startswith("combo") or k.startswith("torch") else "")
