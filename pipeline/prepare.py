"""Stage ``prepare``: verified MNIST -> ``data/prepared/mnist.npz`` with a seeded validation split."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import click
import numpy as np

from pipeline.core.cli import run, user_errors
from pipeline.core.params import load_params
from pipeline.core.utils import atomic_path, write_json
from pipeline.data.mnist import MNIST_FILES, load_mnist
from pipeline.data.splits import make_splits, save_splits

log = logging.getLogger("pipeline.prepare")


@click.command(help=__doc__)
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Params file.")
@click.option(
    "--mnist-dir", envvar="MNIST_DIR", default=None, type=click.Path(file_okay=False),
    help="Folder with the four IDX files (raw or .gz). Default: $MNIST_DIR, else download with torchvision.",
)
@click.option("--download-root", default="data/raw", show_default=True, help="Where a torchvision download goes.")
@click.option("--out", default="data/prepared", show_default=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--metrics", default="reports/metrics/prepare.json", show_default=True, help="Metrics JSON.")
def main(params_path: str, mnist_dir: str | None, download_root: str, out: str, metrics: str) -> None:
    with user_errors():
        start = time.perf_counter()
        params = load_params(params_path).prepare
        mnist = load_mnist(mnist_dir, download_root=download_root)
        log.info("verified MD5 of the four MNIST files (uncompressed bytes)")
        splits = make_splits(mnist, params.val_size, params.seed, params.subset_per_class)
        with atomic_path(out) as tmp:
            tmp.mkdir()
            save_splits(splits, tmp / "mnist.npz")
            provenance = {"source_md5": MNIST_FILES, "params": params.__dict__}
            (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
        counts = {
            name: {str(c): int(n) for c, n in zip(*np.unique(getattr(splits, f"{name}_labels"), return_counts=True))}
            for name in ("train", "val", "test")
        }
        write_json(metrics, {"counts": counts, "seed": params.seed, "wall_seconds": round(time.perf_counter() - start, 2)})
        log.info("wrote %s: train %d, val %d, test %d", Path(out) / "mnist.npz",
                 len(splits.train_labels), len(splits.val_labels), len(splits.test_labels))


if __name__ == "__main__":
    run(main)
