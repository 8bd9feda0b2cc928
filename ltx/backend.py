"""Compute backend setup: an optimised BLAS for MLX's CPU backend, and the compute dtype.

MLX's Linux CPU wheel links a reference BLAS (~6 GFLOP/s for float32 matmul). If Intel MKL (the
`mkl` wheel) is installed, its runtime library is opened with RTLD_GLOBAL *before* mlx is
imported, so MLX's BLAS symbols resolve to it (~400 GFLOP/s on an Intel AVX-512 machine, ~180 on an
AMD Zen 4 class one: `python bench/peak.py`). This module must be
imported before `mlx` anywhere in the process; every model module imports it first.
Set LTX_BLAS=reference to skip it (ltx.settings lists the environment variables).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import sys
import warnings
from collections.abc import Iterator

from ltx import settings

BLAS = "reference"
_blas_path: str | None = None
KMP_BLOCKTIME = "0"  # set unless the user has (`python bench/ab.py --what spin`)


def _candidates() -> list[str]:
    roots = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(sys.executable))}
    found: list[str] = []
    for root in roots:
        found += sorted(glob.glob(os.path.join(root, "lib", "libmkl_rt.so*")))
    return found


def _load_blas() -> None:
    global BLAS, _blas_path
    if not sys.platform.startswith("linux") or settings.reference_blas():
        BLAS = "accelerate" if sys.platform == "darwin" else "reference"
        return
    if "mlx.core" in sys.modules:
        warnings.warn(
            "mlx was imported before ltx.backend; the optimised BLAS cannot be loaded", stacklevel=3
        )
        return
    for path in _candidates():
        # MKL's OpenMP threads busy-wait KMP_BLOCKTIME ms after a call (200 by default), holding a core
        # the numpy passes and OpenBLAS GEMMs that follow want; read when MKL starts its threads
        os.environ.setdefault("KMP_BLOCKTIME", KMP_BLOCKTIME)
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        os.environ.setdefault("MKL_INTERFACE_LAYER", "LP64")
        BLAS, _blas_path = "mkl", path
        return
    warnings.warn(
        "no optimised BLAS found (pip install mkl); MLX's CPU matmuls will be ~70x slower", stacklevel=3
    )


_load_blas()

import mlx.core as mx  # noqa: E402

# MLX's CPU allocator keeps at most 32 MB of freed buffers for reuse by default, so every larger
# intermediate (a 6,144 x 1,024 float32 activation is 25 MB, a feed-forward hidden state 100 MB) goes
# back to the OS when freed and is page-faulted in again at its next allocation (42 ms per 100 MB
# here, against 4 ms reused). Within cpu_buffer_cache() the cache may hold this fraction of the
# machine's memory: the benchmark's transformer forward takes 0.94x the time (`python
# bench/ab.py --what tf_cache`, which prints the allocation times first). The denoising loops run
# in it: every step allocates the same buffers, so the cache never holds more than one step's. The
# decoders do not: their tiles' many
# sizes left ~170-265 MB more resident in a streaming decode (its RSS 1.24x for 4x the frames, the
# target 1.15x), for 0.94x of the real-width video decoder's time and ~1.0x of the audio side's
# (`python bench/ab.py --what vae_cache`).
CPU_CACHE_FRACTION = 1 / 8


def cpu_cache_bytes() -> int:
    """The MLX buffer cache limit set on the CPU backend: CPU_CACHE_FRACTION of physical memory."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(total * CPU_CACHE_FRACTION)


@contextlib.contextmanager
def cpu_buffer_cache() -> Iterator[None]:
    """Within: MLX's buffer cache holds up to cpu_cache_bytes() on the CPU backend (the GPU backends'
    own defaults stay); after, the previous limit again (which frees the cache down to it)."""
    if mx.default_device() != mx.cpu:
        yield
        return
    before = mx.set_cache_limit(cpu_cache_bytes())
    try:
        yield
    finally:
        mx.set_cache_limit(before)


def blas_library() -> str | None:
    """Path of the optimised BLAS loaded for MLX (libmkl_rt), or None."""
    return _blas_path


DTYPES = {"float32": mx.float32, "bfloat16": mx.bfloat16, "float16": mx.float16}


def default_dtype() -> mx.Dtype:
    """float32 on the CPU backend (bf16 matmul is slow there), bfloat16 on GPUs; LTX_DTYPE overrides."""
    forced = settings.dtype()
    if forced:
        return DTYPES[forced]
    return mx.bfloat16 if mx.default_device() == mx.gpu else mx.float32


def describe() -> dict[str, str]:
    """The compute setup in use (MLX, device, BLAS, dtype, buffer cache); ltx.ops.describe adds the
    kernels it picks."""
    cpu = mx.default_device() == mx.cpu
    return {
        "mlx": mx.__version__,
        "device": str(mx.default_device()),
        "blas": BLAS
        if _blas_path is None
        else f"{BLAS} ({_blas_path}; KMP_BLOCKTIME={os.environ.get('KMP_BLOCKTIME')})",
        "dtype": str(default_dtype()).replace("mlx.core.", ""),
        "buffer_cache": f"up to {cpu_cache_bytes() / 2**30:.1f} GB in the denoising loops"
        if cpu
        else "MLX's default",
    }
