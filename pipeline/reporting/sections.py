"""The data behind the report's sections, from the metric dicts: the GPU table, the study's tables, the
per-digit table, the evaluating-classifier line and the headline metrics (the ablation rows and the lever
summary are :mod:`pipeline.reporting.levers`). The prose around them lives in the Jinja2 templates of ``pipeline/reporting/templates``.

Pure functions of the JSONs that ``pipeline.report`` reads (no file I/O); every number comes from them.
"""

from __future__ import annotations

from pipeline.core.machine import machine_text


def pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def render_gpu(gpu: dict, cpu: dict) -> str:
    """The default pipeline run on a GPU next to the committed CPU run, as a Markdown table.

    ``gpu``: ``{"stages": <reports/gpu/stage_seconds.json>, "metrics": {name: <reports/gpu/metrics/name.json>},
    "benchmark": <reports/gpu/benchmark.json> or None}`` (``pipeline.tools.timed_repro`` and ``pipeline.tools.benchmark
    --device cuda``); ``cpu``: ``{"metrics": {name: <reports/metrics/
    name.json>}, "benchmark": <reports/metrics/benchmark.json> or None}``. Metric names: judge, referee,
    cgan, generate, quality, downstream. Quality figures are on the real test set (ratios: synthetic over
    the real reference) and depend on the latent scale the export was sampled with (its first row; a
    ``generate.json`` without ``latent_scale`` predates the param: 1); seconds are the wall seconds each
    stage's JSON records.
    """
    def quality_rows(m: dict) -> list[str]:
        q, a = m["quality"], m["downstream"]
        return [f"{m['generate'].get('latent_scale', 1.0):g}",  # runs before the param existed sampled z ~ N(0, I)
                pct(m["judge"]["test_accuracy"]),
                f"{pct(q['class_conditional_accuracy'])} (worst digit {pct(min(q['per_class_accuracy'].values()))})",
                pct(a["tstr_accuracy"]), f"{q['fid'] / q['fid_real_floor']:.1f} × ({q['fid']:.3f} / {q['fid_real_floor']:.3f})",
                f"{q['recall'] / q['recall_real_reference']:.3f} ×", f"{q['coverage'] / q['coverage_real_reference']:.3f} ×",
                pct(q["memorization"]["share_closer_than_heldout"]),
                f"{m['judge']['wall_seconds']:.0f}", f"{m['referee']['wall_seconds']:.0f}",
                f"{m['cgan']['wall_seconds']:.0f}",
                f"{m['generate']['wall_seconds']:.0f} ({m['generate']['images_per_second']:,.0f} images/s)",
                f"{q['wall_seconds'] + a['wall_seconds']:.0f}"]

    def bench_rows(b: dict | None) -> list[str]:
        if not b:
            return ["not measured"] * 7
        target = b.get("time_to_target", {})
        reached = (f"{target['seconds']:.0f} s ({target['steps']} steps)" if target.get("reached")
                   else "not reached" if target else "not measured")
        inference, runs = b.get("inference"), b.get("export", {}).get("runs")
        fast = (f"{inference['forward_images_per_second'][inference['default_precision']]:,.0f} "
                f"({inference['default_precision']})" if inference else "not measured")
        export = (f"{runs['default']['images_per_second']:,.0f} ({runs['default']['precision']}) vs "
                  f"{runs['baseline']['images_per_second']:,.0f} ({b['export']['speedup_over_baseline']:.2f} ×)"
                  if runs else "not measured")
        return [machine_text(b.get("machine")), str(b.get("cgan_train_batch_size", "not recorded")),
                f"{b['cgan_train_images_per_second']:,.0f}", f"{b['generator_forward_images_per_second']:,.0f}",
                fast, export, reached]

    names = ["the export's latent scale s, z ~ N(0, s² I)", "judge test accuracy", "class-conditional accuracy", "TSTR (test)", "FID / real floor",
             "recall / real reference", "coverage / real reference", "memorization share (5 % = like new real digits)",
             "judge training s", "referee training s", "cGAN training s", "generate s (60,000 images)",
             "evaluate s (quality + TSTR and real + synthetic runs)"]
    bench_names = ["benchmark machine", "cGAN batch size (train_cgan.batch_size of the run's params.yaml)",
                   "cGAN training images/s", "generator forward images/s (batch 1,000, float32 reference path)",
                   "generator forward images/s, inference path (`--precision auto`)",
                   "export images/s, defaults vs reference path (1M images)",
                   "training time to 99 % class-conditional accuracy (validation)"]
    rows = ["| figure | 2-core CPU (the committed `dvc repro`) | GPU |", "| --- | --- | --- |"]
    rows += [f"| {n} | {c} | {g} |" for n, c, g in zip(names, quality_rows(cpu["metrics"]), quality_rows(gpu["metrics"]))]
    rows.append(f"| the six stages' processes, prepare to evaluate, s | not measured | {gpu['stages']['total_seconds']:.0f} |")
    rows += [f"| {n} | {c} | {g} |" for n, c, g in zip(bench_names, bench_rows(cpu.get("benchmark")),
                                                      bench_rows(gpu.get("benchmark")))]
    return "\n".join(rows)


