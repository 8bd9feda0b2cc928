"""The CPU backend's own kernels; model code never imports them: ltx.ops picks them or MLX's ops.

    blas         the BLAS libraries they call (MKL, numpy's OpenBLAS) through ctypes
    threads      the worker threads, scratch buffers and when a kernel applies at all
    attention    softmax attention blocked per core (BLAS GEMMs, numpy softmax)
    linear       large float32 linear layers as one sgemm (numpy's OpenBLAS)
    conv         convs as one GEMM per tap, transposed 1-D convs, the upsampler's frame convs
    winograd     Winograd F(4x4, 3x3) / F(2x2, 3x3) and 1-D F(4, 3) / F(4, 4) convs
    norms        RMSNorm (+ RoPE, + AdaLN), pixel norm + SiLU, GroupNorm + SiLU
    activations  GELU (tanh), BigVGAN's anti-aliased SnakeBeta

MLX's CPU elementwise kernels are scalar code: `exp` over the attention scores and GELU run 13-19x
slower than torch's (bench/results.md, micro rows), where numpy's vectorised ufuncs keep up, and at
video token counts they are most of a layer's time. On the CPU an evaluated MLX array's buffer is
ordinary host memory, so numpy works on it in place through the buffer protocol, with no copy
either way, a cache-sized block at a time and split over threads (numpy releases the GIL). The GPU backends keep MLX's own kernels.
"""
