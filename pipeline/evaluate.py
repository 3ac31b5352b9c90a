"""Stage ``evaluate``: the synthetic digits against the REAL MNIST test set.

quality.json: class-conditional accuracy (classifier labels = requested digit), FID, precision/recall and
density/coverage (k = 5) in the classifier's penultimate feature space, each next to the same metric
between two disjoint real samples, per-class diversity ratios, and memorization (pixel distance to the
nearest training image against held-out real images; closest pairs figure). The classifier is the judge,
or the referee when the judge curated the export (--min-confidence); quality.json says which.
augmentation.json: test accuracy of classifiers with the judge's recipe, seed and number of
optimisation steps on real only (the judge itself), real + synthetic, and synthetic only (TSTR; also
with the next classifier seeds, `evaluate.tstr_seeds`, and their mean), each also per digit with its
most frequent confusions (which real digits a synthetic training set fails on).
The test set is only measured, never used to choose anything (selection uses validation).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click
import numpy as np
import torch
from torchvision.utils import save_image

from pipeline.cli import run, user_errors
from pipeline.data import Splits, load_splits, to_tensor
from pipeline.dataset import read_export, read_manifest
from pipeline.metrics import (
    class_conditional_accuracy,
    diversity_ratio,
    frechet_distance,
    memorization,
    per_class_accuracy,
    precision_recall_density_coverage,
    top_confusions,
)
from pipeline.params import ClassifierParams, EvaluateParams, load_params
from pipeline.training import accuracy, load_classifier, predict, steps_per_epoch, train_classifier
from pipeline.utils import PipelineError, atomic_path, get_device, seed_everything, sha256_file, write_json

log = logging.getLogger("pipeline.evaluate")


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


def score_on_test(model, test_x: torch.Tensor, test_y: torch.Tensor) -> dict:
    """A classifier on the real test images ``(N, 1, 28, 28)`` in [-1, 1] with labels ``(N,) int64``, from one
    pass of predictions: ``{"test_accuracy": share correct in [0, 1] (as :func:`pipeline.training.accuracy`),
    "test_accuracy_per_digit": {"0": acc, ...}, "test_confusions": [{"true", "predicted", "count"}, ...]}``."""
    predicted = predict(model, test_x)[0].argmax(1)
    labels = test_y.cpu()
    return {"test_accuracy": float((predicted == labels).float().mean()),
            "test_accuracy_per_digit": per_class_accuracy(predicted.numpy(), labels.numpy()),
            "test_confusions": top_confusions(predicted.numpy(), labels.numpy())}


def augmentation_metrics(recipe: ClassifierParams, judge, splits: Splits, syn_images: np.ndarray,
                         syn_labels: np.ndarray, params: EvaluateParams, device: torch.device) -> dict:
    """Real test accuracy of classifiers with the judge's recipe, seed and step budget.

    Real only IS the judge: same recipe, data, steps and seed, so it is not trained again. Real +
    synthetic and synthetic only (TSTR) are trained with that recipe and seed, so the gain is a
    paired difference. ``params.tstr_seeds`` > 1 trains TSTR again with the next classifier seeds (runs
    ``tstr_seed_<seed>``); ``tstr_accuracy`` stays the judge's seed's (paired with real only) and
    ``tstr_accuracy_mean`` is the mean over all of them, in [0, 1] (``tstr_accuracy_seeds``: each, in the order
    of ``tstr_classifier_seeds``). Each run also records its test
    accuracy per true digit (``{"0": ..., "9": ...}`` in [0, 1]) and its five most frequent test errors
    (:func:`pipeline.metrics.top_confusions`).
    """
    rng = np.random.default_rng(params.seed)
    take = rng.permutation(len(syn_images))[: params.synthetic_train_size]
    syn_x, syn_y = to_tensor(syn_images[take]), torch.from_numpy(syn_labels[take])
    real_x, real_y = to_tensor(splits.train_images), torch.from_numpy(splits.train_labels)
    val_x, val_y = to_tensor(splits.val_images), torch.from_numpy(splits.val_labels)
    test_x, test_y = to_tensor(splits.test_images), torch.from_numpy(splits.test_labels)
    total_steps = recipe.epochs * steps_per_epoch(len(real_x), recipe.batch_size)
    results = {"real_only": {**score_on_test(judge, test_x, test_y), "val_accuracy": accuracy(judge, val_x, val_y),
                             "train_images": len(real_x), "source": "the judge (same recipe, data, steps and seed)"}}
    # TSTR also with the next classifier seeds: one seed moves TSTR by about +-0.2 point.
    tstr_names = ["tstr"] + [f"tstr_seed_{recipe.seed + i}" for i in range(1, params.tstr_seeds)]
    conditions = {  # name: (images, labels, classifier seed)
        "real_plus_synthetic": (torch.cat([real_x, syn_x]), torch.cat([real_y, syn_y]), recipe.seed),
        **{name: (syn_x, syn_y, recipe.seed + i) for i, name in enumerate(tstr_names)},
    }
    for name, (x, y, seed) in conditions.items():
        fit = train_classifier(recipe, x, y, val_x, val_y, device, total_steps=total_steps, seed=seed, desc=name)
        results[name] = {**score_on_test(fit.model, test_x, test_y), "val_accuracy": fit.best_val_accuracy,
                         "train_images": len(x), "selected_epoch": fit.best_epoch, "classifier_seed": seed}
        log.info("%s: val %.4f test %.4f", name, fit.best_val_accuracy, results[name]["test_accuracy"])
    tstr_runs = [results[name] for name in tstr_names]
    tstr_accuracies = [run["test_accuracy"] for run in tstr_runs]
    return {
        "real_only_accuracy": results["real_only"]["test_accuracy"],
        "real_plus_synthetic_accuracy": results["real_plus_synthetic"]["test_accuracy"],
        "tstr_accuracy": results["tstr"]["test_accuracy"],
        "tstr_accuracy_mean": float(np.mean(tstr_accuracies)),
        "tstr_val_accuracy_mean": float(np.mean([run["val_accuracy"] for run in tstr_runs])),
        "tstr_classifier_seeds": [run["classifier_seed"] for run in tstr_runs],
        "tstr_accuracy_seeds": tstr_accuracies,
        "augmentation_gain": results["real_plus_synthetic"]["test_accuracy"] - results["real_only"]["test_accuracy"],
        "runs": results,
        "optimisation_steps": total_steps,
        "classifier_seed": recipe.seed,
        "selection": "epoch with the best accuracy on the real validation split",
    }


@click.command(help=__doc__)
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Params file.")
@click.option("--data", default="data/prepared/mnist.npz", show_default=True, help="Prepared splits.")
@click.option("--synthetic", default="data/synthetic", show_default=True, help="Export from pipeline.generate.")
@click.option("--classifier", default="models/classifier.pt", show_default=True,
              help="The judge: evaluates the export unless it curated it; its recipe trains the TSTR runs.")
@click.option("--referee", default="models/referee.pt", show_default=True,
              help="Second classifier (other seed and width): evaluates exports the judge curated.")
@click.option("--quality", default="reports/metrics/quality.json", show_default=True, help="Quality metrics JSON.")
@click.option("--augmentation", default="reports/metrics/augmentation.json", show_default=True,
              help="TSTR / augmentation metrics JSON.")
@click.option("--pairs-figure", default="reports/figures/memorization_closest_pairs.png", show_default=True,
              help="Figure: the synthetic images closest to a training image (top) and those images (bottom).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
def main(params_path, data, synthetic, classifier, referee, quality, augmentation, pairs_figure, device) -> None:
    with user_errors():
        start = time.perf_counter()
        params = load_params(params_path)
        seed_everything(params.evaluate.seed)
        dev = get_device(device)
        splits = load_splits(data)
        judge = load_classifier(classifier, dev)
        manifest = read_manifest(synthetic)
        role, evaluator_path = choose_evaluator(manifest, {"judge": classifier, "referee": referee})
        evaluator = judge if role == "judge" else load_classifier(evaluator_path, dev)
        syn_images, syn_labels = read_export(synthetic)
        log.info("read %d synthetic images; evaluating with the %s (%s)", len(syn_labels), role, evaluator_path)
        q = quality_metrics(evaluator, splits, syn_images, syn_labels, params.evaluate, pairs_figure)
        q["evaluation_classifier"] = {"role": role, "path": str(evaluator_path), "sha256": sha256_file(evaluator_path),
                                      "seed": torch.load(evaluator_path, weights_only=True)["params"]["seed"],
                                      "width": evaluator.config.width}
        q["curation"] = manifest.get("curation")
        q.update(synthetic_images=len(syn_labels), seed=params.evaluate.seed,
                 wall_seconds=round(time.perf_counter() - start, 2))
        write_json(quality, q)
        log.info("class-conditional accuracy %.4f, FID %.3f (real floor %.3f)", q["class_conditional_accuracy"],
                 q["fid"], q["fid_real_floor"])
        start_aug = time.perf_counter()
        a = augmentation_metrics(params.train_classifier, judge, splits, syn_images, syn_labels, params.evaluate, dev)
        a.update(seed=params.evaluate.seed, wall_seconds=round(time.perf_counter() - start_aug, 2))
        write_json(augmentation, a)


if __name__ == "__main__":
    run(main)
