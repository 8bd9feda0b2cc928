"""Goldens for LoRA fusion, and the tiny model's distilled LoRA (make_goldens.py protocol).

The tiny distilled LoRA (rank 2, ComfyUI keys) covers every 2-D linear weight of the tiny
transformer's blocks; `run` fuses it (strength 0.8) with ltx-core's `apply_loras` in bfloat16, the
only dtype the reference fuses in, and saves the fused weights.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

RANK = 2
STRENGTH = 0.8
_TARGET = re.compile(r"^model\.diffusion_model\.(transformer_blocks\.\d+\..*)\.weight$")


def _targets(variant: str) -> dict[str, list[int]]:
    import golden_transformer

    tensors = golden_transformer.contribute(variant)["model.safetensors"]["tensors"]
    return {m.group(1): shape for k, shape in tensors.items() if (m := _TARGET.match(k)) and len(shape) == 2}


def contribute(variant: str) -> dict:
    tensors = {}
    for module, (out_dim, in_dim) in _targets(variant).items():
        tensors[f"diffusion_model.{module}.lora_A.weight"] = [RANK, in_dim]
        tensors[f"diffusion_model.{module}.lora_B.weight"] = [out_dim, RANK]
    return {"distilled_lora.safetensors": {"metadata": {}, "tensors": tensors, "dtype": "BF16"}}


def run(variant: str, model_dir: Path) -> dict[str, np.ndarray]:
    import torch
    from ltx_core.loader.fuse_loras import apply_loras
    from ltx_core.loader.primitives import LoraStateDictWithStrength, StateDict
    from ltx_core.loader.sd_ops import LTXV_LORA_COMFY_RENAMING_MAP
    from safetensors.torch import load_file

    model_sd = {
        k[len("model.diffusion_model.") :]: v
        for k, v in load_file(str(model_dir / "model.safetensors")).items()
        if k.startswith("model.diffusion_model.transformer_blocks.")
    }
    lora = {
        LTXV_LORA_COMFY_RENAMING_MAP.apply_to_key(k): v
        for k, v in load_file(str(model_dir / "distilled_lora.safetensors")).items()
    }
    fused = apply_loras(
        StateDict(model_sd, torch.device("cpu"), 0, {torch.bfloat16}),
        [LoraStateDictWithStrength(StateDict(lora, torch.device("cpu"), 0, {torch.bfloat16}), STRENGTH)],
        dtype=torch.bfloat16,
    )
    out = {"strength": np.array(STRENGTH, np.float32)}
    for module in sorted(_targets(variant))[:6]:  # a sample of fused weights keeps the file small
        out[f"fused.{module}"] = fused.sd[f"{module}.weight"].float().numpy()
    return out