def evaluator_line(quality: dict) -> str:
    """Which classifier computed the quality metrics, and whether (and by whom) the export was curated."""
    evaluator, curation = quality.get("evaluation_classifier"), quality.get("curation")
    if evaluator is None:
        return ""
    who = (f"Quality metrics computed with the {evaluator['role']} (`{evaluator['path']}`, seed {evaluator['seed']}, "
           f"width {evaluator['width']}). ")
    if not curation:
        return who + "The export was not curated."
    return who + (f"The export was curated by `{curation['classifier']['path']}` (min confidence "
                  f"{curation['min_confidence']}, acceptance {curation['acceptance_rate']['overall']:.1%}), "
                  "which therefore did not evaluate it.")


def tstr_mean_row(downstream: dict) -> str:
    """The report's metrics-table row (with its newline) of TSTR averaged over classifier seeds, or "" for a
    run with one seed (or a downstream.json without the per-seed list ``tstr_accuracy_seeds``)."""
    seeds, accuracies = downstream.get("tstr_classifier_seeds", []), downstream.get("tstr_accuracy_seeds")
    if len(seeds) < 2 or accuracies is None:
        return ""
    values = ", ".join(pct(value) for value in accuracies)
    return (f"| TSTR, mean over classifier seeds {', '.join(map(str, seeds))} ({values}; validation mean "
            f"{pct(downstream['tstr_val_accuracy_mean'])}) | {pct(downstream['tstr_accuracy_mean'])} |\n")


def stream_rows(downstream: dict) -> str:
    """The report's metrics-table rows (each with its newline) of the fresh-samples conditions: TSTR-stream
    averaged over classifier seeds, real + streamed synthetic and its gain; "" for a downstream.json without them."""
    if "tstr_stream_accuracy_mean" not in downstream:
        return ""
    runs, seeds = downstream["runs"], downstream["tstr_classifier_seeds"]
    values = ", ".join(pct(value) for value in downstream["tstr_stream_accuracy_seeds"])
    drawn = runs["tstr_stream"]["synthetic_images_drawn"]
    return (f"| TSTR-stream: a new set of {downstream['stream']['images_per_epoch']:,} synthetic images every epoch "
            f"({drawn:,} drawn), mean over classifier seeds {', '.join(map(str, seeds))} ({values}; validation "
            f"mean {pct(downstream['tstr_stream_val_accuracy_mean'])}) | {pct(downstream['tstr_stream_accuracy_mean'])} |\n"
            f"| real + streamed synthetic | {pct(downstream['real_plus_stream_accuracy'])} |\n"
            f"| augmentation gain, streamed (real + streamed synthetic − real only) | "
            f"{100 * downstream['stream_augmentation_gain']:+.2f} points |\n")


