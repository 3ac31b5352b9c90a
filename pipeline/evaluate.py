"""Stage ``evaluate``: the synthetic digits against the REAL MNIST test set.

quality.json: class-conditional accuracy (classifier labels = requested digit), FID, precision/recall and
density/coverage (k = 5) in the classifier's penultimate feature space, each next to the same metric
between two disjoint real samples, per-class diversity ratios, and memorization (pixel distance to the
nearest training image against held-out real images; closest pairs figure). The classifier is the judge,
or the referee when the judge curated the export (--min-confidence); quality.json says which.
downstream.json: test accuracy of classifiers with the judge's recipe, seed and number of
optimisation steps on real only (the judge itself), real + synthetic, and synthetic only (TSTR; also
with the next classifier seeds, `evaluate.tstr_seeds`, and their mean), each also per digit with its
most frequent confusions (which real digits a synthetic training set fails on); and the fresh-samples
conditions, TSTR-stream and real + streamed synthetic: the same recipe with a new draw of G (--checkpoint, the
generator that made the export, at the export's latent scale and precision) every epoch.
The test set is only measured, never used to choose anything (selection uses validation).
"""

from __future__ import annotations

import logging
import time

import click

from pipeline.core.cli import run, user_errors
from pipeline.core.params import load_params
from pipeline.core.utils import PipelineError, get_device, seed_everything, sha256_file, write_json
from pipeline.data.splits import load_splits
from pipeline.dataset import SyntheticStream, read_export, read_manifest
from pipeline.evaluation.downstream import downstream_metrics
from pipeline.evaluation.quality import choose_evaluator, quality_metrics
from pipeline.training.checkpoints import load_model

log = logging.getLogger("pipeline.evaluate")


@click.command(help=__doc__)
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Params file.")
@click.option("--data", default="data/prepared/mnist.npz", show_default=True, help="Prepared splits.")
@click.option("--synthetic", default="data/synthetic", show_default=True, help="Export from pipeline.generate.")
@click.option("--judge", "judge_path", default="models/judge.pt", show_default=True,
              help="The judge: evaluates the export unless it curated it; its recipe trains the TSTR runs.")
@click.option("--referee", default="models/referee.pt", show_default=True,
              help="Second classifier (other seed and width): evaluates exports the judge curated.")
@click.option("--quality", default="reports/metrics/quality.json", show_default=True, help="Quality metrics JSON.")
@click.option("--downstream", default="reports/metrics/downstream.json", show_default=True,
              help="Downstream-classifier results JSON: TSTR, real only, real + synthetic.")
@click.option("--pairs-figure", default="reports/figures/memorization_closest_pairs.png", show_default=True,
              help="Figure: the synthetic images closest to a training image (top) and those images (bottom).")
@click.option("--checkpoint", default="models/generator.pt", show_default=True,
              help="The generator that made the export (checked against its manifest): the fresh-samples source.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
def main(params_path, data, synthetic, judge_path, referee, quality, downstream, pairs_figure, checkpoint, device) -> None:
    with user_errors():
        start = time.perf_counter()
        params = load_params(params_path)
        seed_everything(params.evaluate.seed)
        dev = get_device(device)
        splits = load_splits(data)
        judge, judge_checkpoint = load_model(judge_path, "classifier", dev)
        manifest = read_manifest(synthetic)
        role, evaluator_path = choose_evaluator(manifest, {"judge": judge_path, "referee": referee})
        evaluator, evaluator_checkpoint = ((judge, judge_checkpoint) if role == "judge"
                                           else load_model(evaluator_path, "classifier", dev))
        made_by = manifest.get("generator_checkpoint", {}).get("sha256")
        if made_by != sha256_file(checkpoint):
            raise PipelineError(f"{checkpoint} is not the generator that made {synthetic} (its manifest names "
                                f"sha256 {str(made_by)[:12]}): pass that one with --checkpoint")
        if "latent_scale" not in manifest:
            raise PipelineError(f"{synthetic}'s manifest has no latent_scale (an export older than it): "
                                "make it again with python -m pipeline.generate")
        stream = SyntheticStream(checkpoint, seed=params.evaluate.stream_seed, latent_scale=manifest["latent_scale"],
                                 precision=manifest.get("inference", {}).get("precision", "float32"),
                                 samples_per_epoch=params.evaluate.synthetic_train_size, batch_size=1000)
        syn_images, syn_labels = read_export(synthetic)
        log.info("read %d synthetic images; evaluating with the %s (%s)", len(syn_labels), role, evaluator_path)
        q = quality_metrics(evaluator, splits, syn_images, syn_labels, params.evaluate, pairs_figure)
        q["evaluation_classifier"] = {"role": role, "path": str(evaluator_path), "sha256": sha256_file(evaluator_path),
                                      "seed": evaluator_checkpoint["params"]["seed"],
                                      "width": evaluator.config.width}
        q["curation"] = manifest.get("curation")
        q.update(synthetic_images=len(syn_labels), seed=params.evaluate.seed,
                 wall_seconds=round(time.perf_counter() - start, 2))
        write_json(quality, q)
        log.info("class-conditional accuracy %.4f, FID %.3f (real floor %.3f)", q["class_conditional_accuracy"],
                 q["fid"], q["fid_real_floor"])
        start_downstream = time.perf_counter()
        a = downstream_metrics(params.train_judge, judge, splits, syn_images, syn_labels, params.evaluate, dev, stream)
        a.update(seed=params.evaluate.seed, wall_seconds=round(time.perf_counter() - start_downstream, 2))
        write_json(downstream, a)


if __name__ == "__main__":
    run(main)
