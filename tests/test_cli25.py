"""The tiny LTX-2.5 from the command line: generate end to end with the duration predicted from the prompt,
re-decode with the other decoder, and split checkpoints (one file per component, mixed freely, each file's
digest keying only the stages that read it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ltx.weights import tiny

PROMPT = "a red fox trots through fresh snow"


def ltx(cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LTX_MODEL", "LTX_DEBUG", "LTX_CACHE")}
    return subprocess.run(
        [sys.executable, "-m", "stages.cli", "--cache-dir", str(cache), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


def test_generate_tiny25_end_to_end(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "out" / "fox.mp4"
    r = ltx(cache, "generate", "--model", "tiny-2.5", "--prompt", PROMPT, "--height", "64", "--width", "128",
            "--output-path", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 1000 and out.with_suffix(".png").is_file()
    assert "predicted duration:" in r.stdout + r.stderr
    from cache.store import Store

    run = Store(cache).load_run("fox")
    assert run["options"]["num_frames"] is None and run["options"]["auto_duration"] == [1.0, 20.0]
    assert run["recipes"]["denoise"]["params"]["sampler"] == "euler_ancestral"
    assert run["recipes"]["decode"]["params"]["decoder"] == "diffusion"  # the 2.5 default
    assert "duration_head" in run["recipes"]["encode"]["externals"]
    # the same latents re-decoded with the conv decoder: only decode (and mux) run
    r = ltx(cache, "generate", "fox", "--decoder", "conv", "--output-path", str(out))
    assert r.returncode == 0, r.stderr
    assert _ran(r) == ["decode", "mux"], r.stderr


def _ran(r: subprocess.CompletedProcess) -> list[str]:
    return [line.split()[1] for line in (r.stdout + r.stderr).splitlines() if line.startswith("ran ")]


def _frames(path: Path):
    import av
    import numpy as np

    with av.open(str(path)) as f:
        return np.stack([fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)])


def test_decode_run_with_either_decoder(tmp_path):
    """The staged re-decode (README): `ltx decode RUN --decoder conv|diffusion` decodes the run's saved
    latents and nothing upstream; `ltx mux RUN` then writes that decoder's video. Both files play and differ."""
    from stages.mux import probe

    cache = tmp_path / "cache"
    base = ["--model", "tiny-2.5", "--prompt", PROMPT, "--height", "64", "--width", "128", "--num-frames", "9"]  # fmt: skip
    r = ltx(cache, "refine", "fox", *base)  # every stage up to the final latents, no decode
    assert r.returncode == 0, r.stderr
    outs = {}
    for decoder in ("conv", "diffusion"):
        r = ltx(cache, "decode", "fox", "--decoder", decoder)
        assert r.returncode == 0, r.stderr
        assert _ran(r) == ["decode"], r.stderr  # upstream is all cached
        outs[decoder] = tmp_path / f"fox-{decoder}.mp4"
        # the decoder comes back from the run
        r = ltx(cache, "mux", "fox", "--output-path", str(outs[decoder]))
        assert r.returncode == 0, r.stderr
        assert "decode" not in _ran(r) and _ran(r)[-1] == "mux", r.stderr
        assert "Video: h264" in probe(outs[decoder]) and "Audio: aac" in probe(outs[decoder])
    conv, diffusion = _frames(outs["conv"]), _frames(outs["diffusion"])
    assert conv.shape == diffusion.shape == (9, 64, 128, 3)
    assert float(abs(conv.astype(float) - diffusion.astype(float)).mean()) > 1.0  # two decoders, two videos


@pytest.fixture(scope="module")
def split_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("split25")
    model = tiny.create("2.5", root / "tiny-2.5")
    return root, model


def _build(store, **kw):
    from stages import pipeline

    opts = pipeline.Options(prompt=PROMPT, height=64, width=128, **kw)
    nodes, _, _ = pipeline.build(opts, store, preflight=False)
    return nodes


def _split_options(model: Path, **override) -> dict:
    paths = {
        "transformer_path": model / "diffusion_models/transformer.safetensors",
        "text_encoder_path": model / "text_encoders/gemma4",
        "video_vae_path": model / "vae/video_vae.safetensors",
        "audio_vae_path": model / "vae/audio_vae.safetensors",
        "duration_head_path": model / "model_patches/duration_head.safetensors",
        "spatial_upsampler_path": model / "latent_upscale_models/spatial_upscaler_x2.safetensors",
    }
    return {k: str(v) for k, v in {**paths, **override}.items()}


