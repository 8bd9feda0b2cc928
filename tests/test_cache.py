"""The artifact store and the stage framework, exercised with test-only stages."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import toy_stages as toy
from stores import Raw

from cache.errors import (
    AmbiguousArtifact,
    BadRunName,
    CorruptArtifact,
    PublishError,
    RecipeError,
    StoreUnreachable,
    UnknownArtifact,
)
from cache.keys import canonical_json, make_key
from cache.store import Store, check_run_name
from stages.framework import Context, Node, ensure

TOY = Path(toy.__file__)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path: Path) -> Store:
    """The store's contract holds for both kinds: a directory, and a bucket on a real S3 API."""
    toy.CALLS.clear()
    if request.param == "local":
        return Store(tmp_path / "cache").ensure_writable()
    return Store(request.getfixturevalue("s3_url")).ensure_writable()


@pytest.fixture
def local_store(tmp_path: Path) -> Store:
    toy.CALLS.clear()
    return Store(tmp_path / "cache").ensure_writable()


def _until(predicate, timeout: float = 30.0, every: float = 0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := predicate():
            return value
        time.sleep(every)
    raise AssertionError("timed out")


def _run_toy(cache: Path, seed: int, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(TOY), str(cache), str(seed), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


# ---- keys ---------------------------------------------------------------------------------------
def test_key_golden():
    # Pinned: a change here invalidates every user's cache. Bump keys.SCHEMA on purpose, never by accident.
    key = make_key(
        "denoise",
        3,
        {"seed": 10, "cfg": 3.0, "sigmas": [1.0, 0.5, 0.0], "name": "x"},
        {"context": "a" * 64},
        {"weights": "b" * 64},
    )
    assert key == "0471aa10e13eb0984aa6a00a0dfd97cf4a3f3df47cc0b4674180b0438e6fbfdb"


def test_key_invariant_under_order_and_float_format():
    a = make_key("s", 1, {"a": 1, "b": [0.1, 2.0], "c": {"x": 1, "y": 2}})
    b = make_key("s", 1, {"c": {"y": 2, "x": 1}, "b": [1e-1, 2], "a": 1.0})
    assert a == b
    assert make_key("s", 1, {"a": 0.1}) != make_key("s", 1, {"a": 0.10000000000000002})
    assert make_key("s", 1, {"a": 1}) != make_key("s", 2, {"a": 1})
    assert make_key("s", 1, {}, {"x": "k1"}) != make_key("s", 1, {}, {"x": "k2"})
    assert make_key("s", 1, {}, externals={"w": "d1"}) != make_key("s", 1, {}, externals={"w": "d2"})
    assert canonical_json({"b": 1, "a": [1.5, None, True]}) == '{"a":[1.5,null,true],"b":1}'


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, object(), {1: 2}, b"bytes", {1.0, 2.0}])
def test_key_rejects_nonfinite_and_unserialisable(bad):
    with pytest.raises(RecipeError, match="params"):
        make_key("s", 1, {"p": bad})


