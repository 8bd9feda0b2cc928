"""--pipeline keyframes and --pipeline ic-lora from the command line on the tiny models, in real
subprocesses: each writes a playable file; `ltx status` and `ltx cache show` show the new stages; the
reference video's encode-video artifact is keyed by the file's content and reused; --skip-stage-2 decodes
stage 1 at half size."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from test_cli_pipeline import cached, ltx, ran

from stages.mux import probe

PROMPT = ["--prompt", "a red fox trots through fresh snow"]


def _video(path: Path, frames: int, height: int, width: int, grey: bool = False) -> str:
    import av

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            chans = [127.5 + 120 * np.sin(xx / (6 + c) + yy / 9 + 0.5 * t + c) for c in range(3)]
            img = np.stack(chans[:1] * 3 if grey else chans, -1).clip(0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, str]:
    from PIL import Image

    root = tmp_path_factory.mktemp("media")
    rng = np.random.RandomState(0)
    out = {"root": str(root)}
    for name in ("a", "b"):
        Image.fromarray((rng.rand(48, 64, 3) * 255).astype(np.uint8)).save(root / f"{name}.png")
        out[name] = str(root / f"{name}.png")
    out["ref"] = _video(root / "ref.mp4", 17, 72, 100)
    out["mask"] = _video(root / "mask.mp4", 17, 40, 60, grey=True)
    return out


def test_keyframes_writes_playable_mp4(media, tmp_path):
    out = tmp_path / "kf.mp4"
    frames = ["--image", media["a"], "0", "1.0", "--image", media["b"], "8", "0.9"]
    args = ["--pipeline", "keyframes", *PROMPT, "--height", "64", "--width", "128", "--num-frames", "9"]
    r = ltx(tmp_path / "cache", "generate", *args, *frames, "--steps", "2", "--output-path", str(out))
    info = probe(out)
    assert re.search(r"Video: h264.*128x64", info) and "Audio: aac" in info, info
    assert ran(r.stderr)[:4] == ["encode", "encode", "condition", "denoise"], r.stderr
    assert {"condition", "upsample", "refine", "mux"} <= set(ran(r.stderr))
    r = ltx(tmp_path / "cache", "status", "kf")
    status = r.stdout + r.stderr
    for label in ("encode_negative", "condition", "condition_full", "denoise", "refine"):
        assert re.search(rf"^{label} +cached", status, re.M), status


def test_ic_lora_writes_playable_mp4_and_reuses_the_encoded_reference(media, tmp_path):
    cache = tmp_path / "cache"
    out = tmp_path / "ic.mp4"
    args = ["--model", "tiny-2.3", "--pipeline", "ic-lora", *PROMPT, "--height", "128", "--width", "256"]
    args += ["--num-frames", "9", "--video-conditioning", media["ref"], "0.9"]
    r = ltx(
        cache,
        "generate",
        *args,
        "--conditioning-attention-mask",
        media["mask"],
        "0.5",
        "--output-path",
        str(out),
    )
    info = probe(out)
    assert re.search(r"Video: h264.*256x128", info) and "Audio: aac" in info, info
    assert "encode_video" in ran(r.stderr) and "refine" in ran(r.stderr), r.stderr
    r = ltx(cache, "status", "ic")
    status = r.stdout + r.stderr
    assert re.search(r"^encode_video +cached", status, re.M), status
    show = json.loads(ltx(cache, "cache", "show", "ic/encode_video").stdout.split("\nlineage")[0])
    assert set(show["externals"]) == {"checkpoint", "video"}
    assert show["params"] == {"height": 32, "width": 64, "start_frame": 0, "max_frames": 9}
    lineage = ltx(cache, "cache", "show", "ic/denoise").stdout.split("\nlineage")[1]
    assert "encode_video" in lineage and "encode" in lineage, lineage
    # the step command alone: the same key, cached
    key = ltx(cache, "encode-video", "ic").stdout.strip().splitlines()[-1]
    assert key == show["key"]
    # another seed and --skip-stage-2: the encoded reference (and the prompt) are reused; stage 1 decoded
    half = tmp_path / "half.mp4"
    r = ltx(cache, "generate", *args, "--seed", "3", "--skip-stage-2", "--output-path", str(half))
    assert {"encode", "encode_video"} <= set(cached(r.stderr)), r.stderr
    assert "refine" not in ran(r.stderr) and "upsample" not in ran(r.stderr), r.stderr
    assert re.search(r"Video: h264.*128x64", probe(half)), probe(half)


def test_ic_lora_from_python(media, tmp_path):
    """stages.api takes the reference video and the mask as (path, strength) tuples."""
    from stages import api

    out = tmp_path / "api.mp4"
    result = api.generate(
        cache_dir=tmp_path / "cache", pipeline="ic-lora", prompt="a fox", height=128, width=256, num_frames=9,
        video_conditioning=[(media["ref"], 1.0)], conditioning_attention_mask=(media["mask"], 0.5),
        skip_stage_2=True, output_path=out, no_preview=True,
    )  # fmt: skip
    assert result.paths == [out] and "encode_video" in result.keys and "refine" not in result.keys
    assert re.search(r"Video: h264.*128x64", probe(out))
