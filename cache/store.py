"""The artifact store: zarr v3 groups under content-addressed keys, published atomically.

Layout under the store root:
    objects/<k[:2]>/<key>/   one published artifact (a zarr group; its manifest in the group attributes)
    tmp/<token>.lock         held (flock) by a live writer for as long as it writes
    tmp/<token>/             the artifact being written; renamed into objects/ when complete
    runs/<name>.json         human names: a run's stage -> key map
    digests/                 memoised content digests of large external files

The presence of objects/<k[:2]>/<key> is the only completion signal: a rename makes it appear
whole or not at all. Every array's sha256 is in the manifest and is checked on read.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
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


def default_root() -> Path:
    return Path(os.environ.get("LTX_CACHE") or Path.home() / ".cache" / "ltx")


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


def _write_failed(e: OSError) -> str:
    """The one-line message of a write that failed part-way (nothing was published)."""
    why = e.strerror or type(e).__name__
    return (
        f"writing to the cache failed ({why}); nothing was published. Free disk space or pass another "
        "--cache-dir, then rerun: finished stages are kept"
    )


class RowWriter:
    """Writes one array of an artifact block by block along axis 0, in order, hashing as it goes.
    Rows are held back until they fill whole zarr chunks, so every chunk is written once, whole
    (a partial chunk write makes zarr read the chunk back and rewrite it)."""

    def __init__(self, zarray: Any, shape: tuple[int, ...], dtype: np.dtype):
        self._z, self.shape, self.dtype = zarray, shape, dtype
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
        except OSError as e:
            raise PublishError(_write_failed(e)) from None
        self._written += rows
        self._pending = [pending[rows:].copy()] if rows < len(pending) else []

    def finish(self) -> str:
        if self._next != self.shape[0]:
            raise PublishError(f"array written with {self._next} of {self.shape[0]} rows")
        if self._next > self._written:
            self._flush(self._next - self._written)
        return self._h.hexdigest()


class Writer:
    """Builds one artifact under tmp/ and publishes it with a rename. Use as a context manager."""

    def __init__(self, store: Store, key: str, manifest: dict[str, Any]):
        import zarr

        self.store, self.key, self.manifest = store, key, dict(manifest)
        token = f"{key[:16]}.{os.getpid()}.{secrets.token_hex(4)}"
        self._lock_path = store.tmp / f"{token}.lock"
        self._lock = open(self._lock_path, "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.path = store.tmp / token
        try:
            self._group = zarr.open_group(store=str(self.path), mode="w")
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
        except OSError as e:
            raise PublishError(_write_failed(e)) from None
        rw = RowWriter(z, shape, dtype)
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
        final = self.store.path(self.key)
        try:
            self._group.attrs["manifest"] = manifest
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PublishError(_write_failed(e)) from None
        try:
            os.rename(self.path, final)
        except OSError as e:
            if not final.exists():
                raise PublishError(_write_failed(e)) from None
            shutil.rmtree(
                self.path, ignore_errors=True
            )  # another writer published this key first: keep theirs
        self._release()
        # Not re-read from disk: the key names the content, and a concurrent writer may already have
        # superseded (removed) a published checkpoint.
        return Artifact(self.key, final, manifest)

    def abort(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        if not self._lock.closed:
            self._lock_path.unlink(missing_ok=True)
            self._lock.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self._lock.closed:
            self.abort()


@dataclass
class Artifact:
    """A published artifact. Indexing reads an array and verifies its checksum."""

    key: str
    path: Path
    manifest: dict[str, Any]

    @property
    def names(self) -> list[str]:
        return sorted(self.manifest["arrays"])

    def _zarr(self, name: str) -> Any:
        import zarr

        if name not in self.manifest["arrays"]:
            raise KeyError(f"artifact {self.key[:8]} has no array {name!r}; it has {', '.join(self.names)}")
        try:
            return zarr.open_array(store=str(self.path / name), mode="r")
        except Exception as e:  # noqa: BLE001  (any decoding failure means corruption)
            raise self._unreadable(name, e) from None

    def _unreadable(self, name: str, e: Exception) -> CacheError:
        if not self.path.exists():  # Store.remove renames an artifact away whole: that is not damage
            return UnknownArtifact(f"artifact {self.key[:8]} was removed while being read")
        return CorruptArtifact(f"artifact {self.key[:8]} array {name!r} is unreadable ({type(e).__name__})")

    def iter_rows(self, name: str, rows: int = 1) -> Iterator[np.ndarray]:
        """Yield an array in blocks along axis 0; the checksum is verified when the last block is read."""
        import numpy as np

        z = self._zarr(name)
        info = self.manifest["arrays"][name]
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
        """Read every array and check its checksum; raises CorruptArtifact."""
        for name in self.names:
            for _ in self.iter_rows(name, rows=self._rows(name)):
                pass


def _age(path: Path) -> float:
    """Seconds since path was modified; -inf if it is gone (another process published or removed it
    between the listing and this look, e.g. a writer renaming its tmp/ directory into place)."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return float("-inf")


