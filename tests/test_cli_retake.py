"""`ltx retake` and `ltx extend` from the command line, on the tiny model, in real subprocesses: the README's
commands as written (a run, a retake of it, an .mp4, an extension), playable outputs that keep what is
outside the span, the encoded source file reused by a second retake, a retake killed mid-denoise resuming
bit-identically, and bad sources and spans refused before anything is written."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_cli_pipeline import ltx, ran

from cache.store import Store
from stages.mux import probe

README = Path(__file__).resolve().parents[1] / "README.md"
FAST = ["--steps", "2"]  # appended to the README's commands (the default is the reference's 40)
SOURCE = ["--height", "64", "--width", "128", "--num-frames", "49"]  # 2.04 s at 24 fps


def readme_commands() -> list[str]:
    """The `ltx retake` / `ltx extend` lines of the README's "Retake and extend" code block."""
    text = README.read_text()
    block = text.split("### Retake and extend", 1)[1].split("```", 2)[1]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("ltx ")]


def frames_of(path: Path) -> int:
    from ltx.video.media import probe_video

    return probe_video(path)[1]


@pytest.fixture(scope="module")
def readme_runs(tmp_path_factory):
    """In a fresh directory: the README's `generate` of fox (small), then each retake/extend command."""
    root = tmp_path_factory.mktemp("retake")
    cache = root / "cache"
    subprocess.run(["mkdir", "-p", str(root / "out")], check=True)

    def run(args: list[str]):
        r = subprocess.run(
            [sys.executable, "-m", "stages.cli", "--cache-dir", str(cache), *args],
            capture_output=True,
            text=True,
            cwd=root,
            timeout=900,
        )
        assert r.returncode == 0, (args, r.stderr)
        return r

    gen = run(
        [
            "generate",
            "--prompt",
            "A red fox trots through fresh snow",
            *SOURCE,
            "--output-path",
            "out/fox.mp4",
        ]
    )
    results = {"generate": gen}
    for cmd in readme_commands():
        results[cmd] = run(shlex.split(cmd)[1:] + FAST)
    return root, cache, results


def test_readme_lists_the_commands():
    cmds = readme_commands()
    assert [c.split()[1] for c in cmds] == ["retake"] * 5 + ["extend"], cmds
    assert "--keep-video" in cmds[3] and "--keep-audio" in cmds[4], cmds


def test_retake_of_a_run_keeps_the_rest(readme_runs):
    root, cache, results = readme_runs
    cmd = readme_commands()[0]
    assert sorted(ran(results[cmd].stderr)) == sorted(
        ["encode", "encode", "retake", "decode", "decode_audio", "vocode", "mux"]
    )  # the prompt and the (empty) negative prompt; no encode_video: the run's own latents
    out = root / "out" / "leap.mp4"
    info = probe(out)
    assert re.search(r"Video: h264.*128x64|Video: h264.*64x128", info) and "Audio: aac" in info, info
    assert frames_of(out) == 49
    store = Store(cache)
    src, new = store.load_run("fox")["stages"]["refine"], store.load_run("leap")["stages"]["retake"]
    assert store.manifest(new)["inputs"]["video"] == src
    a, b = store.open(src)["video_latent"], store.open(new)["video_latent"]
    # [1, 2) s at 24 fps: latent frames 3 .. 6 (pixel frames 17 .. 48) overlap it; 0 .. 2 are kept
    changed = [i for i in range(a.shape[2]) if not np.array_equal(a[:, :, i], b[:, :, i])]
    assert changed == [3, 4, 5, 6], changed


def test_retake_of_a_retake(readme_runs):
    root, cache, results = readme_runs
    store = Store(cache)
    first = store.load_run("leap")["stages"]["retake"]
    second = store.load_run("leap_retake")["stages"]["retake"]
    assert store.manifest(second)["inputs"]["video"] == first
    assert frames_of(root / "out" / "leap_retake.mp4") == 49
    a, b = store.open(first)["video_latent"], store.open(second)["video_latent"]
    # [0, 0.5) s: latent frames 0 .. 2 (pixel frames 0 .. 16) regenerated, the first retake's 3 .. 6 kept
    assert not np.array_equal(a[:, :, 0], b[:, :, 0]) and np.array_equal(a[:, :, 3:], b[:, :, 3:])


def test_retake_of_an_mp4_and_its_reuse(readme_runs):
    root, cache, results = readme_runs
    cmd = readme_commands()[2]
    stages = ran(results[cmd].stderr)
    assert "encode_video" in stages and "encode_audio" in stages, stages
    out = root / "out" / "fox_retake.mp4"
    assert "Audio: aac" in probe(out) and frames_of(out) == 49
    # another span of the same file: its encoded frames and audio are reused, nothing recomputed
    r = ltx(cache, "retake", str(root / "out" / "fox.mp4"), "--start-time", "0", "--end-time", "0.3",
            "--prompt", "Snow falls", *FAST, "--output-path", str(root / "out" / "again.mp4"))  # fmt: skip
    assert "encode_video" not in ran(r.stderr) and "encode_audio" not in ran(r.stderr), r.stderr
    assert re.search(r"^cached encode_video ", r.stderr, re.M) and re.search(
        r"^cached encode_audio ", r.stderr, re.M
    )
    assert "retake" in ran(r.stderr)


