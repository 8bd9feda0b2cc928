"""Audio path parity with the official reference (goldens from tests/reference/golden_audio.py)."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx  # noqa: E402
import numpy as np
import pytest

from ltx import backend  # noqa: F401
from ltx.audio.mel import load_audio, log_mel, resample  # noqa: E402
from ltx.audio.vae import load_audio_decoder, load_audio_encoder  # noqa: E402
from ltx.audio.vocoder import VocoderWithBWE, load_vocoder  # noqa: E402
from ltx.weights import tiny
from ltx.weights.loader import CheckpointError  # noqa: E402

GOLDENS = Path(__file__).parent / "goldens"
VOCODER_FRAMES = 26  # golden_audio.VOCODER_FRAMES


def close(out: mx.array | np.ndarray, ref: np.ndarray, rel: float = 1e-4) -> float:
    out = np.asarray(out, np.float32)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    err = float(np.abs(out - ref).max())
    bound = rel * max(1.0, float(np.abs(ref).max()))
    assert err <= bound, f"max |mlx - ref| = {err:.3g} > {bound:.3g}"
    return err


def cl(x: np.ndarray) -> mx.array:
    """Reference (B, C, T, F) -> channels-last (B, T, F, C)."""
    return mx.array(x.transpose(0, 2, 3, 1))


def from_cl(x: mx.array) -> np.ndarray:
    """Channels-last (B, L, C) -> reference (B, C, L)."""
    return np.asarray(x).transpose(0, 2, 1)


@pytest.fixture(scope="module", params=tiny.VARIANTS)
def case(request, tmp_path_factory):
    variant = request.param
    path = GOLDENS / variant / "audio.safetensors"
    model = tiny.create(variant, tmp_path_factory.mktemp(f"tiny{variant}") / "model") / "model.safetensors"
    golden = {k: np.asarray(v) for k, v in mx.load(str(path)).items()}
    return variant, model, golden


def test_mel_matches_reference(case):
    _, _, g = case
    mel = log_mel(g["waveform"].T, int(g["waveform_rate"].item()))  # (1, T, 64, 2)
    assert np.abs(mel.transpose(0, 3, 1, 2) - g["mel"]).max() <= 1e-3


def test_encoder(case, kernels):
    _, model, g = case
    enc = load_audio_encoder(model)
    close(enc.encode(cl(g["mel"])), g["latent"])
    # end to end from the waveform: resampling, mel and encoder (the mel agrees to ~1e-4)
    close(enc.encode_waveform(g["waveform"].T, int(g["waveform_rate"].item())), g["latent"], rel=1e-3)


def test_decoder(case, kernels):
    _, model, g = case
    dec = load_audio_decoder(model)
    out = dec.decode(mx.array(g["decoder_latent"]))  # (B, T, 64, 2)
    close(np.asarray(out).transpose(0, 3, 1, 2), g["decoder_mel"])


def test_vocoder(case, kernels):
    variant, model, g = case
    voc = load_vocoder(model)
    assert voc.sample_rate == int(g["vocoder_rate"].item()) == (48000 if variant == "2.3" else 24000)
    assert isinstance(voc, VocoderWithBWE) == (variant == "2.3")
    mel = cl(g["mel"][:, :, :VOCODER_FRAMES])
    out = from_cl(voc(mel))
    close(out, g["vocoder_waveform"])


@pytest.fixture(scope="module")
def case_23(tmp_path_factory):
    model = tiny.create("2.3", tmp_path_factory.mktemp("tiny23") / "model") / "model.safetensors"
    golden = {k: np.asarray(v) for k, v in mx.load(str(GOLDENS / "2.3" / "audio.safetensors")).items()}
    return "2.3", model, golden


def test_bwe_stages(case_23):
    variant, model, g = case_23
    voc = load_vocoder(model)
    voc.vocoder.config.apply_final_activation = False
    raw = voc.vocoder(cl(g["mel"][:, :, :VOCODER_FRAMES]))
    close(from_cl(raw), g["bwe_lowrate_raw"])
    x = mx.array(
        np.clip(g["bwe_lowrate_raw"], -1, 1).transpose(0, 2, 1)
    )  # the reference's clamped 16 kHz signal
    mel = voc.bwe_mel(x)  # (B, frames, 64, 2)
    assert np.abs(np.asarray(mel).transpose(0, 3, 1, 2) - g["bwe_mel"]).max() <= 1e-3
    close(from_cl(voc.bwe_generator(cl(g["bwe_mel"]))), g["bwe_residual"])
    close(from_cl(voc.resample(x)), g["bwe_skip"])


def test_resample_identity_and_length():
    x = np.random.RandomState(0).standard_normal((2, 441)).astype(np.float32)
    assert resample(x, 16000, 16000) is x
    assert resample(x, 44100, 16000).shape == (2, 160)


def _rewrite(src: Path, dst: Path, drop: str | None = None, edit=None) -> Path:
    weights, meta = mx.load(str(src), return_metadata=True)
    if drop:
        del weights[drop]
    if edit:
        config = json.loads(meta["config"])
        edit(config)
        meta = {**meta, "config": json.dumps(config)}
    mx.save_safetensors(str(dst), weights, metadata=meta)
    return dst


def test_missing_key_is_named(case, tmp_path):
    _, model, _ = case
    for loader, key in [
        (load_audio_encoder, "audio_vae.encoder.conv_in.conv.weight"),
        (load_audio_decoder, "audio_vae.per_channel_statistics.std-of-means"),
        (
            load_vocoder,
            "vocoder.conv_post.weight" if case[0] == "2.0" else "vocoder.bwe_generator.conv_post.weight",
        ),
    ]:
        bad = _rewrite(model, tmp_path / "bad.safetensors", drop=key)
        with pytest.raises(CheckpointError, match="missing weight"):
            loader(bad)


def test_unsupported_config_is_named(case, tmp_path):
    variant, model, _ = case

    def attention(c):
        c["audio_vae"]["model"]["params"]["ddconfig"]["mid_block_add_attention"] = True

    bad = _rewrite(model, tmp_path / "attn.safetensors", edit=attention)
    with pytest.raises(CheckpointError, match="mid_block_add_attention=True"):
        load_audio_decoder(bad)

    def norm(c):
        c["audio_vae"]["model"]["params"]["ddconfig"]["norm_type"] = "group"

    with pytest.raises(CheckpointError, match="norm_type='group'"):
        load_audio_encoder(_rewrite(model, tmp_path / "norm.safetensors", edit=norm))

    def resblock(c):
        v = c["vocoder"]["bwe"] if variant == "2.3" else c["vocoder"]
        v["resblock"] = "2"

    with pytest.raises(CheckpointError, match=r"vocoder(\.bwe)?\.resblock='2'"):
        load_vocoder(_rewrite(model, tmp_path / "res.safetensors", edit=resblock))


def test_sanitize_is_idempotent(case):
    _, model, _ = case
    weights = dict(mx.load(str(model)))
    for module, prefix in [
        (load_vocoder(model), "vocoder."),
        (load_audio_encoder(model), "audio_vae.encoder."),
    ]:
        own = {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}
        once = module.sanitize(own)
        twice = module.sanitize(once)
        assert any(once[k].shape != own[k].shape for k in own)  # conv layouts did move
        assert all(once[k].shape == twice[k].shape and mx.array_equal(once[k], twice[k]).item() for k in once)


def test_load_audio_mono_to_stereo(tmp_path):
    import soundfile as sf

    x = (0.5 * np.sin(np.arange(8000) / 10)).astype(np.float32)
    sf.write(tmp_path / "mono.wav", x, 8000, subtype="FLOAT")
    audio, sr = load_audio(tmp_path / "mono.wav", start_time=0.25, max_duration=0.5)
    assert sr == 8000 and audio.shape == (4000, 2)
    np.testing.assert_array_equal(audio[:, 0], audio[:, 1])
    np.testing.assert_allclose(audio[:, 0], x[2000:6000])
    sf.write(tmp_path / "quad.wav", np.zeros((100, 4), np.float32), 8000)
    with pytest.raises(ValueError, match="4 channels"):
        load_audio(tmp_path / "quad.wav")


def test_mel_filterbank_matches_librosa():
    """Our numpy Slaney filterbank (librosa's import costs seconds per process) against librosa's."""
    import librosa

    from ltx.audio.mel import mel_filterbank

    ref = librosa.filters.mel(
        sr=16000, n_fft=1024, n_mels=64, fmin=0.0, fmax=8000.0, htk=False, norm="slaney", dtype=np.float64
    )
    assert np.abs(mel_filterbank(16000, 1024, 64, 0.0, 8000.0) - ref).max() < 1e-12
