"""LTX-2 in MLX: the audio-video DiT, Gemma-3 text path, video/audio VAEs, vocoder and samplers.

Importing `ltx` is cheap and never imports mlx; import `ltx.backend` (or any model module)
to set up the compute backend. Model modules take and return MLX arrays and know nothing of
the artifact cache or the CLI.
"""

__version__ = "0.1.0"
