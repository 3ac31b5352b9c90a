"""Stage ``report``: ``reports/report.md`` with the class-per-row sample grid, tables and training curves.

Reads only the metrics JSON and dvclive logs written by earlier stages (and the generator, to draw
the grid); every number in the report comes from those files.
"""

from __future__ import annotations

import json
import os
import logging
from pathlib import Path

import click
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.cli import run, user_errors  # noqa: E402
from pipeline.gan import fixed_noise, load_generator, sample, save_grid  # noqa: E402
from pipeline.utils import atomic_path  # noqa: E402

log = logging.getLogger("pipeline.report")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def read_live(folder: Path, name: str) -> pd.DataFrame:
    """One dvclive metric as a DataFrame with columns ``step`` and the metric's last name part."""
    return pd.read_csv(folder / "plots" / "metrics" / f"{name}.tsv", sep="\t")


def plot_curves(cgan_live: Path, classifier_live: Path, path: Path) -> None:
    """Two panels: cGAN d_loss/g_loss per epoch; judge validation accuracy per epoch."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    for name in ("d_loss", "g_loss"):
        frame = read_live(cgan_live, name)
        left.plot(frame["step"] + 1, frame[name], marker="o", label=name)
    left.set(xlabel="epoch", ylabel="loss (hinge + auxiliary CE)", title="cGAN training")
    left.legend()
    frame = read_live(classifier_live, "val/accuracy")
    right.plot(frame["step"] + 1, frame["accuracy"], marker="o", color="tab:green")
    right.set(xlabel="epoch", ylabel="accuracy", title="judge: validation accuracy")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def render(classifier: dict, cgan: dict, quality: dict, augmentation: dict, figures: str) -> str:
    """The Markdown report (GitHub-flavoured), figure links relative to ``reports/``."""
    digits = [str(d) for d in range(10)]
    per_class = "\n".join(
        f"| {d} | {pct(classifier['per_class_accuracy'][d])} | {pct(quality['per_class_accuracy'][d])} | "
        f"{quality['diversity'][d]['ratio']:.3f} |" for d in digits if d in quality["diversity"]
    )
    runs = augmentation["runs"]
    return f"""# Synthetic MNIST digits: report

Every number below was measured by the default `dvc repro` and read from `reports/metrics/*.json`.
The real MNIST **test** set is only measured; every choice (epochs, checkpoints) uses the validation
split held out of MNIST train.

## Samples

Fixed latent z, one row per digit 0-9 (generator `models/generator.pt`, {cgan['epochs']} epochs):

![samples]({figures}/samples.png)

## Metrics

| metric | value |
| --- | --- |
| judge test accuracy | {pct(classifier['test_accuracy'])} |
| class-conditional accuracy (judge agrees with the requested digit) | {pct(quality['class_conditional_accuracy'])} |
| FID, synthetic vs real test (judge features, n = {quality['fid_samples']}) | {quality['fid']:.3f} |
| FID floor, real train vs real test (same n) | {quality['fid_real_floor']:.3f} |
| TSTR: trained on {runs['tstr']['train_images']} synthetic only, tested on real | {pct(augmentation['tstr_accuracy'])} |
| real only ({runs['real_only']['train_images']} images) | {pct(augmentation['real_only_accuracy'])} |
| real + synthetic ({runs['real_plus_synthetic']['train_images']} images) | {pct(augmentation['real_plus_synthetic_accuracy'])} |
| augmentation gain (real + synthetic − real only) | {100 * augmentation['augmentation_gain']:+.2f} points |

The TSTR and augmentation classifiers use the judge's recipe with the same number of optimisation
steps ({augmentation['optimisation_steps']}), one seed ({augmentation['seed']}); each keeps its best epoch on
real validation. One seed cannot separate a gain of a few tenths of a point from noise.

## Per digit

Judge accuracy on real test digits; class-conditional accuracy on synthetic digits; diversity =
mean pairwise judge-feature distance within the class, synthetic over real (1 = as varied as real;
well below 1 = collapsed).

| digit | judge on real test | class-conditional accuracy | diversity (synthetic / real) |
| --- | --- | --- | --- |
{per_class}

## Training

![training curves]({figures}/training_curves.png)

Wall time: judge {classifier['wall_seconds']:.0f} s, cGAN {cgan['wall_seconds']:.0f} s, quality metrics
{quality['wall_seconds']:.0f} s, augmentation runs {augmentation['wall_seconds']:.0f} s. Per-epoch grids:
`{figures}/cgan_epochs/`.
"""


@click.command(help=__doc__)
@click.option("--metrics-dir", default="reports/metrics", show_default=True, help="Metrics JSON folder.")
@click.option("--live-dir", default="reports/live", show_default=True, help="dvclive logs (cgan/, classifier/).")
@click.option("--checkpoint", default="models/generator.pt", show_default=True, help="Generator for the grid.")
@click.option("--figures", default="reports/figures", show_default=True, help="Figures folder.")
@click.option("--out", default="reports/report.md", show_default=True, help="Report to write.")
def main(metrics_dir, live_dir, checkpoint, figures, out) -> None:
    with user_errors():
        metrics, live, figures_path = Path(metrics_dir), Path(live_dir), Path(figures)
        generator, ckpt = load_generator(checkpoint)
        z, labels = fixed_noise(generator.config.z_dim, 10, ckpt["params"]["seed"])
        save_grid(sample(generator, z, labels), figures_path / "samples.png")
        plot_curves(live / "cgan", live / "classifier", figures_path / "training_curves.png")
        text = render(*(read_json(metrics / f"{n}.json") for n in ("classifier", "cgan", "quality", "augmentation")),
                      figures=os.path.relpath(figures_path, Path(out).parent))
        with atomic_path(out) as tmp:
            tmp.write_text(text)
        log.info("wrote %s", out)


if __name__ == "__main__":
    run(main)
