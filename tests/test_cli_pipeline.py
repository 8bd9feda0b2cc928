"""The staged pipeline from the command line, on the built-in tiny model, in real subprocesses."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cache.store import Store
from stages.mux import probe

SMALL = ["--height", "64", "--width", "128", "--num-frames", "9"]
PROMPT = ["--prompt", "a red fox trots through fresh snow"]


def ltx(cache: Path, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [sys.executable, "-m", "stages.cli", "--cache-dir", str(cache), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    if check:
        assert r.returncode == 0, r.stderr
    return r


def ran(stderr: str) -> list[str]:
    return re.findall(r"^ran (\S+) ", stderr, flags=re.M)


def cached(stderr: str) -> list[str]:
    return re.findall(r"^cached (\S+) ", stderr, flags=re.M)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("pipeline")
    out = root / "fox.mp4"
    r = ltx(root / "cache", "generate", *PROMPT, *SMALL, "--output-path", str(out))
    return root, out, r


def test_generate_writes_playable_mp4_with_audio(first_run):
    root, out, r = first_run
    assert out.stat().st_size > 1000
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600: the user's own file
    info = probe(out)
    assert re.search(r"Video: h264.*64x128|Video: h264.*128x64", info), info
    assert "Audio: aac" in info, info
    assert sorted(ran(r.stderr)) == sorted(
        ["encode", "denoise", "upsample", "refine", "decode", "decode_audio", "vocode", "mux"]
    )
    assert "random weights" in r.stderr


def test_rerun_is_all_cached_and_loads_nothing(first_run):
    root, out, _ = first_run
    r = ltx(root / "cache", "generate", *PROMPT, *SMALL, "--output-path", str(out))
    assert ran(r.stderr) == []
    assert cached(r.stderr) == ["mux"]  # demand-driven: the final artifact exists, nothing upstream is opened


def test_tiling_change_reruns_only_decode_and_mux(first_run):
    root, out, _ = first_run
    r = ltx(
        root / "cache",
        "generate",
        *PROMPT,
        *SMALL,
        "--tiling",
        "aggressive",
        "--output-path",
        str(root / "t.mp4"),
    )
    assert sorted(ran(r.stderr)) == ["decode", "mux"]


def test_seed_change_reuses_prompt_encoding(first_run):
    root, out, _ = first_run
    r = ltx(root / "cache", "generate", *PROMPT, *SMALL, "--seed", "11", "--output-path", str(root / "s.mp4"))
    assert "encode" not in ran(r.stderr)
    assert "cached encode" in r.stderr
    assert {"denoise", "refine", "decode", "mux"} <= set(ran(r.stderr))


def test_stage_alone_gives_same_key_and_bits(first_run, tmp_path):
    root, _, _ = first_run
    fresh = tmp_path / "cache"
    keys = {}
    for step in ["encode", "denoise", "upsample", "refine", "decode", "decode-audio", "vocode"]:
        r = ltx(fresh, step, "steprun", *PROMPT, *SMALL)
        keys[step] = r.stdout.strip().splitlines()[-1]
    full = Store(root / "cache")
    alone = Store(fresh)
    for step, key in keys.items():
        assert full.exists(key), f"{step} key {key[:8]} differs from the generate run"
        a, b = full.open(key), alone.open(key)
        for name in a.names:
            assert np.array_equal(a[name], b[name]), (step, name)


def test_redecode_a_run_with_other_tiling(first_run):
    root, _, _ = first_run
    r = ltx(root / "cache", "decode", "fox", "--tiling", "conservative")
    assert ran(r.stderr) == ["decode"]
    status = ltx(root / "cache", "status", "fox")
    assert re.search(r"^decode\s+cached", status.stdout, flags=re.M), status.stdout
    assert re.search(r"^encode\s+cached", status.stdout, flags=re.M)
    # --force recomputes it from its (cached) input and does not read the new frames back
    forced = ltx(root / "cache", "decode", "fox", "--tiling", "conservative", "--force")
    assert ran(forced.stderr) == ["decode"] and cached(forced.stderr) == ["refine"], forced.stderr
    assert forced.stdout.split()[-1] == r.stdout.split()[-1]  # the same key


def test_redecode_decoder_choice_on_a_conv_only_model(first_run):
    """LTX-2.0 has the conv decoder only: `--decoder conv` is its default (the same decode, cached);
    `--decoder diffusion` is a one-line error and writes nothing."""
    root, _, _ = first_run
    r = ltx(root / "cache", "decode", "fox", "--decoder", "conv", "--tiling", "default")
    assert cached(r.stderr) == ["decode"] and not ran(r.stderr), r.stderr
    before = sorted(p.name for p in (root / "cache").rglob("*"))
    bad = ltx(root / "cache", "decode", "fox", "--decoder", "diffusion", check=False)
    assert bad.returncode == 1
    lines = [x for x in bad.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "has no diffusion video decoder" in lines[0] and "--decoder conv" in lines[0]
    assert sorted(p.name for p in (root / "cache").rglob("*")) == before


def test_kill_during_denoise_resumes_bit_identical(first_run, tmp_path):
    root, _, _ = first_run
    cache = tmp_path / "cache"
    args = [
        sys.executable,
        "-m",
        "stages.cli",
        "--cache-dir",
        str(cache),
        "denoise",
        "killed",
        *PROMPT,
        *SMALL,
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, seen = time.time() + 300, ""
    while time.time() < deadline:
        line = proc.stderr.readline()
        seen += line
        if re.match(r"denoise: step [3-7]/8", line):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert "denoise: step" in seen, seen
    r = ltx(cache, "denoise", "killed", *PROMPT, *SMALL)
    assert re.search(r"denoise: resuming from step [1-8]/8", r.stderr), r.stderr
    key = r.stdout.strip().splitlines()[-1]
    reference = Store(root / "cache").open(key)  # the uninterrupted run computed the same key
    resumed = Store(cache).open(key)
    for name in reference.names:
        assert np.array_equal(reference[name], resumed[name]), name


def test_bad_inputs_exit_1_and_write_nothing(tmp_path):
    cache = tmp_path / "cache"
    for args, needle in [
        (["--prompt", "   "], "--prompt is empty"),
        ([*PROMPT, "--num-frames", "100"], "97"),
        ([*PROMPT, "--height", "100"], "divisible by 64"),
        ([*PROMPT, "--pipeline", "turbo"], "--pipeline"),
        ([*PROMPT, "--image", str(tmp_path / "missing.png"), "0", "1.0"], "does not exist"),
    ]:
        r = ltx(cache, "generate", *args, "--output-path", str(tmp_path / "x.mp4"), check=False)
        assert r.returncode == 1, (args, r.stderr)
        assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert not cache.exists() or not any(cache.rglob("*")), list(cache.rglob("*"))


def test_image_to_video_keeps_the_conditioned_frame(tmp_path):
    """Frame 0 at strength 1 replaces the first latent frame and stays clean through stage 1; a
    keyframe at frame 8 is appended as tokens (and dropped from the output latent)."""
    import imageio.v3 as iio

    img = tmp_path / "img.png"
    iio.imwrite(img, (np.random.RandomState(0).rand(100, 150, 3) * 255).astype(np.uint8))
    cache = tmp_path / "cache"
    args = [
        *PROMPT,
        *SMALL[:4],
        "--num-frames",
        "17",
        "--image",
        str(img),
        "0",
        "1.0",
        "--image",
        str(img),
        "8",
        "0.5",
    ]
    r = ltx(cache, "denoise", "i2v", *args)
    store = Store(cache)
    run = store.load_run("i2v")
    cond = store.open(run["stages"]["condition"])
    latent = store.open(r.stdout.strip().splitlines()[-1])["video_latent"]
    assert latent.shape == (1, 128, 3, 1, 2)
    assert np.array_equal(latent[:, :, :1], cond["latent0"])
    assert not np.array_equal(latent[:, :, 1:2], cond["latent1"])


def test_readme_main_job_writes_playable_mp4(tmp_path):
    """The README's main job is `just demo`: run the justfile's exact demo command (fresh cache, fresh
    working directory) and probe its output with ffmpeg."""
    import shlex

    recipe = Path(__file__).parents[1].joinpath("justfile").read_text().split("\ndemo:\n", 1)[1]
    command = shlex.split(recipe.splitlines()[0].strip())
    assert command[:2] == ["ltx", "generate"]
    r = subprocess.run(
        [sys.executable, "-m", "stages.cli", *command[1:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "LTX_CACHE": str(tmp_path / "cache")},
        timeout=900,
    )
    assert r.returncode == 0, r.stderr
    out = tmp_path / command[command.index("--output-path") + 1]
    info = probe(out)
    assert "Video: h264" in info and "Audio: aac" in info, info
    assert re.search(r"Duration: 00:00:01\.0\d", info), info  # 25 frames at 24 fps


def test_status_explains_stale_stages(first_run, tmp_path):
    root, _, _ = first_run
    store = Store(root / "cache")
    run = store.load_run("fox")
    run["stages"]["decode"] = "0" * 64  # as if decoded with other settings by an older recipe
    run["recipes"]["decode"]["params"]["tiling"] = "none"
    run["recipes"]["vocode"]["version"] = 0
    store.save_run("fox-old", run)
    out = ltx(root / "cache", "status", "fox-old").stdout
    assert re.search(r"^decode\s+cached\s+\w{8} \(was 00000000: tiling none -> \w+\)", out, flags=re.M), out
    assert re.search(r"^encode\s+cached", out, flags=re.M), out
    assert re.search(r"^mux\s+(cached|missing)", out, flags=re.M), out


def test_steps_take_inputs_by_key_prefix(first_run):
    """`ltx decode KEYPREFIX --tiling aggressive` decodes a saved latent given by key; the artifact is the
    one `generate --tiling aggressive` made (same key)."""
    root, _, _ = first_run
    store = Store(root / "cache")
    refine_key = store.load_run("fox")["stages"]["refine"]
    r = ltx(root / "cache", "decode", refine_key[:10], "--tiling", "aggressive")
    assert ran(r.stderr) == [] and cached(r.stderr) == ["decode"], r.stderr
    decode_key = r.stdout.strip()
    assert store.load_run("t")["stages"]["decode"] == decode_key
    bad = ltx(root / "cache", "vocode", refine_key[:10], check=False)
    assert bad.returncode == 1 and "is a refine artifact" in bad.stderr, bad.stderr
