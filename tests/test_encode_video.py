"""The encode-video path against the reference (goldens from tests/reference/golden_encode_video.py): PyAV
decode (exact), resize + center crop + normalise (<= 1e-4), the 1 + 8k cut and the VAE encoder (<= 1e-4 x
max(1, max |ref|)), for both tiny variants; and the encode_video stage's key and cache reuse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402

from ltx.weights import tiny

GOLDENS = Path(__file__).parent / "goldens"
MODELS = {"2.0": "tiny", "2.3": "tiny-2.3"}
CASES = {"land": (32, 64, 17), "portrait": (64, 32, 1)}  # golden_encode_video.CASES


def _check(name: str, ours, ref, rel: float = 1e-4) -> None:
    ours, ref = np.asarray(ours, np.float32), np.asarray(ref, np.float32)
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != reference {ref.shape}"
    err, bound = float(np.abs(ours - ref).max()), rel * max(1.0, float(np.abs(ref).max()))
    print(f"parity {name}: max err {err:.3g} (bound {bound:.3g})")
    assert err <= bound, f"{name}: max |ours - ref| = {err:.3g} > {bound:.3g}"


@pytest.fixture(scope="module", params=tiny.VARIANTS)
def case(request, tmp_path_factory):
    g = {
        k: np.asarray(v)
        for k, v in mx.load(str(GOLDENS / request.param / "encode_video.safetensors")).items()
    }
    path = tmp_path_factory.mktemp(f"ev{request.param}") / "source.mp4"
    path.write_bytes(g["video_mp4"].tobytes())
    return request.param, g, path


def test_decode_and_probe(case):
    from ltx.video.media import decode_video_frames, probe_video

    _, g, path = case
    assert probe_video(path) == (24.0, 13, 100, 72)
    frames = decode_video_frames(path)
    assert frames.shape == (13, 72, 100, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[::4], g["frames_every4"])
    np.testing.assert_array_equal(decode_video_frames(path, start=4, count=5), frames[4:9])


def test_pixels_and_latents(case, tmp_path):
    from cache.store import Store
    from ltx.video.media import load_video_conditioning
    from stages import runtime
    from stages.models import resolve_model

    variant, g, path = case
    store = Store(tmp_path)
    store.ensure_writable()
    encoder = runtime.video_encoder(resolve_model(MODELS[variant], store).ready())
    for name, (h, w, cap) in CASES.items():
        pixels = load_video_conditioning(path, h, w, count=cap)  # (1, F, H, W, 3), F = 1 + 8k
        ours = np.asarray(pixels).transpose(0, 4, 1, 2, 3)[:, :, ::4]
        ref = g[f"{name}.pixels_every4"]  # all frames: the reference's encoder makes the 1 + 8k cut
        _check(f"{variant} {name} pixels", ours, ref[:, :, : ours.shape[2]])
        _check(f"{variant} {name} latent", encoder.encode(pixels), g[f"{name}.latent"])


def test_stage_key_and_reuse(case, tmp_path):
    """The stage's artifact is the reference latent; its key holds the file's digest (not its path), so a
    copy of the file reuses it and another file does not."""
    import shutil

    from cache.store import Store
    from stages import encode_video
    from stages.framework import Node, ensure
    from stages.models import resolve_model

    variant, g, path = case
    store = Store(tmp_path / "cache")
    store.ensure_writable()
    files = resolve_model(MODELS[variant], store).ready()
    h, w, cap = CASES["land"]

    def node(p):
        ext = {"checkpoint": files.checkpoint_digest, "video": store.digest(p)}
        return Node(
            encode_video.STAGE,
            encode_video.Params(h, w, 0, cap),
            externals=ext,
            runtime={"files": files, "path": str(p)},
        )

    lines: list[str] = []
    art = ensure(store, node(path), echo=lines.append)
    _check(f"{variant} encode_video stage", art["video_latent"], g["land.latent"])
    assert int(np.asarray(art["frames"])) == 9
    copy = tmp_path / "copy.mp4"
    shutil.copyfile(path, copy)
    assert node(copy).key == node(path).key
    other = tmp_path / "other.mp4"
    other.write_bytes(path.read_bytes()[:-1] + b"\0")
    assert node(other).key != node(path).key
    assert ensure(store, node(copy), echo=lines.append).key == art.key
