"""Parity of the LTX-2.5 transformer with the 1.2.0 reference's goldens (tiny 2.5, float32).

The architecture is read from the checkpoint metadata: no video feed-forward bias (audio keeps it),
the keyframe absolute-position embedding after patchify_proj on keyframe-flagged tokens, no prompt
AdaLN MLP, and the A-V cross-attention scale/shift from each stream's own per-token timesteps.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ltx import backend  # noqa: F401

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from ltx.model import patchify as P  # noqa: E402
from ltx.model.transformer import (  # noqa: E402
    Modality,
    TransformerConfig,
    X0Model,
    load_transformer,
    parse_model_version,
)
from ltx.weights import tiny  # noqa: E402

GOLDENS = Path(__file__).parent / "goldens" / "2.5"
TRANSFORMER = "diffusion_models/transformer.safetensors"
SIGMA_V, SIGMA_A = 0.8, 0.6


def close(name: str, got, ref, rel: float = 1e-4) -> float:
    got, ref = np.asarray(got, np.float32), np.asarray(ref, np.float32)
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != {ref.shape}"
    err = float(np.abs(got - ref).max())
    tol = rel * max(1.0, float(np.abs(ref).max()))
    assert err <= tol, f"{name}: max error {err:.3g} > {tol:.3g}"
    return err


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model_dir = tiny.create("2.5", tmp_path_factory.mktemp("tiny25") / "model")
    gold = {k: np.array(v) for k, v in mx.load(str(GOLDENS / "transformer.safetensors")).items()}
    return load_transformer(model_dir / TRANSFORMER, mx.float32), gold


def _modality(g, stream: str, sigma: float, timesteps=None, keyframes=None) -> Modality:
    lat = mx.array(g[f"in.{stream}_latent"])
    tok = P.patchify_video(lat) if stream == "video" else P.patchify_audio(lat)
    ts = mx.full((1, tok.shape[1], 1), sigma) if timesteps is None else mx.array(timesteps)
    return Modality(
        latent=tok,
        sigma=mx.full((1,), sigma),
        timesteps=ts,
        positions=mx.array(g[f"in.{stream}_positions"]),
        context=mx.array(g[f"in.{stream}_context"]),
        keyframes_mask=None if keyframes is None else mx.array(keyframes),
    )


def test_architecture_from_metadata(setup):
    model, g = setup
    c = model.config
    assert (c.ff_bias, c.audio_ff_bias, c.use_keyframes_abs_pos_embedding) == (False, True, True)
    assert c.cross_attention_adaln and not c.use_prompt_adaln_single and c.cross_adaln_own_timesteps
    assert "bias" not in model.transformer_blocks[0].ff.net[0].proj
    assert "bias" not in model.transformer_blocks[0].ff.net[2]
    assert "bias" in model.transformer_blocks[0].audio_ff.net[0].proj
    assert not hasattr(model, "prompt_adaln_single") and not hasattr(model, "audio_prompt_adaln_single")
    close("keyframes_embedding", model.keyframes_abs_pos_embedding, g["keyframes_embedding"])
    # 2.0/2.3 keep the 1.0.0 rule; versions compare as ltx-core's parse_model_version
    assert parse_model_version("2.5.0") == (2, 5, 0) and parse_model_version("2.4-rc2") == (2, 4)
    assert parse_model_version(None) == () < (2, 5)
    old = TransformerConfig.from_dict({**_fixed(), "caption_proj_before_connector": True}, "av", "2.3.0")
    assert not old.cross_adaln_own_timesteps and old.ff_bias and old.use_prompt_adaln_single


def _fixed():
    from ltx.model.transformer import FIXED_VALUES

    return dict(FIXED_VALUES)


def test_prepared_inputs(setup):
    model, g = setup
    video = _modality(g, "video", SIGMA_V, keyframes=g["in.keyframes_mask"])
    audio = _modality(g, "audio", SIGMA_A)
    va, aa = model.prepare(video, audio, "video"), model.prepare(audio, video, "audio")
    assert va.prompt is None and aa.prompt is None
    for name, args in (("video", va), ("audio", aa)):
        close(f"{name}.x", args.x, g[f"{name}.x"])
        ss = np.broadcast_to(np.array(args.cross_ss), (1, args.x.shape[1], 4, args.x.shape[2]))
        close(f"{name}.cross_scale_shift", ss.reshape(1, args.x.shape[1], -1), g[f"{name}.cross_scale_shift"])
        close(f"{name}.cross_gate", np.array(args.cross_gate).reshape(1, 1, -1), g[f"{name}.cross_gate"])


@pytest.mark.parametrize("case", ["keyframes", "no_keyframes", "conditioned", "video_only"])
def test_x0(setup, case):
    model, g = setup
    kf = g["in.keyframes_mask"]
    audio = _modality(g, "audio", SIGMA_A)
    video = {
        "keyframes": lambda: _modality(g, "video", SIGMA_V, keyframes=kf),
        "no_keyframes": lambda: _modality(g, "video", SIGMA_V),
        "conditioned": lambda: _modality(g, "video", SIGMA_V, g["in.cond_video_timesteps"], kf),
        "video_only": lambda: _modality(g, "video", SIGMA_V, keyframes=kf),
    }[case]()
    dv, da = X0Model(model)(video, None if case == "video_only" else audio)
    close(f"x0.{case}.video", dv, g[f"x0.{case}.video"])
    if da is not None:
        close(f"x0.{case}.audio", da, g[f"x0.{case}.audio"])


def test_keyframe_embedding_changes_only_marked_tokens(setup):
    """A real test of the mask: unmarked tokens' patchified inputs are untouched."""
    model, g = setup
    audio = _modality(g, "audio", SIGMA_A)
    with_kf = model.prepare(_modality(g, "video", SIGMA_V, keyframes=g["in.keyframes_mask"]), audio, "video")
    without = model.prepare(_modality(g, "video", SIGMA_V), audio, "video")
    diff = np.abs(np.array(with_kf.x) - np.array(without.x)).max(axis=-1)[0]
    marked = g["in.keyframes_mask"][0, :, 0] > 0
    assert (diff[marked] > 0).all() and (diff[~marked] == 0).all()


def test_released_configuration_parameter_count():
    """The released 2.5 architecture builds lazily (no weights allocated) with the reference's exact count."""
    import sys

    from mlx.utils import tree_flatten

    from ltx.model.transformer import count_parameters
    from ltx.text.duration import DurationHead, DurationHeadConfig

    sys.path.insert(0, str(Path(__file__).parent / "reference"))
    import tiny25  # numpy- and torch-free

    g = {k: np.array(v) for k, v in mx.load(str(GOLDENS / "transformer.safetensors")).items()}
    released = tiny25.RELEASED_TRANSFORMER_CONFIG
    assert count_parameters(released) == int(g["released.parameters"].reshape(-1)[0]) == 18_923_347_200
    with_prompt = {**released, "use_prompt_adaln_single": True}
    assert count_parameters(with_prompt) == int(g["released.parameters_prompt_adaln"].reshape(-1)[0])
    head = sum(v.size for _, v in tree_flatten(DurationHead(DurationHeadConfig()).parameters()))
    assert head == int(g["released.duration_head_parameters"].reshape(-1)[0])
