"""Audio: the audio VAE, the vocoders (HiFi-GAN, BigVGAN + bandwidth extension), mel spectrograms."""
