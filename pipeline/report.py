"""Stage ``report``: ``reports/report.md`` (headline metrics, samples, per digit, fidelity, the augmentation
study, the GPU run, the ablation summary), ``reports/ablation.md`` (every ablation record) and
``reports/metrics/headline.json`` (the headline scalars that ``dvc metrics show`` prints).

Reads only the metrics JSONs, ablation records and dvclive logs written before (and the generator, to draw
the grid); every number comes from those files. The prose lives in the Jinja2 templates of
``pipeline/reporting/templates``; the data behind each section comes from :mod:`pipeline.reporting.sections`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import click
import jinja2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.core.cli import run, user_errors  # noqa: E402
from pipeline.core.machine import machine_text
from pipeline.core.params import load_params  # noqa: E402
from pipeline.core.utils import atomic_path, write_json  # noqa: E402
from pipeline.reporting.levers import ABLATION_COLUMNS, ablation_rows, lever_summary
from pipeline.reporting.records import ABLATION_SCHEMA_VERSION, read_ablation_records  # noqa: E402
from pipeline.reporting.sections import (
    evaluator_line,
    headline_metrics,
    pct,
    per_digit_table,
    render_gpu,
    stream_rows,
    study_tables,
    tstr_mean_row,
)
from pipeline.training.cgan import fixed_noise, generator_flops_per_image, sample, save_grid  # noqa: E402
from pipeline.training.checkpoints import load_generator  # noqa: E402

log = logging.getLogger("pipeline.report")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


#: The metrics JSONs of one pipeline run that the report reads (stage outputs, in reports/metrics/).
PIPELINE_METRICS = ("prepare", "judge", "referee", "cgan", "generate", "quality", "downstream")


def read_pipeline_run(metrics: Path, benchmark: Path) -> dict:
    """``{"metrics": {name: JSON for each of PIPELINE_METRICS in the folder metrics}, "benchmark": the JSON at
    benchmark, or None if there is none}``. Raises OSError or ValueError for a missing or unreadable metrics file."""
    return {"metrics": {n: read_json(metrics / f"{n}.json") for n in PIPELINE_METRICS},
            "benchmark": read_json(benchmark) if benchmark.exists() else None}


def read_live(folder: Path, name: str) -> pd.DataFrame:
    """One dvclive metric as a DataFrame with columns ``step`` and the metric's last name part."""
    return pd.read_csv(folder / "plots" / "metrics" / f"{name}.tsv", sep="\t")


def plot_curves(cgan_live: Path, classifier_live: Path, path: Path) -> None:
    """Two panels: cGAN d_loss/g_loss per epoch; judge validation accuracy per epoch."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    for name in ("d_loss", "g_loss"):
        frame = read_live(cgan_live, name)
        left.plot(frame["step"] + 1, frame[name], marker="o", label=name)
    left.set(xlabel="epoch", ylabel="loss (hinge + auxiliary CE; G: + mode-seeking)", title="cGAN training")
    left.legend()
    frame = read_live(classifier_live, "val/accuracy")
    right.plot(frame["step"] + 1, frame["accuracy"], marker="o", color="tab:green")
    right.set(xlabel="epoch", ylabel="accuracy", title="judge: validation accuracy")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


TEMPLATES = Path(__file__).parent / "reporting" / "templates"


def signed(value: float | None) -> str:
    """``+0.24`` / ``-1.05``; ``—`` for None."""
    return "—" if value is None else f"{value:+.2f}"


def times(value: float | None) -> str:
    """``1.19 ×``; ``—`` for None."""
    return "—" if value is None else f"{value:.2f} ×"


def template_environment() -> jinja2.Environment:
    """The Jinja2 environment of ``pipeline/reporting/templates``: undefined names fail, blocks leave no blank lines."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                                     trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                                     autoescape=False)
    environment.filters.update(pct=pct, signed=signed, times=times)
    return environment


