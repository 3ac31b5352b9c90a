"""Stage ``study``: the augmentation study's summary from its cells.

Reads ``reports/study/cells/b<budget>-s<seed>.json`` for every budget and seed in params.yaml and writes
``reports/metrics/study.json`` (per budget: mean, std and 95 % Student-t interval of test
accuracy per condition over seeds; paired per-seed gains with their own intervals; a plain-words
verdict) and a plot of test accuracy against budget with the intervals as bands, one line per condition.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.core.cli import run, user_errors  # noqa: E402
from pipeline.core.params import load_params  # noqa: E402
from pipeline.core.utils import PipelineError, atomic_path, write_json  # noqa: E402
from pipeline.evaluation.study_protocol import CONDITIONS, FULLGEN_CONDITIONS  # noqa: E402
from pipeline.evaluation.study_summary import aggregate  # noqa: E402

log = logging.getLogger("pipeline.study")

LABELS = {
    "real": "real only", "real_classical": "real + classical aug.", "real_synthetic": "real + synthetic",
    "real_synthetic_classical": "real + synthetic + classical", "synthetic": "synthetic only (TSTR)",
    "real_synthetic_stream": "real + streamed synthetic (fresh samples)",
    "synthetic_stream": "streamed synthetic only (fresh samples)",
    "real_synthetic_fullgen": "real + synthetic, generator saw all 60k",
    "synthetic_fullgen": "synthetic only, generator saw all 60k",
}


def cell_path(cells: Path, budget: int, seed: int) -> Path:
    """``cells/b<budget>-s<seed>.json`` (budget 0 = all), the path dvc.yaml gives each cell."""
    return cells / f"b{budget}-s{seed}.json"


def plot_study(summary: dict, path: Path, train_per_class: float) -> None:
    """Test accuracy against real images per class (log axis; "all" drawn at ``train_per_class``), a line
    and a 95 % interval band per condition; dashed: the generator that saw all train images; dotted: fresh samples."""
    fig, ax = plt.subplots(figsize=(8, 5))
    entries = sorted(summary.values(), key=lambda e: e["budget_per_class"] or train_per_class)
    xs = [e["budget_per_class"] or train_per_class for e in entries]
    for name in (*CONDITIONS, *FULLGEN_CONDITIONS):
        cells = [e["test_accuracy"][name] for e in entries]
        line, = ax.plot(xs, [100 * c["mean"] for c in cells], marker="o", label=LABELS[name],
                        linestyle="--" if name.endswith("_fullgen") else ":" if name.endswith("_stream") else "-")
        ax.fill_between(xs, [100 * c["ci_low"] for c in cells], [100 * c["ci_high"] for c in cells],
                        color=line.get_color(), alpha=0.15)
    ax.set_xscale("log")
    ax.set_xticks(xs, [str(e["budget_per_class"] or "all") for e in entries])
    ax.set(xlabel="real labeled images per class (budget b)", ylabel="test accuracy (%)",
           title=f"Augmentation study: mean and 95 % CI over {entries[0]['test_accuracy']['real']['n']} seeds")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


@click.command(help=__doc__)
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Params file.")
@click.option("--cells", default="reports/study/cells", show_default=True, help="Folder of the cell JSONs.")
@click.option("--out", default="reports/metrics/study.json", show_default=True, help="Summary JSON.")
@click.option("--figure", default="reports/figures/study.png", show_default=True, help="Plot.")
def main(params_path, cells, out, figure) -> None:
    with user_errors():
        study = load_params(params_path).study
        rows = []
        for budget in study.budgets:
            for seed in study.seeds:
                path = cell_path(Path(cells), budget, seed)
                if not path.is_file():
                    raise PipelineError(f"missing study cell {path}: run `dvc repro study_cell`")
                rows.append(json.loads(path.read_text()))
        summary = aggregate(rows, study.budgets)
        full = next((r["subset_size"] for r in rows if r["budget"] == 0), 55_000)
        write_json(out, {"budgets": summary, "conditions": LABELS, "seeds": study.seeds,
                         "classifier_width": study.classifier_width,
                         "cell_wall_seconds": round(sum(r["wall_seconds"] for r in rows), 1),
                         "confidence_interval": "95 %, two-sided Student t over seeds; gains are paired per seed"})
        plot_study(summary, Path(figure), full / 10)
        for name, entry in summary.items():
            log.info("b=%s: %s", name, entry["verdict"])


if __name__ == "__main__":
    run(main)
