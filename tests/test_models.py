"""`--model` with real-weights layouts: a folder laid out like the official Hugging Face repo (several
checkpoints, fp8 variants, the distilled LoRA, spatial and temporal upscalers; Gemma elsewhere), and the
same repo in a Hugging Face cache (HF_HUB_CACHE). All files derive from the tiny model's, so every
pipeline runs end to end through the CLI in seconds. `ltx models` lists what it sees.

The folder runs compute every stage; the cache runs hold byte-identical files, so they resolve, print
their choice and write their mp4 from the same content-addressed artifacts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from test_bad_inputs import _run_in_process

from stages.mux import probe

SMALL = ["--height", "64", "--width", "128", "--num-frames", "9"]
PROMPT = ["--prompt", "a red fox trots through fresh snow"]
STEPS = {"distilled": [], "dev": ["--steps", "2"], "dev-two-stage": ["--steps", "2"]}
REPO, GEMMA_REPO = "Lightricks/LTX-2", "google/gemma-3-12b-it-qat-q4_0-unquantized"
REV = "0123456789abcdef0123456789abcdef01234567"
OFFICIAL = {  # file of the official layout -> what it is made from
    "ltx-2-19b-distilled.safetensors": "distilled",
    "ltx-2-19b-dev.safetensors": "dev",
    "ltx-2-19b-distilled-fp8.safetensors": "distilled-fp8",
    "ltx-2-19b-dev-fp8.safetensors": "dev-fp8",
    "ltx-2-19b-distilled-lora-384.safetensors": "lora",
    "ltx-2-spatial-upscaler-x2-1.0.safetensors": "spatial",
    "ltx-2-temporal-upscaler-x2-1.0.safetensors": "temporal",
}
UPSAMPLER = "ltx-2-spatial-upscaler-x2-1.0.safetensors"
LORA = "ltx-2-19b-distilled-lora-384.safetensors"
WANT = {"distilled": "ltx-2-19b-distilled.safetensors", "dev": "ltx-2-19b-dev.safetensors"}
WANT["dev-two-stage"] = WANT["dev"]


# ---- files -----------------------------------------------------------------------------------------
def _read(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _write(path: Path, header: dict, data: bytes) -> None:
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + data)


def _with_metadata(src: Path, dst: Path, **changes: str) -> None:
    header, data = _read(src)
    header["__metadata__"] = {**header.get("__metadata__", {}), **changes}
    _write(dst, header, data)


def _with_upsampler_config(src: Path, dst: Path, **changes) -> None:
    header, _ = _read(src)
    config = {**json.loads(header["__metadata__"]["config"]), **changes}
    _with_metadata(src, dst, config=json.dumps(config, sort_keys=True))


def _fp8(src: Path, dst: Path) -> None:
    """The checkpoint with its transformer blocks' matrices stored as F8_E4M3 (never loaded: listed only)."""
    header, data = _read(src)
    out, blobs, offset = {"__metadata__": header.get("__metadata__", {})}, [], 0
    for name in sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"]):
        info = dict(header[name])
        a, b = info["data_offsets"]
        blob = data[a:b]
        if info["dtype"] == "BF16" and "transformer_blocks" in name and len(info["shape"]) == 2:
            blob, info["dtype"] = blob[1::2], "F8_E4M3"  # the high byte of each value
        info["data_offsets"] = [offset, offset + len(blob)]
        out[name] = info
        blobs.append(blob)
        offset += len(blob)
    _write(dst, out, b"".join(blobs))


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def _hf_repo(hub: Path, repo: str, files: dict[str, Path]) -> Path:
    """A repo laid out as huggingface_hub caches it: blobs, a snapshot of symlinks to them, refs/main."""
    import hashlib

    base = hub / ("models--" + repo.replace("/", "--"))
    snapshot = base / "snapshots" / REV
    (base / "blobs").mkdir(parents=True)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(REV)
    for rel, src in files.items():
        blob = base / "blobs" / hashlib.sha256(src.read_bytes()).hexdigest()
        if not blob.exists():
            os.link(src, blob)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> dict:
    from ltx.weights import tiny

    root = tmp_path_factory.mktemp("models")
    t = tiny.create("2.0", root / "tiny")
    made = root / "made"
    made.mkdir()
    shutil.copyfile(t / "model.safetensors", made / "distilled")
    _with_metadata(t / "model.safetensors", made / "dev", variant="dev")  # other bytes: another digest
    _fp8(made / "distilled", made / "distilled-fp8")
    _fp8(made / "dev", made / "dev-fp8")
    shutil.copyfile(t / "distilled_lora.safetensors", made / "lora")
    shutil.copyfile(t / "upsampler.safetensors", made / "spatial")
    _with_upsampler_config(
        t / "upsampler.safetensors", made / "temporal", spatial_upsample=False, temporal_upsample=True
    )
    # (a) a folder laid out like the official repo, Gemma elsewhere
    folder = root / "LTX-2"
    folder.mkdir()
    for name, what in OFFICIAL.items():
        os.link(made / what, folder / name)
    gemma = root / "gemma-3"
    shutil.copytree(t / "gemma", gemma)
    # (b) both repos in a Hugging Face cache
    hub = root / "hf" / "hub"
    snapshot = _hf_repo(hub, REPO, {name: folder / name for name in OFFICIAL})
    gemma_snapshot = _hf_repo(
        hub, GEMMA_REPO, {str(p.relative_to(gemma)): p for p in sorted(gemma.rglob("*")) if p.is_file()}
    )
    # two checkpoints, neither named for a pipeline (Gemma inside, as a plain model folder)
    two = root / "two"
    two.mkdir()
    os.link(made / "distilled", two / "a.safetensors")
    os.link(made / "dev", two / "b.safetensors")
    os.link(made / "spatial", two / UPSAMPLER)
    shutil.copytree(gemma, two / "gemma")
    return {
        "root": root,
        "cache": root / "cache",
        "folder": folder,
        "gemma": gemma,
        "hub": hub,
        "snapshot": snapshot,
        "gemma_snapshot": gemma_snapshot,
        "two": two,
        "no_hub": root / "no-hf" / "hub",
    }


