"""A store under an object-store URL, s3://bucket/prefix: one conditional put publishes, a heartbeat
object says a writer is alive. Requests go through obstore (zarr's ObjectStore for the arrays);
credentials and the endpoint come from the usual AWS variables (AWS_ENDPOINT_URL for MinIO, R2, ...).

Layout under the prefix:
    objects/<k[:2]>/<key>.json   an artifact's commit record: its manifest and the token of the data
                                 prefix holding its arrays; put once, with If-None-Match (first wins)
    data/<token>/                one writer's arrays (a zarr group), written by no other writer: the
                                 artifact's arrays once a record names the token, staging before
    writers/<token>.json         a live writer's heartbeat, renewed with If-Match every few seconds
    runs/<name>.json             human names: a run's stage -> key map (a plain put: the last one wins)

Readers start from records only, so an artifact appears whole or not at all, and its arrays are
exactly one writer's. The loser of a race deletes its staging and reads the winner's artifact. gc
takes a stale heartbeat over with a conditional put before deleting that writer's staging, so a
writer that was only slow fails its next renewal (the last one is just before its commit) and
never publishes arrays that gc is deleting.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from cache.errors import (
    CacheError,
    CorruptArtifact,
    PublishError,
    StoreUnreachable,
    StoreUnwritable,
    UnknownArtifact,
    why,
    write_failed,
)

HEARTBEAT_S = 15.0  # a writer renews its heartbeat this often (LTX_CACHE_HEARTBEAT_S overrides)
STALE_BEATS = 4  # gc takes a writer for dead once its heartbeat missed this many renewals ...
STALE_FLOOR_S = 3.0  # ... and is at least this old (object stores date objects to the second)
# Opening an artifact with verify reads every array once; arrays up to this many bytes in all are
# kept until their first read, so that verifying and then using a remote artifact downloads it once.
HOLD_BYTES = 256 << 20
# What this process downloaded from object stores' data prefixes (arrays' metadata and chunks).
READS = {"bytes": 0, "gets": 0}

_URL = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(.*))?$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_REMEDY = "Check the bucket, the AWS credentials and AWS_ENDPOINT_URL, or pass another --cache-dir"


def heartbeat_interval() -> float:
    return float(os.environ.get("LTX_CACHE_HEARTBEAT_S") or HEARTBEAT_S)


def stale_after(interval: float) -> float:
    return max(STALE_BEATS * interval, STALE_FLOOR_S)


def _counting(store: Any) -> Any:
    """zarr's ObjectStore, counting what `get` returns into READS."""
    from zarr.storage import WrapperStore

    class Counting(WrapperStore):
        async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
            buf = await self._store.get(key, prototype, byte_range)
            if buf is not None:
                READS["bytes"] += len(buf)
                READS["gets"] += 1
            return buf

    return Counting(store)


