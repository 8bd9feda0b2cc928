"""The BLAS libraries ltx.kernels call themselves (through ctypes, on the host buffers of evaluated
MLX arrays), and which of them runs the plain GEMMs.

Two can be in the process on Linux:

- Intel MKL, which ltx.backend loads for MLX's own matmuls. It has a packed-GEMM API (cblas_sgemm_pack
  / _compute) and a per-thread thread count (MKL_Set_Num_Threads_Local), which the blocked attention
  uses where MKL runs the plain GEMMs (Intel CPUs).
- The OpenBLAS inside numpy's wheels (scipy-openblas: symbols prefixed `scipy_`, 64-bit integers),
  loaded by every `import numpy`. On AMD CPUs MKL's sgemm stays well below the machine's peak, and
  numpy's OpenBLAS runs the conv kernels' GEMMs in 0.74-0.95x MKL's time (0.84x of the video
  decoder's whole time; `python bench/ab.py --what gemm`, bench/ab_results.md). On Intel's own CPUs MKL
  reaches about the machine's peak (~400 GFLOP/s on the Intel machine of earlier bench/results.md runs), so it
  stays there (OpenBLAS was not measured on Intel).

`gemm()` is the library of the plain GEMMs (conv_taps, conv3d_frames, and on OpenBLAS the large
linear layers: linear_kernels.linear): MKL on Intel CPUs, numpy's OpenBLAS on others;
LTX_CPU_GEMM=mkl or =openblas picks one. A library that is not there falls back to the other; with
neither, the kernels fall back to MLX's ops. On OpenBLAS the blocked attention runs its GEMMs there
too, each worker thread calling it single-threaded (`serial_openblas()`: OpenBLAS's thread count is
process-wide, so it is set to 1 for the attention's duration).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, NamedTuple

from ltx import backend, settings

ROW_MAJOR, NO_TRANS, TRANS, B_MATRIX, PACKED = 101, 111, 112, 162, 151


class Mkl(NamedTuple):
    sgemm: Any  # cblas_sgemm
    set_threads: Any  # MKL_Set_Num_Threads_Local
    pack_size: Any  # cblas_sgemm_pack_get_size
    pack: Any  # cblas_sgemm_pack
    compute: Any  # cblas_sgemm_compute
    sgemv: Any  # cblas_sgemv


class Gemm(NamedTuple):
    """A row-major single-precision GEMM: sgemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b,
    ldb, beta, c, ldc) with CBLAS's meaning, whatever the library's integer width."""

    name: str  # "mkl" or "openblas"
    sgemm: Any
    detail: str  # version / kernel set, for `ltx info`
    handle: Any = None  # OpenBLAS: (library, symbol prefix, suffix, integer type), for serial_openblas


def _gemm_argtypes(integer) -> list:
    i, f, p = integer, ctypes.c_float, ctypes.c_void_p
    return [ctypes.c_int, ctypes.c_int, ctypes.c_int, i, i, i, f, p, i, p, i, f, p, i]


@lru_cache(maxsize=1)
def mkl() -> Mkl | None:
    """The entry points of the MKL that ltx.backend loaded, or None."""
    path = backend.blas_library()
    if backend.BLAS != "mkl" or path is None:
        return None
    try:
        lib = ctypes.CDLL(path)  # already loaded (RTLD_GLOBAL): this only looks the symbols up
        fns = Mkl(
            lib.cblas_sgemm,
            lib.MKL_Set_Num_Threads_Local,
            lib.cblas_sgemm_pack_get_size,
            lib.cblas_sgemm_pack,
            lib.cblas_sgemm_compute,
            lib.cblas_sgemv,
        )
    except (OSError, AttributeError):
        return None
    i, f, p = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    fns.sgemm.argtypes, fns.sgemm.restype = _gemm_argtypes(i), None
    fns.set_threads.argtypes, fns.set_threads.restype = [i], i
    fns.pack_size.argtypes, fns.pack_size.restype = [i, i, i, i], ctypes.c_size_t
    fns.pack.argtypes, fns.pack.restype = [i, i, i, i, i, i, f, p, i, p], None
    fns.compute.argtypes, fns.compute.restype = [i, i, i, i, i, i, p, i, p, i, f, p, i], None
    fns.sgemv.argtypes, fns.sgemv.restype = [i, i, i, i, f, p, i, p, i, f, p, i], None
    return fns


def _loaded_openblas() -> list[str]:
    """Paths of the OpenBLAS libraries mapped into this process (numpy's, once numpy is imported)."""
    import numpy  # noqa: F401  (maps numpy's BLAS)

    try:
        with open("/proc/self/maps") as f:
            paths = {line.split(None, 5)[-1].strip() for line in f if "openblas" in line.lower()}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/"))


# symbol prefixes and suffixes of OpenBLAS builds: scipy-openblas64 (numpy's wheels), scipy-openblas32,
# a 64-bit-integer build, a plain one; the integer width goes with the suffix
_OPENBLAS_NAMES = (
    ("scipy_", "64_", ctypes.c_int64),
    ("scipy_", "", ctypes.c_int),
    ("", "64_", ctypes.c_int64),
    ("", "", ctypes.c_int),
)


@lru_cache(maxsize=1)
def openblas() -> Gemm | None:
    """numpy's OpenBLAS (any loaded OpenBLAS with a CBLAS sgemm), or None."""
    for path in _loaded_openblas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix, integer in _OPENBLAS_NAMES:
            sgemm = getattr(lib, f"{prefix}cblas_sgemm{suffix}", None)
            if sgemm is None:
                continue
            sgemm.argtypes, sgemm.restype = _gemm_argtypes(integer), None
            detail = os.path.basename(path)
            config = getattr(lib, f"{prefix}openblas_get_config{suffix}", None)
            core = getattr(lib, f"{prefix}openblas_get_corename{suffix}", None)
            if config is not None and core is not None:
                config.restype = core.restype = ctypes.c_char_p
                version = config().decode(errors="replace").split()[:2]  # "OpenBLAS 0.3.31.188.0"
                detail = f"{' '.join(version)}, {core().decode(errors='replace')} kernels, {detail}"
            return Gemm("openblas", sgemm, detail, (lib, prefix, suffix, integer))
    return None


class SerialOpenBlas(NamedTuple):
    """numpy's OpenBLAS for kernels that spread their own tasks over the cores: its sgemm and sgemv
    (CBLAS's meaning) and its process-wide thread count. `single_threaded()` sets that count to 1, so
    that every call runs on the calling thread only, and restores it after."""

    sgemm: Any
    sgemv: Any
    get_threads: Any  # openblas_get_num_threads
    set_threads: Any  # openblas_set_num_threads

    @contextmanager
    def single_threaded(self) -> Iterator[None]:
        before = self.get_threads()
        self.set_threads(1)
        try:
            yield
        finally:
            self.set_threads(before)


@lru_cache(maxsize=1)
def serial_openblas() -> SerialOpenBlas | None:
    """openblas()'s library with its sgemv and thread count, or None where one of them is missing."""
    g = openblas()
    if g is None:
        return None
    lib, prefix, suffix, integer = g.handle
    try:
        sgemv = getattr(lib, f"{prefix}cblas_sgemv{suffix}")
        get_threads = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}")
        set_threads = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}")
    except AttributeError:
        return None
    i, f, p = integer, ctypes.c_float, ctypes.c_void_p
    sgemv.argtypes, sgemv.restype = [ctypes.c_int, ctypes.c_int, i, i, f, p, i, p, i, f, p, i], None
    get_threads.argtypes, get_threads.restype = [], ctypes.c_int
    set_threads.argtypes, set_threads.restype = [ctypes.c_int], None
    return SerialOpenBlas(g.sgemm, sgemv, get_threads, set_threads)


