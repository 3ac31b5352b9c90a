"""Ablation runs of the cGAN, measured on the VALIDATION split only (never the test set).

``python -m pipeline.tools.ablation --name no_ema --set ema_decay=0`` trains the cGAN with params.yaml's
``train_cgan`` section changed by ``--set`` (any number), and after every epoch measures, on
samples of the (EMA) generator: class-conditional accuracy by the judge, FID, recall and coverage
(k = 5) against validation images in the judge's feature space, and every ``--tstr-every`` epochs a
TSTR proxy (a small classifier trained on 20k synthetic images, scored on validation); with
``--full-tstr``, after the last epoch also TSTR with the judge's own recipe (60,000 synthetic images,
the judge's step budget), scored on validation. Training seconds exclude the measuring. One JSON per
run goes to ``reports/ablation/<name>.json``, with the machine it ran on (CPU model, SIMD level,
threads, whether bfloat16 is native: train seconds compare only between runs of one machine), in the
versioned schema of :mod:`pipeline.reporting.records`: the run's full params and sampling, and the baseline it is
compared against (``--baseline NAME``, another record; without it, params.yaml's ``train_cgan`` at plain
sampling, with no baseline results). The report stage turns the records into a summary per lever and
``reports/ablation.md``. Not a DVC stage: each run costs minutes to hours.

``--generator PATH`` measures a saved generator instead of training one (``models/generator.pt``, or a
``--save-generators`` file), and two sampling-time choices that need no retraining can be measured
with either: ``--latent-scale s`` samples G(s * z, y) (s < 1 is the truncation direction of Brock et al.
2019, s > 1 widens the samples), and ``--standing-stats N`` replaces the generator's BatchNorm running
statistics (with an EMA generator, the live generator's, copied each step) by their average over N
train-mode batches of the EMA generator's own samples ("standing statistics", Brock et al. 2019, BigGAN,
appendix C.1). Neither changes what the ``generate`` stage writes.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict
from pathlib import Path

import click
import numpy as np
import torch
from torch import nn

from pipeline.core.cli import run, user_errors
from pipeline.core.machine import machine_info
from pipeline.core.params import (
    CGAN_PARAMS_BEFORE_THEY_EXISTED,
    ClassifierParams,
    ParamsError,
    load_params,
    params_from_dict,
    parse_overrides,
)
from pipeline.core.utils import get_device, save_checkpoint, sha256_file, write_json
from pipeline.data.splits import load_splits, to_tensor
from pipeline.evaluation.judging import exported_samples, judged_samples
from pipeline.evaluation.metrics import class_conditional_accuracy, frechet_distance, precision_recall_density_coverage
from pipeline.generation.inference import InferenceGenerator
from pipeline.reporting.records import ABLATION_SCHEMA_VERSION, read_ablation_record, validate_ablation_record
from pipeline.training.cgan import EpochLog, train_cgan
from pipeline.training.checkpoints import load_classifier, load_generator, model_checkpoint
from pipeline.training.classifier import predict, steps_per_epoch, train_classifier
from pipeline.training.networks import NUM_CLASSES, Generator

log = logging.getLogger("pipeline.tools.ablation")
TSTR_PROXY_IMAGES = 20000
TSTR_PROXY = ClassifierParams(seed=1, width=16, dropout=0.25, epochs=1, batch_size=128, lr=0.005,
                              weight_decay=1e-4, transform_degrees=0.0, transform_translate=0.0, transform_scale=0.0,
                              autocast="")
TSTR_PROXY_STEPS = 300
FULL_TSTR_IMAGES = 60000  # as the evaluate stage's synthetic_train_size
FULL_TSTR_SEED = 100  # the latent z of the full-recipe TSTR samples
STANDING_STATS_SEED = 0  # the latent z and labels of the standing-statistics batches


class ScaledLatent(nn.Module):
    """G(scale * z, y): ``generator`` with its latent z multiplied by ``scale`` (> 0) before the forward pass.

    Same call and ``config`` as :class:`pipeline.training.networks.Generator`: ``z (B, z_dim) float32``, labels
    ``(B,) int64`` -> ``(B, 1, 28, 28)`` in [-1, 1]. ``scale`` < 1 moves towards the truncation trick
    (Brock et al. 2019: fidelity for diversity), > 1 away from it.
    """

    def __init__(self, generator: Generator, scale: float):
        super().__init__()
        self.generator, self.scale, self.config = InferenceGenerator(generator), scale, generator.config

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.generator(z * self.scale, labels)


@torch.no_grad()
def standing_statistics(generator: Generator, batches: int, batch_size: int,
                        seed: int = STANDING_STATS_SEED) -> Generator:
    """A copy of ``generator`` (left unchanged) whose BatchNorm running mean and variance are the plain
    averages of the batch statistics of ``batches`` train-mode forward passes of ``batch_size`` samples
    (z ~ N(0, I) as in training, labels uniform in 0-9, from ``seed``): "standing statistics" (Brock et
    al. 2019, BigGAN, appendix C.1). An EMA generator's own weights then set its statistics, instead of
    the live generator's that training copies into it. Returned in eval mode, on the generator's device.
    """
    calibrated = copy.deepcopy(generator)
    norms = [m for m in calibrated.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average: the mean over all batches
    device = next(calibrated.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    calibrated.train()
    for _ in range(batches):
        z = torch.randn(batch_size, calibrated.config.z_dim, generator=rng)
        labels = torch.randint(0, NUM_CLASSES, (batch_size,), generator=rng)
        calibrated(z.to(device), labels.to(device))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    return calibrated.eval()


def sampling_variant(generator: Generator, latent_scale: float, standing_batches: int,
                     batch_size: int) -> nn.Module:
    """``generator`` as the measurements sample it: with standing statistics from ``standing_batches``
    batches of unscaled z (0 = as trained), then the latent z scaled by ``latent_scale`` (1 = as trained)."""
    if standing_batches > 0:
        generator = standing_statistics(generator, standing_batches, batch_size)
    return ScaledLatent(generator, latent_scale) if latent_scale != 1.0 else generator


def validation_scores(generator: Generator, judge, val_images: torch.Tensor, val_labels: torch.Tensor,
                      val_features: np.ndarray, tstr: bool, seed: int = 0,
                      device: torch.device = torch.device("cpu")) -> dict:
    """Validation-only quality of ``generator``: class-conditional accuracy, FID, PRDC, optional TSTR proxy
    (its classifier trained on ``device``; the judge runs on the CPU)."""
    rng = torch.Generator().manual_seed(seed)
    probs, feats, labels = judged_samples(generator, judge, rng)
    cca, per_class = class_conditional_accuracy(probs.argmax(1).numpy(), labels.numpy())
    scores = {"class_conditional_accuracy": cca, "worst_digit_accuracy": min(per_class.values()),
              "fid_val": frechet_distance(feats.numpy(), val_features),
              **{f"{k}_val": v for k, v in precision_recall_density_coverage(val_features, feats.numpy(), 5).items()}}
    if tstr:
        scores["tstr_proxy_val"] = synthetic_tstr(generator, TSTR_PROXY, TSTR_PROXY_IMAGES, TSTR_PROXY_STEPS, rng,
                                                  val_images, val_labels, "tstr-proxy", device)
    return scores


def synthetic_tstr(generator: Generator, recipe: ClassifierParams, num_images: int, total_steps: int,
                   rng: torch.Generator, val_images: torch.Tensor, val_labels: torch.Tensor, desc: str,
                   device: torch.device = torch.device("cpu")) -> float:
    """Best validation accuracy of a classifier trained (on ``device``) with ``recipe`` for ``total_steps`` on
    ``num_images`` exported samples of ``generator`` (labels cycling 0..9, z drawn from ``rng``): TSTR on validation."""
    z = torch.randn(num_images, generator.config.z_dim, generator=rng)
    labels = torch.arange(NUM_CLASSES).repeat(num_images // NUM_CLASSES)
    fit = train_classifier(recipe, exported_samples(generator, z, labels), labels, val_images, val_labels,
                           device, total_steps=total_steps, desc=desc)
    return fit.best_val_accuracy


def judge_recipe_tstr(generator: Generator, recipe: ClassifierParams, total_steps: int, val_images: torch.Tensor,
                      val_labels: torch.Tensor, device: torch.device = torch.device("cpu")) -> float:
    """Validation accuracy of a classifier trained with the judge's ``recipe`` for ``total_steps`` on
    ``FULL_TSTR_IMAGES`` exported samples of ``generator`` (labels cycling 0..9, z seeded by
    ``FULL_TSTR_SEED``), best epoch on validation: the evaluate stage's TSTR with validation for test.
    The best-epoch pick and the score use the same 5,000 images: compare runs with it, not with the test figure."""
    rng = torch.Generator().manual_seed(FULL_TSTR_SEED)
    return synthetic_tstr(generator, recipe, FULL_TSTR_IMAGES, total_steps, rng, val_images, val_labels,
                          "tstr-judge-recipe", device)


@click.command(help=__doc__)
@click.option("--name", required=True, help="Run name: the JSON is <out-dir>/<name>.json.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Change a train_cgan param (repeatable).")
@click.option("--tstr-every", default=2, show_default=True, help="TSTR proxy every N epochs (and at the last).")
@click.option("--full-tstr", is_flag=True,
              help="After the last epoch, also TSTR with the judge's recipe (7-9 min on one thread with fast "
                   "bfloat16 kernels, 25-38 min on an AVX2-only CPU).")
@click.option("--generator", "generator_path", default=None, metavar="PATH",
              help="Measure this saved generator (its epoch, once) instead of training one; no --set.")
@click.option("--latent-scale", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Measure samples of G(scale * z, y) (sampling only; training is unchanged).")
@click.option("--standing-stats", "standing_batches", default=0, show_default=True, type=click.IntRange(min=0),
              help="Before measuring, set G's BatchNorm statistics from this many train-mode batches of its own "
                   "samples (standing statistics; 0 = as trained; the saved generators stay as trained).")
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Params file.")
@click.option("--data", default="data/prepared/mnist.npz", show_default=True, help="Prepared splits.")
@click.option("--judge", "judge_path", default="models/judge.pt", show_default=True, help="The judge.")
@click.option("--out-dir", default="reports/ablation", show_default=True, help="Folder of the run JSONs.")
@click.option("--baseline", "baseline_name", default=None, metavar="NAME",
              help="The record in --out-dir this run is compared against (its params and sampling are stored as the "
                   "baseline). Default: params.yaml's train_cgan (or the --generator's params) at plain sampling.")
@click.option("--threads", default=0, show_default=True, help="torch CPU threads (0 = torch's default).")
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda", "auto"]),
              help="Where G, D and the TSTR classifiers train: cpu, cuda or auto (the judge measures on the CPU).")
@click.option("--save-generators", "generators_dir", default=None, metavar="DIR",
              help="Also save the (EMA) generator after every epoch to DIR/<name>_epoch<N>.pt (about 1.8 MB each; "
                   "loadable with pipeline.training.cgan.load_generator and `python -m pipeline.generate --checkpoint`).")
def main(name, overrides, tstr_every, full_tstr, generator_path, latent_scale, standing_batches, params_path, data,
         judge_path, out_dir, threads, device, generators_dir, baseline_name) -> None:
    with user_errors():
        if threads > 0:
            torch.set_num_threads(threads)
        dev = get_device(device)  # --device cuda without a GPU: a one-line error before anything loads
        if generator_path and (overrides or generators_dir):
            raise ParamsError("--generator measures a trained generator: --set and --save-generators train one")
        all_params = load_params(params_path)
        changes = parse_overrides(overrides)
        raw = asdict(all_params)  # --set values go through params.yaml's own loader and its checks
        raw["train_cgan"].update(changes)
        source = {}
        if generator_path:  # the params it was trained with
            loaded, checkpoint = load_generator(generator_path)
            raw["train_cgan"] = {**CGAN_PARAMS_BEFORE_THEY_EXISTED, **checkpoint["params"]}
            source = {"path": str(generator_path), "sha256": sha256_file(generator_path)}
        params = params_from_dict(raw).train_cgan
        plain = {"latent_scale": 1.0, "standing_stats_batches": 0, "standing_stats_batch_size": params.batch_size}
        # A saved generator is compared with itself at plain sampling; a training run with params.yaml's recipe.
        baseline = {"record": None, "params": asdict(params if generator_path else all_params.train_cgan),
                    "sampling": plain}
        if baseline_name:  # fail now, not after hours of training, if the baseline record is missing or invalid
            path = Path(out_dir) / f"{baseline_name}.json"
            if not path.is_file():
                raise ParamsError(f"--baseline {baseline_name}: no such record in {out_dir}")
            found = read_ablation_record(path)
            baseline = {"record": baseline_name, "params": found["params"], "sampling": found["sampling"]}
        if generators_dir:  # fail now, not after the first epoch, if the folder cannot be made
            Path(generators_dir).mkdir(parents=True, exist_ok=True)
        splits = load_splits(data)
        judge, judge_sha256 = load_classifier(judge_path), sha256_file(judge_path)
        val_images, val_labels = to_tensor(splits.val_images), torch.from_numpy(splits.val_labels)
        val_features = predict(judge, val_images)[1].numpy()
        machine = machine_info(dev)
        num_train = len(splits.train_images)
        if params.max_train_images > 0:  # as the train_cgan stage caps them
            num_train = min(num_train, params.max_train_images)
        sampling = {"latent_scale": latent_scale, "standing_stats_batches": standing_batches,
                    "standing_stats_batch_size": params.batch_size}
        rows, clock = [], {"train": 0.0, "last": time.perf_counter()}

        def measure(entry: dict, generator: Generator, last: bool) -> None:
            measured = sampling_variant(generator, latent_scale, standing_batches, params.batch_size)
            tstr = entry["epoch"] % tstr_every == 0 or last
            rows.append({**entry, **validation_scores(measured, judge, val_images, val_labels, val_features, tstr,
                                                      device=dev)})
            if full_tstr and last:
                recipe = all_params.train_judge
                steps = recipe.epochs * steps_per_epoch(len(splits.train_images), recipe.batch_size)
                rows[-1]["tstr_val"] = judge_recipe_tstr(measured, recipe, steps, val_images, val_labels, dev)
            log.info("%s %s", name, {k: round(v, 4) if isinstance(v, float) else v for k, v in rows[-1].items()})
            record = {
                "schema_version": ABLATION_SCHEMA_VERSION, "name": name, "params": asdict(params), "sampling": sampling,
                "tstr_recipe": asdict(all_params.train_judge),
                "overrides": changes, "baseline": baseline, "generator": source or None,
                "judge": {"path": judge_path, "sha256": judge_sha256}, "machine": machine,
                "threads": torch.get_num_threads(), "train_images": num_train,
                "measured_on": "validation split (5,000 held-out train images)", "note": "",
                "results": {"epochs": rows},
            }
            write_json(Path(out_dir) / f"{name}.json", validate_ablation_record(record, name))

        if generator_path:  # measured once, not trained here: no training seconds
            measure({"epoch": checkpoint["epoch"]}, loaded.to(dev), last=True)
            return

        def on_epoch(entry: EpochLog, generator: Generator) -> None:
            clock["train"] += time.perf_counter() - clock["last"]
            if generators_dir:
                save_checkpoint(Path(generators_dir) / f"{name}_epoch{entry.epoch}.pt",
                                model_checkpoint("generator", generator, params, entry.epoch))
            measure({**asdict(entry), "train_seconds": round(clock["train"], 1)}, generator,
                    last=entry.epoch == params.epochs)
            clock["last"] = time.perf_counter()

        train_cgan(params, to_tensor(splits.train_images[:num_train]),
                   torch.from_numpy(splits.train_labels[:num_train]), dev, on_epoch=on_epoch)


if __name__ == "__main__":
    run(main)