def render(metrics: dict, headline: dict, figures: str, records: list[dict], study: dict | None, gpu: dict | None,
           generator_info: dict | None = None, latent_scale: float = 1.0) -> str:
    """The Markdown report (GitHub-flavoured) from ``templates/report.md.j2``; figure links relative to ``reports/``.

    ``metrics``: ``{name: JSON}`` for :data:`PIPELINE_METRICS`; ``headline``: their
    :func:`pipeline.reporting.sections.headline_metrics`; ``records``: validated ablation
    records (:func:`pipeline.reporting.records.read_ablation_records`); ``study``: study.json or None;
    ``gpu``: a GPU run as :func:`pipeline.reporting.sections.render_gpu` takes it, with ``cpu`` and ``stages``,
    or None. Raises jinja2.UndefinedError when a JSON lacks a field the template reads.
    """
    judge, quality, downstream = metrics["judge"], metrics["quality"], metrics["downstream"]
    runs = downstream["runs"]
    generator_text = "generator figures unavailable"
    if generator_info:
        generator_text = (f"{generator_info['parameters']:,} parameters, {generator_info['flops_per_image'] / 1e6:.2f} "
                          f"MFLOPs per image; the generate stage wrote {generator_info['export_images']:,} images at "
                          f"{generator_info['export_images_per_second']:,.0f} images/s")
    gpu_view = None
    if gpu:
        gpu_view = {"machine": machine_text(gpu["stages"].get("machine")), "table": render_gpu(gpu, gpu["cpu"]),
                    "note": gpu["stages"].get("note", "")}
    return template_environment().get_template("report.md.j2").render(
        judge=judge, quality=quality, downstream=downstream, cgan=metrics["cgan"], runs=runs,
        headline=headline, memo=quality["memorization"], figures=figures,
        tstr_mean_row=tstr_mean_row(downstream), stream_rows=stream_rows(downstream), evaluator_line=evaluator_line(quality),
        per_digit=per_digit_table([str(d) for d in range(10)], judge, quality, runs),
        generator_text=generator_text, latent_scale=latent_scale, study=study_tables(study) if study else None,
        gpu=gpu_view, levers=lever_summary(records))


def render_ablation_records(records: list[dict]) -> str:
    """``reports/ablation.md``: every ablation record against its own baseline (``templates/ablation.md.j2``)."""
    return template_environment().get_template("ablation.md.j2").render(
        schema_version=ABLATION_SCHEMA_VERSION, columns=[name for name, _ in ABLATION_COLUMNS.values()],
        rows=ablation_rows(records))


@click.command(help=__doc__)
@click.option("--metrics-dir", default="reports/metrics", show_default=True, help="Metrics JSON folder.")
@click.option("--live-dir", default="reports/live", show_default=True, help="dvclive logs (cgan/, judge/).")
@click.option("--checkpoint", default="models/generator.pt", show_default=True, help="Generator for the grid.")
@click.option("--figures", default="reports/figures", show_default=True, help="Figures folder.")
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Params file.")
@click.option("--ablation-dir", default="reports/ablation", show_default=True, help="pipeline.tools.ablation run JSONs.")
@click.option("--gpu-dir", default="reports/gpu", show_default=True,
              help="A GPU run (pipeline.tools.timed_repro, pipeline.tools.benchmark --device cuda); skipped if absent.")
@click.option("--out", default="reports/report.md", show_default=True, help="Report to write.")
@click.option("--ablation-out", default="reports/ablation.md", show_default=True, help="Full ablation table to write.")
@click.option("--headline", default="reports/metrics/headline.json", show_default=True,
              help="Headline metrics to write (the top-level DVC metrics).")
def main(metrics_dir, live_dir, checkpoint, figures, params_path, ablation_dir, gpu_dir, out, ablation_out,
         headline) -> None:
    with user_errors():
        metrics, live, figures_path = Path(metrics_dir), Path(live_dir), Path(figures)
        generator, ckpt = load_generator(checkpoint)
        params = load_params(params_path)
        records = read_ablation_records(ablation_dir)
        z, labels = fixed_noise(generator.config.z_dim, 10, ckpt["params"]["seed"])
        save_grid(sample(generator, params.generate.latent_scale * z, labels), figures_path / "samples.png")
        plot_curves(live / "cgan", live / "judge", figures_path / "training_curves.png")
        cpu = read_pipeline_run(metrics, metrics / "benchmark.json")
        gpu_path, gpu_run = Path(gpu_dir), None
        if (gpu_path / "stage_seconds.json").exists():
            gpu_run = {**read_pipeline_run(gpu_path / "metrics", gpu_path / "benchmark.json"),
                       "stages": read_json(gpu_path / "stage_seconds.json"), "cpu": cpu}
        generate = cpu["metrics"]["generate"]
        generator_info = {"parameters": sum(p.numel() for p in generator.parameters()),
                          "flops_per_image": generator_flops_per_image(generator),
                          "export_images": generate["images"], "export_images_per_second": generate["images_per_second"]}
        study = read_json(metrics / "study.json")
        scalars = headline_metrics(cpu["metrics"], study)
        text = render(cpu["metrics"], scalars, figures=os.path.relpath(figures_path, Path(out).parent),
                      records=records, study=study, gpu=gpu_run, generator_info=generator_info,
                      latent_scale=params.generate.latent_scale)
        write_json(headline, scalars)
        with atomic_path(ablation_out) as tmp:
            tmp.write_text(render_ablation_records(records))
        with atomic_path(out) as tmp:
            tmp.write_text(text)
        log.info("wrote %s, %s and %s", out, ablation_out, headline)


if __name__ == "__main__":
    run(main)