def per_digit_table(digits: list[str], judge: dict, quality: dict, runs: dict) -> str:
    """The report's per-digit table (judge on real test, class-conditional accuracy, diversity ratio and,
    when ``runs`` (downstream.json's) has per-digit test accuracies, TSTR on real test and its gap to the
    judge), followed by the TSTR classifier's most frequent test errors. Older runs' JSONs without the
    per-digit fields give the first three columns only."""
    tstr = runs.get("tstr", {})
    tstr_digits = tstr.get("test_accuracy_per_digit")
    header = "| digit | judge on real test | class-conditional accuracy | diversity (synthetic / real) |"
    rule = "| --- | --- | --- | --- |"
    if tstr_digits:
        header += " TSTR on real test | TSTR − judge |"
        rule += " --- | --- |"
    rows = []
    for d in digits:
        if d not in quality["diversity"]:
            continue
        row = (f"| {d} | {pct(judge['per_class_accuracy'][d])} | {pct(quality['per_class_accuracy'][d])} | "
               f"{quality['diversity'][d]['ratio']:.3f} |")
        if tstr_digits:
            gap = 100 * (tstr_digits[d] - judge["per_class_accuracy"][d])
            row += f" {pct(tstr_digits[d])} | {gap:+.2f} points |"
        rows.append(row)
    table = "\n".join([header, rule, *rows])
    confusions = tstr.get("test_confusions")
    if not confusions:
        return table
    errors = 1 - tstr["test_accuracy"]
    listed = ", ".join(f"{c['true']} read as {c['predicted']} ({c['count']})" for c in confusions)
    return (table + f"\n\nThe TSTR classifier's most frequent errors on the real test set (true digit read as "
            f"predicted, count; {pct(errors)} of the test images are errors in all): {listed}.")


STUDY_COLUMNS = ("real", "real_classical", "real_synthetic", "real_synthetic_classical", "synthetic",
                 "real_synthetic_stream", "synthetic_stream", "real_synthetic_fullgen", "synthetic_fullgen")
STUDY_GAINS = ("synthetic_over_real", "classical_over_real", "synthetic_over_classical", "synthetic_beyond_classical",
               "stream_over_fixed_synthetic", "stream_synthetic_over_real", "fullgen_synthetic_over_real")


def study_tables(study: dict) -> dict:
    """The augmentation study's tables for the report: ``accuracy`` (Markdown rows: test accuracy per budget and
    condition, mean and 95 % CI over seeds, in %), ``gains`` (Markdown rows: the paired gains :data:`STUDY_GAINS`
    in points), ``verdicts`` (one sentence per budget), ``seeds`` (their number), ``cell_minutes``, ``width`` (the
    classifier's) and ``recipes`` (Markdown rows per budget: classifier steps, the budget-matched cGAN's steps and
    augmentation of D's inputs (DiffAugment policy, ADA, bCR), its validation TSTR with the interval over seeds)."""
    ci = lambda c: f"{100 * c['mean']:.2f} [{100 * c['ci_low']:.2f}, {100 * c['ci_high']:.2f}]"  # noqa: E731
    gain = lambda c: f"{100 * c['mean']:+.2f} [{100 * c['ci_low']:+.2f}, {100 * c['ci_high']:+.2f}]"  # noqa: E731
    budgets = study["budgets"]
    cell = lambda entries, k, fmt: fmt(entries[k]) if k in entries else "—"  # noqa: E731  (older study.json)
    return {"accuracy": "\n".join(f"| {b} | " + " | ".join(cell(e["test_accuracy"], k, ci) for k in STUDY_COLUMNS)
                                  + " |" for b, e in budgets.items()),
            "gains": "\n".join(f"| {b} | " + " | ".join(cell(e["gains"], k, gain) for k in STUDY_GAINS) + " |"
                               for b, e in budgets.items()),
            "verdicts": [e["verdict"] for e in budgets.values()], "seeds": len(study["seeds"]),
            "width": study.get("classifier_width", "?"),
            "recipes": "\n".join(_recipe_row(b, e, ci) for b, e in budgets.items()),
            "cell_minutes": study["cell_wall_seconds"] / 60}


