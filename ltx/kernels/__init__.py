"""The CPU backend's own kernels (BLAS bindings, attention, convs incl. Winograd, norms and
activations). Model code never imports them: ltx.ops picks them or MLX's ops."""
