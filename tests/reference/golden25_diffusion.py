"""Goldens for the LTX-2.5 sampler: the Euler ancestral step (ltx_core/components/diffusion_steps.py,
1.2.0), on every step of the distilled stage-1 schedule, at the pipeline's eta = s_noise = 1 and at
other values, with injected noise (make_goldens.py protocol; no model file needed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHAPE = (1, 12, 128)  # patchified tokens (B, T, C)
SETTINGS = [(1.0, 1.0), (0.5, 1.0), (1.0, 0.7), (0.0, 1.0)]  # (eta, s_noise)


def contribute(variant: str) -> dict:
    return {}


def run(variant: str, model_dir: Path) -> dict[str, np.ndarray]:
    import torch
    from ltx_core.components.diffusion_steps import EulerAncestralDiffusionStep
    from ltx_pipelines.distilled import ANCESTRAL_ETA, ANCESTRAL_NOISE_SEED_OFFSET, ANCESTRAL_S_NOISE
    from ltx_pipelines.utils.constants import DISTILLED_SIGMA_VALUES

    assert (ANCESTRAL_ETA, ANCESTRAL_S_NOISE, ANCESTRAL_NOISE_SEED_OFFSET) == (1.0, 1.0, 10000)
    rng = np.random.RandomState(29)
    sample = rng.standard_normal(SHAPE).astype(np.float32)
    denoised = (0.5 * rng.standard_normal(SHAPE)).astype(np.float32)
    noise = rng.standard_normal(SHAPE).astype(np.float32)
    sigmas = torch.tensor(DISTILLED_SIGMA_VALUES)
    out = {
        "in.sample": sample,
        "in.denoised": denoised,
        "in.noise": noise,
        "sigmas": sigmas.numpy(),
        "settings": np.array(SETTINGS, np.float32),
    }
    t = torch.from_numpy
    for k, (eta, s_noise) in enumerate(SETTINGS):
        stepper = EulerAncestralDiffusionStep(eta=eta, s_noise=s_noise)
        for i in range(len(DISTILLED_SIGMA_VALUES) - 1):
            x = stepper.step(t(sample), t(denoised), sigmas, i, noise=t(noise))
            out[f"step.{k}.{i}"] = x.numpy()
    return out
