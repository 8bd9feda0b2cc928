"""`ltx cache ...` and the CLI's error contract, in real subprocesses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import toy_stages as toy
from stores import HEARTBEAT_S, Raw

from cache.store import Store
from stages.framework import ensure

SMALL = ["--height", "64", "--width", "128", "--num-frames", "9"]
PROMPT = ["--prompt", "a red fox trots through fresh snow"]


@pytest.fixture(params=["local", "s3"])
def cache(request, tmp_path: Path) -> Path | str:
    """--cache-dir: a directory, or a bucket on a real S3 API (moto's server mode on localhost)."""
    return tmp_path / "cache" if request.param == "local" else request.getfixturevalue("s3_url")


def ltx(cache: Path | str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stages.cli", "--cache-dir", str(cache), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


@pytest.mark.parametrize("args", [["cache", "ls"], ["--help"], ["decode", "--help"]])
def test_help_and_ls_import_nothing_heavy(tmp_path: Path, args: list[str]):
    # MLX, zarr and numpy are for the stages; pydantic comes with typer >= 0.29 (pyproject pins below)
    code = f"import sys; sys.argv=['ltx','--cache-dir','{tmp_path}',*{args!r}]; import stages.cli as c\n"
    code += "try:\n    c.main()\nexcept SystemExit:\n    pass\n"
    code += "print([m for m in ('mlx.core', 'zarr', 'numpy', 'pydantic') if m in sys.modules])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_help_starts(tmp_path: Path):
    t0 = time.perf_counter()
    assert ltx(tmp_path, "--help").returncode == 0
    assert time.perf_counter() - t0 < 60  # sanity only; startup is measured by `just bench`


def test_ls_show_verify_rm(cache):
    tmp_path, store = cache, Store(cache).ensure_writable()
    art = ensure(store, toy.chain(1), echo=lambda m: None)
    store.save_run("demo", {"stages": {"make": toy.chain(1).inputs["x"].key, "scale": art.key}})
    ls = ltx(tmp_path, "cache", "ls")
    assert ls.returncode == 0 and "demo/scale" in ls.stdout and art.key[:12] in ls.stdout
    show = ltx(tmp_path, "cache", "show", "demo/scale")
    assert show.returncode == 0 and '"stage": "scale"' in show.stdout and "x: make" in show.stdout
    assert ltx(tmp_path, "cache", "show", art.key[:6]).returncode == 0
    ok = ltx(tmp_path, "cache", "verify")
    assert ok.returncode == 0 and "2 ok, 0 corrupt" in ok.stdout
    raw = Raw(store)
    chunk = raw.chunks(art.key, "y")[0]
    data = bytearray(raw.read(chunk))
    data[-1] ^= 0x01
    raw.write(chunk, bytes(data))
    bad = ltx(tmp_path, "cache", "verify")
    assert bad.returncode == 1 and f"CORRUPT {art.key[:12]}" in bad.stdout and "1 corrupt" in bad.stdout
    rm = ltx(tmp_path, "cache", "rm", art.key[:10])
    assert rm.returncode == 0 and not store.exists(art.key)
    again = ensure(store, toy.chain(1), echo=lambda m: None)
    assert np.isfinite(again["y"]).all()


def test_gc_unreferenced_keeps_named_runs(cache):
    tmp_path, store = cache, Store(cache).ensure_writable()
    kept = ensure(store, toy.chain(1), echo=lambda m: None)
    dropped = ensure(store, toy.chain(2), echo=lambda m: None)
    store.save_run("keep", {"stages": {"scale": kept.key}})
    r = ltx(tmp_path, "cache", "gc", "--unreferenced")
    assert r.returncode == 0 and "2 artifacts" in r.stdout
    assert store.exists(kept.key) and store.exists(toy.chain(1).inputs["x"].key)
    assert not store.exists(dropped.key)


def test_errors_are_one_line_with_exit_1(cache):
    tmp_path = cache
    for args in (["cache", "show", "abcd"], ["cache", "show", "zz"], ["cache", "rm", "nope/stage"]):
        r = ltx(tmp_path, *args)
        assert r.returncode == 1, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    r = ltx(tmp_path, "cache", "show", "abcd", env={"LTX_DEBUG": "1"})
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_unwritable_cache_dir(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = Store(blocker / "cache")
    try:
        store.ensure_writable()
    except Exception as e:  # noqa: BLE001
        assert "not writable" in str(e) and "--cache-dir" in str(e)
    else:
        raise AssertionError("expected StoreUnwritable")


def test_generate_on_s3_then_every_cache_command(s3_url, tmp_path: Path, monkeypatch):
    """`ltx generate --cache-dir s3://...` (moto on localhost) writes the same bits as a local cache;
    `ltx cache ls/show/verify/gc` work on the bucket; nothing is cached on this machine but its own
    files (built tiny model, digests, scratch); re-decoding downloads the latents artifact, once,
    and no other artifact's arrays."""
    import cache.bucket as bucket
    from stages import api
    from stages.session import State

    out, here = tmp_path / "fox.mp4", tmp_path / "here.mp4"
    r = ltx(s3_url, "generate", "--model", "tiny", *PROMPT, *SMALL, "--output-path", str(out))
    assert r.returncode == 0, r.stderr
    ran = re.findall(r"^ran (\S+) ", r.stderr, flags=re.M)
    assert ran == ["encode", "denoise", "upsample", "refine", "decode", "decode_audio", "vocode", "mux"]
    local = ltx(
        tmp_path / "cache", "generate", "--model", "tiny", *PROMPT, *SMALL, "--output-path", str(here)
    )
    assert local.returncode == 0 and out.read_bytes() == here.read_bytes()
    again = ltx(s3_url, "generate", "fox")  # by run name: all cached
    assert again.returncode == 0 and "ran " not in again.stderr and "cached mux" in again.stderr
    assert {p.name for p in (tmp_path / "local").iterdir()} <= {"digests", "models", "scratch"}

    store = Store(s3_url)
    keys = store.load_run("fox")["stages"]
    ls = subprocess.run(  # LTX_CACHE instead of --cache-dir
        [sys.executable, "-m", "stages.cli", "cache", "ls"],
        capture_output=True,
        text=True,
        env={**os.environ, "LTX_CACHE": s3_url},
        timeout=120,
    )
    assert ls.returncode == 0 and "fox/mux" in ls.stdout and keys["refine"][:12] in ls.stdout, ls.stderr
    assert len(ls.stdout.strip().splitlines()) == 1 + len(list(store.keys())) == 9
    show = ltx(s3_url, "cache", "show", "fox/decode")
    assert show.returncode == 0 and '"stage": "decode"' in show.stdout and "latents: refine" in show.stdout
    ok = ltx(s3_url, "cache", "verify")
    assert ok.returncode == 0 and "verified 8 artifacts: 8 ok, 0 corrupt" in ok.stdout, ok.stdout

    monkeypatch.setattr(State, "cache_dir", State.cache_dir)
    bucket.READS["bytes"] = 0
    redecoded = api.decode("fox", tiling="aggressive", cache_dir=s3_url)
    assert store.manifest(redecoded)["inputs"]["latents"] == keys["refine"]
    assert 0.9 * store.size(keys["refine"]) < bucket.READS["bytes"] <= store.size(keys["refine"])

    # a writer killed mid-publish: its staging is debris once its heartbeat is stale
    proc = subprocess.Popen(
        [sys.executable, str(Path(toy.__file__)), s3_url, "5", "--sleep", "0.2", "--rows", "50"]
    )
    deadline = time.time() + 30
    while time.time() < deadline and not Raw(store).staged():
        time.sleep(0.05)
    time.sleep(0.5)  # mid-publish
    proc.kill()
    proc.wait()
    time.sleep(bucket.stale_after(float(HEARTBEAT_S)) + 1.5)  # past the heartbeat's stale age
    gc = ltx(s3_url, "cache", "gc")
    assert gc.returncode == 0 and "removed 1 debris and 0 artifacts" in gc.stdout, gc.stdout + gc.stderr
    assert store.staging() == [] and len(list(store.keys())) == 9

    chunk = Raw(store).chunks(keys["decode"], "frames")[0]
    Raw(store).write(chunk, Raw(store).read(chunk)[:-1])
    bad = ltx(s3_url, "cache", "verify")
    assert bad.returncode == 1 and f"CORRUPT {keys['decode'][:12]}" in bad.stdout


def test_unreachable_bucket_or_bad_url_is_one_line(s3_url, tmp_path: Path):
    missing = s3_url.replace("s3://ltx-", "s3://nope-")
    out = str(tmp_path / "x.mp4")
    for cache, args, says in (
        (missing, ["cache", "ls"], "nope-"),
        (missing, ["generate", *PROMPT, *SMALL, "--output-path", out], "no bucket 'nope-"),
        ("gs://bucket/x", ["cache", "ls"], "s3://BUCKET/PREFIX"),
        ("s3://Bad_Bucket/x", ["generate", *PROMPT, "--output-path", out], "s3://BUCKET/PREFIX"),
    ):
        r = ltx(cache, *args)
        assert r.returncode == 1, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], r.stderr
    assert not Path(out).exists()
