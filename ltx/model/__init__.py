"""The audio-video DiT: transformer, its blocks, attention, RoPE, patchify, block streaming."""
