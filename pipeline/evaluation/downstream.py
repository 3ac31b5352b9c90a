"""The evaluate stage's downstream classifiers (``reports/metrics/downstream.json``): the judge's recipe trained on
synthetic only (TSTR, "train on synthetic, test on real"), on real + synthetic, and the judge itself as real only,
each scored on the real MNIST test set; the augmentation gain is real + synthetic minus real only.

Next to the fixed synthetic set, the *fresh-samples* conditions draw a new synthetic set from G every epoch
(:class:`pipeline.dataset.SyntheticStream`; "dataset recycling", GaFi, arXiv 2305.10118): TSTR-stream (every
batch of every step is images no step saw before) and real + streamed synthetic.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from pipeline.core.params import ClassifierParams, EvaluateParams
from pipeline.data.splits import Splits, to_tensor
from pipeline.evaluation.metrics import per_class_accuracy, top_confusions
from pipeline.training.classifier import accuracy, predict, steps_per_epoch, train_classifier

log = logging.getLogger(__name__)


def score_on_test(model, test_x: torch.Tensor, test_y: torch.Tensor) -> dict:
    """A classifier on the real test images ``(N, 1, 28, 28)`` in [-1, 1] with labels ``(N,) int64``, from one
    pass of predictions: ``{"test_accuracy": share correct in [0, 1] (as :func:`pipeline.training.classifier.accuracy`),
    "test_accuracy_per_digit": {"0": acc, ...}, "test_confusions": [{"true", "predicted", "count"}, ...]}``."""
    predicted = predict(model, test_x)[0].argmax(1)
    labels = test_y.cpu()
    return {"test_accuracy": float((predicted == labels).float().mean()),
            "test_accuracy_per_digit": per_class_accuracy(predicted.numpy(), labels.numpy()),
            "test_confusions": top_confusions(predicted.numpy(), labels.numpy())}


class StreamEpochs:
    """Epoch ``e`` (from 1) of a :class:`pipeline.dataset.SyntheticStream` as training tensors ``((N, 1, 28, 28) float32 in [-1, 1],
    (N,) int64)``, N = the stream's ``samples_per_epoch``, drawn once and kept (uint8) for the runs that share them."""

    def __init__(self, stream):
        self.stream, self.cache = stream, {}

    def __call__(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if epoch not in self.cache:
            self.cache[epoch] = self.stream.arrays(epoch - 1)
        images, labels = self.cache[epoch]
        return to_tensor(images), torch.from_numpy(labels)


def downstream_metrics(recipe: ClassifierParams, judge, splits: Splits, syn_images: np.ndarray,
                         syn_labels: np.ndarray, params: EvaluateParams, device: torch.device,
                         stream=None) -> dict:
    """Real test accuracy of classifiers with the judge's recipe, seed and step budget.

    Real only IS the judge: same recipe, data, steps and seed, so it is not trained again. Real +
    synthetic and synthetic only (TSTR) are trained with that recipe and seed, so the gain is a
    paired difference. ``params.tstr_seeds`` > 1 trains TSTR again with the next classifier seeds (runs
    ``tstr_seed_<seed>``); ``tstr_accuracy`` stays the judge's seed's (paired with real only) and
    ``tstr_accuracy_mean`` is the mean over all of them, in [0, 1] (``tstr_accuracy_seeds``: each, in the order
    of ``tstr_classifier_seeds``). Each run also records its test
    accuracy per true digit (``{"0": ..., "9": ...}`` in [0, 1]) and its five most frequent test errors
    (:func:`pipeline.evaluation.metrics.top_confusions`).

    With ``stream`` (a :class:`pipeline.dataset.SyntheticStream` with ``samples_per_epoch`` =
    ``params.synthetic_train_size``), the fresh-samples conditions
    run with the same recipe, seeds and number of steps, each epoch on that epoch's new draw of the stream:
    ``tstr_stream`` (and ``tstr_stream_seed_<seed>`` for the next TSTR seeds; ``tstr_stream_accuracy_mean``
    is their mean) and ``real_plus_stream`` (the real train split + one epoch of the stream, redrawn every
    epoch; ``stream_augmentation_gain`` = it minus real only). Their ``synthetic_images_drawn`` counts the
    images a run drew from G (epochs x ``synthetic_train_size``; a last partial epoch uses only part of its draw).
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
    # name: (the training set of epoch e, from 1: a function, so each set is built just before its run and
    # freed after it; whether it changes after epoch 1; the classifier seed)
    conditions = {
        "real_plus_synthetic": (lambda e: _with_real(real_x, real_y, (syn_x, syn_y)), False, recipe.seed),
        **{name: (lambda e: (syn_x, syn_y), False, recipe.seed + i) for i, name in enumerate(tstr_names)},
    }
    stream_names = []
    if stream is not None:
        epochs = StreamEpochs(stream)
        stream_names = [name.replace("tstr", "tstr_stream") for name in tstr_names]
        for name, tstr_name in zip(stream_names, tstr_names):
            conditions[name] = (epochs, True, conditions[tstr_name][2])
        conditions["real_plus_stream"] = (lambda e: _with_real(real_x, real_y, epochs(e)), True, recipe.seed)
    for name, (training_set, fresh, seed) in conditions.items():
        x, y = training_set(1)
        fit = train_classifier(recipe, x, y, val_x, val_y, device, total_steps=total_steps, seed=seed, desc=name,
                               fresh=training_set if fresh else None)
        results[name] = {**score_on_test(fit.model, test_x, test_y), "val_accuracy": fit.best_val_accuracy,
                         "train_images": len(x), "selected_epoch": fit.best_epoch, "classifier_seed": seed}
        if fresh:
            results[name]["synthetic_images_drawn"] = len(fit.history) * params.synthetic_train_size
        log.info("%s: val %.4f test %.4f", name, fit.best_val_accuracy, results[name]["test_accuracy"])
        del x, y, fit  # before the next condition's set is built
    tstr_runs = [results[name] for name in tstr_names]
    tstr_accuracies = [run["test_accuracy"] for run in tstr_runs]
    streamed = {}
    if stream is not None:
        stream_accuracies = [results[name]["test_accuracy"] for name in stream_names]
        streamed = {
            "tstr_stream_accuracy": stream_accuracies[0],
            "tstr_stream_accuracy_mean": float(np.mean(stream_accuracies)),
            "tstr_stream_accuracy_seeds": stream_accuracies,
            "tstr_stream_val_accuracy_mean": float(np.mean([results[n]["val_accuracy"] for n in stream_names])),
            "real_plus_stream_accuracy": results["real_plus_stream"]["test_accuracy"],
            "stream_augmentation_gain": (results["real_plus_stream"]["test_accuracy"]
                                         - results["real_only"]["test_accuracy"]),
            "stream": {"seed": stream.seed, "latent_scale": stream.latent_scale, "precision": stream.precision,
                       "images_per_epoch": stream.samples_per_epoch},
        }
    return {
        "real_only_accuracy": results["real_only"]["test_accuracy"],
        "real_plus_synthetic_accuracy": results["real_plus_synthetic"]["test_accuracy"],
        "tstr_accuracy": results["tstr"]["test_accuracy"],
        "tstr_accuracy_mean": float(np.mean(tstr_accuracies)),
        "tstr_val_accuracy_mean": float(np.mean([run["val_accuracy"] for run in tstr_runs])),
        "tstr_classifier_seeds": [run["classifier_seed"] for run in tstr_runs],
        "tstr_accuracy_seeds": tstr_accuracies,
        "augmentation_gain": results["real_plus_synthetic"]["test_accuracy"] - results["real_only"]["test_accuracy"],
        **streamed,
        "runs": results,
        "optimisation_steps": total_steps,
        "classifier_seed": recipe.seed,
        "selection": "epoch with the best accuracy on the real validation split",
    }


def _with_real(real_x: torch.Tensor, real_y: torch.Tensor, synthetic: tuple[torch.Tensor, torch.Tensor]):
    return torch.cat([real_x, synthetic[0]]), torch.cat([real_y, synthetic[1]])
