"""Quality metrics for labeled synthetic images, computed in the judge's feature space.

All functions take ``numpy`` or ``torch`` arrays and return plain floats/dicts (JSON-ready).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from prdc import compute_prdc
from scipy import linalg
from sklearn.metrics import confusion_matrix

from pipeline.training.networks import NUM_CLASSES


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


def per_class_accuracy(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy within each true class: ``{"0": acc, ..., "9": acc}`` in [0, 1], NaN for an absent class.

    Args:
        predicted, labels: ``(N,) int`` arg-max predictions and true (or requested) labels 0-9.
    """
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    return {
        str(d): float((predicted[labels == d] == d).mean()) if (labels == d).any() else float("nan")
        for d in range(NUM_CLASSES)
    }


def top_confusions(predicted: np.ndarray, labels: np.ndarray, k: int = 5) -> list[dict[str, int]]:
    """The ``k`` most frequent errors of a classifier: ``[{"true": a, "predicted": b, "count": n}, ...]``.

    Off-diagonal cells of scikit-learn's ``confusion_matrix`` over digits 0-9, largest count first (ties:
    smaller true digit, then smaller predicted digit); cells with no error are left out, so the list may be
    shorter than ``k``.

    Args:
        predicted, labels: ``(N,) int`` arg-max predictions and true labels 0-9.
    """
    matrix = confusion_matrix(np.asarray(labels), np.asarray(predicted), labels=list(range(NUM_CLASSES)))
    np.fill_diagonal(matrix, 0)
    cells = sorted(((-int(matrix[a, b]), a, b) for a in range(NUM_CLASSES) for b in range(NUM_CLASSES) if matrix[a, b]))
    return [{"true": a, "predicted": b, "count": -n} for n, a, b in cells[:k]]


def class_conditional_accuracy(predicted: np.ndarray, requested: np.ndarray) -> tuple[float, dict[str, float]]:
    """Share of synthetic images that the judge labels as the digit they were generated for.

    Args:
        predicted: ``(N,) int`` judge arg-max labels; requested: ``(N,) int`` labels given to G(z, y).
    Returns:
        ``(overall in [0, 1], {"0": acc, ..., "9": acc})``; a digit with no images gets NaN.
    """
    predicted, requested = np.asarray(predicted), np.asarray(requested)
    return float((predicted == requested).mean()), per_class_accuracy(predicted, requested)


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


def precision_recall_density_coverage(real_features: np.ndarray, fake_features: np.ndarray, k: int = 5) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, NeurIPS) and density and coverage
    (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative Models", ICML), from k-NN
    balls in feature space, computed with the authors' reference package ``prdc`` (clovaai).

    Precision and density measure fidelity (fakes inside the real manifold), recall and coverage
    measure diversity (real images near some fake). Precision, recall and coverage lie in [0, 1];
    density is about 1 for identical distributions and can exceed 1.

    Args:
        real_features, fake_features: ``(N, D)`` and ``(M, D)`` float arrays, N, M > k.
        k: the neighbourhood size (5 in both papers' recommendations).
    Raises:
        ValueError: too few rows for k or mismatched feature dimensions.
    """
    real, fake = np.asarray(real_features, np.float32), np.asarray(fake_features, np.float32)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1] or min(len(real), len(fake)) <= k:
        raise ValueError(f"need two (N>{k}, D) feature arrays of equal D, got {real.shape} and {fake.shape}")
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints the sample sizes
        result = compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    return {name: float(value) for name, value in result.items()}


def nearest_neighbour_distances(queries: np.ndarray, reference: np.ndarray, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance from each query to its nearest reference row, and that row's index.

    Args:
        queries: ``(N, D)``; reference: ``(M, D)``, M >= 1 (e.g. images flattened to D = 784,
            pixels in [-1, 1]).
    Returns:
        ``(distances (N,) float32 >= 0, indices (N,) int64)``.
    """
    ref = torch.as_tensor(np.asarray(reference), dtype=torch.float32)
    q = torch.as_tensor(np.asarray(queries), dtype=torch.float32)
    distances, indices = [], []
    for start in range(0, len(q), batch_size):
        d = torch.cdist(q[start : start + batch_size], ref, compute_mode="use_mm_for_euclid_dist")
        best = d.min(dim=1)
        distances.append(best.values.clamp_min(0))
        indices.append(best.indices)
    return torch.cat(distances).numpy(), torch.cat(indices).numpy()


def memorization(fake_images: np.ndarray, heldout_images: np.ndarray, train_images: np.ndarray, quantile: float = 0.05) -> dict:
    """How close synthetic images come to the training set, against held-out real images.

    For every image, the pixel-space L2 distance (pixels scaled to [-1, 1]) to its nearest training
    image. Held-out real images were never trained on, so their distances say how close a
    *new* digit naturally falls; a synthetic image closer than the ``quantile`` of those is a
    memorisation suspect. A generator that does not copy has ``share_closer_than_heldout`` near
    ``quantile``. (The test of Meehan et al. 2020, "A Non-Parametric Test to Detect Data-Copying in
    Generative Models", in its simplest form.)

    Args:
        fake_images, heldout_images, train_images: ``(N, 1, 28, 28)`` or ``(N, 784)`` float in [-1, 1]
            (numpy arrays or CPU tensors, e.g. from :func:`pipeline.data.splits.to_tensor`).
    Returns:
        dict with the threshold, the share of fakes below it, median distances of both sets, and
        ``fake_distances``/``fake_nearest`` arrays (not JSON; pop them before writing).
    """
    flat = lambda x: np.asarray(x, np.float32).reshape(len(x), -1)  # noqa: E731
    train = flat(train_images)
    fake_d, fake_idx = nearest_neighbour_distances(flat(fake_images), train)
    real_d, _ = nearest_neighbour_distances(flat(heldout_images), train)
    threshold = float(np.quantile(real_d, quantile))
    return {
        "quantile": quantile,
        "heldout_distance_threshold": threshold,
        "share_closer_than_heldout": float((fake_d < threshold).mean()),
        "median_distance_synthetic": float(np.median(fake_d)),
        "median_distance_heldout": float(np.median(real_d)),
        "min_distance_synthetic": float(fake_d.min()),
        "min_distance_heldout": float(real_d.min()),
        "fake_distances": fake_d,
        "fake_nearest": fake_idx,
    }
