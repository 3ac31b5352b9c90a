"""Quality metrics for labeled synthetic images, computed in the judge's feature space.

All functions take ``numpy`` or ``torch`` arrays and return plain floats/dicts (JSON-ready).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg

from pipeline.models import NUM_CLASSES


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the FID formula).

    ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` — Heusel et al. 2017, "GANs Trained by a
    Two Time-Scale Update Rule Converge to a Local Nash Equilibrium" (NeurIPS), computed as in their
    reference code (TTUR ``fid.py``: ``scipy.linalg.sqrtm``, a small diagonal offset when singular).

    Args:
        features_a, features_b: ``(N, D)`` and ``(M, D)`` float arrays, N, M >= 2.
    Returns:
        The distance, >= 0, in squared feature units. Depends on N and M (biased for small samples),
        so compare only figures computed with the same sample sizes.
    Raises:
        ValueError: fewer than 2 rows or mismatched feature dimensions.
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError(f"need two (N>=2, D) feature arrays of equal D, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    sigma_a, sigma_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(sigma_a @ sigma_b)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(sigma_a)) * 1e-6
        covmean = linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))
    covmean = covmean.real
    diff = mu_a - mu_b
    return float(max(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2 * np.trace(covmean), 0.0))


def class_conditional_accuracy(predicted: np.ndarray, requested: np.ndarray) -> tuple[float, dict[str, float]]:
    """Share of synthetic images that the judge labels as the digit they were generated for.

    Args:
        predicted: ``(N,) int`` judge arg-max labels; requested: ``(N,) int`` labels given to G(z, y).
    Returns:
        ``(overall in [0, 1], {"0": acc, ..., "9": acc})``; a digit with no images gets NaN.
    """
    predicted, requested = np.asarray(predicted), np.asarray(requested)
    per_class = {
        str(d): float((predicted[requested == d] == d).mean()) if (requested == d).any() else float("nan")
        for d in range(NUM_CLASSES)
    }
    return float((predicted == requested).mean()), per_class


def mean_pairwise_distance(features: np.ndarray | torch.Tensor) -> float:
    """Mean Euclidean distance over all pairs of distinct rows of ``(N, D)`` features (N >= 2).

    A collapsed class (the same few images for every z) has a small value.

    Raises:
        ValueError: fewer than 2 rows.
    """
    x = torch.as_tensor(np.asarray(features), dtype=torch.float64)
    n = len(x)
    if n < 2:
        raise ValueError("need at least 2 feature rows")
    return float(torch.pdist(x).mean())


def diversity_ratio(
    synthetic_features: np.ndarray, synthetic_labels: np.ndarray,
    real_features: np.ndarray, real_labels: np.ndarray, per_class: int, seed: int,
) -> dict[str, dict[str, float]]:
    """Per digit: mean pairwise feature distance of synthetic images over that of real images.

    About 1 means the class is as varied as the real digits; well below 1 exposes mode collapse.
    Uses ``min(per_class, available)`` images per side, drawn with ``seed``.

    Returns:
        ``{"0": {"synthetic": float, "real": float, "ratio": float}, ...}``.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for d in range(NUM_CLASSES):
        syn = np.flatnonzero(synthetic_labels == d)
        real = np.flatnonzero(real_labels == d)
        if len(syn) < 2 or len(real) < 2:
            continue
        syn = rng.choice(syn, min(per_class, len(syn)), replace=False)
        real = rng.choice(real, min(per_class, len(real)), replace=False)
        s, r = mean_pairwise_distance(synthetic_features[syn]), mean_pairwise_distance(real_features[real])
        out[str(d)] = {"synthetic": s, "real": r, "ratio": s / r}
    return out
