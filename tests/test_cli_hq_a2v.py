"""`--pipeline hq`, `--pipeline a2v --audio-path` and the x1.5 upsampler from the command line, on the tiny
models, in real subprocesses: playable files, the input audio in the a2v output, the encode-audio artifact
reused, and the new stage in `ltx status`, `ltx cache show` and its own subcommand."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from test_cli_pipeline import PROMPT, SMALL, cached, ltx, ran

from stages.mux import probe


def _tone(path: Path, seconds: float = 0.6, rate: int = 22050) -> np.ndarray:
    import soundfile

    t = np.arange(round(seconds * rate)) / rate
    x = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 330 * t)], 1).astype(np.float32)
    soundfile.write(str(path), x, rate, subtype="PCM_16")
    return x


def _streams(path: Path) -> str:
    return "\n".join(line for line in probe(path).splitlines() if "Stream" in line)


def test_hq_writes_a_playable_mp4(tmp_path):
    out = tmp_path / "hq.mp4"
    r = ltx(tmp_path / "cache", "generate", "--pipeline", "hq", "--steps", "2", *PROMPT, *SMALL,
            "--model", "tiny-2.3", "--output-path", str(out))  # fmt: skip
    info = _streams(out)
    assert re.search(r"Video: h264.*128x64", info) and "Audio: aac" in info, info
    stages = ["encode", "encode", "denoise", "upsample", "refine", "decode", "decode_audio", "vocode", "mux"]
    assert sorted(ran(r.stderr)) == sorted(stages)  # the prompt and the negative prompt are both "encode"
    assert "denoise: step 3/3" in r.stderr  # res_2s: 2 steps and the final denoise


def test_x15_upsampler_sizes_stage_1_at_two_thirds(tmp_path):
    out = tmp_path / "x15.mp4"
    ltx(tmp_path / "cache", "generate", *PROMPT, "--height", "96", "--width", "192", "--num-frames", "9",
        "--spatial-upsampler-path", "tiny:x1.5", "--output-path", str(out))  # fmt: skip
    assert re.search(r"Video: h264.*192x96", _streams(out))
    from cache.store import Store

    store = Store(tmp_path / "cache")
    params = store.manifest(store.load_run("x15")["stages"]["denoise"])["params"]
    assert (params["height"], params["width"]) == (64, 128)  # stage 1 at 2/3, upsampled x1.5 to 96x192


@pytest.fixture(scope="module")
def a2v(tmp_path_factory):
    root = tmp_path_factory.mktemp("a2v")
    wav = root / "tone.wav"
    tone = _tone(wav)
    out = root / "a2v.mp4"
    base = ["--pipeline", "a2v", "--steps", "2", *PROMPT, *SMALL]
    r = ltx(root / "cache", "generate", *base, "--audio-path", str(wav), "--output-path", str(out))
    return root, wav, tone, out, base, r


def test_a2v_writes_the_input_audio(a2v):
    from ltx.audio.mel import load_audio

    root, wav, tone, out, _, r = a2v
    info = _streams(out)
    assert re.search(r"Video: h264.*128x64", info), info
    assert "Audio: aac" in info and "22050 Hz" in info, info  # the input's rate, not the vocoder's
    assert "encode_audio" in ran(r.stderr) and "vocode" not in ran(r.stderr)
    heard, rate = load_audio(out)
    n = round(9 / 24 * rate)  # the video's length, read from 0 s
    assert rate == 22050 and abs(heard.shape[0] - n) < 2048, heard.shape
    m = min(n, heard.shape[0]) - 1100  # AAC's priming and tail aside, it is the input
    lag = int(np.argmax([np.dot(heard[k : k + m, 0], tone[:m, 0]) for k in range(0, 1100)]))
    corr = np.corrcoef(heard[lag : lag + m, 0], tone[:m, 0])[0, 1]
    assert corr > 0.99, (lag, corr)


def test_a2v_rerun_reuses_the_encoded_audio(a2v):
    root, wav, _, out, base, _ = a2v
    r = ltx(root / "cache", "generate", *base, "--audio-path", str(wav), "--seed", "11",
            "--output-path", str(root / "seed11.mp4"))  # fmt: skip
    assert "encode_audio" not in ran(r.stderr) and "encode_audio" in cached(r.stderr)
    assert "denoise" in ran(r.stderr)
    # the stage's own subcommand (as the README shows it), for another run on the same file: cached too
    step = ltx(root / "cache", "encode-audio", "other", *base, "--audio-path", str(wav))
    assert cached(step.stderr) == ["encode_audio"] and re.search(r"[0-9a-f]{8}", step.stdout)


def test_a2v_status_and_cache_show(a2v):
    root, wav, *_ = a2v
    status = ltx(root / "cache", "status", "a2v").stdout
    assert re.search(r"^encode_audio\s+cached", status, flags=re.M), status
    stale = ltx(root / "cache", "status", "a2v", "--audio-start-time", "0.1").stdout
    assert re.search(r"^encode_audio\s+stale .*start_time 0.0 -> 0.1", stale, flags=re.M), stale
    show = ltx(root / "cache", "cache", "show", "a2v/encode_audio").stdout
    assert "encode_audio" in show and "audio" in show
    from cache.store import Store

    store = Store(root / "cache")
    key = store.load_run("a2v")["stages"]["encode_audio"]
    assert store.manifest(key)["externals"]["audio"] == store.digest(wav)


def test_a2v_takes_the_audio_of_a_video_and_an_mp3(a2v):
    root, wav, _, out, base, _ = a2v
    import av

    mp3 = root / "tone.mp3"
    with av.open(str(wav)) as src, av.open(str(mp3), "w") as dst:
        stream = dst.add_stream("libmp3lame", rate=22050, layout="stereo")
        for frame in src.decode(audio=0):
            for packet in stream.encode(frame):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)
    for source in (out, mp3):  # the a2v output (an .mp4 with an AAC track) as the input of another run
        r = ltx(root / "cache", "generate", *base, "--audio-path", str(source), "--output-path",
                str(root / f"from-{source.suffix[1:]}.mp4"))  # fmt: skip
        assert "encode_audio" in ran(r.stderr)
        assert "Audio: aac" in _streams(root / f"from-{source.suffix[1:]}.mp4")
