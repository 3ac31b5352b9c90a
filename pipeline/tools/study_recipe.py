"""The augmentation study's recipes, measured on the VALIDATION split only (never the test set).

``python -m pipeline.tools.study_recipe --name w16_1800 --budget 0 --set classifier_width=16 --set
classifier_steps=1800`` trains the study's classifier (:func:`pipeline.evaluation.study_protocol.fit_classifier`)
in the study's ``real`` condition: the real images of one budget drawn with ``--seed`` as a study cell draws them,
with params.yaml's ``study`` section changed by ``--set`` (``classifier_steps`` as one number: the steps of this
run). ``--condition synthetic`` measures a budget-matched cGAN recipe instead (``--set gan_steps=1000 --set
gan_diffaugment=cutout``, on top of ``gan_recipes`` for the budget): the cGAN trained on the subset, then the
study's synthetic-only classifier on its samples (as many per digit as the cell's largest synthetic:real
ratio gives): validation TSTR. One JSON per run goes to ``reports/study/recipes/<name>.json``, with the training
seconds and the machine it ran on (seconds compare only between runs of one machine). What it is for: picking
the study classifier's and the budget-matched cGANs' recipes on validation. Not a DVC stage.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import click
import torch

from pipeline.core.cli import run, user_errors
from pipeline.core.machine import machine_info
from pipeline.core.params import ParamsError, load_params, parse_overrides
from pipeline.core.utils import write_json
from pipeline.data.splits import load_splits, to_tensor
from pipeline.evaluation.study_protocol import draw_subset, fit_classifier, synthetic_set, train_budget_generator
from pipeline.training.classifier import accuracy

log = logging.getLogger("pipeline.tools.study_recipe")


@click.command(help=__doc__)
@click.option("--name", required=True, help="Run name: the JSON is <out-dir>/<name>.json.")
@click.option("--budget", default=0, show_default=True, type=click.IntRange(min=0),
              help="Real train images per digit (0 = the whole train split).")
@click.option("--condition", default="real", show_default=True, type=click.Choice(["real", "synthetic"]),
              help="real: the classifier on the real subset; synthetic: the budget-matched cGAN, by validation TSTR.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Subset and classifier seed.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Change a study param (repeatable).")
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Params file.")
@click.option("--data", default="data/prepared/mnist.npz", show_default=True, help="Prepared splits.")
@click.option("--out-dir", default="reports/study/recipes", show_default=True, help="Folder of the run JSONs.")
def main(name, budget, condition, seed, overrides, params_path, data, out_dir) -> None:
    with user_errors():
        params = load_params(params_path)
        changes = parse_overrides(overrides)
        steps = changes.pop("classifier_steps", None)
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(params.study)})
        if unknown:
            raise ParamsError(f"--set: study has no key(s) {', '.join(unknown)}")
        study = dataclasses.replace(params.study.for_budget(budget), **changes)
        steps = study.steps_for(budget) if steps is None else int(steps)
        splits = load_splits(data)
        subset = draw_subset(splits.train_labels, budget, seed)
        x, y = to_tensor(splits.train_images[subset]), torch.from_numpy(splits.train_labels[subset]).long()
        val_x = to_tensor(splits.val_images[: study.val_size])
        val_y = torch.from_numpy(splits.val_labels[: study.val_size]).long()
        record = {"name": name, "condition": condition, "budget": budget, "seed": seed, "steps": steps}
        if condition == "synthetic":
            start = time.perf_counter()
            generator = train_budget_generator(splits.train_images[subset], splits.train_labels[subset],
                                               params.train_cgan, study, seed)
            record["gan_train_seconds"] = round(time.perf_counter() - start, 1)
            per_class = min(study.max_synthetic_per_class, max(study.synthetic_ratios) * (len(subset) // 10))
            x, y = synthetic_set(generator, per_class, seed)
            record["synthetic_per_class"] = per_class
        start = time.perf_counter()
        model = fit_classifier(x, y, study, params.train_judge, seed, steps, desc=name)
        seconds = time.perf_counter() - start
        val = accuracy(model, val_x, val_y)
        study_record = {k: v for k, v in dataclasses.asdict(study).items() if k not in ("classifier_steps", "gan_recipes")}
        write_json(Path(out_dir) / f"{name}.json", {
            **record, "study": study_record, "val_accuracy": val, "train_seconds": round(seconds, 1),
            "machine": machine_info(torch.device("cpu")),
        })
        log.info("%s: validation accuracy %.4f after %d steps (%.0f s)", name, val, steps, seconds)

if __name__ == "__main__":
    run(main)
