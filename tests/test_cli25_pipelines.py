"""Every pipeline on the tiny LTX-2.5 from the command line (`ltx generate --model tiny-2.5 --pipeline P`), run
in-process through stages.cli.main on one shared cache (the prompt is encoded once): each writes a playable
file, with what 1.2.0's pipeline of that name does on a 2.5 checkpoint -- dev, dev-two-stage and hq predict the
duration (the reference's pipelines with a DurationPredictor), keyframes, ic-lora and a2v take --num-frames
(default 25 on the tiny models; theirs have none); dev-two-stage and hq decode stage 1's audio. The tiny 2.5
has no IC-LoRA of its own: the test writes one (the distilled LoRA's weights, reference_downscale_factor 2);
without --lora, and --auto-duration with keyframes or ic-lora, are one-line errors (tests/test_bad_inputs.py)."""

from __future__ import annotations

import re
import wave
from pathlib import Path

import numpy as np
import pytest
from test_bad_inputs import run_cli
from test_cli_keyframes_iclora import _video

from stages.mux import probe

PROMPT = ["--prompt", "a red fox trots through fresh snow"]
SMALL = ["--height", "64", "--width", "128"]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, str]:
    import mlx.core as mx
    from PIL import Image

    from ltx.weights import tiny

    root = tmp_path_factory.mktemp("media25")
    rng = np.random.RandomState(0)
    Image.fromarray((rng.rand(48, 64, 3) * 255).astype(np.uint8)).save(root / "a.png")
    with wave.open(str(root / "a.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((np.sin(np.arange(24000) / 7.0) * 8000).astype(np.int16).tobytes())
    model = tiny.create("2.5", root / "tiny-2.5")
    weights = mx.load(str(model / "loras" / "distilled_lora.safetensors"))
    mx.save_safetensors(str(root / "ic25.safetensors"), weights, metadata={"reference_downscale_factor": "2"})
    return {
        "image": str(root / "a.png"),
        "wav": str(root / "a.wav"),
        "ref": _video(root / "ref.mp4", 17, 72, 100),
        "ic_lora": str(root / "ic25.safetensors"),
        "cache": str(root / "cache"),
        "out": str(root / "out"),
    }


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    rc = run_cli(argv)
    out = capsys.readouterr()
    return rc, out.out + out.err


CASES = {  # pipeline -> its extra arguments; num_frames: None where the duration is predicted
    "dev": (["--steps", "2"], None),
    "dev-two-stage": (["--steps", "2"], None),
    "hq": (["--steps", "2"], None),
    "keyframes": (["--steps", "2", "--image", "{image}", "0", "1.0", "--image", "{image}", "24", "0.8"], 25),
    "ic-lora": (
        [
            "--height",
            "128",
            "--width",
            "256",
            "--num-frames",
            "9",
            "--lora",
            "{ic_lora}",
            "1.0",
            "--video-conditioning",
            "{ref}",
            "1.0",
        ],
        9,
    ),  # fmt: skip
    "a2v": (["--steps", "2", "--audio-path", "{wav}"], 25),
}


def _generate(media, capsys, pipeline: str) -> Path:
    extra = CASES[pipeline][0]
    out = Path(media["out"]) / f"{pipeline}.mp4"
    args = ["generate", "--model", "tiny-2.5", "--pipeline", pipeline, *PROMPT]
    args += [] if pipeline == "ic-lora" else SMALL
    args += [a.format(**media) for a in extra] + ["--output-path", str(out)]
    rc, log = _cli(["--cache-dir", media["cache"], *args], capsys)
    assert rc == 0, log
    return out


@pytest.mark.parametrize("pipeline", list(CASES))
def test_pipeline_on_tiny25_writes_a_playable_file(media, capsys, pipeline):
    from cache.store import Store

    frames = CASES[pipeline][1]
    out = _generate(media, capsys, pipeline)
    height, width = (128, 256) if pipeline == "ic-lora" else (64, 128)
    info = probe(out)
    assert re.search(rf"Video: h264.*{width}x{height}", info) and "Audio: aac" in info, info
    run = Store(media["cache"]).load_run(pipeline)
    assert run["options"]["num_frames"] == frames, run["options"]
    recipes, stages = run["recipes"], run["stages"]
    assert (recipes["encode"]["params"]["duration"] is None) == (frames is not None)  # predicted in encode
    audio_from = recipes["decode_audio"]["inputs"]["latents"] if "decode_audio" in recipes else None
    if pipeline in ("dev-two-stage", "hq"):  # 1.2.0 decodes stage 1's audio; stage 2 refines the video
        assert audio_from == stages["denoise"]
    elif pipeline in ("keyframes", "ic-lora"):
        assert audio_from == stages["refine"]
    if pipeline != "dev":
        sampler = "res2s" if pipeline == "hq" else "euler"
        assert recipes["denoise"]["params"]["sampler"] == sampler


def test_hq_with_the_predicted_length_is_hq_with_that_length(media, capsys):
    """hq shifts its stage-1 schedule for the token count (the reference's HQ pipeline): with the duration
    predicted, once the encode stage knows it; the same latents as --num-frames set to the predicted count."""
    from cache.store import Store

    store = Store(media["cache"])
    if store.load_run("hq") is None:  # run alone: the parametrized test has not made it
        _generate(media, capsys, "hq")
    predicted = store.load_run("hq")
    frames = int(np.asarray(store.open(predicted["stages"]["encode"]).load()["num_frames"]).reshape(-1)[0])
    out = Path(media["out"]) / "hq-fixed.mp4"
    args = ["generate", "--model", "tiny-2.5", "--pipeline", "hq", *PROMPT, *SMALL, "--steps", "2"]
    rc, log = _cli(
        ["--cache-dir", media["cache"], *args, "--num-frames", str(frames), "--output-path", str(out)], capsys
    )
    assert rc == 0, log
    fixed = store.load_run("hq-fixed")
    assert predicted["recipes"]["denoise"]["params"]["sigmas"] == []
    assert predicted["recipes"]["denoise"]["params"]["shift_steps"] == 2
    assert len(fixed["recipes"]["denoise"]["params"]["sigmas"]) == 3
    a, b = (store.open(r["stages"]["denoise"]).load() for r in (predicted, fixed))
    for name in ("video_latent", "audio_latent"):
        np.testing.assert_array_equal(a[name], b[name])


def test_retake_of_a_two_stage_run_keeps_the_audio_it_decoded(media, capsys):
    """A retake of a 2.5 dev-two-stage run starts from the audio that run decoded (stage 1's), not stage 2's."""
    from cache.store import Store

    store = Store(media["cache"])
    if store.load_run("dev-two-stage") is None:  # run alone: the parametrized test has not made it
        _generate(media, capsys, "dev-two-stage")
    source = store.load_run("dev-two-stage")["stages"]
    out = Path(media["out"]) / "retake25.mp4"
    args = ["retake", "dev-two-stage", "--start-time", "0.3", "--end-time", "0.6", *PROMPT, "--steps", "2"]
    rc, log = _cli(["--cache-dir", media["cache"], *args, "--output-path", str(out)], capsys)
    assert rc == 0, log
    assert "Video: h264" in probe(out) and "Audio: aac" in probe(out)
    inputs = store.load_run("retake25")["recipes"]["retake"]["inputs"]
    assert inputs["video"] == source["refine"] and inputs["audio"] == source["denoise"]
