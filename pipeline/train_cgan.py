"""Stage ``train_cgan``: the class-conditional GAN G(z, y) / D(x, y) on the MNIST train split.

Logs d_loss and g_loss per epoch with dvclive, saves a fixed-noise sample grid per epoch (one row per
digit 0-9) and writes the self-describing checkpoint ``models/generator.pt``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import click
import torch
from dvclive import Live

from pipeline.cli import run, user_errors
from pipeline.data import load_splits, to_tensor
from pipeline.gan import EpochLog, fixed_noise, generator_checkpoint, sample, save_grid, train_cgan
from pipeline.models import Generator
from pipeline.params import load_params
from pipeline.utils import get_device, save_checkpoint, seed_everything, write_json

log = logging.getLogger("pipeline.train_cgan")
GRID_COLUMNS = 10



@click.command(help=__doc__)
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Params file.")
@click.option("--data", default="data/prepared/mnist.npz", show_default=True, help="Prepared splits.")
@click.option("--model-out", default="models/generator.pt", show_default=True, help="Generator checkpoint.")
@click.option("--metrics", default="reports/metrics/cgan.json", show_default=True, help="Metrics JSON.")
@click.option("--live-dir", default="reports/live/cgan", show_default=True, help="dvclive log folder.")
@click.option("--grid-dir", default="reports/figures/cgan_epochs", show_default=True, help="Per-epoch sample grids.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
def main(params_path, data, model_out, metrics, live_dir, grid_dir, device) -> None:
    with user_errors():
        start = time.perf_counter()
        params = load_params(params_path).train_cgan
        seed_everything(params.seed)
        splits = load_splits(data)
        images, labels = to_tensor(splits.train_images), torch.from_numpy(splits.train_labels)
        if params.max_train_images > 0:
            images, labels = images[: params.max_train_images], labels[: params.max_train_images]
        z, grid_labels = fixed_noise(params.z_dim, GRID_COLUMNS, params.seed)
        Path(grid_dir).mkdir(parents=True, exist_ok=True)
        for old in Path(grid_dir).glob("epoch_*.png"):
            old.unlink()
        with Live(live_dir, save_dvc_exp=False, dvcyaml=None) as live:
            def on_epoch(entry: EpochLog, generator: Generator) -> None:
                for key, value in asdict(entry).items():
                    if key != "epoch":
                        live.log_metric(key, value)
                live.next_step()
                save_grid(sample(generator, z, grid_labels), Path(grid_dir) / f"epoch_{entry.epoch:03d}.png")

            generator, logs = train_cgan(params, images, labels, get_device(device), on_epoch=on_epoch)
        save_checkpoint(model_out, generator_checkpoint(generator, params, params.epochs))
        last = logs[-1]
        write_json(metrics, {
            "epochs": params.epochs,
            "train_images": len(images),
            "final_d_loss": last.d_loss,
            "final_g_loss": last.g_loss,
            "seed": params.seed,
            "wall_seconds": round(time.perf_counter() - start, 2),
        })
        log.info("wrote %s after %d epochs", model_out, params.epochs)


if __name__ == "__main__":
    run(main)