def ltx(fx: dict, *args: str, hub: Path | None = None, cache: Path | None = None, check: bool = True):
    env = {k: v for k, v in os.environ.items() if k not in ("LTX_MODEL", "LTX_DEBUG", "HF_HOME")}
    env["HF_HUB_CACHE"] = str(hub or fx["no_hub"])
    r = subprocess.run(
        [sys.executable, "-m", "stages.cli", "--cache-dir", str(cache or fx["cache"]), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if check:
        assert r.returncode == 0, r.stderr
    return r


def _choice(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("model: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def _playable(out: Path) -> None:
    info = probe(out)
    assert re.search(r"Video: h264.*(64x128|128x64)", info), info
    assert "Audio: aac" in info, info


# ---- (a) a folder with the official layout --------------------------------------------------------
@pytest.mark.parametrize("pipeline", ["distilled", "dev", "dev-two-stage"])
def test_folder_runs_every_pipeline(fx, pipeline):
    out = fx["root"] / "out" / f"folder-{pipeline}.mp4"
    r = ltx(
        fx,
        "generate",
        *PROMPT,
        *SMALL,
        *STEPS[pipeline],
        "--pipeline",
        pipeline,
        "--model",
        str(fx["folder"]),
        "--gemma-root",
        str(fx["gemma"]),
        "--output-path",
        str(out),
    )
    _playable(out)
    lora = f", distilled LoRA {LORA}" if pipeline == "dev-two-stage" else ""
    assert _choice(r.stderr) == (
        f"model: {fx['folder']} -> {WANT[pipeline]}, upsampler {UPSAMPLER}{lora}, gemma {fx['gemma']}"
    )
    assert "random weights" not in r.stderr


# ---- (b) the same repo in a Hugging Face cache ----------------------------------------------------
@pytest.mark.parametrize("pipeline", ["distilled", "dev", "dev-two-stage"])
def test_hf_cache_runs_every_pipeline(fx, pipeline):
    before = _tree(fx["hub"])
    out = fx["root"] / "out" / f"hf-{pipeline}.mp4"
    gemma = ["--gemma-root", GEMMA_REPO] if pipeline == "dev" else []  # else: found in the cache by default
    r = ltx(
        fx,
        "generate",
        *PROMPT,
        *SMALL,
        *STEPS[pipeline],
        "--pipeline",
        pipeline,
        "--model",
        REPO,
        *gemma,
        "--output-path",
        str(out),
        hub=fx["hub"],
    )
    _playable(out)
    lora = f", distilled LoRA {LORA}" if pipeline == "dev-two-stage" else ""
    assert _choice(r.stderr) == (
        f"model: {REPO} -> {WANT[pipeline]}, upsampler {UPSAMPLER}{lora}, gemma {fx['gemma_snapshot']}"
    )
    assert _tree(fx["hub"]) == before  # nothing written to the Hugging Face cache


def test_missing_repo_names_the_download_command(fx, tmp_path, capsys, monkeypatch):
    """In process: the HF_HUB_CACHE set now is the one read (not the one at import time)."""
    monkeypatch.delenv("LTX_MODEL", raising=False)
    monkeypatch.delenv("LTX_DEBUG", raising=False)
    cache = tmp_path / "cache"
    for hub in (fx["hub"], tmp_path / "nowhere" / "hub"):
        monkeypatch.setenv("HF_HUB_CACHE", str(hub))
        before = _tree(fx["hub"])
        args = ["generate", *PROMPT, *SMALL, "--model", "Lightricks/LTX-2.3"]
        rc, err = _run_in_process(
            ["--cache-dir", str(cache), *args, "--output-path", str(tmp_path / "x.mp4")], capsys
        )
        assert rc == 1 and len(err.strip().splitlines()) == 1, err
        assert "huggingface-cli download Lightricks/LTX-2.3" in err and str(hub) in err, err
        assert _tree(fx["hub"]) == before
        assert hub == fx["hub"] or not hub.parent.exists()
        assert not cache.exists() and not (tmp_path / "x.mp4").exists()
    monkeypatch.setenv("HF_HUB_CACHE", str(fx["no_hub"]))
    rc, err = _run_in_process(
        [
            "--cache-dir",
            str(cache),
            "generate",
            *PROMPT,
            "--model",
            str(fx["folder"]),
            "--gemma-root",
            GEMMA_REPO,
        ],
        capsys,
    )
    assert rc == 1 and len(err.strip().splitlines()) == 1, err
    assert (
        f"--gemma-root {GEMMA_REPO} is not a directory" in err
        and f"huggingface-cli download {GEMMA_REPO}" in err
    )


def test_two_checkpoints_without_a_match_fail_then_checkpoint_path_picks(fx, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LTX_MODEL", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(fx["no_hub"]))
    cache = tmp_path / "cache"
    for pipeline in ("distilled", "dev"):
        rc, err = _run_in_process(
            [
                "--cache-dir",
                str(cache),
                "generate",
                *PROMPT,
                *SMALL,
                "--model",
                str(fx["two"]),
                "--pipeline",
                pipeline,
            ],
            capsys,
        )
        assert rc == 1 and len(err.strip().splitlines()) == 1, err
        assert (
            "holds several checkpoints (a.safetensors, b.safetensors)" in err and "--checkpoint-path" in err
        ), err
        assert not cache.exists()
    # the override: a.safetensors is the folder's distilled checkpoint, byte for byte (its artifacts are reused)
    out = fx["root"] / "out" / "two.mp4"
    r = ltx(
        fx,
        "generate",
        *PROMPT,
        *SMALL,
        "--model",
        str(fx["two"]),
        "--checkpoint-path",
        str(fx["two"] / "a.safetensors"),
        "--spatial-upsampler-path",
        str(fx["folder"] / UPSAMPLER),
        "--output-path",
        str(out),
    )
    _playable(out)
    assert _choice(r.stderr) == (
        f"model: {fx['two']} -> a.safetensors, upsampler {fx['folder'] / UPSAMPLER}, gemma {fx['two'] / 'gemma'}"
    )


def test_resolution_rules(fx, monkeypatch):
    """In process: bf16 before fp8, the upsampler kinds from their metadata, the overrides' checks."""
    from cache.store import Store
    from stages.framework import LtxError
    from stages.models import resolve_model, scan, upsampler_kind

    monkeypatch.setenv("HF_HUB_CACHE", str(fx["hub"]))
    monkeypatch.delenv("LTX_MODEL", raising=False)
    store = Store(fx["root"] / "unused-cache")
    inv = scan(fx["folder"])
    assert [(c.path.name, c.variant, c.quant) for c in inv.checkpoints] == [
        ("ltx-2-19b-dev-fp8.safetensors", "dev", "fp8"),
        ("ltx-2-19b-dev.safetensors", "dev", None),
        ("ltx-2-19b-distilled-fp8.safetensors", "distilled", "fp8"),
        ("ltx-2-19b-distilled.safetensors", "distilled", None),
    ]
    assert dict((p.name, k) for p, k in inv.upsamplers) == {
        UPSAMPLER: "spatial x2",
        "ltx-2-temporal-upscaler-x2-1.0.safetensors": "temporal x2",
    }
    x15 = fx["root"] / "x15.safetensors"
    _with_upsampler_config(fx["folder"] / UPSAMPLER, x15, rational_resampler=True, spatial_scale=1.5)
    assert upsampler_kind(x15) == "spatial x1.5"
    bare = fx["root"] / "bare.safetensors"  # no field at all: the loader's default, the x2 upsampler
    _with_upsampler_config(fx["folder"] / UPSAMPLER, bare)
    header, data = _read(bare)
    header["__metadata__"]["config"] = json.dumps({"in_channels": 128, "mid_channels": 32})
    _write(bare, header, data)
    assert upsampler_kind(bare) == "spatial x2"
    files = resolve_model(REPO, store, pipeline="dev-two-stage")
    assert files.checkpoint.name == WANT["dev"] and files.distilled_lora.name == LORA
    assert files.gemma == fx["gemma_snapshot"] and files.upsampler.name == UPSAMPLER
    only_fp8 = fx["root"] / "only-fp8"
    only_fp8.mkdir()
    for name in ("ltx-2-19b-distilled-fp8.safetensors", "ltx-2-19b-dev-fp8.safetensors", UPSAMPLER):
        os.link(fx["folder"] / name, only_fp8 / name)
    assert resolve_model(
        str(only_fp8), store
    ).checkpoint  # only fp8 left: fp8 it is.name == "ltx-2-19b-distilled-fp8.safetensors"
    with pytest.raises(LtxError, match="apply to real weights"):
        resolve_model("tiny", store, checkpoint=str(fx["folder"] / WANT["dev"]))
    with pytest.raises(LtxError, match="--checkpoint-path .* does not exist"):
        resolve_model(REPO, store, checkpoint=str(fx["root"] / "nope.safetensors"))
    assert not store.root.exists()


def test_models_lists_folder_and_cache(fx):
    r = ltx(fx, "models", str(fx["folder"]), hub=fx["hub"])
    out = r.stdout
    assert out.startswith("tiny  (built in"), out
    blocks = {b.splitlines()[0].split("  ")[0]: b for b in re.split(r"\n(?=\S)", out)}
    assert {str(fx["folder"]), REPO, "tiny", "tiny-2.3"} <= set(blocks), out
    for label in (str(fx["folder"]), REPO):
        b = blocks[label]
        assert "ltx-2-19b-distilled.safetensors  LTX 2.0.0, distilled, bf16" in b, b
        assert "ltx-2-19b-dev-fp8.safetensors  LTX 2.0.0, dev, fp8" in b, b
        assert (
            f"{UPSAMPLER}  spatial x2" in b and "ltx-2-temporal-upscaler-x2-1.0.safetensors  temporal x2" in b
        )
        assert f"{LORA}  distilled LoRA" in b
        assert f"gemma       {fx['gemma_snapshot']}" in b  # the cache's Gemma: none in the folder
        assert "pipelines   distilled, dev, dev-two-stage" in b, b
    assert "Hugging Face cache" in blocks[REPO]