class Staging:
    """One writer's data prefix and heartbeat, from its first put until its commit or abort."""

    def __init__(self, bucket: Bucket, key: str):
        import obstore.exceptions as oe

        self.errors: tuple[type[BaseException], ...] = (OSError, oe.BaseError)
        self.b, self.key = bucket, key
        host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"
        self.token = f"{key}.{host}.{os.getpid()}.{secrets.token_hex(4)}"
        self.path = f"{bucket.url}/data/{self.token}"
        self.interval = heartbeat_interval()
        self._beat_path, self._beats = f"writers/{self.token}.json", 0
        self._etag = self._put_beat("create")  # before any array: gc relies on this order
        self._lost = False
        self.live = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat {key[:8]}")
        self._thread.start()

    def failed(self, e: BaseException) -> PublishError:
        return write_failed(e, _REMEDY)

    def _put_beat(self, mode: Any) -> str:
        import obstore as obs

        self._beats += 1
        body = {"key": self.key, "pid": os.getpid(), "interval_s": self.interval, "beat": self._beats}
        return obs.put(self.b.root, self._beat_path, json.dumps(body).encode(), mode=mode)["e_tag"]

    def _renew(self) -> None:
        """Renew the heartbeat if it is still this writer's; `_lost` once gc has taken it over."""
        import obstore.exceptions as oe

        try:
            self._etag = self._put_beat({"e_tag": self._etag})
        except (oe.PreconditionError, FileNotFoundError):
            self._lost = True

    def _beat(self) -> None:
        while not self._stop.wait(self.interval) and not self._lost:
            try:
                self._renew()
            except Exception:  # noqa: BLE001  (a transient failure: the next beat tries again)
                pass

    def _stop_beating(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def zarr_store(self) -> Any:
        from zarr.storage import ObjectStore

        return ObjectStore(self.b.client(f"data/{self.token}"))

    def seal(self, group: Any, manifest: dict[str, Any]) -> None:
        """Nothing to do: the manifest is the commit record."""

    def publish(self, manifest: dict[str, Any]) -> tuple[str | None, bool]:
        """One conditional put of the record: (where the artifact is, whether this writer made it)."""
        import obstore as obs
        import obstore.exceptions as oe

        self._stop_beating()
        try:
            self._renew()  # the last renewal, just before the commit: fails if gc took us for dead
        except self.errors as e:
            raise self.failed(e) from None
        if self._lost:
            raise PublishError(
                f"writing to the cache failed (its gc took this writer for dead: no heartbeat for "
                f"{stale_after(self.interval):.0f} s); nothing was published. Rerun: finished stages are kept"
            )
        record = json.dumps({"manifest": manifest, "data": self.token}, sort_keys=True).encode()
        try:
            obs.put(self.b.root, self.b.record(self.key), record, mode="create")
            won = True
        except (oe.AlreadyExistsError, oe.PreconditionError):
            won = self._named_by_record()  # ours after all when a retried put found our own record
        except self.errors as e:  # the put's outcome is unknown: the record says
            try:
                won = self._named_by_record()
            except CacheError:
                won = False
            if not won and not self.b.exists(self.key):
                raise self.failed(e) from None
        if won:
            self._drop_beat()
            self.live = False
            return self.path, True
        self.abort()  # another writer published this key first: its arrays are the artifact
        return None, False

    def _named_by_record(self) -> bool:
        try:
            return self.b.read_manifest(self.key)[1] == self.path
        except (UnknownArtifact, CorruptArtifact):
            return False

    def _drop_beat(self) -> None:
        try:
            self.b.delete([self._beat_path])
        except CacheError:
            pass  # a stale heartbeat of a committed writer: gc removes it

    def abort(self) -> None:
        self._stop_beating()
        try:
            self.b.delete_prefix(f"data/{self.token}")
        except CacheError:
            pass  # gc removes it once the heartbeat is stale
        self._drop_beat()
        self.live = False


class Bucket:
    hold_bytes = HOLD_BYTES

    def __init__(self, url: str):
        m = _URL.match(url.rstrip("/"))
        if not m:
            what = "a bucket name of 3-63 lowercase letters, digits, '.' and '-'"
            raise StoreUnwritable(
                f"cache {url!r} is not a directory or an s3://BUCKET/PREFIX URL with {what}; "
                "pass another --cache-dir"
            )
        try:
            import obstore  # noqa: F401
        except ImportError:
            raise StoreUnwritable(
                f"cache {url} is in an object store, which needs the obstore package: pip install obstore"
            ) from None
        self.url = url.rstrip("/")
        self.bucket, self.prefix = m.group(1), (m.group(2) or "").strip("/")
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT") or ""
        allow_http = endpoint.startswith("http://") or os.environ.get("AWS_ALLOW_HTTP", "").lower() in (
            "1",
            "true",
        )
        self._options = {"allow_http": allow_http, "connect_timeout": "10s", "timeout": "120s"}
        self._retry = {"max_retries": 6, "retry_timeout": timedelta(seconds=120)}
        self.root = self.client("")
        self._readers: dict[str, Any] = {}  # token -> zarr store of a committed data prefix
        self._writable = False

    def client(self, sub: str) -> Any:
        from obstore.store import S3Store

        prefix = "/".join(p for p in (self.prefix, sub) if p)
        return S3Store(
            self.bucket, prefix=prefix or None, client_options=self._options, retry_config=self._retry
        )

    def record(self, key: str) -> str:
        return f"objects/{key[:2]}/{key}.json"

    def path(self, key: str) -> str:
        return f"{self.url}/{self.record(key)}"

    # ---- requests ----------------------------------------------------------------------------
    def _failed(self, what: str, e: BaseException) -> StoreUnreachable:
        return StoreUnreachable(f"cannot {what} {self.url} ({why(e)}); {_REMEDY[0].lower()}{_REMEDY[1:]}")

    def get(self, path: str) -> bytes | None:
        import obstore as obs
        import obstore.exceptions as oe

        try:
            return bytes(obs.get(self.root, path).bytes())
        except FileNotFoundError:
            return None
        except (OSError, oe.BaseError) as e:
            raise self._failed("read from", e) from None

    def head(self, path: str) -> dict[str, Any] | None:
        import obstore as obs
        import obstore.exceptions as oe

        try:
            return obs.head(self.root, path)
        except FileNotFoundError:
            return None
        except (OSError, oe.BaseError) as e:
            raise self._failed("read from", e) from None

    def put(self, path: str, data: bytes, mode: Any = "overwrite") -> Any:
        import obstore as obs
        import obstore.exceptions as oe

        try:
            return obs.put(self.root, path, data, mode=mode)
        except (oe.PreconditionError, oe.AlreadyExistsError):
            raise
        except (OSError, oe.BaseError) as e:
            raise self._failed("write to", e) from None

    def list(self, prefix: str) -> list[dict[str, Any]]:
        import obstore as obs
        import obstore.exceptions as oe

        try:
            return [o for batch in obs.list(self.root, prefix) for o in batch]
        except (OSError, oe.BaseError) as e:
            raise self._failed("list", e) from None

    def delete(self, paths: list[str]) -> None:
        import obstore as obs
        import obstore.exceptions as oe

        try:
            if paths:
                obs.delete(self.root, paths)
        except FileNotFoundError:
            pass
        except (OSError, oe.BaseError) as e:
            raise self._failed("delete in", e) from None

    def delete_prefix(self, prefix: str) -> None:
        self.delete([o["path"] for o in self.list(prefix)])

    # ---- the store's operations ----------------------------------------------------------------
    def ensure_writable(self) -> None:
        import obstore as obs
        import obstore.exceptions as oe

        if self._writable:
            return
        probe = f"writers/.probe-{secrets.token_hex(6)}"
        try:
            obs.put(self.root, probe, b"")
            obs.delete(self.root, probe)
        except (OSError, oe.BaseError) as e:
            reason = f"no bucket {self.bucket!r} there" if isinstance(e, FileNotFoundError) else why(e)
            raise StoreUnwritable(
                f"cache {self.url} is not writable ({reason}); check the bucket, the AWS credentials "
                "and AWS_ENDPOINT_URL, or pass another --cache-dir"
            ) from None
        self._writable = True

    def stage(self, key: str) -> Staging:
        try:
            return Staging(self, key)
        except StoreUnreachable:
            raise
        except Exception as e:  # noqa: BLE001  (obstore's errors)
            raise self._failed("write to", e) from None

    def exists(self, key: str) -> bool:
        return self.head(self.record(key)) is not None

    def read_manifest(self, key: str) -> tuple[dict[str, Any], str]:
        raw = self.get(self.record(key))
        if raw is None:
            raise UnknownArtifact(f"no artifact {key[:8]} in {self.url}")
        try:
            record = json.loads(raw)
            manifest, token = record["manifest"], record["data"]
            if not isinstance(token, str) or not token.startswith(f"{key}.") or "/" in token:
                raise ValueError("a record names its own key's data")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise CorruptArtifact(f"artifact {key[:8]} has a corrupt manifest") from None
        return manifest, f"{self.url}/data/{token}"

    def failure(self, e: BaseException) -> StoreUnreachable | None:
        """A read's exception that is the store's, not the artifact's: a missing object is damage
        (the record names it), anything else (network, credentials) is not."""
        import obstore.exceptions as oe

        if isinstance(e, (OSError, oe.BaseError)) and not isinstance(e, FileNotFoundError):
            return self._failed("read from", e)
        return None

    def open_array(self, location: str, name: str) -> Any:
        import zarr
        from zarr.storage import ObjectStore

        token = location.rsplit("/", 1)[1]
        store = self._readers.get(token)
        if store is None:
            if len(self._readers) > 64:
                self._readers.clear()
            store = self._readers[token] = _counting(
                ObjectStore(self.client(f"data/{token}"), read_only=True)
            )
        return zarr.open_array(store=store, path=name, mode="r", zarr_format=3)

    def holds(self, key: str, location: str) -> bool:
        try:
            return self.read_manifest(key)[1] == location
        except CacheError:
            return False

    def remove(self, key: str) -> None:
        """The record first: readers then see no artifact; its arrays go after it."""
        try:
            _, location = self.read_manifest(key)
        except UnknownArtifact:
            return
        except CorruptArtifact:
            location = None  # its data prefix is an orphan now: gc removes it
        self.delete([self.record(key)])
        if location is not None:
            self.delete_prefix(f"data/{location.rsplit('/', 1)[1]}")

    def keys(self) -> Iterator[str]:
        names = (o["path"].rsplit("/", 1)[1] for o in self.list("objects"))
        yield from sorted(n[:-5] for n in names if n.endswith(".json") and _HEX64.match(n[:-5]))

    def candidates(self, prefix: str) -> list[str]:
        names = (o["path"].rsplit("/", 1)[1][:-5] for o in self.list(f"objects/{prefix[:2]}"))
        return sorted(n for n in names if n.startswith(prefix) and _HEX64.match(n))

    def size(self, key: str) -> int:
        _, location = self.read_manifest(key)
        head = self.head(self.record(key))
        data = sum(o["size"] for o in self.list(f"data/{location.rsplit('/', 1)[1]}"))
        return data + (head["size"] if head else 0)

    def modified(self, key: str) -> float:
        head = self.head(self.record(key))
        if head is None:
            raise UnknownArtifact(f"no artifact {key[:8]} in {self.url}")
        return head["last_modified"].timestamp()

    # ---- runs ----------------------------------------------------------------------------------
    def save_run(self, name: str, text: str) -> None:
        self.put(f"runs/{name}.json", text.encode())

    def load_run(self, name: str) -> bytes | None:
        return self.get(f"runs/{name}.json")

    def runs(self) -> dict[str, bytes]:
        out = {}
        for o in sorted(self.list("runs"), key=lambda o: o["path"]):
            name = o["path"].rsplit("/", 1)[1]
            if name.endswith(".json") and (raw := self.get(o["path"])) is not None:
                out[name[:-5]] = raw
        return out

    def run_label(self, name: str) -> str:
        return f"run {name} in {self.url}"

    # ---- maintenance ---------------------------------------------------------------------------
    def _data_tokens(self) -> set[str]:
        import obstore as obs
        import obstore.exceptions as oe

        try:
            listing = obs.list_with_delimiter(self.root, "data")
        except (OSError, oe.BaseError) as e:
            raise self._failed("list", e) from None
        return {p.rstrip("/").rsplit("/", 1)[1] for p in listing["common_prefixes"]}

    def _beats(self) -> dict[str, dict[str, Any]]:
        out = {}
        for o in self.list("writers"):
            name = o["path"].rsplit("/", 1)[1]
            if name.endswith(".json") and not name.startswith("."):
                out[name[:-5]] = o
        return out

    def _committed(self, token: str) -> bool:
        try:
            return self.read_manifest(token.split(".", 1)[0])[1].endswith(f"/{token}")
        except UnknownArtifact:
            return False
        except CorruptArtifact:
            return True  # its record is damaged, not absent: `remove` deals with it

    def _now(self) -> float:
        """The object store's clock (what dates the heartbeats), not this machine's."""
        probe = f"writers/.now-{secrets.token_hex(6)}"
        self.put(probe, b"")
        head = self.head(probe)
        self.delete([probe])
        return head["last_modified"].timestamp() if head else time.time()

    def staging(self) -> list[str]:
        """Live writers' heartbeats and the data prefixes that no record names (staging or debris)."""
        beats = self._beats()
        data = [t for t in self._data_tokens() if not self._committed(t)]
        return sorted([f"writers/{t}.json" for t in beats] + [f"data/{t}/" for t in data])

    def gc_debris(self) -> int:
        """Remove dead writers' staging: theirs where the heartbeat is stale, and data prefixes that
        neither a heartbeat nor a record claims. The data prefixes are listed before the heartbeats:
        a writer puts its heartbeat before its first array, so a staging listed without one was
        committed, aborted or dead before that listing."""
        import obstore.exceptions as oe

        removed = 0
        data = self._data_tokens()
        beats = self._beats()
        now = self._now()
        for token, obj in beats.items():
            try:
                beat = json.loads(self.get(obj["path"]) or b"{}")
                interval = float(beat.get("interval_s", HEARTBEAT_S))
            except (ValueError, TypeError, AttributeError):
                beat, interval = {"dead": True}, HEARTBEAT_S
            if not beat.get("dead") and now - obj["last_modified"].timestamp() <= stale_after(interval):
                continue
            try:  # take the heartbeat over: a writer renewing it now fails and never commits
                self.put(obj["path"], b'{"dead": true}', mode={"e_tag": obj["e_tag"]})
            except (oe.PreconditionError, oe.AlreadyExistsError):
                continue  # renewed since the listing (alive) or gone
            if not self._committed(token):
                self.delete_prefix(f"data/{token}")
            self.delete([obj["path"]])
            removed += 1
        for token in sorted(data - set(beats)):
            if not self._committed(token):
                self.delete_prefix(f"data/{token}")
                removed += 1
        for o in self.list("writers"):  # probes of killed processes
            name = o["path"].rsplit("/", 1)[1]
            if name.startswith(".") and now - o["last_modified"].timestamp() > 60:
                self.delete([o["path"]])
                removed += 1
        return removed
