"""The environment variables that change how ltx computes, read and checked without importing MLX
(so that a CLI command can reject a bad value before it does any work or loads any model).

    LTX_BLAS=reference     do not load MKL for MLX's CPU backend (ltx.backend)
    LTX_DTYPE=...          the compute dtype: float32, bfloat16 or float16 (default: float32 on the
                           CPU, bfloat16 on GPUs)
    LTX_CPU_GEMM=...       the library of the CPU conv kernels' GEMMs (ltx.kernels.blas): auto, mkl or
                           openblas

`import ltx` also sets OPENBLAS_THREAD_TIMEOUT=16 and ltx.backend KMP_BLOCKTIME=0 unless they are
set (how long numpy's OpenBLAS and MKL let idle threads spin; ltx/__init__.py, ltx/backend.py).
"""

from __future__ import annotations

import os

DTYPES = ("float32", "bfloat16", "float16")
CPU_GEMMS = ("auto", "mkl", "openblas")


def _setting(name: str, allowed: tuple[str, ...]) -> str | None:
    value = os.environ.get(name, "").strip().lower()
    if value and value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(allowed)}; unset it or set one of them")
    return value or None


def dtype() -> str | None:
    """LTX_DTYPE, or None for the device's default."""
    return _setting("LTX_DTYPE", DTYPES)


def cpu_gemm() -> str:
    """LTX_CPU_GEMM: auto (the default), mkl or openblas."""
    return _setting("LTX_CPU_GEMM", CPU_GEMMS) or "auto"


def reference_blas() -> bool:
    """Whether LTX_BLAS=reference asks to leave MLX's own reference BLAS in place."""
    return os.environ.get("LTX_BLAS") == "reference"


def check() -> None:
    """Raise a one-line ValueError naming any of these variables set to a value that is not allowed."""
    dtype()
    cpu_gemm()
