"""The two kinds of store for tests: a directory, and a bucket on a real S3 API on localhost (moto's
server mode, in this process on a free port). `Raw` reaches the bytes behind either, so that one
test can damage an artifact or look for a writer's staging in both."""

from __future__ import annotations

import logging
import socket
import uuid
from pathlib import Path

from cache.store import Store

HEARTBEAT_S = "1"  # writers under test renew every second, so gc takes a dead one for dead after 4 s


def start_moto() -> tuple[object, str]:
    """moto's S3 server on a free port of 127.0.0.1: (server, endpoint URL)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def s3_env(endpoint: str) -> dict[str, str]:
    """The AWS variables a user sets for an S3-compatible server, plus a fast heartbeat."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "LTX_CACHE_HEARTBEAT_S": HEARTBEAT_S,
        # never the instance-metadata address for credentials: a refused port on localhost instead
        "AWS_METADATA_ENDPOINT": "http://127.0.0.1:9",
    }


def new_bucket(endpoint: str) -> str:
    import boto3

    name = f"ltx-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=name)
    return name


class Raw:
    """The objects behind a store, by path relative to its root."""

    def __init__(self, store: Store):
        self.store = store
        self.remote = not isinstance(store.root, Path)

    def _data(self, key: str) -> str:
        """The relative path of an artifact's arrays."""
        if self.remote:
            return f"data/{self.store.open(key, verify=False).path.rsplit('/', 1)[1]}"
        return str(Path(self.store.path(key)).relative_to(self.store.root))

    def files(self, prefix: str) -> list[str]:
        if self.remote:
            return sorted(o["path"] for o in self.store._io.list(prefix))
        root = Path(self.store.root)
        return sorted(str(p.relative_to(root)) for p in (root / prefix).rglob("*") if p.is_file())

    def chunks(self, key: str, name: str) -> list[str]:
        return [f for f in self.files(f"{self._data(key)}/{name}") if "/c/" in f]

    def manifest_object(self, key: str) -> str:
        if self.remote:
            return self.store._io.record(key)
        return f"{self._data(key)}/zarr.json"

    def read(self, rel: str) -> bytes:
        return self.store._io.get(rel) if self.remote else (Path(self.store.root) / rel).read_bytes()

    def write(self, rel: str, data: bytes) -> None:
        if self.remote:
            self.store._io.put(rel, data)
        else:
            (Path(self.store.root) / rel).parent.mkdir(parents=True, exist_ok=True)
            (Path(self.store.root) / rel).write_bytes(data)

    def delete(self, rel: str) -> None:
        if self.remote:
            self.store._io.delete([rel])
        else:
            (Path(self.store.root) / rel).unlink()

    def staged(self) -> int:
        """Writers' staging areas (directories under tmp/, uncommitted data prefixes): live or debris."""
        if self.remote:
            return sum(1 for s in self.store.staging() if s.startswith("data/"))
        tmp = self.store.tmp
        return sum(1 for p in tmp.iterdir() if p.is_dir()) if tmp.is_dir() else 0

    def fake_artifact(self, key: str) -> None:
        """Something that lists as an artifact under `key` (to provoke an ambiguous prefix)."""
        if self.remote:
            self.store._io.put(self.store._io.record(key), b"{}")
        else:
            (self.store.objects / key[:2] / key).mkdir(parents=True)
