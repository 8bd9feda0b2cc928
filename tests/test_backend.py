"""The compute backend: MKL is loaded before mlx when present, with a warning fallback otherwise.

Each case runs in a fresh interpreter, because the BLAS can only be chosen before mlx is imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest


def _run(code: str, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LTX_BLAS", "LTX_DTYPE")}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=120
    )


def test_falls_back_with_a_warning_when_mkl_is_absent():
    # hide every libmkl_rt candidate: the module must warn, keep the reference BLAS and still work
    p = _run("""
        import glob, warnings
        glob.glob = lambda *a, **k: []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from ltx import backend
        import mlx.core as mx
        assert backend.BLAS == "reference", backend.BLAS
        assert any("no optimised BLAS" in str(w.message) for w in caught), [str(w.message) for w in caught]
        a = mx.ones((8, 8))
        assert float((a @ a).sum()) == 512.0
        print("OK", backend.describe()["blas"])
    """)
    assert p.returncode == 0, p.stderr
    assert "OK reference" in p.stdout


def test_warns_when_mlx_was_imported_first():
    p = _run("""
        import warnings
        import mlx.core
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from ltx import backend
        assert backend.BLAS == "reference", backend.BLAS
        assert any("imported before ltx.backend" in str(w.message) for w in caught)
        print("OK")
    """)
    assert p.returncode == 0, p.stderr


def test_opt_out_with_ltx_blas_reference():
    p = _run("from ltx import backend; print(backend.BLAS)", LTX_BLAS="reference")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() in ("reference", "accelerate")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MKL loading is Linux-only")
def test_loads_mkl_when_installed():
    from ltx import backend

    if not backend._candidates():
        pytest.skip("the mkl wheel is not installed in this environment")
    p = _run("""
        from ltx import backend
        import mlx.core as mx
        a = mx.random.normal((64, 64))
        assert mx.allclose(a @ mx.eye(64), a).item()
        print(backend.BLAS, backend.describe()["blas"])
    """)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("mkl "), p.stdout


def test_default_dtype_is_float32_on_cpu_and_can_be_forced():
    p = _run("""
        from ltx import backend
        import mlx.core as mx
        assert backend.default_dtype() == (mx.float32 if mx.default_device() == mx.cpu else mx.bfloat16)
        print("OK")
    """)
    assert p.returncode == 0, p.stderr
    p = _run("from ltx import backend; print(backend.default_dtype())", LTX_DTYPE="bfloat16")
    assert "bfloat16" in p.stdout, p.stderr


def test_sets_openblas_thread_timeout_before_numpy_loads_it():
    """`import ltx` shortens how long numpy's OpenBLAS lets idle threads spin (read once, when numpy
    loads it), keeps a value the user set, and leaves it unset, saying so, once numpy is in."""
    code = """
        import os, sys
        {first}
        import ltx
        from ltx.kernels import blas as cpu_blas
        print(os.environ.get("OPENBLAS_THREAD_TIMEOUT"), ltx.OPENBLAS_TIMEOUT_SET, cpu_blas.describe())
    """
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    cases = [("", env, "16 True"), ("", {**env, "OPENBLAS_THREAD_TIMEOUT": "7"}, "7 False"),
             ("import numpy", env, "None False")]  # fmt: skip
    for first, case_env, want in cases:
        p = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code.format(first=first))],
            capture_output=True, text=True, env=case_env, timeout=120,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr
        assert p.stdout.startswith(want), (first, p.stdout)
        if "openblas (" in p.stdout:  # the GEMM library's description names the spin
            spin = want.split()[0] if want.split()[0] != "None" else "28"
            assert f"idle threads spin 2^{spin} cycles" in p.stdout, p.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MKL loading is Linux-only")
def test_mkl_threads_sleep_at_once_unless_the_user_says_otherwise():
    """Loading MKL sets KMP_BLOCKTIME=0 (its idle OpenMP threads stop spinning at once) unless it is
    set, and describe() names the value in force."""
    from ltx import backend

    if not backend._candidates():
        pytest.skip("the mkl wheel is not installed in this environment")
    code = (
        "import os; from ltx import backend; print(os.environ['KMP_BLOCKTIME'], backend.describe()['blas'])"
    )
    for env, want in (({}, "0"), ({"KMP_BLOCKTIME": "50"}, "50")):
        base = {k: v for k, v in os.environ.items() if k != "KMP_BLOCKTIME"}
        p = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env={**base, **env}, timeout=120
        )
        assert p.returncode == 0, p.stderr
        assert p.stdout.startswith(f"{want} mkl (") and f"KMP_BLOCKTIME={want})" in p.stdout, p.stdout


def test_cpu_buffer_cache_raises_mlx_cache_limit_and_restores_it():
    """Within backend.cpu_buffer_cache() (the denoising loops), MLX's CPU buffer cache may hold
    CPU_CACHE_FRACTION of physical memory; after it, the limit it found again. A freed buffer above
    MLX's default 32 MB limit is then reused: kept in the cache, not returned to the OS."""
    r = _run(
        """
        import os
        from ltx import backend
        import mlx.core as mx
        assert mx.default_device() == mx.cpu
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        assert backend.cpu_cache_bytes() == int(total * backend.CPU_CACHE_FRACTION)
        before = mx.set_cache_limit(1 << 25)
        with backend.cpu_buffer_cache():
            inside = mx.set_cache_limit(backend.cpu_cache_bytes())
            x = mx.zeros((64 << 20) // 4)  # 64 MB
            mx.eval(x)
            del x
            kept = mx.get_cache_memory()
        after = mx.set_cache_limit(before)
        print(inside, after, kept)
        """
    )
    assert r.returncode == 0, r.stderr
    inside, after, kept = map(int, r.stdout.split())
    assert inside > 1 << 25 and after == 1 << 25
    assert kept >= 64 << 20, kept
