"""The artifact store: zarr v3 groups under content-addressed keys, published all-or-nothing.

A store is a local directory (cache.local) or an object-store URL, s3://bucket/prefix
(cache.bucket). Both keep one contract, which this module builds on:
- a writer stages its arrays where no other writer writes, so two writers of one key never mix;
- an artifact appears whole or not at all, and its appearance is the only completion signal
  (a rename of the writer's directory; one conditional put of its manifest); the first writer
  to publish a key wins, the other discards its staging and reads the winner's artifact;
- every array's sha256 is in the manifest and is checked on read;
- a dead writer leaves only debris, which gc removes (its lock is free; its heartbeat is stale).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cache.errors import (
    AmbiguousArtifact,
    BadRunName,
    CacheError,
    CorruptArtifact,
    PublishError,
    StoreUnwritable,
    UnknownArtifact,
    why,
    write_failed,
)
from cache.keys import file_digest, stat_signature

if TYPE_CHECKING:  # numpy is imported where used: `ltx --help` and `ltx cache ls` never need it
    import numpy as np

# Rows per zarr chunk: about this many bytes. Encoding a chunk (zarr's bytes codec, then zstd) holds
# several copies of it for a moment: writing 8 MB of frames peaks ~40 MB above the process's level
# with 8 MB chunks, ~12 MB with 2 MB chunks, and is faster (`python bench/rss_trace.py --chunks`).
CHUNK_BYTES = 2 << 20
# Every chunk is written whole as it comes: zarr's default first compares each chunk with the fill
# value (to skip empty ones), a pass over the data that cost more than zstd and SHA-256 together
# (`python bench/publish.py`).
WRITE_EMPTY_CHUNKS = True
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HEX = re.compile(r"^[0-9a-f]+$")
_STORED = {"float16": "float32", "float64": "float32", "bfloat16": "float32"}
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://")


def is_url(root: str | Path) -> bool:
    """Whether a --cache-dir names an object store (s3://...) rather than a directory."""
    return isinstance(root, str) and _URL.match(root) is not None


def default_root() -> Path | str:
    value = os.environ.get("LTX_CACHE")
    if value and is_url(value):
        return value
    return Path(value or Path.home() / ".cache" / "ltx")


def default_local() -> Path:
    """Where a store at a URL keeps this machine's own files (digest memos, scratch, built models)."""
    return Path(os.environ.get("LTX_LOCAL_CACHE") or Path.home() / ".cache" / "ltx")


def _hasher(dtype: np.dtype, shape: tuple[int, ...]) -> Any:
    import numpy as np

    h = hashlib.sha256()
    h.update(f"{np.dtype(dtype).str}|{','.join(map(str, shape))}|".encode())
    return h


def _chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    if not shape:
        return ()
    row = itemsize * math.prod(shape[1:])
    return (max(1, min(shape[0], CHUNK_BYTES // max(row, 1))),) + tuple(shape[1:])


def check_run_name(name: str) -> str:
    if not _RUN_NAME.match(name or "") or ".." in name:
        raise BadRunName(
            f"run name {name!r} is not allowed; use letters, digits, '.', '_' and '-' (no path separators or '..')"
        )
    return name


class RowWriter:
    """Writes one array of an artifact block by block along axis 0, in order, hashing as it goes.
    Rows are held back until they fill whole zarr chunks, so every chunk is written once, whole
    (a partial chunk write makes zarr read the chunk back and rewrite it)."""

    def __init__(
        self,
        zarray: Any,
        shape: tuple[int, ...],
        dtype: np.dtype,
        errors: tuple[type[BaseException], ...] = (OSError,),
        failed: Any = write_failed,
    ):
        self._z, self.shape, self.dtype, self._errors, self._failed = zarray, shape, dtype, errors, failed
        self._h = _hasher(dtype, shape)
        self._next = 0  # rows received
        self._written = 0  # rows in zarr (a multiple of the chunk rows until the last flush)
        self._chunk_rows = int(zarray.chunks[0]) if shape and zarray.chunks else 1
        self._pending: list[np.ndarray] = []

    def write(self, block: np.ndarray) -> None:
        import numpy as np

        block = np.ascontiguousarray(block, dtype=self.dtype).reshape((-1,) + self.shape[1:])
        if self._next + block.shape[0] > self.shape[0]:
            raise PublishError(f"array written with more than its {self.shape[0]} rows")
        self._h.update(np.ascontiguousarray(block.astype(block.dtype.newbyteorder("<"), copy=False)))
        self._pending.append(block)
        self._next += block.shape[0]
        whole = (self._next - self._written) // self._chunk_rows * self._chunk_rows
        if whole:
            self._flush(whole)
        else:  # held back: own the rows (the caller may reuse its buffer)
            self._pending[-1] = block.copy()

    def _flush(self, rows: int) -> None:
        import numpy as np

        pending = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        try:
            self._z[self._written : self._written + rows] = pending[:rows]
        except self._errors as e:
            raise self._failed(e) from None
        self._written += rows
        self._pending = [pending[rows:].copy()] if rows < len(pending) else []

    def finish(self) -> str:
        if self._next != self.shape[0]:
            raise PublishError(f"array written with {self._next} of {self.shape[0]} rows")
        if self._next > self._written:
            self._flush(self._next - self._written)
        return self._h.hexdigest()


class Writer:
    """Stages one artifact where only this writer writes, then publishes it all-or-nothing (the
    store's backend says how: a rename, a conditional put). Use as a context manager."""

    def __init__(self, store: Store, key: str, manifest: dict[str, Any]):
        import zarr

        self.store, self.key, self.manifest = store, key, dict(manifest)
        self._staging = store._io.stage(key)
        self.path = self._staging.path  # where the arrays are staged
        try:
            self._group = zarr.open_group(store=self._staging.zarr_store(), mode="w")
        except self._staging.errors as e:
            self.abort()
            raise self._staging.failed(e) from None
        except BaseException:
            self.abort()
            raise
        self._arrays: dict[str, dict[str, Any]] = {}
        self._open: dict[str, RowWriter] = {}

    def create(
        self, name: str, shape: tuple[int, ...], dtype: Any, source_dtype: str | None = None
    ) -> RowWriter:
        """An array to be filled block by block (for outputs too large to hold at once)."""
        import numpy as np

        dtype = np.dtype(dtype)
        logical = [int(s) for s in shape]
        shape = tuple(logical) or (1,)  # zarr 0-d writes are unreliable: store scalars as (1,)
        try:
            z = self._group.create_array(
                name,
                shape=shape,
                dtype=dtype,
                chunks=_chunks(shape, dtype.itemsize),
                config={"write_empty_chunks": WRITE_EMPTY_CHUNKS},
            )
        except self._staging.errors as e:
            raise self._staging.failed(e) from None
        rw = RowWriter(z, shape, dtype, self._staging.errors, self._staging.failed)
        self._open[name] = rw
        self._arrays[name] = {"shape": logical, "dtype": source_dtype or dtype.name, "stored": dtype.name}
        return rw

    def put(self, name: str, array: Any, source_dtype: str | None = None) -> None:
        """Store a whole array; floats other than float32 are stored as float32, recording the original."""
        import numpy as np

        src = source_dtype or str(getattr(array, "dtype", "float32")).replace("mlx.core.", "")
        arr = np.asarray(array)
        if arr.dtype.kind == "f" or src in _STORED:
            arr = arr.astype(np.float32)
        self.create(name, arr.shape, arr.dtype, source_dtype=src).write(arr)

    def commit(self, **extra: Any) -> Artifact:
        for name, rw in self._open.items():
            self._arrays[name]["sha256"] = rw.finish()
        manifest = {**self.manifest, **extra, "key": self.key, "arrays": self._arrays}
        try:
            self._staging.seal(self._group, manifest)
        except self._staging.errors as e:
            raise self._staging.failed(e) from None
        location, won = self._staging.publish(manifest)
        if not won:
            # Another writer published this key first: its arrays, with its manifest's checksums (two
            # machines can compute one key with other bits). If it is gone already (a superseded
            # checkpoint), reading says so.
            try:
                manifest, location = self.store._io.read_manifest(self.key)
            except CacheError:
                pass
        return Artifact(self.key, location, manifest, self.store._io)

    def abort(self) -> None:
        self._staging.abort()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._staging.live:
            self.abort()


@dataclass
class Artifact:
    """A published artifact. Indexing reads an array and verifies its checksum."""

    key: str
    path: Any  # where its arrays are: a directory, or an object store's URL of its data prefix
    manifest: dict[str, Any]
    io: Any = field(default=None, repr=False)  # the store's backend, which opens the arrays
    _held: dict[str, Any] = field(default_factory=dict, repr=False)  # verified, not yet read

    @property
    def names(self) -> list[str]:
        return sorted(self.manifest["arrays"])

    def _zarr(self, name: str) -> Any:
        if name not in self.manifest["arrays"]:
            raise KeyError(f"artifact {self.key[:8]} has no array {name!r}; it has {', '.join(self.names)}")
        try:
            return self.io.open_array(self.path, name)
        except Exception as e:  # noqa: BLE001  (any decoding failure means corruption)
            raise self._unreadable(name, e) from None

    def _unreadable(self, name: str, e: Exception) -> CacheError:
        if (trouble := self.io.failure(e)) is not None:  # the network, not the artifact
            return trouble
        if self.path is None or not self.io.holds(self.key, self.path):
            # Store.remove takes an artifact away whole: that is not damage
            return UnknownArtifact(f"artifact {self.key[:8]} was removed while being read")
        return CorruptArtifact(f"artifact {self.key[:8]} array {name!r} is unreadable ({type(e).__name__})")

    def iter_rows(self, name: str, rows: int = 1) -> Iterator[np.ndarray]:
        """Yield an array in blocks along axis 0; the checksum is verified when the last block is read."""
        import numpy as np

        info = self.manifest["arrays"].get(name)
        held = self._held.pop(name, None)
        if held is not None:  # verified when the artifact was opened
            for start in range(0, held.shape[0] if held.ndim else 1, rows):
                yield held[start : start + rows] if info["shape"] else held
            return
        z = self._zarr(name)
        shape = tuple(info["shape"]) or (1,)
        h = _hasher(np.dtype(info["stored"]), shape)
        n = shape[0]
        for start in range(0, n, rows):
            try:
                block = np.asarray(z[start : start + rows])
            except Exception as e:  # noqa: BLE001
                raise self._unreadable(name, e) from None
            h.update(np.ascontiguousarray(block))  # the buffer itself: no bytes copy
            if start + rows >= n and h.hexdigest() != info["sha256"]:
                raise CorruptArtifact(f"artifact {self.key[:8]} array {name!r} fails its checksum")
            yield block if info["shape"] else block.reshape(())

    def _rows(self, name: str) -> int:
        shape = self.manifest["arrays"].get(name, {}).get("shape") or [1]
        return max(1, shape[0])

    def __getitem__(self, name: str) -> np.ndarray:
        (whole,) = self.iter_rows(name, rows=self._rows(name))
        return whole

    def load(self) -> dict[str, np.ndarray]:
        """Every array, read into memory once and checked against its checksum (CorruptArtifact), so
        that removing the artifact afterwards cannot touch them (UnknownArtifact if it goes meanwhile)."""
        return {name: self[name] for name in self.names}

    def verify(self) -> None:
        """Read every array and check its checksum; raises CorruptArtifact. A remote artifact's arrays
        are kept (up to the backend's hold_bytes) until their first read, so they download once."""
        budget = self.io.hold_bytes if self.io is not None else 0
        for name in self.names:
            self._held.pop(name, None)
            for whole in self.iter_rows(name, rows=self._rows(name)):
                if whole.nbytes <= budget:
                    self._held[name] = whole
                    budget -= whole.nbytes


class Store:
    """The artifact store at a directory or an s3:// URL (`root`; default $LTX_CACHE or ~/.cache/ltx).
    `local` is this machine's directory for files that are not shared: the root itself for a
    directory, else $LTX_LOCAL_CACHE or ~/.cache/ltx."""

    def __init__(self, root: str | Path | None = None, local: str | Path | None = None):
        root = default_root() if root is None else root
        if is_url(root):
            from cache.bucket import Bucket

            self._io: Any = Bucket(str(root))
            self.root: Path | str = str(root).rstrip("/")
            self.local = Path(local) if local is not None else default_local()
        else:
            from cache.local import Directory

            if re.match(r"^[a-z][a-z0-9+.-]*:/[^/]", str(root)):  # a URL that went through Path()
                raise StoreUnwritable(f"cache {root} looks like a URL that lost a '/'; pass it as a string")
            self.root = self.local = Path(root)
            self._io = Directory(self.root)

    # a directory store's own places (tests and tools look into them)
    @property
    def objects(self) -> Path:
        return self._io.objects

    @property
    def tmp(self) -> Path:
        return self._io.tmp

    @property
    def runs_dir(self) -> Path:
        return self._io.runs_dir

    def ensure_writable(self) -> Store:
        self._io.ensure_writable()
        return self

    # ---- artifacts -------------------------------------------------------------------------
    def path(self, key: str) -> Path | str:
        """Where an artifact is published: its directory, or its record's URL."""
        return self._io.path(key)

    def exists(self, key: str) -> bool:
        return self._io.exists(key)

    def _read(self, key: str) -> tuple[dict[str, Any], Any]:
        manifest, location = self._io.read_manifest(key)
        arrays = manifest.get("arrays") if isinstance(manifest, dict) else None
        if not isinstance(arrays, dict) or manifest.get("key") != key:
            raise CorruptArtifact(f"artifact {key[:8]} has a corrupt manifest")
        return manifest, location

    def manifest(self, key: str) -> dict[str, Any]:
        return self._read(key)[0]

    def open(self, key: str, verify: bool = True) -> Artifact:
        manifest, location = self._read(key)
        art = Artifact(key, location, manifest, self._io)
        if verify:
            art.verify()
        return art

    def writer(self, key: str, manifest: dict[str, Any]) -> Writer:
        self.ensure_writable()
        try:
            return Writer(self, key, manifest)
        except OSError as e:
            raise PublishError(f"cannot write to {self.root} ({why(e)})") from None

    def remove(self, key: str) -> None:
        """Remove an artifact whole: readers never see half of it."""
        self._io.remove(key)

    def keys(self) -> Iterator[str]:
        return self._io.keys()

    def size(self, key: str) -> int:
        return self._io.size(key)

    def modified(self, key: str) -> float:
        """When the artifact was published (seconds since the epoch)."""
        return self._io.modified(key)

    def resolve(self, ref: str) -> str:
        """A full key from a full key or a unique prefix (at least 4 hex digits), as git does."""
        ref = ref.strip().lower()
        if len(ref) < 4 or not _HEX.match(ref):
            raise UnknownArtifact(f"{ref!r} is not a key or key prefix (need at least 4 hex digits)")
        hits = self._io.candidates(ref)
        if not hits:
            raise UnknownArtifact(f"no artifact matches {ref!r}; `ltx cache ls` lists them")
        if len(hits) > 1:
            raise AmbiguousArtifact(f"key prefix {ref!r} matches {len(hits)} artifacts; give more digits")
        return hits[0]

    def lineage(self, key: str) -> dict[str, Any]:
        """The tree of an artifact's inputs: {key, stage, inputs: {name: subtree}}."""
        m = self.manifest(key)
        inputs = {
            n: self.lineage(k) if self.exists(k) else {"key": k, "missing": True}
            for n, k in m.get("inputs", {}).items()
        }
        return {"key": key, "stage": m.get("stage"), "inputs": inputs}

    # ---- runs ------------------------------------------------------------------------------
    def save_run(self, name: str, run: dict[str, Any]) -> None:
        check_run_name(name)
        self.ensure_writable()
        self._io.save_run(name, json.dumps(run, indent=1, sort_keys=True))

    def load_run(self, name: str) -> dict[str, Any] | None:
        check_run_name(name)
        raw = self._io.load_run(name)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CorruptArtifact(f"{self._io.run_label(name)} is corrupt; remove it and rerun") from None

    def runs(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, raw in self._io.runs().items():
            try:
                out[name] = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
        return out

    # ---- external inputs -------------------------------------------------------------------
    def digest(self, path: str | Path) -> str:
        """sha256 of a file, memoised by (path, size, mtime, inode) so a 40 GB checkpoint is hashed once
        (on this machine: the memo is under `local`)."""
        sig = hashlib.sha256(stat_signature(path).encode()).hexdigest()
        memo = self.local / "digests" / sig
        try:
            return memo.read_text().strip()
        except OSError:
            pass
        value = file_digest(path)
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(value)
            os.replace(tmp, memo)
        except OSError:
            pass
        return value

    # ---- maintenance -----------------------------------------------------------------------
    def staging(self) -> list[str]:
        """What writers have under way or left behind: live writers' staging and dead ones' debris."""
        return self._io.staging()

    def gc(self, keep: set[str] | None = None) -> dict[str, int]:
        """Remove debris of dead writers; with `keep`, also every artifact not reachable from it."""
        import shutil

        from cache.local import _age

        removed = {"debris": self._io.gc_debris(), "artifacts": 0}
        # leftovers of killed processes on this machine: half-created tiny models, temporary files
        # (ours are named ltx-*)
        for pattern in ("models/.tiny-*", "scratch/ltx-*"):
            for p in self.local.glob(pattern):
                if _age(p) > 3600:
                    if p.is_dir():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
                    removed["debris"] += 1
        if keep is not None:
            live = self.reachable(keep)
            for key in list(self.keys()):
                if key not in live:
                    self.remove(key)
                    removed["artifacts"] += 1
        return removed

    def reachable(self, roots: set[str]) -> set[str]:
        """Keys reachable from `roots` through manifest inputs, plus checkpoints of unfinished roots."""
        seen: set[str] = set()
        stack = [k for k in roots]
        while stack:
            k = stack.pop()
            if k in seen:
                continue
            seen.add(k)
            if self.exists(k):
                try:
                    stack += list(self.manifest(k).get("inputs", {}).values())
                except (CorruptArtifact, UnknownArtifact):  # damaged, or removed meanwhile (another gc)
                    pass
        for key in self.keys():
            try:
                m = self.manifest(key)
            except (CorruptArtifact, UnknownArtifact):
                continue
            of = m.get("checkpoint_of")
            if of in seen and not self.exists(of):
                seen.add(key)
        return seen
