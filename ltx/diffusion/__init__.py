"""Diffusion: sigma schedules, samplers, guidance, latent states and conditioning."""