def _recipe_row(budget: str, entry: dict, ci) -> str:
    """One budget's row of the study's recipe table; "—" where an older study.json lacks the field."""
    recipe = entry.get("gan_recipe") or {}
    tstr = ci(entry["gan_validation_tstr"]) if "gan_validation_tstr" in entry else "—"
    augment = recipe.get("gan_diffaugment") or "none"
    if recipe.get("gan_ada_target"):
        augment += f", ADA (target {recipe['gan_ada_target']:g}, {recipe['gan_ada_kimg']:g} kimg)"
    if recipe.get("gan_cr_weight"):
        augment += f", bCR {recipe['gan_cr_weight']:g}"
    return (f"| {budget} | {entry.get('classifier_steps', '—')} | {recipe.get('gan_steps', '—')} | "
            f"{augment} | {tstr} |")


def headline_metrics(metrics: dict, study: dict | None) -> dict:
    """The pipeline's headline scalars, the top-level DVC metrics (``reports/metrics/headline.json``): few enough
    that ``dvc metrics show`` and ``dvc metrics diff`` stay readable; the detailed JSONs remain stage outputs.

    ``metrics``: ``{name: <reports/metrics/name.json>}`` for prepare, judge, referee, cgan, generate, quality
    and downstream; ``study``: ``study.json`` or None. Accuracies and shares are fractions in
    [0, 1], gains differences of fractions, FID a distance in the judge's features, seconds wall-clock seconds.
    Raises KeyError when a stage's JSON lacks a field.
    """
    quality, downstream = metrics["quality"], metrics["downstream"]
    synthetic = {"class_conditional_accuracy": quality["class_conditional_accuracy"],
                 "worst_digit_accuracy": min(quality["per_class_accuracy"].values()),
                 "tstr_accuracy": downstream["tstr_accuracy"],
                 "tstr_accuracy_mean": downstream.get("tstr_accuracy_mean", downstream["tstr_accuracy"]),
                 "tstr_stream_accuracy_mean": downstream.get("tstr_stream_accuracy_mean"),
                 "fid": quality["fid"], "fid_real_floor": quality["fid_real_floor"],
                 "fid_over_floor": quality["fid"] / quality["fid_real_floor"],
                 "memorization_share": quality["memorization"]["share_closer_than_heldout"]}
    for name in ("precision", "recall", "coverage"):
        synthetic[name] = quality[name]
        synthetic[f"{name}_real_reference"] = quality[f"{name}_real_reference"]
    headline = {
        "judge": {"test_accuracy": metrics["judge"]["test_accuracy"],
                  "val_accuracy": metrics["judge"]["val_accuracy"]},
        "synthetic": synthetic,
        "downstream": {"real_only_accuracy": downstream["real_only_accuracy"],
                         "real_plus_synthetic_accuracy": downstream["real_plus_synthetic_accuracy"],
                         "augmentation_gain": downstream["augmentation_gain"],
                         "real_plus_stream_accuracy": downstream.get("real_plus_stream_accuracy"),
                         "stream_augmentation_gain": downstream.get("stream_augmentation_gain")},
        "generate_images_per_second": metrics["generate"]["images_per_second"],
        "wall_seconds": {"prepare": metrics["prepare"]["wall_seconds"],
                         "train_judge": metrics["judge"]["wall_seconds"],
                         "train_referee": metrics["referee"]["wall_seconds"],
                         "train_cgan": metrics["cgan"]["wall_seconds"],
                         "generate": metrics["generate"]["wall_seconds"],
                         "evaluate": quality["wall_seconds"] + downstream["wall_seconds"]},
    }
    if study:
        label = lambda budget: budget if budget == "all" else f"b{budget}"  # noqa: E731
        headline["study"] = {gain: {label(b): e["gains"][gain]["mean"] for b, e in study["budgets"].items()}
                             for gain in ("synthetic_beyond_classical", "classical_over_real")}
        headline["wall_seconds"]["study_cells"] = study["cell_wall_seconds"]
    return headline
