"""Prepared MNIST splits on disk and as tensors.

``data/prepared/mnist.npz`` holds ``{train,val,test}_images (N, 28, 28) uint8`` and
``{train,val,test}_labels (N,) int64``; validation is a seeded, stratified split of the 60,000
official train images, so nothing is ever chosen on the test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from pipeline.data.mnist import MnistArrays

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Splits:
    """Images ``(N, 28, 28) uint8`` and labels ``(N,) int64`` per split."""

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def make_splits(mnist: MnistArrays, val_size: int, seed: int, subset_per_class: int = 0) -> Splits:
    """Split official train into train/validation (stratified, seeded); keep the official test set.

    Args:
        val_size: images moved from train to validation.
        subset_per_class: if > 0, first keep only the first this-many train images of each digit
            (for tiny runs); the test set is never cut.
    Raises:
        ValueError: ``val_size`` leaves no training images or is < 10.
    """
    indices = np.arange(len(mnist.train_labels))
    if subset_per_class > 0:
        indices = np.sort(
            np.concatenate([np.flatnonzero(mnist.train_labels == c)[:subset_per_class] for c in range(10)])
        )
    if not 10 <= val_size < len(indices):
        raise ValueError(f"val_size={val_size} must be in [10, {len(indices)})")
    train_idx, val_idx = train_test_split(
        indices, test_size=val_size, stratify=mnist.train_labels[indices], random_state=seed
    )
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)
    return Splits(
        train_images=mnist.train_images[train_idx],
        train_labels=mnist.train_labels[train_idx],
        val_images=mnist.train_images[val_idx],
        val_labels=mnist.train_labels[val_idx],
        test_images=mnist.test_images,
        test_labels=mnist.test_labels,
    )


def save_splits(splits: Splits, path: str | Path) -> None:
    """Write the splits to an uncompressed ``.npz`` (the caller makes it atomic)."""
    with open(path, "wb") as handle:
        np.savez(handle, **splits.__dict__)


def load_splits(path: str | Path) -> Splits:
    """Read splits written by :func:`save_splits`.

    Raises:
        FileNotFoundError: ``path`` does not exist (run the prepare stage first).
    """
    with np.load(path) as archive:
        return Splits(**{key: archive[key] for key in archive.files})


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """``(N, 28, 28) uint8`` in [0, 255] -> ``(N, 1, 28, 28) float32`` in [-1, 1]."""
    return torch.from_numpy(images).unsqueeze(1).float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(N, 1, 28, 28) float`` in [-1, 1] -> ``(N, 28, 28) uint8`` (rounded, clamped)."""
    pixels = ((images.detach().float().cpu().squeeze(1) + 1.0) * 127.5).round_().clamp_(0, 255)
    return pixels.to(torch.uint8).numpy()
