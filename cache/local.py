"""A store in a local directory: a writer's rename publishes, its flock says it is alive.

Layout under the root:
    objects/<k[:2]>/<key>/   one published artifact (a zarr group; its manifest in the group attributes)
    tmp/<token>.lock         held (flock) by a live writer for as long as it writes
    tmp/<token>/             the artifact being written; renamed into objects/ when complete
    runs/<name>.json         human names: a run's stage -> key map

The presence of objects/<k[:2]>/<key> is the only completion signal: a rename makes it appear
whole or not at all; of two racing writers the first rename wins.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cache.errors import CorruptArtifact, StoreUnwritable, UnknownArtifact, write_failed

_HEX = re.compile(r"^[0-9a-f]+$")


def _age(path: Path) -> float:
    """Seconds since path was modified; -inf if it is gone (another process published or removed it
    between the listing and this look, e.g. a writer renaming its tmp/ directory into place)."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return float("-inf")


class Staging:
    """One writer's directory under tmp/, held by its lock until published (renamed) or aborted."""

    errors: tuple[type[BaseException], ...] = (OSError,)
    failed = staticmethod(write_failed)  # the PublishError of a write that raised one of `errors`

    def __init__(self, directory: Directory, key: str):
        token = f"{key[:16]}.{os.getpid()}.{secrets.token_hex(4)}"
        self._lock_path = directory.tmp / f"{token}.lock"
        self._lock = open(self._lock_path, "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.path = directory.tmp / token
        self.final = directory.path(key)

    def zarr_store(self) -> str:
        return str(self.path)

    def seal(self, group: Any, manifest: dict[str, Any]) -> None:
        """The manifest goes into the group's attributes (its zarr.json), before the rename."""
        group.attrs["manifest"] = manifest
        self.final.parent.mkdir(parents=True, exist_ok=True)

    def publish(self, manifest: dict[str, Any]) -> tuple[Path, bool]:
        """Rename into objects/: (where the artifact is, whether this writer's rename made it)."""
        try:
            os.rename(self.path, self.final)
        except OSError as e:
            if not self.final.exists():
                raise write_failed(e) from None
            shutil.rmtree(self.path, ignore_errors=True)  # another writer published this key first
            self.release()
            return self.final, False
        self.release()
        return self.final, True

    @property
    def live(self) -> bool:
        return not self._lock.closed

    def abort(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self.release()

    def release(self) -> None:
        if not self._lock.closed:
            self._lock_path.unlink(missing_ok=True)
            self._lock.close()


class Directory:
    hold_bytes = 0  # reads come from the page cache: verify-on-open keeps nothing in memory

    def __init__(self, root: Path):
        self.root = root
        self.objects, self.tmp, self.runs_dir = root / "objects", root / "tmp", root / "runs"

    def ensure_writable(self) -> None:
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

    def stage(self, key: str) -> Staging:
        return Staging(self, key)

    # ---- artifacts -------------------------------------------------------------------------
    def path(self, key: str) -> Path:
        return self.objects / key[:2] / key

    def exists(self, key: str) -> bool:
        return self.path(key).is_dir()

    def read_manifest(self, key: str) -> tuple[dict[str, Any], Path]:
        try:
            meta = json.loads((self.path(key) / "zarr.json").read_text())
            manifest = meta["attributes"]["manifest"]
        except FileNotFoundError:
            if not self.exists(key):
                raise UnknownArtifact(f"no artifact {key[:8]} in {self.root}") from None
            raise CorruptArtifact(f"artifact {key[:8]} has no manifest") from None
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise CorruptArtifact(f"artifact {key[:8]} has a corrupt manifest") from None
        return manifest, self.path(key)

    def failure(self, e: BaseException) -> None:
        """A read's exception that is not the artifact's fault (none here: the disk is the artifact)."""
        return None

    def open_array(self, location: Path, name: str) -> Any:
        import zarr

        return zarr.open_array(store=str(location / name), mode="r", zarr_format=3)

    def holds(self, key: str, location: Path) -> bool:
        """Whether the artifact read from `location` is still there (remove renames it away whole)."""
        return location.exists()

    def remove(self, key: str) -> None:
        """Rename the artifact out of objects/ first, so readers never see half of it."""
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

    def candidates(self, prefix: str) -> list[str]:
        sub = self.objects / prefix[:2]
        return sorted(p.name for p in sub.iterdir() if p.name.startswith(prefix)) if sub.is_dir() else []

    def size(self, key: str) -> int:
        return sum(p.stat().st_size for p in self.path(key).rglob("*") if p.is_file())

    def modified(self, key: str) -> float:
        return self.path(key).stat().st_mtime

    # ---- runs ------------------------------------------------------------------------------
    def save_run(self, name: str, text: str) -> None:
        tmp = self.runs_dir / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.runs_dir / f"{name}.json")

    def load_run(self, name: str) -> bytes | None:
        p = self.runs_dir / f"{name}.json"
        try:
            return p.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise StoreUnwritable(
                f"cannot read run file {p} ({e.strerror}); check the permissions of "
                f"{self.root} or pass another --cache-dir"
            ) from None

    def runs(self) -> dict[str, bytes]:
        if not self.runs_dir.is_dir():
            return {}
        return {p.stem: p.read_bytes() for p in sorted(self.runs_dir.glob("*.json"))}

    def run_label(self, name: str) -> str:
        return f"run file {self.runs_dir / f'{name}.json'}"

    # ---- maintenance -----------------------------------------------------------------------
    def staging(self) -> list[str]:
        """Everything under tmp/: live writers, their locks, and debris."""
        return sorted(os.listdir(self.tmp)) if self.tmp.is_dir() else []

    def gc_debris(self) -> int:
        """Remove what dead writers left: a staging directory whose lock no process holds, orphans
        and trash; a live writer's lock is never taken from it."""
        removed = 0
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
                    removed += 1
            for p in self.tmp.iterdir():
                orphan = p.is_dir() and not (self.tmp / f"{p.name}.lock").exists()
                if orphan and (p.name.startswith("trash-") or _age(p) > 5):
                    shutil.rmtree(p, ignore_errors=True)
                    removed += 1
        # leftovers of killed processes: probe files, half-written run files
        for pattern in ("tmp/.probe-*", "runs/.*.tmp"):
            for p in self.root.glob(pattern):
                if _age(p) > 60:
                    p.unlink(missing_ok=True)
                    removed += 1
        return removed
