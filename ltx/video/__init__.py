"""Video: the VAE and its blocks, tiled decoding, latent upsamplers, image and video media."""
