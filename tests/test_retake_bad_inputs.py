"""Bad sources and spans of `ltx retake` / `ltx extend`: one line "error: ..." naming the value and the fix,
exit code 1, nothing written to the cache (test_bad_inputs.py's contract, run the same way in-process)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_bad_inputs import Case, _check, _run_in_process, _snapshot

sys.path.insert(0, str(Path(__file__).parent / "reference"))
from golden_retake import make_av_file  # noqa: E402  (PyAV and numpy only)

P = ["--prompt", "a hare"]
CASES = {  # id -> (arguments after --cache-dir, given the fixture paths; the needle of the error line)
    "span-empty": (["retake", "{ok}", "--start-time", "0.2", "--end-time", "0.2", *P], "the span is empty"),
    "span-reversed": (["retake", "{ok}", "--start-time", "0.3", "--end-time", "0.1", *P], "must be after"),
    "span-past-end": (
        ["retake", "{ok}", "--start-time", "5", "--end-time", "6", *P],
        "past the end of the video",
    ),
    "span-negative": (["retake", "{ok}", "--start-time", "-1", "--end-time", "0.2", *P], "must be >= 0"),
    "span-nan": (["retake", "{ok}", "--start-time", "nan", "--end-time", "0.2", *P], "finite"),
    "span-missing": (["retake", "{ok}", "--start-time", "0.1", *P], "needs --start-time S and --end-time E"),
    "prompt-empty": (["retake", "{ok}", "--start-time", "0", "--end-time", "0.2"], "--prompt is empty"),
    "source-missing": (
        ["retake", "{root}/nothere.mp4", "--start-time", "0", "--end-time", "1", *P],
        "does not exist",
    ),
    "source-unknown-run": (
        ["retake", "norun", "--start-time", "0", "--end-time", "1", *P],
        "not a video file, a run",
    ),
    "source-not-video": (
        ["retake", "{text}", "--start-time", "0", "--end-time", "1", *P],
        "not a readable video",
    ),
    "source-truncated": (["retake", "{trunc}", "--start-time", "0", "--end-time", "1", *P], "{trunc}"),
    "source-frames": (["retake", "{frames10}", "--start-time", "0", "--end-time", "1", *P], "cut it to 9"),
    "source-size": (["retake", "{size}", "--start-time", "0", "--end-time", "1", *P], "divisible by 32"),
    "source-pipeline": (
        ["retake", "{ok}", "--start-time", "0", "--end-time", "0.2", "--pipeline", "dev-two-stage", *P],
        "does not apply to ltx retake",
    ),
    "keep-both": (
        ["retake", "{ok}", "--start-time", "0", "--end-time", "0.2", "--keep-video", "--keep-audio", *P],
        "nothing to regenerate",
    ),
    "keep-audio-no-track": (
        ["retake", "{silent}", "--start-time", "0", "--end-time", "0.2", "--keep-audio", *P],
        "{silent} has no audio track to keep; drop --keep-audio",
    ),
    "extend-zero": (["extend", "{ok}", "--seconds", "0", *P], "at least one latent frame"),
    "extend-negative": (["extend", "{ok}", "--seconds", "-2", *P], "at least one latent frame"),
    "extend-too-short": (["extend", "{ok}", "--seconds", "0.1", *P], "8 frames = 0.333 s"),
    "extend-inf": (["extend", "{ok}", "--seconds", "inf", *P], "finite"),
}


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("retake_bad")
    f = {"root": str(root), "out": str(root / "out" / "x.mp4")}
    for name, frames, h, w, audio in (
        ("ok", 9, 64, 128, 0.3),
        ("frames10", 10, 64, 128, 0.3),
        ("size", 9, 72, 100, 0.3),
        ("silent", 9, 64, 128, 0),  # no audio track
    ):
        make_av_file(str(root / f"{name}.mp4"), frames, h, w, 24.0, audio)
        f[name] = str(root / f"{name}.mp4")
    (root / "text.mp4").write_text("not a video\n")
    f["text"] = str(root / "text.mp4")
    data = (root / "ok.mp4").read_bytes()
    (root / "trunc.mp4").write_bytes(data[: len(data) // 3])
    f["trunc"] = str(root / "trunc.mp4")
    return f


@pytest.mark.parametrize("case", list(CASES))
def test_bad_retake_input(case: str, fx: dict, tmp_path: Path, capsys, monkeypatch):
    for var in ("LTX_DEBUG", "LTX_MODEL", "LTX_CACHE"):
        monkeypatch.delenv(var, raising=False)
    args, needle = CASES[case]
    cache = tmp_path / "cache"
    argv = ["--cache-dir", str(cache), *[a.format(**fx) for a in args], "--output-path", fx["out"]]
    rc, err = _run_in_process(argv, capsys)
    _check(Case(case, args, needle.format(**fx)), rc, err)
    assert _snapshot(cache) == [], f"{case} wrote to the cache: {_snapshot(cache)}"
    assert not Path(fx["out"]).exists()


@pytest.mark.parametrize("flag", ["--keep-video", "--keep-audio"])
def test_keep_flags_are_retake_only(flag: str, fx: dict, tmp_path: Path, capsys):
    """ltx extend has no --keep-video / --keep-audio (it generates both streams past the end): a usage
    error naming the option, exit 2, nothing written; Options that ask for it anyway are refused too."""
    from stages import options
    from stages.framework import LtxError

    cache = tmp_path / "cache"
    argv = ["--cache-dir", str(cache), "extend", fx["ok"], "--seconds", "1", flag, *P]
    argv += ["--output-path", fx["out"]]
    rc, err = _run_in_process(argv, capsys)
    assert rc == 2 and f"No such option: {flag}" in err, (rc, err)
    assert _snapshot(cache) == [] and not Path(fx["out"]).exists()
    o = options.Options(prompt="a hare", extend_seconds=1.0, **{flag[2:].replace("-", "_"): True})
    src = options.Source(fx["ok"], "video", 9, 64, 128, 24.0, True)
    with pytest.raises(LtxError, match=f"{flag} applies to ltx retake only"):
        options.regenerated(o, src)