# ---- store basics --------------------------------------------------------------------------------
def test_publish_read_roundtrip_records_manifest(store: Store):
    key = make_key("t", 1, {})
    with store.writer(key, {"stage": "t", "inputs": {}}) as w:
        w.put("f64", np.arange(6, dtype=np.float64).reshape(2, 3))
        w.put("u8", np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
        w.put("bf", np.ones(3, np.float32), source_dtype="bfloat16")
        w.put("scalar", np.float32(2.5))
        w.commit(duration_s=0.1)
    art = store.open(key)
    assert art["f64"].dtype == np.float32 and art["f64"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert art["u8"].dtype == np.uint8 and art["u8"][1, 2, 3] == 23
    assert art["scalar"].shape == () and float(art["scalar"]) == 2.5
    arrays = art.manifest["arrays"]
    assert arrays["f64"]["dtype"] == "float64" and arrays["f64"]["stored"] == "float32"
    assert arrays["bf"]["dtype"] == "bfloat16"
    assert all(len(a["sha256"]) == 64 for a in arrays.values())


def test_streamed_rows_write_whole_chunks(store: Store, monkeypatch):
    """Rows streamed in ragged blocks (the caller reusing its buffer) come back exactly, with the same
    checksum as one whole write, and zarr only ever sees whole chunks (plus the last one)."""
    import cache.store as store_mod

    monkeypatch.setattr(store_mod, "CHUNK_BYTES", 3 * 4 * 5)  # 3 rows of (4, 5) uint8 per chunk
    video = np.random.RandomState(0).randint(0, 255, (17, 4, 5), dtype=np.uint8)
    keys = [make_key("t", 1, {"i": i}) for i in range(2)]
    with store.writer(keys[0], {"stage": "t", "inputs": {}}) as w:
        w.put("frames", video)
        w.commit()
    with store.writer(keys[1], {"stage": "t", "inputs": {}}) as w:
        out = w.create("frames", video.shape, np.uint8)
        writes = []
        real = type(out._z).__setitem__
        monkeypatch.setattr(type(out._z), "__setitem__", lambda z, sl, v: (writes.append(sl), real(z, sl, v)))
        buf = np.empty((5, 4, 5), np.uint8)
        for lo, hi in ((0, 2), (2, 7), (7, 8), (8, 13), (13, 17)):
            buf[: hi - lo] = video[lo:hi]
            out.write(buf[: hi - lo])
            buf[:] = 0  # the caller reuses its buffer
        w.commit()
        with pytest.raises(Exception, match="more than its 17 rows"):
            out.write(video[:1])
    a, b = store.open(keys[0]), store.open(keys[1])
    assert np.array_equal(b["frames"], video)
    assert a.manifest["arrays"]["frames"]["sha256"] == b.manifest["arrays"]["frames"]["sha256"]
    assert [(s.start, s.stop) for s in writes] == [(0, 6), (6, 12), (12, 15), (15, 17)]


def test_every_chunk_is_written_even_all_zero(store: Store, monkeypatch):
    """Arrays are created with write_empty_chunks: zarr writes each chunk as it comes instead of first
    comparing it with the fill value (a full pass over the frames that cost more than the write)."""
    import cache.store as store_mod

    monkeypatch.setattr(store_mod, "CHUNK_BYTES", 3 * 4 * 5)  # 3 rows of (4, 5) uint8 per chunk
    frames = np.zeros((7, 4, 5), np.uint8)
    frames[6] = 9
    key = make_key("t", 1, {})
    with store.writer(key, {"stage": "t", "inputs": {}}) as w:
        w.put("frames", frames)
        w.commit()
    assert len(Raw(store).chunks(key, "frames")) == 3  # two all-zero chunks and the last, partial one
    assert np.array_equal(store.open(key)["frames"], frames)


def test_resolve_prefix_and_errors(store: Store):
    keys = [ensure(store, toy.chain(s), echo=lambda m: None).key for s in range(3)]
    assert store.resolve(keys[0][:10]) == keys[0]
    with pytest.raises(UnknownArtifact):
        store.resolve("ffff" if not any(k.startswith("ffff") for k in store.keys()) else "eeee")
    with pytest.raises(UnknownArtifact, match="4 hex"):
        store.resolve("zz")
    # Force an ambiguity: two keys sharing a prefix of 2 is likely among 6 artifacts only by chance,
    # so build it directly.
    Raw(store).fake_artifact(keys[0][:8] + "0" * 56)
    with pytest.raises(AmbiguousArtifact):
        store.resolve(keys[0][:8])


@pytest.mark.parametrize("name", ["", "../x", "a/b", "a\\b", ".hidden", "x..y", "a b", "x" * 200])
def test_bad_run_names(name):
    with pytest.raises(BadRunName):
        check_run_name(name)


# ---- framework -----------------------------------------------------------------------------------
def test_computing_twice_runs_once(store: Store):
    messages: list[str] = []
    a = ensure(store, toy.chain(1), echo=messages.append)
    b = ensure(store, toy.chain(1), echo=messages.append)
    assert toy.CALLS == ["make", "scale"]
    assert a.key == b.key and np.array_equal(a["y"], b["y"])
    assert messages[0].startswith("ran make ") and messages[1].startswith("ran scale ")
    assert messages[2] == f"cached scale {a.key[:8]}"
    # a different parameter reruns only the stage it changes
    ensure(store, toy.chain(1, factor=3.0), echo=messages.append)
    assert toy.CALLS == ["make", "scale", "scale"]


def test_exception_in_compute_leaves_nothing(store: Store, monkeypatch):
    monkeypatch.setenv("TOY_FAIL_SCALE", "1")
    node = toy.chain(2)
    with pytest.raises(RuntimeError, match="boom"):
        ensure(store, node, echo=lambda m: None)
    assert not store.exists(node.key)
    assert store.exists(node.inputs["x"].key)  # the finished upstream stage is kept
    assert store.staging() == []


def test_sigkill_mid_publish_leaves_no_artifact(store: Store):
    raw = Raw(store)
    proc = _run_toy(store.root, 5, "--sleep", "0.2", "--rows", "50")
    _until(raw.staged)
    time.sleep(0.5)  # some rows are written, the publish is in progress
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    node = toy.chain(5, rows=50, sleep=0.2)
    assert not store.exists(node.inputs["x"].key) and not store.exists(node.key)
    assert store.staging() != []  # debris, never read
    # a directory's lock is free at once; a bucket's heartbeat goes stale after a few intervals
    assert _until(lambda: store.gc()["debris"], timeout=20, every=0.5) >= 1
    assert store.staging() == []
    fast = _run_toy(store.root, 5, "--rows", "50", "--sleep", "0")
    out, err = fast.communicate(timeout=60)
    assert fast.returncode == 0, err
    assert store.exists(out.strip())


def test_gc_beside_a_live_writer_keeps_its_work(store: Store):
    proc = _run_toy(store.root, 6, "--sleep", "0.25", "--rows", "24")
    _until(Raw(store).staged)
    for _ in range(10):  # for longer than a bucket's stale age: the heartbeat keeps it alive
        assert store.gc()["debris"] == 0
        time.sleep(0.5)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert store.open(out.strip())["y"].shape == (24, 64)


def test_gc_when_a_writer_publishes_during_its_listing(local_store: Store, monkeypatch):
    """A writer renames its tmp/ directory into place (and drops its lock) between gc's listing of
    tmp/ and its look at the entry's age: gc skips the entry instead of failing (seen as a
    FileNotFoundError in test_two_concurrent_generates_and_gc_beside_them)."""
    store = local_store
    store.tmp.mkdir(parents=True, exist_ok=True)
    ghost = store.tmp / "0123abcd.999.feed"  # listed, then gone
    listing, is_dir = Path.iterdir, Path.is_dir
    monkeypatch.setattr(
        Path, "iterdir", lambda p: iter([*listing(p), ghost] if p == store.tmp else listing(p))
    )
    monkeypatch.setattr(Path, "is_dir", lambda p: True if p == ghost else is_dir(p))
    assert store.gc()["debris"] == 0


def test_two_processes_same_key(store: Store, tmp_path: Path):
    log = tmp_path / "calls.log"
    procs = [
        _run_toy(store.root, 7, "--sleep", "0.02", "--rows", "20", env={"TOY_CALL_LOG": str(log)})
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    keys = {o[0].strip() for o in outs}
    assert len(keys) == 1
    assert list(store.keys()).count(keys.pop()) == 1
    assert len(list(store.keys())) == 2  # make and scale, once each
    assert store.staging() == []


def _corrupt_chunk(store: Store, key: str, name: str) -> str:
    raw = Raw(store)
    chunk = raw.chunks(key, name)[0]
    data = bytearray(raw.read(chunk))
    data[len(data) // 2] ^= 0xFF
    raw.write(chunk, bytes(data))
    return chunk


@pytest.mark.parametrize("damage", ["flip", "delete_chunk", "truncate_manifest"])
def test_corruption_detected_and_recomputed(store: Store, damage: str):
    node = toy.chain(8)
    art = ensure(store, node, echo=lambda m: None)
    good = art["y"].copy()
    if damage == "flip":
        _corrupt_chunk(store, node.key, "y")
    elif damage == "delete_chunk":
        Raw(store).delete(Raw(store).chunks(node.key, "y")[0])
    else:
        raw, manifest = Raw(store), Raw(store).manifest_object(node.key)
        raw.write(manifest, raw.read(manifest)[:50])
    with pytest.raises(CorruptArtifact):
        store.open(node.key, verify=True)
    messages: list[str] = []
    toy.CALLS.clear()
    again = ensure(store, node, echo=messages.append)
    assert toy.CALLS == ["scale"]
    assert any(m.startswith("corrupt scale") for m in messages)
    assert np.array_equal(again["y"], good)


def test_artifact_removed_while_open_is_unknown_not_corrupt(store: Store):
    node = toy.chain(1)
    art = ensure(store, node, echo=lambda m: None)
    opened = store.open(art.key, verify=False)
    store.remove(art.key)  # what `ltx cache rm`, gc or a concurrent run's superseding does
    with pytest.raises(UnknownArtifact, match="removed while being read"):
        opened["y"]


def test_resumed_checkpoint_survives_its_removal(store: Store):
    """resume() hands back the checkpoint's arrays, not the artifact: a concurrent run of the same
    stage removes each checkpoint as it publishes the next (tests/test_reliability.py runs two)."""
    node = Node(toy.STEPS, toy.StepsParams(6), {"x": toy.Node(toy.MAKE, toy.MakeParams(3))})
    state = np.arange(5, dtype=np.float32)
    with store.writer(node.key, {"stage": "steps"}) as w:
        ctx = Context(store, node, w, lambda m: None)
        ctx.checkpoint(2, {"state": state})
        step, arrays = ctx.resume(6)
        store.remove(ctx._checkpoint_key(2))
        assert step == 2 and np.array_equal(arrays["state"], state)


def test_checkpoint_resume_is_bit_identical(store: Store, tmp_path: Path):
    fresh = Store(tmp_path / "fresh").ensure_writable()
    node = Node(toy.STEPS, toy.StepsParams(6), {"x": toy.Node(toy.MAKE, toy.MakeParams(3))})
    reference = ensure(fresh, node, echo=lambda m: None)["state"]
    proc = _run_toy(store.root, 3, "--steps", "6", env={"TOY_DIE_AT_STEP": "4"})
    proc.communicate(timeout=60)
    assert proc.returncode == 9 and not store.exists(node.key)
    toy.CALLS.clear()
    resumed = ensure(store, node, echo=lambda m: None)
    assert toy.CALLS == ["step4", "step5"]  # steps 0-3 came from the checkpoint
    assert np.array_equal(resumed["state"], reference)
    assert [k for k in store.keys() if store.manifest(k)["stage"] == "steps.checkpoint"] == []


# ---- many writers, one store ------------------------------------------------------------------------
def test_two_writers_of_one_key_never_mix(store: Store):
    """Two machines can compute one key with other bits (another BLAS): each stages its own arrays,
    the first to publish wins, the other discards its staging and gets the winner's artifact."""
    key = make_key("t", 1, {"race": 1})
    with store.writer(key, {"stage": "t", "inputs": {}}) as a, store.writer(key, {"stage": "t"}) as b:
        a.put("x", np.full((4, 3), 1.0, np.float32))
        b.put("x", np.full((4, 3), 2.0, np.float32))
        won = b.commit(by="b")
        lost = a.commit(by="a")
    assert won.manifest["by"] == "b" and lost.manifest == won.manifest
    assert np.array_equal(lost["x"], np.full((4, 3), 2.0)) and np.array_equal(store.open(key)["x"], lost["x"])
    assert list(store.keys()) == [key] and store.staging() == []


def test_run_names(store: Store):
    assert store.load_run("demo") is None and store.runs() == {}
    store.save_run("demo", {"stages": {"make": "a" * 64}})
    store.save_run("demo", {"stages": {"make": "b" * 64}})  # the last save wins, whole
    store.save_run("other", {"stages": {}})
    assert store.load_run("demo") == {"stages": {"make": "b" * 64}}
    assert sorted(store.runs()) == ["demo", "other"]
    Raw(store).write("runs/bad.json", b'{"stages": ')
    with pytest.raises(CorruptArtifact, match="bad"):
        store.load_run("bad")
    assert sorted(store.runs()) == ["demo", "other"]  # listing skips the damaged one
    with pytest.raises(BadRunName):
        store.save_run("../escape", {})


def test_gc_unreferenced_keeps_reachable(store: Store):
    kept = ensure(store, toy.chain(1), echo=lambda m: None)
    dropped = ensure(store, toy.chain(2), echo=lambda m: None)
    assert store.gc(keep={kept.key}) == {"debris": 0, "artifacts": 2}
    assert store.exists(kept.key) and store.exists(toy.chain(1).inputs["x"].key)
    assert not store.exists(dropped.key) and store.staging() == []


def test_gc_unreferenced_when_another_gc_removes_an_artifact_meanwhile(store: Store, monkeypatch):
    """Another `ltx cache gc --unreferenced` removes an artifact between this gc's listing of the keys and
    its read of that manifest: it is skipped, not an error (seen in
    test_two_concurrent_generates_and_gc_beside_them as UnknownArtifact)."""
    kept = ensure(store, toy.chain(1), echo=lambda m: None)
    dropped = ensure(store, toy.chain(2), echo=lambda m: None)
    read = Store.manifest

    def racing(self, key):
        if key == dropped.key and self.exists(key):
            self.remove(key)  # the other gc, just before this read
        return read(self, key)

    monkeypatch.setattr(Store, "manifest", racing)
    store.gc(keep={kept.key})
    assert store.exists(kept.key) and not store.exists(dropped.key)


def test_a_writer_taken_for_dead_publishes_nothing(s3_url):
    """A writer that stalls past its heartbeat's stale age (a laptop asleep) loses its staging to gc,
    which takes its heartbeat over first: the writer's commit then fails instead of publishing arrays
    that gc deleted."""
    store = Store(s3_url).ensure_writable()
    key = make_key("t", 1, {"stall": 1})
    with store.writer(key, {"stage": "t", "inputs": {}}) as w:
        w.put("x", np.arange(10, dtype=np.float32))
        w._staging._stop_beating()  # the stall: no more renewals
        assert _until(lambda: store.gc()["debris"], timeout=20, every=0.5) == 1
        with pytest.raises(PublishError, match="took this writer for dead"):
            w.commit()
    assert not store.exists(key) and store.staging() == []


def test_remote_reads_are_chunked_and_download_an_artifact_once(s3_url):
    import cache.bucket as bucket

    store = Store(s3_url).ensure_writable()
    key = make_key("t", 1, {"reads": 1})
    video = np.random.RandomState(0).standard_normal((64, 128, 128)).astype(np.float32)  # 4 MB: 2 chunks
    with store.writer(key, {"stage": "t", "inputs": {}}) as w:
        w.put("video", video)
        w.put("audio", np.ones((7, 5), np.float32))
        w.commit()
    size = store.size(key)
    bucket.READS["bytes"] = 0
    art = store.open(key, verify=True)  # every array read and checked once ...
    assert np.array_equal(art["video"], video) and art["audio"].shape == (7, 5)  # ... then used
    assert 0.9 * size < bucket.READS["bytes"] <= size  # every chunk once, nothing beyond the artifact
    bucket.READS["bytes"] = 0
    first = next(store.open(key, verify=False).iter_rows("video", rows=8))  # a range of rows
    assert np.array_equal(first, video[:8]) and bucket.READS["bytes"] < size // 2  # only its chunk


def test_remote_write_or_read_failure_is_the_stores_not_the_artifacts(s3_url, monkeypatch):
    """A request that fails (connection reset, timeout) while writing publishes nothing and leaves no
    staging; while reading it is the store's trouble, not corruption: the artifact is kept."""
    import obstore.exceptions as oe
    import zarr

    store = Store(s3_url).ensure_writable()
    node = toy.chain(11, rows=16)
    ensure(store, node.inputs["x"], echo=lambda m: None)

    def reset(self, *a):
        raise oe.GenericError("Generic S3 error: connection reset by peer")

    setitem, getitem = zarr.Array.__setitem__, zarr.Array.__getitem__
    monkeypatch.setattr(zarr.Array, "__setitem__", reset)
    with pytest.raises(PublishError) as e:
        ensure(store, node, echo=lambda m: None)
    assert "connection reset by peer" in str(e.value) and "AWS_ENDPOINT_URL" in str(e.value)
    assert "nothing was published" in str(e.value) and "\n" not in str(e.value)
    monkeypatch.setattr(zarr.Array, "__setitem__", setitem)  # (not undo(): it would drop the AWS variables)
    assert not store.exists(node.key) and store.staging() == []
    good = ensure(store, node, echo=lambda m: None)["y"]
    monkeypatch.setattr(zarr.Array, "__getitem__", reset)
    with pytest.raises(StoreUnreachable, match="connection reset by peer"):
        ensure(store, node, echo=lambda m: None)
    monkeypatch.setattr(zarr.Array, "__getitem__", getitem)
    assert np.array_equal(store.open(node.key)["y"], good)
