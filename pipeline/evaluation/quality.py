"""The evaluate stage's fidelity, diversity and memorization measurements of an export against real MNIST
(``reports/metrics/quality.json``), and the choice of the classifier that measures them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torchvision.utils import save_image

from pipeline.core.params import EvaluateParams
from pipeline.core.utils import PipelineError, atomic_path, sha256_file
from pipeline.data.splits import Splits, to_tensor
from pipeline.evaluation.metrics import (
    class_conditional_accuracy,
    diversity_ratio,
    frechet_distance,
    memorization,
    precision_recall_density_coverage,
)
from pipeline.training.classifier import predict

CLOSEST_PAIRS = 16


def choose_evaluator(manifest: dict, candidates: dict[str, str]) -> tuple[str, str]:
    """The first of ``candidates`` (role -> checkpoint path, e.g. judge then referee) that did not curate
    the export described by ``manifest``: metrics judged by the classifier that filtered the data would
    be inflated by construction.

    Returns:
        ``(role, path)``.
    Raises:
        PipelineError: every candidate is the curating classifier (same sha256).
    """
    curation = manifest.get("curation") or {}
    curator = (curation.get("classifier") or {}).get("sha256")
    for role, path in candidates.items():
        if curator is None or sha256_file(path) != curator:
            return role, path
    raise PipelineError(f"the export was curated by {curation['classifier']['path']}; evaluate it with a classifier "
                        "not used for filtering (--referee)")


def quality_metrics(classifier, splits: Splits, syn_images: np.ndarray, syn_labels: np.ndarray, params: EvaluateParams,
                    pairs_figure: str | Path | None = None) -> dict:
    """Class-conditional accuracy; FID, PRDC and memorization vs real images, each with its real reference.

    Real reference: a test-set sample of n images plays "real"; n synthetic images, or n train images
    (disjoint from test), play "fake". ``pairs_figure``: where to save the closest synthetic/train pairs.
    """
    rng = np.random.default_rng(params.seed)
    syn_probs, syn_feats = predict(classifier, to_tensor(syn_images))
    cca, cca_per_class = class_conditional_accuracy(syn_probs.argmax(1).numpy(), syn_labels)
    _, test_feats = predict(classifier, to_tensor(splits.test_images))
    n = min(params.fid_samples, len(syn_images), len(splits.train_images), len(splits.test_images))
    syn_idx = rng.choice(len(syn_images), n, replace=False)
    train_idx = rng.choice(len(splits.train_images), n, replace=False)
    test_idx = rng.choice(len(splits.test_images), n, replace=False)
    _, train_feats = predict(classifier, to_tensor(splits.train_images[train_idx]))
    test_sample = test_feats.numpy()[test_idx]
    syn_sample, train_sample = syn_feats.numpy()[syn_idx], train_feats.numpy()
    prdc = precision_recall_density_coverage(test_sample, syn_sample, k=params.prdc_k)
    prdc_real = precision_recall_density_coverage(test_sample, train_sample, k=params.prdc_k)
    syn_picked = syn_images[syn_idx]
    memo = memorization(to_tensor(syn_picked), to_tensor(splits.test_images[test_idx]), to_tensor(splits.train_images))
    fake_d, fake_nearest = memo.pop("fake_distances"), memo.pop("fake_nearest")
    if pairs_figure is not None:
        closest = np.argsort(fake_d, kind="stable")[:CLOSEST_PAIRS]
        pairs = np.concatenate([syn_picked[closest], splits.train_images[fake_nearest[closest]]])
        with atomic_path(pairs_figure) as tmp:  # row 1: synthetic, row 2: its nearest training image
            save_image(to_tensor(pairs), tmp, nrow=CLOSEST_PAIRS, normalize=True, value_range=(-1, 1), format="png")
        memo["closest_pairs_figure"] = str(pairs_figure)
        memo["closest_pairs_distances"] = [round(float(d), 3) for d in fake_d[closest]]
    return {
        "class_conditional_accuracy": cca,
        "per_class_accuracy": cca_per_class,
        "mean_judge_confidence": float(syn_probs.max(1).values.mean()),
        "fid": frechet_distance(syn_sample, test_sample),
        "fid_real_floor": frechet_distance(train_sample, test_sample),
        "fid_samples": int(n),
        "fid_feature_space": "the evaluation classifier's penultimate layer (128-d, before its ReLU)",
        "prdc_k": params.prdc_k,
        **{name: value for name, value in prdc.items()},
        **{f"{name}_real_reference": value for name, value in prdc_real.items()},
        "memorization": memo,
        "diversity": diversity_ratio(syn_feats.numpy(), syn_labels, test_feats.numpy(), splits.test_labels,
                                     params.diversity_per_class, params.seed),
    }
