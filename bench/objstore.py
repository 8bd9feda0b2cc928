"""The object store's publish and open overhead against the local store, for a decode-sized artifact:
frames (F, H, W, 3) uint8 published in the decode's 32-frame blocks, then opened as the next stage
opens its input (exists, manifest, verify every array) and read. The object store is moto's S3 server
on localhost, in its own process (a real HTTP S3 API, no network latency: what remains is the
protocol's requests and the server's own speed). Medians of interleaved runs.

    python bench/objstore.py [--frames 121 --height 256 --width 384 --runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cache import bucket  # noqa: E402
from cache.keys import make_key  # noqa: E402
from cache.store import Store  # noqa: E402


def moto(port: int) -> subprocess.Popen:
    server = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    proc = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    raise RuntimeError("moto_server did not start")


def publish(store: Store, frames: np.ndarray, i: int) -> tuple[str, float]:
    key = make_key("bench-decode", 1, {"i": i})
    t0 = time.perf_counter()
    with store.writer(key, {"stage": "decode", "inputs": {}}) as w:
        out = w.create("frames", frames.shape, np.uint8)
        for lo in range(0, len(frames), 32):
            out.write(frames[lo : lo + 32])
        w.commit()
    return key, time.perf_counter() - t0


def open_and_read(store: Store, key: str) -> tuple[float, float]:
    """(seconds to exists + manifest, seconds to open with verify and read the frames)."""
    t0 = time.perf_counter()
    assert store.exists(key)
    store.manifest(key)
    t1 = time.perf_counter()
    art = store.open(key, verify=True)
    frames = art["frames"]
    assert frames.dtype == np.uint8
    return t1 - t0, time.perf_counter() - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=121)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=384)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    frames = np.random.default_rng(0).integers(0, 256, (args.frames, args.height, args.width, 3), np.uint8)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto(port)
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION="us-east-1",
    )
    try:
        import boto3

        boto3.client("s3").create_bucket(Bucket="ltx-bench")
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["LTX_LOCAL_CACHE"] = str(Path(tmp) / "local")
            stores = {"local": Store(Path(tmp) / "cache"), "s3": Store("s3://ltx-bench/cache")}
            times: dict[str, dict[str, list[float]]] = {
                n: {"publish": [], "meta": [], "read": []} for n in stores
            }
            requests: dict[str, int] = {}
            for i in range(args.runs + 1):
                for name, store in stores.items():
                    store.ensure_writable()
                    key, pub = publish(store, frames, i)
                    bucket.READS.update(bytes=0, gets=0)
                    meta, read = open_and_read(store, key)
                    if name == "s3":
                        requests["gets"], downloaded = bucket.READS["gets"], bucket.READS["bytes"]
                        size = store.size(key)
                    store.remove(key)
                    if i:  # the first round warms up
                        for what, dt in (("publish", pub), ("meta", meta), ("read", read)):
                            times[name][what].append(dt)
    finally:
        server.terminate()
        server.wait()
    mb = frames.nbytes / 1e6
    print(f"artifact: frames {frames.shape} uint8, {mb:.1f} MB; medians of {args.runs} interleaved runs")
    med = {n: {w: statistics.median(v) for w, v in t.items()} for n, t in times.items()}
    for what, label in (
        ("publish", "publish (stage, write, commit)"),
        ("meta", "exists + manifest"),
        ("read", "open with verify + read frames"),
    ):
        lo, s3 = med["local"][what], med["s3"][what]
        print(f"| {label} | {lo * 1e3:.1f} ms | {s3 * 1e3:.1f} ms | {s3 / lo:.2f} |")
    print(
        f"s3 open+read: {requests['gets']} GETs of array data, {downloaded / 1e6:.1f} MB downloaded "
        f"of a {size / 1e6:.1f} MB artifact"
    )


if __name__ == "__main__":
    main()
