"""The everyday CLI on the tiny model: converted and quantized models generate, the output container
follows the extension, `ltx status` says why a stage would run, the reference's guidance option
names, usage errors, and the Python API."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_cli_pipeline import PROMPT, SMALL, ltx, ran

from cache.store import Store
from stages.mux import probe


def _streams(path: Path) -> tuple[str, str]:
    """(container, "Kind:codec ...") as ffmpeg reads the file."""
    info = probe(path)
    container = info.split("Input #0, ", 1)[1].split(",")[0]
    streams = re.findall(r"Stream #\S+: (\w+): (\w+)", info)
    return container, " ".join(f"{kind}:{codec}" for kind, codec in streams)


@pytest.mark.parametrize("quantize", [None, 8, 4])
def test_converted_models_generate(tmp_path, quantize):
    model = tmp_path / "converted"
    args = ["--quantize", str(quantize)] if quantize else []
    ltx(tmp_path / "cache", "convert", "tiny", str(model), *args)
    out = tmp_path / "q.mp4"
    r = ltx(tmp_path / "cache", "generate", "--model", str(model), *PROMPT, *SMALL, "--output-path", str(out))
    assert "denoise" in ran(r.stderr) and out.stat().st_size > 1000
    assert _streams(out)[1] == "Video:h264 Audio:aac"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("everyday")
    ltx(root / "cache", "generate", *PROMPT, *SMALL, "--output-path", str(root / "fox.mp4"))
    return root


@pytest.mark.parametrize(
    ("name", "container", "streams"),
    [
        ("v.mkv", "matroska", "Video:h264 Audio:aac"),
        ("v.mov", "mov", "Video:h264 Audio:aac"),
        ("a.flac", "flac", "Audio:flac"),
        ("a.wav", "wav", "Audio:pcm_s16le"),
    ],
)
def test_container_follows_the_extension(made, name, container, streams):
    out = made / name
    r = ltx(made / "cache", "generate", *PROMPT, *SMALL, "--output-path", str(out))
    assert ran(r.stderr) == []  # the same streams: only the container differs
    assert _streams(out) == (container, streams)


def test_no_audio_and_output_audio(made):
    video, audio = made / "mute.mp4", made / "sound.flac"
    r = ltx(made / "cache", "generate", *PROMPT, *SMALL, "--output-path", str(video), "--no-audio")
    assert ran(r.stderr) == ["mux"]  # a mux of the decoded frames alone; no audio stage is needed
    assert _streams(video)[1] == "Video:h264"
    ltx(
        made / "cache",
        "generate",
        *PROMPT,
        *SMALL,
        "--output-path",
        str(made / "x.mp4"),
        "--output-audio",
        str(audio),
    )
    assert _streams(audio) == ("flac", "Audio:flac")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--output-path", "x.png"], "--output-path x.png: .png is not a container"),
        (["--output-path", "x.mp4", "--output-audio", "x.mp3"], "--output-audio x.mp3: .mp3 is not an audio"),
        (["--output-path", "x.wav", "--no-audio"], "audio only, but --no-audio"),
        (["--tiling", "bogus"], "--tiling: tiling 'bogus' is neither a preset"),
        (["--image-crf", "99"], "--image-crf 99 must be an integer from 0 to 51"),
        (["--video-skip-step", "-1"], "--video-skip-step -1 must be an integer >= 0"),
        (["--a2v-guidance-scale", "inf"], "--a2v-guidance-scale inf must be a finite number"),
        (["--video-stg-blocks", "1", "x"], "--video-stg-blocks 'x' is not a valid int"),
        (["--memory-budget", "0"], "--memory-budget 0.0 must be > 0"),
        (["--num-frames", "1000001"], "stage needs about"),
    ],
)
def test_bad_options_fail_before_anything_is_written(tmp_path, args, message):
    cache = tmp_path / "cache"
    r = ltx(cache, "generate", *PROMPT, *SMALL, *args, check=False)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"error: {r.stderr.split('error: ', 1)[1].strip()}"
    ]
    assert message in r.stderr, r.stderr
    assert not cache.exists() or not any(cache.rglob("*")), sorted(cache.rglob("*"))


def test_memory_preflight_refuses_then_force_runs(tmp_path, monkeypatch, capsys):
    """A machine too small for a stage: refused with the estimate and the fixes, nothing written; --force runs
    anyway; once the stages are cached there is nothing left to refuse."""
    from test_bad_inputs import _run_in_process

    from stages import budget

    monkeypatch.setattr(
        budget, "machine_memory", lambda: 10**6
    )  # 1 MB: every stage of the tiny model is over
    cache = tmp_path / "cache"
    argv = ["--cache-dir", str(cache), "generate", *PROMPT, *SMALL, "--output-path", str(tmp_path / "x.mp4")]
    rc, err = _run_in_process(argv, capsys)
    assert rc == 1 and err.count("\n") == 1, err
    assert "but this machine has 0.0 GB" in err and "--force runs anyway" in err and "--quantize 8" in err, (
        err
    )
    assert not cache.exists() or not any(cache.rglob("*")), sorted(cache.rglob("*"))
    rc, err = _run_in_process([*argv, "--force"], capsys)
    assert rc == 0 and (tmp_path / "x.mp4").is_file(), err
    rc, err = _run_in_process(argv, capsys)  # all cached: nothing is estimated to run
    assert rc == 0, err


def test_usage_error_shows_usage_and_exits_2(tmp_path):
    r = ltx(tmp_path / "cache", "generate", "--bogus", check=False)
    assert r.returncode == 2
    assert (
        r.stderr.startswith("Usage: ")
        and "generate [OPTIONS]" in r.stderr
        and "No such option: --bogus" in r.stderr
    )


def test_status_says_why_a_stage_would_run(made):
    out = ltx(made / "cache", "status", "fox", "--seed", "11", "--tiling", "aggressive").stdout
    assert re.search(r"^encode\s+cached", out, flags=re.M), out
    assert re.search(r"^denoise\s+stale\s+\w{8} -> \w{8} \(would run: seed 10 -> 11\)$", out, flags=re.M), out
    assert re.search(
        r"^decode\s+stale .*\(would run: tiling default -> aggressive, seed 10 -> 11\)$", out, flags=re.M
    ), out
    assert re.search(r"^upsample\s+stale .*\(would run: upstream denoise changed\)$", out, flags=re.M), out
    assert Store(made / "cache").load_run("fox")["options"]["seed"] == 10  # nothing recorded


def test_reference_guidance_names_and_their_aliases(made):
    def denoise_key(*args):
        out = ltx(made / "cache", "status", "fox", "--pipeline", "dev", "--steps", "2", *args).stdout
        return re.search(r"^denoise\s+\S+\s+\w{8} -> (\w{8})", out, flags=re.M)[1]

    assert denoise_key("--cfg-scale", "2") == denoise_key("--video-cfg-guidance-scale", "2")
    assert denoise_key("--num-inference-steps", "2") == denoise_key()
    assert denoise_key("--stg-scale", "0.5") == denoise_key(
        "--video-stg-guidance-scale", "0.5", "--audio-stg-guidance-scale", "0.5"
    )
    keys = {
        denoise_key(*a)
        for a in (
            (),
            ("--video-stg-blocks", "0"),
            ("--video-stg-blocks",),
            ("--a2v-guidance-scale", "2"),
            ("--v2a-guidance-scale", "2"),
            ("--video-rescale-scale", "0.5"),
            ("--audio-skip-step", "1"),
        )
    }
    assert len(keys) == 7  # each knob reaches the guider


def test_rerun_by_name_writes_where_the_run_wrote(made):
    out = made / "fox.mp4"
    out.unlink()
    r = ltx(made / "cache", "generate", "fox")
    assert f"wrote {out}" in r.stderr and out.stat().st_size > 1000


def test_python_api_generates_and_redecodes(made, monkeypatch):
    from stages import api
    from stages.session import State

    monkeypatch.setattr(State, "cache_dir", State.cache_dir)
    out = made / "api.mp4"
    result = api.generate(
        prompt=PROMPT[1], height=64, width=128, num_frames=9, output_path=out, cache_dir=made / "cache"
    )
    assert result.run == "api" and out in result.paths and len(result.keys["mux"]) == 64
    fox = Store(made / "cache").load_run("fox")["stages"]
    assert result.keys["refine"] == fox["refine"]  # the same graph as the CLI's
    key = api.decode("api", tiling="aggressive", cache_dir=made / "cache")
    assert key != result.keys["decode"] and Store(made / "cache").exists(key)
    with pytest.raises(TypeError, match="unknown option 'hieght'"):
        api.generate(prompt="x", hieght=64)
