"""Reading audio files and the encode_audio stage against the reference (goldens from
tests/reference/golden_audio_io.py and golden_a2v.py): decode_audio_from_file on WAV, FLAC, MP3 and the AAC
track of an .mp4, torchaudio's resample to 16 kHz, the encoder's log-mel, and the stage's latents, each
within 1e-4 x max(1, max |ref|)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402

from ltx.audio.mel import latent_frames, load_audio, log_mel, resample  # noqa: E402
from ltx.weights import tiny  # noqa: E402

GOLDENS = Path(__file__).parent / "goldens"
START, DURATION = 0.1, 9 / 24  # golden_audio_io.START, DURATION
REL = 1e-4


def check(name: str, out, ref, rel: float = REL) -> float:
    out, ref = np.asarray(out, np.float32), np.asarray(ref, np.float32)
    assert out.shape == ref.shape, f"{name}: shape {out.shape} != reference {ref.shape}"
    err = float(np.abs(out - ref).max())
    bound = rel * max(1.0, float(np.abs(ref).max()))
    print(f"parity {name}: max err {err:.3g} (bound {bound:.3g})")
    assert err <= bound, f"{name}: max |ours - ref| = {err:.3g} > {bound:.3g}"
    return err


@pytest.fixture(scope="module")
def io_golden():
    return {k: np.asarray(v) for k, v in mx.load(str(GOLDENS / "audio_io.safetensors")).items()}


@pytest.fixture(scope="module")
def files(io_golden, tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    out = {}
    for fmt in ("wav", "flac", "mp3", "m4a"):
        out[fmt] = root / f"audio.{fmt}"
        out[fmt].write_bytes(io_golden[f"{fmt}.bytes"].tobytes())
    return out


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "m4a"])
def test_read_matches_reference(fmt, files, io_golden):
    wave, rate = load_audio(files[fmt], START, DURATION)  # (N, 2)
    assert rate == int(io_golden[f"{fmt}.rate"].item())
    check(f"read {fmt} from {START} s", wave.T, io_golden[f"{fmt}.waveform"])


def test_read_whole_file(files, io_golden):
    wave, _ = load_audio(files["wav"])
    check("read the whole wav", wave.T, io_golden["wav.full"])


def test_resample_and_mel_match_reference(files, io_golden):
    wave, rate = load_audio(files["wav"], START, DURATION)
    check("resample 22050 -> 16000 Hz", resample(wave.T, rate, 16000), io_golden["wav.resampled"])
    check("log-mel of the input", log_mel(wave, rate).transpose(0, 3, 1, 2), io_golden["wav.mel"])


@pytest.fixture(scope="module", params=tiny.VARIANTS)
def stage_run(request, files, tmp_path_factory):
    """The encode_audio stage on the golden WAV, cut to the a2v run's 9 frames at 24 fps."""
    from cache.store import Store
    from ltx.constants import audio_latent_frames
    from stages import encode_audio, framework
    from stages.models import resolve_model

    variant = request.param
    store = Store(tmp_path_factory.mktemp(f"enc{variant}"))
    store.ensure_writable()
    model = resolve_model({"2.0": "tiny", "2.3": "tiny-2.3"}[variant], store).ready()
    params = encode_audio.Params(START, DURATION, audio_latent_frames(9, 24.0))
    ext = {"checkpoint": model.checkpoint_digest, "audio": store.digest(files["wav"])}
    node = framework.Node(encode_audio.STAGE, params, {}, ext, {"files": model, "path": files["wav"]})
    art = framework.ensure(store, node, echo=lambda s: None)
    g = {k: np.asarray(v) for k, v in mx.load(str(GOLDENS / variant / "a2v.safetensors")).items()}
    return variant, store, node, art, g


def test_stage_latent_matches_reference(stage_run):
    variant, _, _, art, g = stage_run
    check(f"{variant} encode_audio latent", art["audio_latent"], g["a2v.audio_latent"])
    check(f"{variant} encode_audio waveform", art["waveform"], g["a2v.waveform"])
    assert int(np.asarray(art["sample_rate"])) == int(g["a2v.waveform_rate"].item())


def test_stage_is_cached_and_keyed_by_the_file(stage_run, files, tmp_path):
    from stages import framework

    _, store, node, art, _ = stage_run
    gone = dict(node.runtime, path=tmp_path / "gone.wav")  # a recompute would fail: the file is not there
    again = framework.ensure(store, framework.Node(node.stage, node.params, {}, node.externals, gone))
    assert again.key == art.key
    np.testing.assert_array_equal(again["audio_latent"], art["audio_latent"])
    other = tmp_path / "other.wav"
    other.write_bytes(files["wav"].read_bytes()[:-400])  # 100 fewer stereo samples
    changed = dict(node.externals, audio=store.digest(other))
    assert framework.Node(node.stage, node.params, {}, changed, node.runtime).key != node.key


def test_latent_frames_formula(stage_run):
    """ltx.audio.mel.latent_frames (what options.py checks a file against) is what the encoder makes."""
    from stages import runtime

    variant, _, node, _, _ = stage_run
    encoder = runtime.audio_encoder(node.runtime["files"])
    rng = np.random.RandomState(0)
    for n, rate in ((2559, 16000), (2560, 16000), (4000, 22050), (6001, 44100), (7199, 48000)):
        latent = encoder.encode_waveform(rng.standard_normal((n, 2)).astype(np.float32) * 0.1, rate)
        assert latent.shape[2] == latent_frames(n, rate), (n, rate)
