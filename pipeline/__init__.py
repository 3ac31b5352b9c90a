"""Synthetic-digit pipeline: MNIST -> judge CNN -> class-conditional GAN -> labeled synthetic data -> evaluation."""
