"""LTX-2 in MLX: the audio-video DiT, Gemma-3 text path, video/audio VAEs, vocoder and samplers.

Importing `ltx` is cheap and never imports mlx; import `ltx.backend` (or any model module)
to set up the compute backend. Model modules take and return MLX arrays and know nothing of
the artifact cache or the CLI.
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# numpy's OpenBLAS (the CPU conv kernels' GEMMs off Intel: ltx.kernels.blas) keeps its idle threads
# busy-waiting for 2^OPENBLAS_THREAD_TIMEOUT cycles after a call (28 by default: ~0.1 s), which takes
# a core from the numpy passes, MKL calls and MLX ops that follow. 2^16 cycles (~20 us) still spans
# the gap between the GEMMs of one conv; `python bench/ab.py --what spin`. OpenBLAS reads the variable
# once, when numpy loads it: set here, before anything of ltx imports numpy, unless the user has.
OPENBLAS_THREAD_TIMEOUT = "16"
OPENBLAS_TIMEOUT_SET = "numpy" not in _sys.modules and "OPENBLAS_THREAD_TIMEOUT" not in _os.environ
if OPENBLAS_TIMEOUT_SET:
    _os.environ["OPENBLAS_THREAD_TIMEOUT"] = OPENBLAS_THREAD_TIMEOUT
