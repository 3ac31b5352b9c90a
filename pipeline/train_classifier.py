"""Stages ``train_judge`` and ``train_referee``: the judge CNN, trained on the train split and selected on validation.

With --section train_referee it trains the referee instead: a second classifier (another seed and
width, from that params.yaml section) that evaluates exports the judge curated.

Writes the self-describing checkpoint ``models/judge.pt`` and ``reports/metrics/judge.json``
(``test_accuracy``, ``per_class_accuracy`` on the real MNIST test set, measured once at the end).
"""

from __future__ import annotations

import logging
import time

import click
import torch
from dvclive import Live

from pipeline.core.cli import run, user_errors
from pipeline.core.params import load_params
from pipeline.core.utils import get_device, save_checkpoint, seed_everything, write_json
from pipeline.data.splits import load_splits, to_tensor
from pipeline.evaluation.metrics import per_class_accuracy
from pipeline.training.checkpoints import model_checkpoint
from pipeline.training.classifier import predict, train_classifier

log = logging.getLogger("pipeline.train_classifier")


@click.command(help=__doc__)
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Params file.")
@click.option("--data", default="data/prepared/mnist.npz", show_default=True, help="Prepared splits.")
@click.option("--model-out", default="models/judge.pt", show_default=True, help="Checkpoint to write.")
@click.option("--metrics", default="reports/metrics/judge.json", show_default=True, help="Metrics JSON.")
@click.option("--live-dir", default="reports/live/judge", show_default=True, help="dvclive log folder.")
@click.option("--section", type=click.Choice(["train_judge", "train_referee"]), default="train_judge",
              show_default=True, help="params.yaml section of the recipe: the judge or the referee.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
def main(params_path: str, data: str, model_out: str, metrics: str, live_dir: str, section: str, device: str) -> None:
    with user_errors():
        start = time.perf_counter()
        params = getattr(load_params(params_path), section)
        seed_everything(params.seed)
        splits = load_splits(data)
        dev = get_device(device)
        with Live(live_dir, save_dvc_exp=False, dvcyaml=None) as live:
            def on_epoch(row: dict) -> None:
                live.log_metric("train/loss", row["loss"])
                live.log_metric("val/accuracy", row["val_accuracy"])
                live.next_step()

            result = train_classifier(
                params, to_tensor(splits.train_images), torch.from_numpy(splits.train_labels),
                to_tensor(splits.val_images), torch.from_numpy(splits.val_labels), dev, on_epoch=on_epoch,
                desc="judge" if section == "train_judge" else "referee",
            )
        probs, _ = predict(result.model, to_tensor(splits.test_images))
        predicted = probs.argmax(1).numpy()
        test_accuracy = float((predicted == splits.test_labels).mean())
        save_checkpoint(model_out, model_checkpoint("classifier", result.model, params, result.best_epoch))
        write_json(metrics, {
            "test_accuracy": test_accuracy,
            "per_class_accuracy": per_class_accuracy(predicted, splits.test_labels),
            "val_accuracy": result.best_val_accuracy,
            "selected_epoch": result.best_epoch,
            "selection": "epoch with the best validation accuracy (validation = held-out part of MNIST train)",
            "seed": params.seed,
            "wall_seconds": round(time.perf_counter() - start, 2),
        })
        log.info("%s: val %.4f (epoch %d), test %.4f -> %s", section, result.best_val_accuracy, result.best_epoch,
                 test_accuracy, model_out)


if __name__ == "__main__":
    run(main)
