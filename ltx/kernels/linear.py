"""Large float32 linear layers as one sgemm of the conv kernels' library (numpy's OpenBLAS on non-Intel
CPUs, where it is faster than the MKL that MLX's own matmuls call).
"""

from __future__ import annotations

from ltx.kernels import blas, threads  # noqa: F401  (ltx.backend: the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

_ROW_MAJOR, _NO_TRANS, _TRANS = blas.ROW_MAJOR, blas.NO_TRANS, blas.TRANS


# Linear layers from this many multiply-adds (rows x in x out) take linear() when it threads.applies
LINEAR_MIN_MACS = 1 << 24


def linear_applies(x: mx.array, weight: mx.array) -> bool:
    """Whether x @ weight.T (+ bias) runs as linear() here: float32 on the CPU backend when the conv
    GEMMs run on numpy's OpenBLAS (non-Intel CPUs, ltx.kernels.blas), where it is faster than the MKL that
    MLX's own matmuls call; from LINEAR_MIN_MACS (smaller ones stay lazy in MLX's graph)."""
    if not threads.cpu_backend() or x.dtype != mx.float32 or weight.dtype != mx.float32 or weight.ndim != 2:
        return False
    gemm = blas.gemm()
    return gemm is not None and gemm.name == "openblas" and x.size * weight.shape[0] >= LINEAR_MIN_MACS


def linear(x: mx.array, weight: mx.array, bias: mx.array | None) -> mx.array:
    """x (..., C) @ weight (O, C).T + bias as one sgemm of the conv kernels' library, written into a
    fresh MLX array (bias first, then beta = 1)."""
    gemm = blas.gemm()
    o, c = weight.shape
    flat = mx.contiguous(x.reshape(-1, c))
    weight = mx.contiguous(weight)  # a no-op for loaded weights
    out = mx.zeros((flat.shape[0], o), mx.float32)
    mx.eval(flat, weight, out, *([] if bias is None else [bias]))
    xv, wv, ov = (np.array(a, copy=False) for a in (flat, weight, out))  # views (numpy 2: never copies)
    beta = 0.0
    if bias is not None:
        ov[...] = np.array(bias, copy=False).astype(np.float32, copy=False)
        beta = 1.0
    gemm.sgemm(
        _ROW_MAJOR, _NO_TRANS, _TRANS, flat.shape[0], o, c, 1.0, xv.ctypes.data, c, wv.ctypes.data, c,
        beta, ov.ctypes.data, o,
    )  # fmt: skip
    return out.reshape(*x.shape[:-1], o)