def _changed(a, b, axis: int = 2) -> list[int]:
    return [i for i in range(a.shape[axis]) if not np.array_equal(np.take(a, i, axis), np.take(b, i, axis))]


def test_keep_video_regenerates_only_the_audio(readme_runs):
    root, cache, results = readme_runs
    assert "retake" in ran(results[readme_commands()[3]].stderr)
    store = Store(cache)
    src, new = store.load_run("fox")["stages"]["refine"], store.load_run("yelp")["stages"]["retake"]
    assert store.manifest(new)["params"]["regenerate_video"] is False
    a, b = store.open(src), store.open(new)
    np.testing.assert_array_equal(b["video_latent"], a["video_latent"])  # the video, bit for bit
    # [0.5, 1.5) s: the audio tokens (0.04 s each) from about 12 to 37 regenerated, the rest kept
    changed = _changed(a["audio_latent"], b["audio_latent"])
    assert changed and 11 <= changed[0] and changed[-1] <= 38 and b["audio_latent"].shape[2] > 45, changed
    assert "Audio: aac" in probe(root / "out" / "yelp.mp4")


def test_keep_audio_regenerates_only_the_video(readme_runs):
    root, cache, results = readme_runs
    assert "retake" in ran(results[readme_commands()[4]].stderr)
    store = Store(cache)
    fox, pounce = store.load_run("fox")["stages"], store.load_run("pounce")["stages"]
    a, b = store.open(fox["refine"]), store.open(pounce["retake"])
    assert store.manifest(pounce["retake"])["params"]["regenerate_audio"] is False
    np.testing.assert_array_equal(b["audio_latent"], a["audio_latent"])  # the audio, bit for bit
    assert _changed(a["video_latent"], b["video_latent"]) == [3, 4, 5, 6]  # [1, 2) s, as the plain retake
    # so the decoded track is the source's exactly
    wave_a, wave_b = store.open(fox["vocode"])["waveform"], store.open(pounce["vocode"])["waveform"]
    np.testing.assert_array_equal(wave_b, wave_a)


def test_extend(readme_runs):
    root, cache, results = readme_runs
    out = root / "out" / "fox_extend.mp4"
    assert frames_of(out) == 49 + 24 and "Audio: aac" in probe(out)
    store = Store(cache)
    src, ext = store.load_run("fox")["stages"]["refine"], store.load_run("fox_extend")["stages"]["retake"]
    a, b = store.open(src), store.open(ext)
    assert b["video_latent"].shape[2] == a["video_latent"].shape[2] + 3
    np.testing.assert_array_equal(b["video_latent"][:, :, :7], a["video_latent"])
    status = ltx(cache, "status", "fox_extend")
    assert re.search(r"^retake\s+cached", status.stdout, re.M), status.stdout


def test_kill_during_retake_resumes_bit_identical(readme_runs):
    root, cache, _ = readme_runs
    args = ["retake", "fox", "--start-time", "0.5", "--end-time", "1", "--prompt", "A hare", "--steps", "6",
            "--output-path", str(root / "out" / "killed.mp4")]  # fmt: skip
    full = ltx(cache, *args)
    store = Store(cache)
    stages = store.load_run("killed")["stages"]
    key = stages["retake"]
    reference = store.open(key).load()
    for label in ("retake", "decode", "decode_audio", "vocode", "mux"):  # all of it is computed again
        store.remove(stages[label])
    proc = subprocess.Popen(
        [sys.executable, "-m", "stages.cli", "--cache-dir", str(cache), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline, seen = time.time() + 300, ""
    while time.time() < deadline:
        line = proc.stderr.readline()
        seen += line
        if re.match(r"retake: step [2-4]/6", line) or not line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert "retake: step" in seen and not store.exists(key), seen
    r = ltx(cache, *args)
    assert re.search(r"retake: resuming from step [2-6]/6", r.stderr), r.stderr
    resumed = store.open(key)
    for name, value in reference.items():
        assert np.array_equal(value, resumed[name]), name
    assert "mux" in ran(full.stderr)


def test_keep_audio_of_a_silent_run_is_refused(readme_runs, tmp_path):
    """A run made with --no-audio has audio latents nobody heard: --keep-audio on it is one line, exit 1,
    and nothing is written."""
    from test_bad_inputs import _snapshot

    root, cache, _ = readme_runs
    ltx(
        cache,
        "generate",
        "--prompt",
        "A silent fox",
        *SOURCE,
        "--no-audio",
        "--output-path",
        str(tmp_path / "mute.mp4"),
    )
    before = _snapshot(cache)
    r = ltx(cache, "retake", "mute", "--start-time", "0", "--end-time", "1", "--keep-audio", "--prompt", "x",
            "--output-path", str(tmp_path / "x.mp4"), check=False)  # fmt: skip
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "made with --no-audio" in r.stderr and "drop --keep-audio" in r.stderr, r.stderr
    assert _snapshot(cache) == before and not (tmp_path / "x.mp4").exists()
