"""Weights: safetensors header checks, strict loading, LoRA, quantization, conversion, the tiny model."""
