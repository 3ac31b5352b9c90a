"""The networks, the cGAN's losses and training loop, the classifier recipe, checkpoints."""
