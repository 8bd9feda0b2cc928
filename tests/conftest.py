import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# Before any test module imports mlx: ltx.backend loads the optimised BLAS, which must precede mlx.
import pytest  # noqa: E402

import ltx.backend  # noqa: E402, F401


@pytest.fixture(params=["cpu", "mlx"])
def kernels(request, monkeypatch):
    """Run a test with each set of kernels: "cpu", the CPU backend's own (ltx.kernels: conv taps,
    Winograd convs, frame convs, transposed 1-D convs, numpy anti-aliased activations, numpy norm +
    SiLU), forced on even at the tiny models' sizes (the frame convs one input frame per im2col
    chunk, the Winograd convs one slab and tile row, or one 1-D tile, per chunk, at any width; the
    activations one row per task); "mlx", MLX's convs and elementwise ops, what GPUs run. Takes effect for models
    loaded after it (loading lays out the conv weights)."""
    from ltx.kernels import activations, conv, norms, threads, winograd

    if request.param == "cpu":
        monkeypatch.setattr(winograd, "CHUNK_ELEMENTS", 1)
        monkeypatch.setattr(winograd, "MIN_CHANNELS_1D", 1)  # the tiny vocoders' convs too
        monkeypatch.setattr(activations, "RESAMPLE_CHUNK_VALUES", 1)  # one row per activation task
        monkeypatch.setattr(norms, "NORM_MIN_ELEMENTS", 0)
        monkeypatch.setattr(threads, "BLOCK_ELEMENTS", 1000)  # several ragged blocks per thread
        monkeypatch.setattr(conv, "FRAME_COLS_ELEMENTS", 1)
    else:
        monkeypatch.setattr(conv, "TAPS_MAX_CHANNELS", 0)
        monkeypatch.setattr(conv, "WINOGRAD", False)  # the wide convs' Winograd too
        monkeypatch.setattr(conv, "FRAMES_CONV", False)
        monkeypatch.setattr(conv, "TRANSPOSED_CONV", False)
        monkeypatch.setattr(conv, "TAPS_1D", False)
        monkeypatch.setattr(activations, "RESAMPLING", False)
        monkeypatch.setattr(norms, "NORM_MIN_ELEMENTS", 1 << 62)
    return request.param


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 API on localhost for the session: moto's server mode on a free port."""
    from stores import start_moto

    server, endpoint = start_moto()
    yield endpoint
    server.stop()


@pytest.fixture
def s3_url(s3_endpoint, monkeypatch, tmp_path) -> str:
    """s3://BUCKET/cache in a fresh bucket, with the AWS variables set as a user would (subprocesses
    inherit them) and this machine's files of the store under tmp_path."""
    from stores import new_bucket, s3_env

    for name, value in s3_env(s3_endpoint).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LTX_LOCAL_CACHE", str(tmp_path / "local"))
    return f"s3://{new_bucket(s3_endpoint)}/cache"
