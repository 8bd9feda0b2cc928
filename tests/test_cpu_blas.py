"""ltx.kernels.blas: both BLAS libraries compute the same GEMM as numpy through their ctypes signatures,
and the conv kernels' library is picked as documented (LTX_CPU_GEMM, the CPU vendor, fallbacks)."""

from __future__ import annotations

import numpy as np
import pytest

from ltx.kernels import blas as cpu_blas


@pytest.mark.parametrize("name", ["mkl", "openblas"])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_sgemm_equals_numpy(name, beta):
    """C = A B^T + beta C on strided views (leading dimensions larger than the rows), as the conv
    kernels call it: catches a wrong integer width or argument order in the ctypes signature."""
    gemm = cpu_blas.library(name)
    assert gemm is not None, f"{name} is there on Linux (MKL a dependency, OpenBLAS in numpy's wheel)"
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 9), dtype=np.float32)[:, :5]  # (7, 5), row stride 9
    b = rng.standard_normal((4, 6), dtype=np.float32)[:, :5]  # (4, 5), row stride 6
    c = rng.standard_normal((7, 8), dtype=np.float32)
    want = a @ b.T + beta * c[:, :4]
    gemm.sgemm(
        cpu_blas.ROW_MAJOR, cpu_blas.NO_TRANS, cpu_blas.TRANS, 7, 4, 5, 1.0, a.ctypes.data, 9,
        b.ctypes.data, 6, beta, c.ctypes.data, 8,
    )  # fmt: skip
    np.testing.assert_allclose(c[:, :4], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "setting, intel, missing, want",
    [
        ("auto", True, None, "mkl"),  # MKL is Intel's fastest on Intel CPUs
        ("auto", False, None, "openblas"),  # elsewhere numpy's OpenBLAS (bench/ab.py --what gemm)
        ("mkl", False, None, "mkl"),
        ("openblas", True, None, "openblas"),
        ("auto", False, "openblas", "mkl"),  # the other one when the picked one is not there
        ("openblas", False, "openblas", "mkl"),
        ("auto", True, "mkl", "openblas"),
        ("auto", True, "both", None),  # neither: the kernels fall back to MLX's ops
    ],
)
def test_gemm_is_picked_as_documented(setting, intel, missing, want, monkeypatch):
    real = cpu_blas.library
    gone = {"openblas", "mkl"} if missing == "both" else {missing}
    monkeypatch.setenv("LTX_CPU_GEMM", setting)
    monkeypatch.setattr(cpu_blas, "intel_cpu", lambda: intel)
    monkeypatch.setattr(cpu_blas, "library", lambda name: None if name in gone else real(name))
    cpu_blas.gemm.cache_clear()
    try:
        got = cpu_blas.gemm()
        assert (got and got.name) == want
        assert cpu_blas.describe().startswith(want or "none")
    finally:
        cpu_blas.gemm.cache_clear()


def test_bad_setting_names_the_value_and_the_choices(monkeypatch):
    from ltx import settings

    monkeypatch.setenv("LTX_CPU_GEMM", "Fastest")
    with pytest.raises(ValueError, match=r"LTX_CPU_GEMM='fastest' is not one of auto, mkl, openblas"):
        settings.check()
    monkeypatch.setenv("LTX_CPU_GEMM", "OpenBLAS")  # case and spaces do not matter
    assert settings.cpu_gemm() == "openblas"


def test_serial_openblas_gemv_and_thread_count():
    """numpy's OpenBLAS as the blocked attention calls it: sgemv (y = A x + beta y on a strided A)
    through its ctypes signature, and single_threaded() holding the process-wide thread count at 1
    and restoring the count it found, also when its body raises."""
    serial = cpu_blas.serial_openblas()
    assert serial is not None, "numpy's wheel brings OpenBLAS with its thread control on Linux"
    rng = np.random.default_rng(1)
    a = rng.standard_normal((6, 9), dtype=np.float32)[:, :5]  # (6, 5), row stride 9
    x = rng.standard_normal(5, dtype=np.float32)
    y = rng.standard_normal(6, dtype=np.float32)
    want = a @ x + 0.5 * y
    serial.sgemv(
        cpu_blas.ROW_MAJOR, cpu_blas.NO_TRANS, 6, 5, 1.0, a.ctypes.data, 9, x.ctypes.data, 1, 0.5,
        y.ctypes.data, 1,
    )  # fmt: skip
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    before = serial.get_threads()
    serial.set_threads(2)
    try:
        with serial.single_threaded():
            assert serial.get_threads() == 1
        assert serial.get_threads() == 2
        with pytest.raises(RuntimeError), serial.single_threaded():
            raise RuntimeError
        assert serial.get_threads() == 2
    finally:
        serial.set_threads(before)
