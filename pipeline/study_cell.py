"""Stage ``study_cell``: one cell (real-data budget b, seed) of the augmentation study.

Draws b real images per digit from the train split (never validation or test) with the seed, trains the
budget-matched cGAN on them only, trains one classifier per condition (real; real + classical
augmentation; real + synthetic; real + synthetic + classical; synthetic only; and the last-but-one pair
again with the pipeline's generator, which saw all train images), makes every pick on validation and
scores each final classifier once on the real MNIST test set; and the fresh-samples conditions (real +
streamed synthetic, synthetic only streamed: a new G(z, y) for every synthetic image a batch draws). Writes one JSON (accuracies in [0, 1]).
The protocol is :mod:`pipeline.evaluation.study_protocol`; ``dvc.yaml`` runs one stage per cell (``matrix:``).
"""

from __future__ import annotations

import logging
import time

import click
import torch

from pipeline.core.cli import run, user_errors
from pipeline.core.params import load_params
from pipeline.core.utils import PipelineError, sha256_file, write_json
from pipeline.data.splits import load_splits
from pipeline.evaluation.study_protocol import draw_subset, run_cell, subset_sha256
from pipeline.training.checkpoints import load_generator

log = logging.getLogger("pipeline.study_cell")


@click.command(help=__doc__)
@click.option("--budget", type=click.IntRange(min=0), required=True,
              help="Real train images per digit (0 = the whole train split).")
@click.option("--seed", type=click.IntRange(min=0), required=True, help="Draws the subset, the generator, the classifiers.")
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Params file.")
@click.option("--data", default="data/prepared/mnist.npz", show_default=True, help="Prepared splits.")
@click.option("--fullgen", default="models/generator.pt", show_default=True,
              help="The pipeline's generator (trained on every train image), for the *_fullgen conditions.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Cell JSON to write.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Torch threads. Default: torch's.")
def main(budget, seed, params_path, data, fullgen, out, threads) -> None:
    with user_errors():
        start = time.perf_counter()
        if threads:
            torch.set_num_threads(threads)
        params = load_params(params_path)
        splits = load_splits(data)
        generator, _ = load_generator(fullgen)
        subset = draw_subset(splits.train_labels, budget, seed)
        if budget and len(subset) != 10 * budget:
            raise PipelineError(f"drew {len(subset)} images for budget {budget}")
        result = run_cell(splits, subset, budget, generator, params.train_cgan, params.train_judge,
                          params.study, seed)
        write_json(out, {
            "budget": budget, "seed": seed, "subset_size": len(subset),
            "subset_sha256": subset_sha256(splits.train_images[subset]),
            "fullgen_sha256": sha256_file(fullgen),
            "gan_recipe": params.study.gan_recipe(budget),
            "classifier_steps": params.study.steps_for(budget),
            "test": result.test, "validation": result.validation, "picks": result.picks,
            "wall_seconds": round(time.perf_counter() - start, 1),
        })
        log.info("cell b=%s seed=%d: %s (%.0f s)", budget or "all", seed,
                 ", ".join(f"{k} {100 * v:.2f} %" for k, v in result.test.items()), time.perf_counter() - start)


if __name__ == "__main__":
    run(main)
