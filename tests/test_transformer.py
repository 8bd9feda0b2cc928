"""Parity of the MLX transformer, RoPE and patchifiers with ltx-core goldens (tiny models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ltx import backend  # noqa: F401

# isort: split

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402

from ltx.model import patchify as P  # noqa: E402
from ltx.model.attention import timestep_embedding  # noqa: E402
from ltx.model.rope import precompute_rope  # noqa: E402
from ltx.model.transformer import (  # noqa: E402
    Modality,
    Perturbation,
    X0Model,
    count_parameters,
    load_transformer,
    timestep_table,
)
from ltx.weights import loader, tiny  # noqa: E402

GOLDENS = Path(__file__).parent / "goldens"
FPS, SIGMA_V, SIGMA_A = 24.0, 0.8, 0.6


def close(name: str, got, ref) -> float:
    got, ref = np.asarray(got, np.float32), np.asarray(ref, np.float32)
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != {ref.shape}"
    err = float(np.abs(got - ref).max())
    tol = 1e-4 * max(1.0, float(np.abs(ref).max()))
    assert err <= tol, f"{name}: max error {err:.3g} > {tol:.3g}"
    return err


@pytest.fixture(scope="module", params=tiny.VARIANTS)
def setup(request, tmp_path_factory):
    variant = request.param
    model_dir = tiny.create(variant, tmp_path_factory.mktemp(f"tiny{variant}") / "model")
    gold = {k: np.array(v) for k, v in mx.load(str(GOLDENS / variant / "transformer.safetensors")).items()}
    return variant, model_dir, load_transformer(model_dir / "model.safetensors", mx.float32), gold


def _modality(g, stream: str, sigma: float, batch: int = 1, timesteps=None, mask=None) -> Modality:
    tok = mx.array(g[f"{stream}_tokens"])
    pos = mx.array(g[f"{stream}_positions"])
    ctx = mx.array(g[f"in.{stream}_context"])
    if batch > 1:
        tok, pos = mx.repeat(tok, batch, 0), mx.repeat(pos, batch, 0)
    ts = mx.full((batch, tok.shape[1], 1), sigma) if timesteps is None else mx.array(timesteps)
    return Modality(
        latent=tok,
        sigma=mx.full((batch,), sigma),
        timesteps=ts,
        positions=pos,
        context=mx.repeat(ctx, batch, 0),
        attention_mask=None if mask is None else mx.array(mask),
    )


def test_patchify_and_positions(setup):
    _, _, _, g = setup
    v_lat, a_lat = mx.array(g["in.video_latent"]), mx.array(g["in.audio_latent"])
    assert np.array_equal(np.array(P.patchify_video(v_lat)), g["video_tokens"])
    assert np.array_equal(np.array(P.patchify_audio(a_lat)), g["audio_tokens"])
    assert np.array_equal(
        np.array(P.unpatchify_video(mx.array(g["video_tokens"]), 3, 2, 2)), g["in.video_latent"]
    )
    assert np.array_equal(np.array(P.unpatchify_audio(mx.array(g["audio_tokens"]))), g["in.audio_latent"])
    assert np.array_equal(np.array(P.video_positions(3, 2, 2, FPS)), g["video_positions"])
    assert np.array_equal(np.array(P.audio_positions(5)), g["audio_positions"])
    assert P.audio_latent_frames(121, 24.0) == 126 and P.audio_latent_frames(97, 24.0) == 101


def test_timestep_embedding_and_rope(setup):
    _, _, model, g = setup
    close("timestep_sinusoid", timestep_embedding(mx.array(g["in.timesteps"])), g["timestep_sinusoid"])
    pos = {"video": mx.array(g["video_positions"]), "audio": mx.array(g["audio_positions"])}
    for s in ("video", "audio"):
        for cross in (False, True):
            cos, sin = model.rope(pos[s], s, cross)
            key = f"{s}.{'cross_' if cross else ''}pe"
            close(f"{key}_cos", np.array(cos).transpose(0, 2, 1, 3), g[f"{key}_cos"])
            close(f"{key}_sin", np.array(sin).transpose(0, 2, 1, 3), g[f"{key}_sin"])
    cos, sin = precompute_rope(pos["video"], 16, 2, [20, 2048, 2048], "interleaved", double_precision=False)
    close("rope_interleaved_f32_cos", cos, g["rope_interleaved_f32_cos"])
    close("rope_interleaved_f32_sin", sin, g["rope_interleaved_f32_sin"])


def _prepared(model, g):
    video, audio = _modality(g, "video", SIGMA_V), _modality(g, "audio", SIGMA_A)
    return model.prepare(video, audio, "video"), model.prepare(audio, video, "audio")


def test_preprocessing(setup):
    variant, _, model, g = setup
    va, aa = _prepared(model, g)
    for s, args in (("video", va), ("audio", aa)):
        b, dim = args.x.shape[0], args.x.shape[-1]
        ada = args.ada[args.ada_index].reshape(b, -1, args.ada.shape[1] * dim)
        assert args.ada_index.shape == (1, 1)  # one shared timestep: one AdaLN row, broadcast over tokens
        ref = g[f"{s}.ada"]
        close(f"{s}.ada", np.broadcast_to(np.array(ada), ref.shape), ref)
        ref = g[f"{s}.embedded_timestep"]
        close(
            f"{s}.embedded_timestep", np.broadcast_to(np.array(args.embedded[args.ada_index]), ref.shape), ref
        )
        close(f"{s}.cross_scale_shift", args.cross_ss.reshape(b, 1, -1), g[f"{s}.cross_scale_shift"])
        close(f"{s}.cross_gate", args.cross_gate.reshape(b, 1, -1), g[f"{s}.cross_gate"])
        if variant == "2.3":
            close(f"{s}.prompt_timestep", args.prompt.reshape(b, 1, -1), g[f"{s}.prompt_timestep"])


def test_block(setup):
    _, _, model, g = setup
    va, aa = _prepared(model, g)
    bv, ba = model.transformer_blocks[0](va, aa, [[]])
    close("block0.video", bv.x, g["block0.video"])
    close("block0.audio", ba.x, g["block0.audio"])


def _cases(g):
    video, audio = _modality(g, "video", SIGMA_V), _modality(g, "audio", SIGMA_A)
    cond = _modality(
        g, "video", SIGMA_V, timesteps=g["in.cond_video_timesteps"], mask=g["in.cond_video_mask"]
    )
    return {
        "plain": (video, audio, None),
        "skip_video_self_attn": (video, audio, [Perturbation("skip_video_self_attn", (1,))]),
        "skip_audio_self_attn": (video, audio, [Perturbation("skip_audio_self_attn")]),
        "skip_a2v": (video, audio, [Perturbation("skip_a2v_cross_attn")]),
        "skip_v2a": (video, audio, [Perturbation("skip_v2a_cross_attn", (0,))]),
        "video_only": (video, None, None),
        "audio_only": (None, audio, None),
        "conditioned": (cond, audio, None),
        "batch_mixed": (
            _modality(g, "video", SIGMA_V, 2),
            _modality(g, "audio", SIGMA_A, 2),
            [[Perturbation("skip_video_self_attn", (1,)), Perturbation("skip_a2v_cross_attn")], []],
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "plain",
        "skip_video_self_attn",
        "skip_audio_self_attn",
        "skip_a2v",
        "skip_v2a",
        "video_only",
        "audio_only",
        "conditioned",
        "batch_mixed",
    ],
)
def test_x0_model(setup, case):
    _, _, model, g = setup
    v, a, p = _cases(g)[case]
    dv, da = X0Model(model)(v, a, p)
    for s, got in (("video", dv), ("audio", da)):
        key = f"x0.{case}.{s}"
        if key in g:
            close(key, got, g[key])
        else:
            assert got is None, key
    if case != "plain":  # every variant must change the output it targets
        base = _cases(g)["plain"]
        bv, ba = X0Model(model)(*base)
        changed = [
            not np.allclose(np.array(x)[:1], np.array(y)) for x, y in ((dv, bv), (da, ba)) if x is not None
        ]
        assert any(changed), case


def test_timestep_table_shares_rows():
    values, index = timestep_table(mx.full((1, 7, 1), 0.5), 1)
    assert values.tolist() == [0.5] and index.shape == (1, 1)
    values, index = timestep_table(np.array([[0.0, 0.5, 0.5, 0.0]]), 1)
    assert values.tolist() == [0.0, 0.5] and index.tolist() == [[0, 1, 1, 0]]


def _weights_and_config(model_dir: Path):
    weights, metadata = loader.load_checkpoint(model_dir / "model.safetensors")
    return dict(weights), loader.read_config(metadata)


def test_strict_loading_errors(setup):
    _, model_dir, _, _ = setup
    weights, config = _weights_and_config(model_dir)
    key = "model.diffusion_model.transformer_blocks.1.attn1.to_q.weight"
    missing = {k: v for k, v in weights.items() if k != key}
    with pytest.raises(loader.CheckpointError, match="transformer_blocks.1.attn1.to_q.weight"):
        load_transformer((missing, config))
    renamed = dict(missing)
    renamed["model.diffusion_model.transformer_blocks.1.attn1.to_query.weight"] = weights[key]
    with pytest.raises(loader.CheckpointError, match="to_q"):
        load_transformer((renamed, config))
    for k, bad in (
        ("qk_norm", "layer_norm"),
        ("rope_type", "spiral"),
        ("activation_fn", "gelu"),
        ("cross_attention_dim", 24),
    ):
        cfg = json.loads(json.dumps(config))
        cfg["transformer"][k] = bad
        with pytest.raises(loader.CheckpointError, match=rf"transformer\.{k}={bad!r}"):
            load_transformer((weights, cfg))
    cfg = json.loads(json.dumps(config))
    del cfg["transformer"]["share_ff"]  # ltx-core rejects an absent asserted key as well
    with pytest.raises(loader.CheckpointError, match=r"transformer\.share_ff is missing"):
        load_transformer((weights, cfg))


def test_connector_and_other_components_are_not_transformer_weights(setup):
    _, model_dir, _, _ = setup
    weights, config = _weights_and_config(model_dir)
    extra = dict(weights)
    extra["model.diffusion_model.video_embeddings_connector.x.weight"] = mx.zeros((1,))
    extra["vae.decoder.conv_in.weight"] = mx.zeros((1,))
    load_transformer((extra, config))


def test_19b_parameter_count():
    cfg = dict(
        num_layers=48,
        num_attention_heads=32,
        attention_head_dim=128,
        in_channels=128,
        out_channels=128,
        audio_num_attention_heads=32,
        audio_attention_head_dim=64,
        audio_out_channels=128,
        cross_attention_dim=4096,
        audio_cross_attention_dim=2048,
        caption_channels=3840,
        rope_type="split",
        frequencies_precision="float64",
        av_ca_timestep_scale_multiplier=1000.0,
    )
    assert count_parameters(cfg) == 18_876_174_592


def _use_attention_library(name: str | None, monkeypatch) -> None:
    """Run the blocked attention's GEMMs on `name` ("mkl": packed, "openblas": single-threaded
    sgemm calls), or (None) take the chunked path that runs without either."""
    from ltx.kernels import attention as attention_kernels
    from ltx.kernels import blas
    from ltx.kernels import blas as cpu_blas

    if name == "mkl":
        assert blas.mkl() is not None, "MKL is a dependency on Linux: the blocked path must run"
    if name == "openblas":
        assert cpu_blas.serial_openblas() is not None, "numpy's wheel brings OpenBLAS on Linux"
    monkeypatch.setattr(attention_kernels, "library", lambda: name)
    assert attention_kernels.blocked_attention() is (name is not None)


@pytest.mark.parametrize(
    "path, library",
    [
        ("blocked", "mkl"),
        ("blocked", "openblas"),
        ("blocked-exact", "mkl"),
        ("blocked-exact", "openblas"),
        ("blocked-exp", "openblas"),
        ("chunked", None),
    ],
)
def test_cpu_attention_matches_fused_kernel(monkeypatch, path, library):
    """The CPU attention paths (forced at tiny sizes) against mx.fast.scaled_dot_product_attention,
    for each mask layout: "blocked" (GEMMs per block of rows and block of keys, on MKL against K and
    V packed once per head or on numpy's OpenBLAS reading them in place, ragged blocks of both,
    several heads per thread, work split over threads, q/k/v as strided views of (B, T, H * D)
    projections; the scores' bound lets exp skip the max shift), "blocked-exact" (the same with every
    block shifted by its running row max, the earlier blocks of keys rescaled, as when the bound is
    too large), "blocked-exp" (natural-base scores and numpy's row sums, what ran before
    attention_kernels.SOFTMAX_BASE2) and "chunked" (the fallback without either BLAS: MLX matmuls, several
    query chunks and row blocks)."""
    from ltx import ops
    from ltx.kernels import attention as attention_kernels
    from ltx.kernels import threads

    rng = np.random.RandomState(0)
    # (B, T, H, D) projections seen as (B, H, T, D), as Attention passes them
    q, k, v = (
        mx.array(rng.standard_normal((2, n, 3, 4)).astype(np.float32)).transpose(0, 2, 1, 3)
        for n in (9, 7, 7)
    )
    bias = np.log(rng.uniform(0.05, 1.0, (2, 1, 9, 7))).astype(np.float32)
    masks = {
        "none": None,
        "self (B, 1, Tq, Tk)": mx.array(bias),
        "context (B, 1, 1, Tk)": mx.array(bias[:, :, :1]),
        "per head (B, H, Tq, Tk)": mx.array(np.repeat(bias, 3, axis=1) * rng.uniform(0.5, 2, (1, 3, 1, 1))),
        "padding (finfo.min)": mx.array(np.where(bias > -1.0, 0.0, np.finfo(np.float32).min)[:, :, :1]),
        # every key of sample 1 hidden: softmax of equal scores is uniform (the unshifted exp sums to 0)
        "all keys hidden": mx.array(
            np.where(np.arange(2)[:, None, None, None] == 1, np.finfo(np.float32).min, 0.0)
            * np.ones((1, 1, 1, 7), np.float32)
        ),
    }
    monkeypatch.setattr(threads, "MIN_ELEMENTS", 0)
    monkeypatch.setattr(attention_kernels, "BLOCKED_MIN_ELEMENTS", 0)
    if path == "blocked-exact":
        monkeypatch.setattr(attention_kernels, "EXP_SAFE", -1.0)
    if path == "blocked-exp":
        monkeypatch.setattr(attention_kernels, "SOFTMAX_BASE2", False)
    _use_attention_library(library, monkeypatch)
    if path.startswith("blocked"):
        monkeypatch.setattr(
            attention_kernels, "ATTENTION_ROWS", (2, 2)
        )  # 5 blocks per head, a ragged last one
        monkeypatch.setattr(attention_kernels, "KEY_BLOCK", 3)  # blocks of 3, 3 and 1 keys
    else:
        monkeypatch.setattr(threads, "BLOCK_ELEMENTS", 2 * 7)  # two score rows per block
    for name, mask in masks.items():
        assert attention_kernels.attention_applies(q.size * 7)
        want = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.5, mask=mask)
        # scores of ~+-500: exp of them unshifted would overflow, so these rows must take the max shift
        big = mx.fast.scaled_dot_product_attention(q * 30, k * 30, v, scale=0.5, mask=mask)
        close(f"cpu path, large scores, {name}", ops.attention(q * 30, k * 30, v, 0.5, mask), big)
        close(f"cpu path, {name}", ops.attention(q, k, v, 0.5, mask), want)
        monkeypatch.setattr(ops, "ATTENTION_CHUNK_ELEMENTS", 2 * 3 * 2 * 7)  # two queries per chunk
        close(f"cpu path chunked, {name}", ops.attention(q, k, v, 0.5, mask), want)
        monkeypatch.setattr(ops, "ATTENTION_CHUNK_ELEMENTS", 1 << 27)


@pytest.mark.parametrize("library", ["mkl", "openblas"])
@pytest.mark.parametrize("case", ["shifted", "masked"])
def test_cpu_attention_exp_inputs_stay_above_the_floor(monkeypatch, case, library):
    """numpy's exp2 has slow lanes below -126 (subnormal results, hidden keys): the blocked attention
    raises shifted and masked scores to attention_kernels.EXP2_FLOOR before it, and the result still
    matches the fused kernel (scores spread over +-600: most shifted terms underflow)."""
    import types

    from ltx import ops
    from ltx.kernels import attention as attention_kernels

    _use_attention_library(library, monkeypatch)
    monkeypatch.setattr(attention_kernels, "BLOCKED_MIN_ELEMENTS", 0)
    lowest = []

    def exp2(x, out=None):
        lowest.append(float(x.min()))
        return np.exp2(x, out=out)

    monkeypatch.setattr(attention_kernels, "np", types.SimpleNamespace(**{**vars(np), "exp2": exp2}))
    rng = np.random.RandomState(5)
    q, k, v = (mx.array(rng.standard_normal((1, 2, n, 8)).astype(np.float32)) for n in (9, 40, 40))
    scale, mask = (8.0, None) if case == "shifted" else (0.3, np.zeros((1, 1, 1, 40), np.float32))
    if mask is not None:
        mask[..., ::3] = np.finfo(np.float32).min
        mask = mx.array(mask)
    got = ops.attention(q, k, v, scale, mask)
    want = mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)
    close(f"blocked attention, {case} scores", got, want)
    assert lowest and min(lowest) >= attention_kernels.EXP2_FLOOR, min(lowest)


def test_cpu_attention_on_openblas_runs_it_single_threaded_and_restores(monkeypatch):
    """On numpy's OpenBLAS, whose thread count is process-wide, every GEMM of the blocked attention
    runs with that count at 1 (each worker thread calls it on its own core), and the count it found
    is back afterwards, also when the attention raises."""
    from ltx import ops
    from ltx.kernels import attention as attention_kernels
    from ltx.kernels import blas as cpu_blas

    _use_attention_library("openblas", monkeypatch)
    monkeypatch.setattr(attention_kernels, "BLOCKED_MIN_ELEMENTS", 0)
    serial = cpu_blas.serial_openblas()
    seen = []

    class Spy(attention_kernels._StridedHead):
        def scores(self, *a):
            seen.append(serial.get_threads())
            super().scores(*a)

    monkeypatch.setattr(attention_kernels, "_StridedHead", Spy)
    before = serial.get_threads()
    serial.set_threads(2)  # as on a 2-core machine, whatever this one has
    try:
        rng = np.random.RandomState(6)
        q, k, v = (mx.array(rng.standard_normal((1, 2, n, 8)).astype(np.float32)) for n in (5, 6, 6))
        close(
            "openblas attention",
            ops.attention(q, k, v, 0.3),
            mx.fast.scaled_dot_product_attention(q, k, v, scale=0.3),
        )
        assert seen and set(seen) == {1}, seen
        assert serial.get_threads() == 2

        def fail(*a):
            raise RuntimeError("worker failed")

        monkeypatch.setattr(attention_kernels, "_attention_rows", fail)
        with pytest.raises(RuntimeError, match="worker failed"):
            ops.attention(q, k, v, 0.3)
        assert serial.get_threads() == 2
    finally:
        serial.set_threads(before)


@pytest.mark.parametrize("library", ["mkl", "openblas"])
def test_cpu_attention_reads_heads_in_place_or_copies(monkeypatch, library):
    """The blocked path reads the heads where the projections put them (rows of D floats a stride
    apart: no copy) and copies any other layout (here D strided, as a transposed K would be); the
    result is the same softmax attention for all of them."""
    from ltx import ops
    from ltx.kernels import attention as attention_kernels

    _use_attention_library(library, monkeypatch)
    monkeypatch.setattr(attention_kernels, "BLOCKED_MIN_ELEMENTS", 0)
    rng = np.random.RandomState(3)
    x = {n: rng.standard_normal((2, n, 3 * 4)).astype(np.float32) for n in (9, 7)}
    layouts = {
        "projections (B, T, H * D) as (B, H, T, D)": lambda a: (
            mx.array(a).reshape(2, -1, 3, 4).transpose(0, 2, 1, 3)
        ),
        "contiguous (B, H, T, D)": lambda a: mx.array(
            np.ascontiguousarray(a.reshape(2, -1, 3, 4).transpose(0, 2, 1, 3))
        ),
        "D strided (B, H, D, T) swapped": lambda a: mx.array(
            np.ascontiguousarray(a.reshape(2, -1, 3, 4).transpose(0, 2, 3, 1))
        ).swapaxes(-1, -2),
    }
    want = None
    for name, layout in layouts.items():
        q, k, v = layout(x[9]), layout(x[7]), layout(x[7])
        mx.eval(q, k, v)
        in_place = not name.startswith("D strided")
        assert (
            attention_kernels._head_rows(q).ctypes.data == np.array(q, copy=False).ctypes.data
        ) == in_place, name
        got = ops.attention(q, k, v, 0.5)
        want = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.5) if want is None else want
        close(f"cpu path, {name}", got, want)


def test_cpu_norm_rope_matches_mlx(monkeypatch):
    """q/k RMSNorm + RoPE (split layout) in numpy against MLX's: a batch of 2 with one cos/sin table
    (broadcast) and with a table per sample, several ragged row blocks split over threads."""
    from ltx import ops
    from ltx.kernels import norms, threads

    monkeypatch.setattr(threads, "BLOCK_ELEMENTS", 3 * 24)  # 3 rows per block
    rng = np.random.RandomState(2)
    x = mx.array(rng.standard_normal((2, 11, 24)).astype(np.float32) * 3)
    w = mx.array(rng.uniform(0.5, 1.5, 24).astype(np.float32))
    _, compiled = ops.compiled_norms(1e-6)
    for tb in (1, 2):
        angles = rng.uniform(-3, 3, (tb, 11, 4, 3)).astype(np.float32)  # 4 heads of 6: 3 pairs each
        cos, sin = mx.array(np.cos(angles)), mx.array(np.sin(angles))
        want = compiled(x, w, cos, sin)
        close(f"cpu norm + rope, table batch {tb}", norms.rms_norm_rope(x, w, cos, sin, 1e-6), want)


def test_cpu_gelu_matches_mlx(monkeypatch):
    from ltx.kernels import activations, threads

    monkeypatch.setattr(threads, "BLOCK_ELEMENTS", 64)  # several blocks per thread, a ragged last one
    x = np.random.RandomState(1).standard_normal((2, 37, 16)).astype(np.float32) * 4
    x[0, 0, :4] = [-30.0, -9.0, 9.0, 30.0]  # saturated tails
    want = nn.gelu_approx(mx.array(x))
    close("cpu gelu", activations.gelu_tanh(mx.array(x)), want)
    assert float(mx.abs(activations.gelu_tanh(mx.array(x)) - want).max()) <= 1e-6 * 30


@pytest.mark.parametrize("case", ["plain", "conditioned", "batch_mixed", "skip_video_self_attn"])
def test_x0_model_cpu_kernels_path(setup, case, monkeypatch):
    """The whole transformer with every attention and feed-forward through the numpy kernels, against
    the goldens."""
    from ltx.kernels import attention as attention_kernels
    from ltx.kernels import norms, threads

    _, _, model, g = setup
    monkeypatch.setattr(threads, "MIN_ELEMENTS", 0)
    monkeypatch.setattr(attention_kernels, "BLOCKED_MIN_ELEMENTS", 0)
    monkeypatch.setattr(norms, "NORM_MIN_ELEMENTS", 0)  # q/k RMSNorm + RoPE in numpy too
    dv, da = X0Model(model)(*_cases(g)[case])
    for s, got in (("video", dv), ("audio", da)):
        close(f"x0.{case}.{s}", got, g[f"x0.{case}.{s}"])


@pytest.fixture(scope="module")
def setup_20(tmp_path_factory):
    model_dir = tiny.create("2.0", tmp_path_factory.mktemp("tiny20") / "model")
    gold = {k: np.array(v) for k, v in mx.load(str(GOLDENS / "2.0" / "transformer.safetensors")).items()}
    return "2.0", model_dir, None, gold


def test_caption_projection_in_text_encoder(setup_20):
    """The LTX-2.3 layout (caption_proj_before_connector) on the 2.0 weights, minus the projections
    (the 2.3 tiny model already has this layout; its main goldens cover it)."""
    variant, model_dir, _, g = setup_20
    weights, config = _weights_and_config(model_dir)
    weights = {k: v for k, v in weights.items() if "caption_projection" not in k}
    config["transformer"]["caption_proj_before_connector"] = True
    model = load_transformer((weights, config), mx.float32)
    assert "caption_projection" not in model and "audio_caption_projection" not in model
    video, audio = _modality(g, "video", SIGMA_V), _modality(g, "audio", SIGMA_A)
    video.context, audio.context = (
        mx.array(g["in.video_context_inner"]),
        mx.array(g["in.audio_context_inner"]),
    )
    dv, da = X0Model(model)(video, audio)
    close("x0.no_caption_projection.video", dv, g["x0.no_caption_projection.video"])
    close("x0.no_caption_projection.audio", da, g["x0.no_caption_projection.audio"])


def test_bfloat16_compute(setup):
    _, model_dir, _, g = setup
    model = load_transformer(model_dir / "model.safetensors", mx.bfloat16)
    assert model.dtype == mx.bfloat16
    cond = _modality(
        g, "video", SIGMA_V, timesteps=g["in.cond_video_timesteps"], mask=g["in.cond_video_mask"]
    )
    for case, (v, a) in {
        "plain": (_modality(g, "video", SIGMA_V), _modality(g, "audio", SIGMA_A)),
        "conditioned": (cond, _modality(g, "audio", SIGMA_A)),
    }.items():
        v.latent, a.latent = v.latent.astype(mx.bfloat16), a.latent.astype(mx.bfloat16)
        dv, da = X0Model(model)(v, a)
        assert dv.dtype == mx.bfloat16
        for s, got in (("video", dv), ("audio", da)):
            ref = g[f"x0.{case}.{s}"]
            err = np.abs(np.array(got.astype(mx.float32)) - ref).max()
            assert err < 0.1 * np.abs(ref).max(), (case, s, err)


def test_make_modality_and_rope_cache(setup):
    _, _, model, g = setup
    from ltx.model.transformer import make_modality

    video, audio = _modality(g, "video", SIGMA_V), _modality(g, "audio", SIGMA_A)
    mask = np.ones((1, video.latent.shape[1]), np.float32)
    mask[:, :4] = 0.0
    v1 = make_modality(
        video.latent,
        video.positions,
        video.context,
        SIGMA_V,
        mx.array(mask),
        attention_mask=mx.array(g["in.cond_video_mask"]),
    )
    a1 = make_modality(audio.latent, audio.positions, audio.context, SIGMA_A)
    assert a1.timesteps.shape == (1, 1, 1)
    dv, da = X0Model(model)(v1, a1)
    close("x0.conditioned.video", dv, g["x0.conditioned.video"])
    close("x0.conditioned.audio", da, g["x0.conditioned.audio"])
    first = model.rope(v1.positions, "video")
    assert model.rope(v1.positions, "video") is first  # same positions object: cached tables
    assert "_rope_cache" not in dict(model.items())


def test_guidance_style_perturbations(setup):
    """ltx.diffusion.guidance.Perturbation-shaped specs (as stages/diffuse.py passes them) map to the same skips."""
    from dataclasses import dataclass

    from ltx.model.transformer import normalize_perturbations

    @dataclass(frozen=True)
    class Spec:  # the shape of ltx.diffusion.guidance.Perturbation
        skip_video_self_attn_blocks: tuple | None = ()
        skip_audio_self_attn_blocks: tuple | None = ()
        skip_a2v: bool = False
        skip_v2a: bool = False

    _, _, model, g = setup
    video, audio = _modality(g, "video", SIGMA_V), _modality(g, "audio", SIGMA_A)
    for spec, case in (
        (Spec(skip_video_self_attn_blocks=(1,)), "skip_video_self_attn"),
        (Spec(skip_audio_self_attn_blocks=None), "skip_audio_self_attn"),
        (Spec(skip_a2v=True), "skip_a2v"),
    ):
        dv, da = X0Model(model)(video, audio, [spec])
        close(f"x0.{case}.video", dv, g[f"x0.{case}.video"])
        close(f"x0.{case}.audio", da, g[f"x0.{case}.audio"])
    both = normalize_perturbations([Spec(skip_a2v=True, skip_v2a=True), None], 2)
    assert [len(x) for x in both] == [2, 0]
    with pytest.raises(ValueError, match="batch of 2"):
        normalize_perturbations([Spec(), Spec(), Spec()], 2)