def intel_cpu() -> bool:
    """Whether this is an Intel CPU (/proc/cpuinfo's vendor_id), where MKL's GEMMs are the fastest."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return "GenuineIntel" in line
    except OSError:
        pass
    return False


def library(name: str) -> Gemm | None:
    """The GEMM of "mkl" or "openblas", or None if that library is not loaded."""
    if name == "openblas":
        return openblas()
    fns = mkl()
    return None if fns is None else Gemm("mkl", fns.sgemm, backend.blas_library() or "")


@lru_cache(maxsize=1)
def gemm() -> Gemm | None:
    """The library of the conv kernels' GEMMs: LTX_CPU_GEMM's, or on `auto` MKL on Intel CPUs and
    numpy's OpenBLAS on others; the other one when that is missing; None with neither."""
    picked = settings.cpu_gemm()
    if picked == "auto":
        picked = "mkl" if intel_cpu() else "openblas"
    other = "openblas" if picked == "mkl" else "mkl"
    return library(picked) or library(other)


def describe() -> str:
    """The conv kernels' GEMM library in words, for `ltx info` and `--verbose`; for OpenBLAS with how
    long its idle threads spin (OPENBLAS_THREAD_TIMEOUT as numpy loaded it: ltx/__init__.py)."""
    g = gemm()
    if g is None:
        return "none (MLX's matmuls)"
    if g.name == "openblas":
        timeout = os.environ.get("OPENBLAS_THREAD_TIMEOUT", "28")  # 28: OpenBLAS's own default
        return f"{g.name} ({g.detail}; idle threads spin 2^{timeout} cycles)"
    return f"{g.name} ({g.detail})"