def test_split_paths_are_the_model_folder(split_model, tmp_path):
    """--model FOLDER (the release's layout) and the same files named one by one build the same graph."""
    from cache.store import Store

    _, model = split_model
    store = Store(tmp_path)
    folder = _build(store, model=str(model))
    flags = _build(store, **_split_options(model))
    assert {k: n.key for k, n in folder.items()} == {k: n.key for k, n in flags.items()}
    # the transformer alone: the rest is found around its diffusion_models/ folder
    alone = _build(store, transformer_path=str(model / "diffusion_models/transformer.safetensors"))
    assert {k: n.key for k, n in alone.items()} == {k: n.key for k, n in folder.items()}


# component option -> the stages whose own externals hold its digest
READERS = {
    "transformer_path": {"encode", "denoise", "refine"},  # the transformer file holds the connectors too
    "video_vae_path": {"upsample", "decode"},  # the encoder's statistics; the diffusion decoder
    "audio_vae_path": {"decode_audio", "vocode"},
    "duration_head_path": {"encode"},
}


@pytest.mark.parametrize("option", sorted(READERS))
def test_each_component_keys_only_its_stages(split_model, tmp_path, option):
    """Another file for one component: its digest changes the externals of exactly the stages reading it."""
    from cache.store import Store

    root, model = split_model
    base = _split_options(model)
    src = Path(base[option])
    other = root / f"other-{option}" / src.name
    other.parent.mkdir(exist_ok=True)
    if not other.exists():
        shutil.copyfile(src, other)
        data = bytearray(other.read_bytes())
        data[-1] ^= 1  # one bit of the last weight: another file, same header
        other.write_bytes(bytes(data))
    store = Store(tmp_path)
    a = _build(store, **base)
    b = _build(store, **{**base, option: str(other)})
    changed = {k for k in a if a[k].externals != b[k].externals}
    assert changed == READERS[option]


def test_readme_commands_build(split_model, tmp_path):
    """The README's LTX-2.5 commands: a 2.5 folder with --auto-duration 2 8, the components one by one with
    --num-frames 121; `ltx info tiny-2.5`."""
    from cache.store import Store

    _, model = split_model
    store = Store(tmp_path)
    from stages import pipeline

    nodes, o, _ = pipeline.build(
        pipeline.Options(prompt=PROMPT, model=str(model), auto_duration=(2.0, 8.0)), store, preflight=False
    )
    assert o.num_frames is None and nodes["encode"].params.duration == (2.0, 8.0, 24.0)
    opts = {k: v for k, v in _split_options(model).items() if k != "duration_head_path"}
    nodes, o, _ = pipeline.build(
        pipeline.Options(prompt=PROMPT, num_frames=121, **opts), store, preflight=False
    )
    assert o.num_frames == 121 and nodes["encode"].params.duration is None
    r = ltx(tmp_path / "cache", "info", "tiny-2.5")
    assert r.returncode == 0, r.stderr
    assert "model tiny-2.5 (LTX-2.5)" in r.stdout and "estimated peak memory" in r.stdout
    # the text encoder is Gemma 4, and the duration head is a component (the encode stage loads it)
    assert "Gemma 4 (language model)" in r.stdout and "Gemma 3" not in r.stdout, r.stdout
    assert re.search(r"^  duration head +[\d,]+ params", r.stdout, re.M), r.stdout
    # both video decoders, told apart
    assert "conv video decoder" in r.stdout and "diffusion video decoder" in r.stdout, r.stdout


def test_convert_and_quantize_tiny25(tmp_path):
    """`ltx convert` on the split 2.5 keeps every component (and, as float, every cache key); --quantize 8
    changes only the keys of the stages that read the transformer, and generates."""
    from cache.store import Store
    from stages import pipeline

    cache = tmp_path / "cache"
    for dst, extra in (("f", ()), ("q8", ("--quantize", "8"))):
        r = ltx(cache, "convert", "tiny-2.5", str(tmp_path / dst), *extra)
        assert r.returncode == 0, r.stderr
    store = Store(cache)

    def nodes(model):
        opts = pipeline.Options(prompt=PROMPT, height=64, width=128, model=model)
        return pipeline.build(opts, store, preflight=False)[0]

    tiny25, flt, q8 = nodes("tiny-2.5"), nodes(str(tmp_path / "f")), nodes(str(tmp_path / "q8"))
    assert {k: n.key for k, n in flt.items()} == {k: n.key for k, n in tiny25.items()}
    # quantized: the transformer's identity changes (the stages after it follow through their inputs)
    assert {k for k in tiny25 if tiny25[k].externals != q8[k].externals} == {"denoise", "refine"}
    assert q8["encode"].key == tiny25["encode"].key
    out = tmp_path / "q8.mp4"
    r = ltx(cache, "generate", "--model", str(tmp_path / "q8"), "--prompt", PROMPT, "--height", "64",
            "--width", "128", "--output-path", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 1000
