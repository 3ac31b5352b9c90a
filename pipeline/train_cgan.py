"""Stage ``train_cgan``: the class-conditional GAN G(z, y) / D(x, y) on the MNIST train split.

Logs d_loss and g_loss per epoch with dvclive, saves a fixed-noise sample grid per epoch (one row per
digit 0-9) and writes the self-describing checkpoint ``models/generator.pt``.

Resumable: the full training state is saved after every epoch (``--state``); a rerun after an
interruption (Ctrl-C, kill, a lost machine) continues from the last finished epoch when params
(other than ``epochs``) and data are unchanged, and gives the same bytes as an uninterrupted run.
The state file is deleted once the generator checkpoint is written.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import click
import torch
from dvclive import Live

from pipeline.core.cli import run, user_errors
from pipeline.core.params import load_params
from pipeline.core.utils import get_device, save_checkpoint, seed_everything, sha256_file, write_json
from pipeline.data.splits import load_splits, to_tensor
from pipeline.training.cgan import EpochLog, fixed_noise, generator_config, sample, save_grid, train_cgan
from pipeline.training.checkpoints import model_checkpoint, read_training_state
from pipeline.training.networks import Generator

log = logging.getLogger("pipeline.train_cgan")
GRID_COLUMNS = 10



@click.command(help=__doc__)
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Params file.")
@click.option("--data", default="data/prepared/mnist.npz", show_default=True, help="Prepared splits.")
@click.option("--model-out", default="models/generator.pt", show_default=True, help="Generator checkpoint.")
@click.option("--metrics", default="reports/metrics/cgan.json", show_default=True, help="Metrics JSON.")
@click.option("--live-dir", default="reports/live/cgan", show_default=True, help="dvclive log folder.")
@click.option("--grid-dir", default="reports/figures/cgan_epochs", show_default=True, help="Per-epoch sample grids.")
@click.option("--state", "state_path", default="models/cgan_training_state.pt", show_default=True,
              help="Training state saved after every epoch, to resume an interrupted run (deleted at the end).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
def main(params_path, data, model_out, metrics, live_dir, grid_dir, state_path, device) -> None:
    with user_errors():
        start = time.perf_counter()
        params = load_params(params_path).train_cgan
        seed_everything(params.seed)
        splits = load_splits(data)
        images, labels = to_tensor(splits.train_images), torch.from_numpy(splits.train_labels)
        if params.max_train_images > 0:
            images, labels = images[: params.max_train_images], labels[: params.max_train_images]
        z, grid_labels = fixed_noise(params.z_dim, GRID_COLUMNS, params.seed)
        dev = get_device(device)
        run_params = {k: v for k, v in asdict(params).items() if k != "epochs"}
        state_key = json.dumps({"params": run_params, "data": sha256_file(data), "device": str(dev)}, sort_keys=True)
        resume = read_training_state(state_path, state_key)
        Path(grid_dir).mkdir(parents=True, exist_ok=True)
        for old in Path(grid_dir).glob("epoch_*.png"):
            if resume is None or int(old.stem.split("_")[1]) > resume["epoch"]:
                old.unlink()
        # dvclive starts afresh and replays the finished epochs from the state, so its logs always
        # match the state even if a kill came between saving the state and logging the epoch.
        with Live(live_dir, save_dvc_exp=False, dvcyaml=None) as live:
            def log_epoch(entry: EpochLog) -> None:
                for key, value in asdict(entry).items():
                    if key != "epoch":
                        live.log_metric(key, value)
                live.next_step()

            def on_epoch(entry: EpochLog, generator: Generator) -> None:
                log_epoch(entry)
                save_grid(sample(generator, z, grid_labels), Path(grid_dir) / f"epoch_{entry.epoch:03d}.png")

            if resume is not None:
                for entry in resume["logs"]:
                    log_epoch(EpochLog(**entry))
                last = Generator(generator_config(params))
                last.load_state_dict(resume["ema"])
                save_grid(sample(last, z, grid_labels), Path(grid_dir) / f"epoch_{resume['epoch']:03d}.png")
            generator, logs = train_cgan(params, images, labels, dev, on_epoch=on_epoch,
                                         state_path=state_path, state_key=state_key, resume=resume)
        save_checkpoint(model_out, model_checkpoint("generator", generator, params, params.epochs))
        Path(state_path).unlink(missing_ok=True)
        last = logs[-1]
        write_json(metrics, {
            "epochs": params.epochs,
            "train_images": len(images),
            "final_d_loss": last.d_loss,
            "final_g_loss": last.g_loss,
            "seed": params.seed,
            "resumed_after_epoch": resume["epoch"] if resume else 0,
            "wall_seconds": round(time.perf_counter() - start, 2),
        })
        log.info("wrote %s after %d epochs", model_out, params.epochs)


if __name__ == "__main__":
    run(main)
