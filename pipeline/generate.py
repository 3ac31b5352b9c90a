"""Stage ``generate``: mass-generate labeled synthetic digits with the trained generator G(z, y).

Writes exactly N images per requested digit to OUT as Parquet (Hugging Face Image + ClassLabel
features) and/or an image folder OUT/<label>/<index>.png, plus OUT/manifest.json. The dataset is
assembled in a temporary folder beside OUT and renamed into place when complete.
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
from pathlib import Path

import click
import numpy as np
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from pipeline.cli import run, user_errors
from pipeline.data import to_uint8
from pipeline.export import PARQUET_NAME, SCHEMA, to_table, write_imagefolder
from pipeline.gan import load_generator, sample
from pipeline.models import NUM_CLASSES
from pipeline.params import load_params
from pipeline.utils import atomic_path, get_device, sha256_file, write_json

log = logging.getLogger("pipeline.generate")

#: Latent z is drawn in blocks of this many images per digit, each from its own seeded stream, so any
#: block (and any digit) can be regenerated alone with the same bytes.
BLOCK_SIZE = 1000


def block_latents(seed: int, digit: int, block: int, z_dim: int) -> torch.Tensor:
    """Latent z ``(BLOCK_SIZE, z_dim) float32`` ~ N(0, I) for one block of one digit.

    The stream is seeded by ``numpy.random.SeedSequence([seed, digit, block])``, so it depends on
    nothing else (not on the other digits requested, nor on N).
    """
    stream_seed = int(np.random.SeedSequence([seed, digit, block]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.randn(BLOCK_SIZE, z_dim, generator=torch.Generator().manual_seed(stream_seed))


def generate_digit(generator, digit: int, count: int, seed: int, progress: tqdm | None = None) -> np.ndarray:
    """``count`` images of ``digit``: ``(count, 28, 28) uint8``, row i made from block i // BLOCK_SIZE."""
    z_dim = generator.config.z_dim
    out = []
    for block in range((count + BLOCK_SIZE - 1) // BLOCK_SIZE):
        n = min(BLOCK_SIZE, count - block * BLOCK_SIZE)
        z = block_latents(seed, digit, block, z_dim)[:n]
        out.append(to_uint8(sample(generator, z, torch.full((n,), digit, dtype=torch.int64))))
        if progress is not None:
            progress.update(n)
    return np.concatenate(out)


def parse_digits(text: str | None) -> list[int]:
    """``"0,3,7"`` -> ``[0, 3, 7]``; ``None`` -> all ten digits.

    Raises:
        click.BadParameter: an entry is not an integer in 0-9, or a digit repeats.
    """
    if text is None:
        return list(range(NUM_CLASSES))
    digits = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) >= NUM_CLASSES:
            raise click.BadParameter(f"'{part}' is not a digit in 0-9", param_hint="'--digits'")
        if int(part) in digits:
            raise click.BadParameter(f"digit {part} is listed twice", param_hint="'--digits'")
        digits.append(int(part))
    return digits


def code_version() -> str:
    """Installed version of this package (not the git commit, so that a commit alone does not change
    the export's bytes and make DVC rerun the evaluation)."""
    try:
        return importlib.metadata.version("synthetic-digits")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@click.command(help=__doc__)
@click.option("--per-class", type=click.IntRange(min=1), default=None,
              help="Images per digit. Default: generate.per_class in params.yaml.")
@click.option("--digits", default=None, help="Comma-separated digits to generate, e.g. 0,3,7. Default: 0-9.")
@click.option("--seed", type=int, default=None, help="Sampling seed. Default: generate.seed in params.yaml.")
@click.option("--out", default="data/generated", show_default=True, type=click.Path(), help="Output folder.")
@click.option("--format", "fmt", type=click.Choice(["parquet", "imagefolder", "both"]), default="parquet",
              show_default=True, help="Parquet file, ImageFolder tree, or both.")
@click.option("--checkpoint", default="models/generator.pt", show_default=True, help="Generator checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT folder.")
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Params file.")
@click.option("--device", default="cpu", show_default=True, help="cpu (bit-reproducible) or cuda/auto.")
@click.option("--metrics", default=None, type=click.Path(dir_okay=False),
              help="Also write wall time and images/s to this JSON (the DVC stage does).")
def main(per_class, digits, seed, out, fmt, checkpoint, overwrite, params_path, device, metrics) -> None:
    with user_errors():
        start = time.perf_counter()
        params = load_params(params_path).generate
        per_class = per_class or params.per_class
        seed = params.seed if seed is None else seed
        wanted = parse_digits(digits)
        out_path = Path(out)
        if out_path.exists() and not overwrite:
            raise click.ClickException(f"{out_path} already exists; pass --overwrite to replace it")
        generator, ckpt = load_generator(checkpoint, get_device(device))
        with atomic_path(out_path) as tmp:
            tmp.mkdir()
            writer = pq.ParquetWriter(tmp / PARQUET_NAME, SCHEMA) if fmt != "imagefolder" else None
            with tqdm(total=per_class * len(wanted), desc="generate", unit="img", mininterval=1.0) as bar:
                for digit in wanted:
                    images = generate_digit(generator, digit, per_class, seed, bar)
                    table = to_table(images, np.full(per_class, digit), np.arange(per_class), seed)
                    if writer is not None:
                        writer.write_table(table, row_group_size=BLOCK_SIZE * 10)
                    if fmt != "parquet":
                        write_imagefolder(tmp, table)
            if writer is not None:
                writer.close()
            files = sorted(str(p.relative_to(tmp)) for p in tmp.glob("*.parquet"))
            write_json(tmp / "manifest.json", {
                "counts": {str(d): per_class for d in wanted},
                "total": per_class * len(wanted),
                "seed": seed,
                "format": fmt,
                "files": {name: sha256_file(tmp / name) for name in files},
                "generator_checkpoint": {"path": str(checkpoint), "sha256": sha256_file(checkpoint),
                                         "epoch": ckpt["epoch"], "model_args": ckpt["model_args"],
                                         "params": ckpt["params"]},
                "params": {"per_class": per_class, "digits": wanted, "block_size": BLOCK_SIZE},
                "code_version": code_version(),
                "torch_version": torch.__version__,
            })
        elapsed = time.perf_counter() - start
        total = per_class * len(wanted)
        if metrics:
            write_json(metrics, {"images": total, "format": fmt, "seed": seed, "wall_seconds": round(elapsed, 2),
                                 "images_per_second": round(total / elapsed, 1)})
        log.info("wrote %d images to %s in %.1f s (%.0f images/s)", total, out_path, elapsed, total / elapsed)


if __name__ == "__main__":
    run(main)
