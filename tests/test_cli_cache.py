"""`ltx cache ...` and the CLI's error contract, in real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import toy_stages as toy

from cache.store import Store
from stages.framework import ensure


def ltx(cache: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
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


def test_ls_show_verify_rm(tmp_path: Path):
    store = Store(tmp_path).ensure_writable()
    art = ensure(store, toy.chain(1), echo=lambda m: None)
    store.save_run("demo", {"stages": {"make": toy.chain(1).inputs["x"].key, "scale": art.key}})
    ls = ltx(tmp_path, "cache", "ls")
    assert ls.returncode == 0 and "demo/scale" in ls.stdout and art.key[:12] in ls.stdout
    show = ltx(tmp_path, "cache", "show", "demo/scale")
    assert show.returncode == 0 and '"stage": "scale"' in show.stdout and "x: make" in show.stdout
    assert ltx(tmp_path, "cache", "show", art.key[:6]).returncode == 0
    ok = ltx(tmp_path, "cache", "verify")
    assert ok.returncode == 0 and "2 ok, 0 corrupt" in ok.stdout
    chunk = next(p for p in (store.path(art.key) / "y" / "c").rglob("*") if p.is_file())
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0x01
    chunk.write_bytes(bytes(data))
    bad = ltx(tmp_path, "cache", "verify")
    assert bad.returncode == 1 and f"CORRUPT {art.key[:12]}" in bad.stdout and "1 corrupt" in bad.stdout
    rm = ltx(tmp_path, "cache", "rm", art.key[:10])
    assert rm.returncode == 0 and not store.exists(art.key)
    again = ensure(store, toy.chain(1), echo=lambda m: None)
    assert np.isfinite(again["y"]).all()


def test_gc_unreferenced_keeps_named_runs(tmp_path: Path):
    store = Store(tmp_path).ensure_writable()
    kept = ensure(store, toy.chain(1), echo=lambda m: None)
    dropped = ensure(store, toy.chain(2), echo=lambda m: None)
    store.save_run("keep", {"stages": {"scale": kept.key}})
    r = ltx(tmp_path, "cache", "gc", "--unreferenced")
    assert r.returncode == 0 and "2 artifacts" in r.stdout
    assert store.exists(kept.key) and store.exists(toy.chain(1).inputs["x"].key)
    assert not store.exists(dropped.key)


def test_errors_are_one_line_with_exit_1(tmp_path: Path):
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