class Store:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()
        self.objects, self.tmp, self.runs_dir = self.root / "objects", self.root / "tmp", self.root / "runs"

    def ensure_writable(self) -> Store:
        try:
            for d in (self.objects, self.tmp, self.runs_dir, self.root / "digests"):
                d.mkdir(parents=True, exist_ok=True)
            probe = self.tmp / f".probe-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise StoreUnwritable(
                f"cache directory {self.root} is not writable ({e.strerror}); pass --cache-dir or set LTX_CACHE"
            ) from None
        return self

    # ---- artifacts -------------------------------------------------------------------------
    def path(self, key: str) -> Path:
        return self.objects / key[:2] / key

    def exists(self, key: str) -> bool:
        return self.path(key).is_dir()

    def manifest(self, key: str) -> dict[str, Any]:
        try:
            meta = json.loads((self.path(key) / "zarr.json").read_text())
            manifest = meta["attributes"]["manifest"]
            if manifest.get("key") != key or not isinstance(manifest.get("arrays"), dict):
                raise ValueError("manifest does not match its key")
            return manifest
        except FileNotFoundError:
            if not self.exists(key):
                raise UnknownArtifact(f"no artifact {key[:8]} in {self.root}") from None
            raise CorruptArtifact(f"artifact {key[:8]} has no manifest") from None
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise CorruptArtifact(f"artifact {key[:8]} has a corrupt manifest") from None

    def open(self, key: str, verify: bool = True) -> Artifact:
        art = Artifact(key, self.path(key), self.manifest(key))
        if verify:
            art.verify()
        return art

    def writer(self, key: str, manifest: dict[str, Any]) -> Writer:
        self.ensure_writable()
        try:
            return Writer(self, key, manifest)
        except OSError as e:
            raise PublishError(f"cannot write to {self.tmp} ({e.strerror})") from None

    def remove(self, key: str) -> None:
        """Remove an artifact: rename it out of objects/ first, so readers never see half of it."""
        path = self.path(key)
        if not path.exists():
            return
        trash = self.tmp / f"trash-{key[:16]}-{secrets.token_hex(4)}"
        self.tmp.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def keys(self) -> Iterator[str]:
        if not self.objects.is_dir():
            return
        for sub in sorted(self.objects.iterdir()):
            for p in sorted(sub.iterdir()) if sub.is_dir() else []:
                if len(p.name) == 64 and _HEX.match(p.name):
                    yield p.name

    def size(self, key: str) -> int:
        return sum(p.stat().st_size for p in self.path(key).rglob("*") if p.is_file())

    def resolve(self, ref: str) -> str:
        """A full key from a full key or a unique prefix (at least 4 hex digits), as git does."""
        ref = ref.strip().lower()
        if len(ref) < 4 or not _HEX.match(ref):
            raise UnknownArtifact(f"{ref!r} is not a key or key prefix (need at least 4 hex digits)")
        sub = self.objects / ref[:2]
        hits = sorted(p.name for p in sub.iterdir() if p.name.startswith(ref)) if sub.is_dir() else []
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
        tmp = self.runs_dir / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(run, indent=1, sort_keys=True))
        os.replace(tmp, self.runs_dir / f"{name}.json")

    def load_run(self, name: str) -> dict[str, Any] | None:
        check_run_name(name)
        p = self.runs_dir / f"{name}.json"
        try:
            return json.loads(p.read_text())
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise StoreUnwritable(
                f"cannot read run file {p} ({e.strerror}); check the permissions of "
                f"{self.root} or pass another --cache-dir"
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CorruptArtifact(f"run file {p} is corrupt; remove it and rerun") from None

    def runs(self) -> dict[str, dict[str, Any]]:
        out = {}
        if self.runs_dir.is_dir():
            for p in sorted(self.runs_dir.glob("*.json")):
                try:
                    out[p.stem] = json.loads(p.read_text())
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue
        return out

    # ---- external inputs -------------------------------------------------------------------
    def digest(self, path: str | Path) -> str:
        """sha256 of a file, memoised by (path, size, mtime, inode) so a 40 GB checkpoint is hashed once."""
        sig = hashlib.sha256(stat_signature(path).encode()).hexdigest()
        memo = self.root / "digests" / sig
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
    def gc(self, keep: set[str] | None = None) -> dict[str, int]:
        """Remove debris of dead writers; with `keep`, also every artifact not reachable from it."""
        removed = {"debris": 0, "artifacts": 0}
        if self.tmp.is_dir():
            for lock_path in self.tmp.glob("*.lock"):
                try:
                    f = open(lock_path, "a")
                except OSError:
                    continue
                with f:
                    try:
                        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # a live writer holds it
                    shutil.rmtree(self.tmp / lock_path.name[: -len(".lock")], ignore_errors=True)
                    lock_path.unlink(missing_ok=True)
                    removed["debris"] += 1
            for p in self.tmp.iterdir():
                orphan = p.is_dir() and not (self.tmp / f"{p.name}.lock").exists()
                if orphan and (p.name.startswith("trash-") or _age(p) > 5):
                    shutil.rmtree(p, ignore_errors=True)
                    removed["debris"] += 1
        # leftovers of killed processes: probe files, half-written run files, half-created tiny models
        for pattern, age in (("tmp/.probe-*", 60), ("runs/.*.tmp", 60), ("models/.tiny-*", 3600)):
            for p in self.root.glob(pattern):
                if _age(p) > age:
                    if p.is_dir():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
                    removed["debris"] += 1
        scratch = self.root / "scratch"  # processes' temporary files: ours are named ltx-*
        if scratch.is_dir():
            for p in scratch.glob("ltx-*"):
                if _age(p) > 3600:
                    shutil.rmtree(p, ignore_errors=True)
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
                except CorruptArtifact:
                    pass
        for key in self.keys():
            try:
                m = self.manifest(key)
            except CorruptArtifact:
                continue
            of = m.get("checkpoint_of")
            if of in seen and not self.exists(of):
                seen.add(key)
        return seen
