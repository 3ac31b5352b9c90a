"""Metrics against real MNIST, the judged samples, the augmentation study's protocol."""
