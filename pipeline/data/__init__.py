"""MNIST: the official IDX files, verified, and the train/validation/test splits."""
