"""Check an export before training on it or shipping it: every shard listed in manifest.json is present,
has the recorded size and sha256, reads as Parquet, and the labels match the manifest's counts.

Prints one summary line and exits 0, or prints one error line naming the shard and exits 1.
"""

from __future__ import annotations

import logging

import click
import numpy as np

from pipeline.core.cli import run, user_errors
from pipeline.dataset import ExportError, read_manifest, read_shard, shard_paths

log = logging.getLogger("pipeline.verify")


def verify_export(root: str) -> dict[str, int]:
    """Per-digit row counts of the export at ``root`` after checking it against its manifest.

    Raises:
        ExportError: a shard is missing, truncated, corrupt, or the counts differ from the manifest.
    """
    counts = np.zeros(10, np.int64)
    for path in shard_paths(root, verify=True):
        counts += np.bincount(read_shard(path, ["image", "label"]).column("label").to_numpy(), minlength=10)
    found = {str(d): int(c) for d, c in enumerate(counts) if c}
    if found != {k: v for k, v in read_manifest(root)["counts"].items() if v}:
        raise ExportError(f"{root}: label counts {found} differ from the manifest's")
    return found


@click.command(help=__doc__)
@click.argument("folder", type=click.Path())
def main(folder: str) -> None:
    with user_errors():
        counts = verify_export(folder)
        click.echo(f"{folder}: OK, {sum(counts.values()):,} images, per digit {counts}")


if __name__ == "__main__":
    run(main)
