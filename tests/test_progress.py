"""Progress reporting (stages/progress.py) and the contact sheet (stages/preview.py), from the command
line on the tiny model: --json events, a live bar in a terminal (a pty), today's plain lines otherwise,
and `ltx preview` / generate's out/x.png."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from cache.store import Store

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--height", "64", "--width", "128", "--num-frames", "9"]
PROMPT = ["--prompt", "a red fox trots through fresh snow"]
STAGES = ["encode", "denoise", "upsample", "refine", "decode", "decode_audio", "vocode", "mux"]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("LTX_DEBUG", "LTX_MODEL", "LTX_CACHE")}
    return {**env, "PYTHONPATH": str(REPO)}


def ltx(cache: Path, *args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [sys.executable, "-m", "stages.cli", "--cache-dir", str(cache), *args],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=cwd,
        timeout=600,
    )
    if check:
        assert r.returncode == 0, r.stderr
    return r


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]  # every line must parse


@pytest.fixture(scope="module")
def json_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("progress")
    r = ltx(
        root / "cache", "generate", *PROMPT, *SMALL, "--output-path", str(root / "out" / "x.mp4"), "--json"
    )
    return root, r


def test_json_events_cover_every_stage_and_end_with_the_outputs(json_run):
    root, r = json_run
    evs = events(r.stdout)
    assert {e["event"] for e in evs} == {"start", "progress", "end", "output"}
    starts = {e["stage"]: e for e in evs if e["event"] == "start"}
    ends = {e["stage"]: e for e in evs if e["event"] == "end"}
    assert sorted(starts) == sorted(ends) == sorted(STAGES)
    for stage in STAGES:
        assert starts[stage]["key"] == ends[stage]["key"] and len(ends[stage]["key"]) == 64
        assert ends[stage]["cached"] is False and ends[stage]["seconds"] >= 0
        assert evs.index(starts[stage]) < evs.index(ends[stage])
    steps = [e for e in evs if e["event"] == "progress" and e["stage"] == "denoise"]
    assert [e["done"] for e in steps] == list(range(9)) and {e["total"] for e in steps} == {8}
    assert steps[0]["eta"] is None and steps[1]["eta"] > 0 and steps[-1]["eta"] == 0
    assert all(e["unit"] == "step" and e["seconds"] >= 0 for e in steps)
    out = evs[-1]
    assert out["event"] == "output" and out["run"] == "x"
    assert out["paths"] == [str(root / "out" / "x.mp4"), str(root / "out" / "x.png")]
    assert {k: out["keys"][k] for k in STAGES} == {s: ends[s]["key"] for s in STAGES}
    assert all(Path(p).is_file() for p in out["paths"])
    assert not re.search(r"^(ran|cached) ", r.stderr, flags=re.M), r.stderr  # the events say it


def test_json_rerun_reports_cached_stages_and_status(json_run):
    root, _ = json_run
    r = ltx(
        root / "cache", "generate", *PROMPT, *SMALL, "--output-path", str(root / "out" / "x.mp4"), "--json"
    )
    evs = events(r.stdout)
    assert [(e["event"], e["stage"], e["cached"]) for e in evs[:-1]] == [
        ("start", "mux", True),
        ("end", "mux", True),
    ]
    assert evs[-1]["event"] == "output"
    status = events(ltx(root / "cache", "status", "x", "--json").stdout)
    assert [e["stage"] for e in status] == STAGES and {e["state"] for e in status} == {"cached"}
    assert all(e["event"] == "status" and len(e["key"]) == 64 for e in status)


def test_json_step_command_puts_its_key_in_an_event(json_run):
    root, _ = json_run
    r = ltx(root / "cache", "decode", "tiles", *PROMPT, *SMALL, "--tiling", "64:32,16:8", "--json")  # 3 tiles
    evs = events(r.stdout)
    tiles = [e for e in evs if e["event"] == "progress"]
    assert [(e["done"], e["total"], e["unit"]) for e in tiles] == [(d, 3, "tile") for d in range(4)]
    assert evs[-1] == {
        "event": "output",
        "run": "tiles",
        "paths": [],
        "keys": {"decode": [e["key"] for e in evs if e["event"] == "end" and e["stage"] == "decode"][0]},
    }


def test_plain_lines_when_not_a_terminal_and_no_preview(json_run):
    root, _ = json_run
    out = root / "out" / "plain.mp4"
    r = ltx(
        root / "cache", "generate", *PROMPT, *SMALL, "--seed", "11", "--output-path", str(out), "--no-preview"
    )
    assert r.stdout == ""
    assert re.search(r"^cached encode [0-9a-f]{8}$", r.stderr, flags=re.M), r.stderr
    assert re.search(r"^ran denoise [0-9a-f]{8} in \d+\.\d s$", r.stderr, flags=re.M), r.stderr
    assert re.search(r"^denoise: step 3/8 \(\d+\.\d\d s/step\)$", r.stderr, flags=re.M), r.stderr
    assert len(re.findall(r"^denoise: ~[0-9.]+ s for 8 steps$", r.stderr, flags=re.M)) == 1, r.stderr
    assert re.search(r"^refine: ~[0-9.]+ s for 3 steps$", r.stderr, flags=re.M), r.stderr
    assert "\x1b[" not in r.stderr  # no terminal codes
    assert out.is_file() and not out.with_suffix(".png").exists()


def _in_terminal(cache: Path, *args: str) -> tuple[int, str, str]:
    """Run with stderr on a pty (a terminal) and stdout piped; (exit code, the terminal's text, stdout)."""
    master, slave = os.openpty()
    env = {**_env(), "TERM": "xterm-256color", "COLUMNS": "160"}
    p = subprocess.Popen(
        [sys.executable, "-m", "stages.cli", "--cache-dir", str(cache), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    screen = bytearray()

    def read() -> None:
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            screen.extend(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stdout = p.stdout.read().decode()
    rc = p.wait(timeout=600)
    reader.join(timeout=30)
    os.close(master)
    return rc, screen.decode(errors="replace"), stdout


def test_terminal_shows_a_live_bar_with_eta(json_run):
    assert pty  # the module is here: a POSIX system
    root, _ = json_run
    rc, screen, stdout = _in_terminal(root / "cache", "denoise", "tty", *PROMPT, *SMALL, "--seed", "12")
    assert rc == 0, screen
    assert "\x1b[" in screen  # rendered by rich, live
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert re.search(
        r"denoise [0-9a-f]{8} \S+ 3/8 steps \d:\d\d:\d\d eta \d:\d\d:\d\d \d+\.\d\d s/step", text
    ), text
    assert "eta -:--:--" in text  # before the first step is timed
    assert re.search(r"denoise: ~[0-9.]+ s for 8 steps", text) and re.search(
        r"ran denoise [0-9a-f]{8} in", text
    )
    assert not re.search(r"^denoise: step \d", text, flags=re.M)  # the bar replaces the step lines
    key = stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", key), stdout  # piped stdout keeps the bare key
    assert Store(root / "cache").exists(key)


def _frames(root: Path, run: str) -> np.ndarray:
    store = Store(root / "cache")
    return store.open(store.load_run(run)["stages"]["decode"])["frames"]  # the other tests leave run x as is


def test_generate_writes_the_contact_sheet_beside_the_video(json_run):
    root, _ = json_run
    frames = _frames(root, "x")
    assert frames.shape == (9, 64, 128, 3)
    png = iio.imread(root / "out" / "x.png")
    assert png.shape == (2 * 64, 4 * 128, 3)  # 8 frames, 4 columns
    picked = [0, 1, 2, 3, 5, 6, 7, 8]  # 8 of 9, evenly spaced, first and last included
    for i, f in enumerate(picked):
        r, c = divmod(i, 4)
        assert np.array_equal(png[r * 64 : (r + 1) * 64, c * 128 : (c + 1) * 128], frames[f]), f


def test_preview_command(json_run, tmp_path):
    root, _ = json_run
    frames = _frames(root, "x")
    out = tmp_path / "sheet.png"
    r = ltx(root / "cache", "preview", "x", "--frames", "4", "--columns", "3", "--output-path", str(out))
    assert f"wrote {out}" in r.stderr
    png = iio.imread(out)
    assert png.shape == (2 * 64, 3 * 128, 3)
    for i, f in enumerate([0, 3, 5, 8]):
        r_, c = divmod(i, 3)
        assert np.array_equal(png[r_ * 64 : (r_ + 1) * 64, c * 128 : (c + 1) * 128], frames[f]), f
    assert not png[64:, 128:].any()  # the empty cells are black
    assert [p.name for p in tmp_path.iterdir()] == ["sheet.png"]  # written atomically: no temp file left
    # by key prefix, with the default path, as JSON
    store = Store(root / "cache")
    key = store.load_run("x")["stages"]["decode"]
    r = ltx(root / "cache", "preview", key[:8], "--json", cwd=tmp_path)
    (ev,) = events(r.stdout)
    assert ev == {
        "event": "output",
        "run": None,
        "paths": [f"preview-{key[:8]}.png"],
        "keys": {"decode": key},
    }
    assert iio.imread(tmp_path / f"preview-{key[:8]}.png").shape == (2 * 64, 4 * 128, 3)
    bad = ltx(root / "cache", "preview", "x/denoise", check=False)
    assert bad.returncode == 1 and "is a denoise artifact" in bad.stderr, bad.stderr


def test_reporter_outside_a_session_uses_echo():
    from stages import progress

    lines: list[str] = []
    rep = progress.reporter(lines.append)
    rep.progress("denoise", "ab" * 32, 0, 4, "step")
    rep.progress("denoise", "ab" * 32, 1, 4, "step")
    rep.progress("denoise", "ab" * 32, 2, 4, "step")
    rep.end("denoise", "ab" * 32, 41.25)
    rep.cached("encode", "cd" * 32, 0.1)
    assert [re.sub(r"\d+\.\d+", "N", line) for line in lines] == [
        "denoise: step 1/4 (N s/step)",
        "denoise: ~N s for 4 steps",
        "denoise: step 2/4 (N s/step)",
        "ran denoise abababab in N s",
        "cached encode cdcdcdcd",
    ]
    assert lines[3] == "ran denoise abababab in 41.2 s"


def test_json_failure_is_an_error_event(tmp_path):
    r = ltx(tmp_path / "cache", "generate", *PROMPT, "--height", "65", "--json", check=False)
    assert r.returncode == 1
    (ev,) = events(r.stdout)
    assert ev["event"] == "error" and "--height" in ev["message"] and ev["type"] == "LtxError", ev
