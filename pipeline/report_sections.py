"""The data behind the report's sections, from the metric dicts and ablation records: the ablation summary per
lever and the full ablation rows, the GPU table, the augmentation study's tables, the per-digit table and
the evaluating-classifier line. The prose around them lives in the Jinja2 templates of ``pipeline/templates``.

Pure functions of the JSONs that ``pipeline.report`` reads (no file I/O); every number comes from them.
"""

from __future__ import annotations

from pipeline.machine import training_precision
from pipeline.records import describe_differences, differences_from_baseline


def pct(x: float) -> str:
    return f"{100 * x:.2f} %"


ABLATION_COLUMNS = {
    "class_conditional_accuracy": ("class-cond. acc.", pct),
    "worst_digit_accuracy": ("worst digit", pct),
    "fid_val": ("FID", lambda x: f"{x:.2f}"),
    "recall_val": ("recall", lambda x: f"{x:.3f}"),
    "coverage_val": ("coverage", lambda x: f"{x:.3f}"),
    "tstr_proxy_val": ("TSTR proxy", pct),
    "tstr_val": ("TSTR, judge recipe", pct),
}
#: TSTR figures a run and its baseline are compared on, best first: the judge's recipe, else the proxy.
TSTR_FIGURES = (("tstr_val", "judge recipe"), ("tstr_proxy_val", "proxy"))


def machine_cell(run_: dict) -> str:
    """Where an ablation run trained: ``"<cpu>, <SIMD level>, <float32|bfloat16>"`` from the record's ``machine``
    (:func:`pipeline.machine.machine_info`; the precision from :func:`pipeline.machine.training_precision`),
    ``"<gpu> GPU, <precision>"`` for a run on a GPU (``pipeline.ablation --device cuda``),
    ``"<cpu or gpu> (measured only)"`` for a run that measured a saved generator (``--generator``),
    or ``"not recorded"`` for runs made before it was stored."""
    machine = run_.get("machine")
    if not machine:
        return "not recorded"
    where = machine_where(machine)
    if run_.get("generator"):  # a saved generator, measured here but trained elsewhere
        return f"{where} (measured only)"
    precision = training_precision(run_["params"].get("autocast", ""), machine.get("bfloat16_native", False))
    return f"{where}, {precision}"


def lever_of(record: dict) -> str:
    """The lever an ablation record measures: the names of the params and sampling choices in which it differs
    from its baseline, ``epochs`` and ``seed`` left out unless nothing else differs (e.g. ``"batch_size"``,
    ``"sampling.latent_scale"``, ``"seed"``); ``"none in train_cgan (see note)"`` when they are equal (the
    change lies outside train_cgan: a TSTR classifier seed or recipe, a code change)."""
    differences = list(differences_from_baseline(record))
    keys = [k for k in differences if k not in ("epochs", "seed")] or differences
    return ", ".join(keys) or "none in train_cgan (see note)"


def compared_rows(record: dict, baseline: dict) -> tuple[dict, dict]:
    """The run's last epoch and the baseline's epoch it is compared with: the same epoch number when the baseline
    has it with a TSTR figure in common (a run stopped early is compared where it stopped), else the baseline's
    last epoch (a run with another schedule is compared with the baseline as it ended)."""
    run_row = record["results"]["epochs"][-1]
    same = {e["epoch"]: e for e in baseline["results"]["epochs"]}.get(run_row["epoch"])
    if same is not None and any(key in run_row and key in same for key, _ in TSTR_FIGURES):
        return run_row, same
    return run_row, baseline["results"]["epochs"][-1]


def effect_on_baseline(record: dict, baseline: dict) -> dict:
    """A run's validation effect against its baseline record (:func:`compared_rows`): ``tstr`` (points, or None
    when the two rows share no TSTR figure) with ``tstr_figure`` (:data:`TSTR_FIGURES`), ``fid`` (difference),
    ``class_accuracy`` (points) and ``cost`` (train seconds over the baseline's; None when either trained
    nothing, e.g. a sampling-time change measured on a saved generator)."""
    run_row, base_row = compared_rows(record, baseline)
    tstr = figure = None
    for key, name in TSTR_FIGURES:
        if key in run_row and key in base_row:
            tstr, figure = 100 * (run_row[key] - base_row[key]), name
            break
    seconds = run_row.get("train_seconds"), base_row.get("train_seconds")
    return {"tstr": tstr, "tstr_figure": figure, "fid": run_row["fid_val"] - base_row["fid_val"],
            "class_accuracy": 100 * (run_row["class_conditional_accuracy"] - base_row["class_conditional_accuracy"]),
            "cost": seconds[0] / seconds[1] if all(seconds) else None}


def lever_summary(records: list[dict]) -> list[dict]:
    """One row per lever (:func:`lever_of`) over the records that name a baseline record: ``lever``, ``runs``
    (their number) and the run with the largest TSTR effect (:func:`effect_on_baseline`; runs without a shared
    TSTR figure count last) as ``best`` (its record name) with its effect's fields. Sorted by that TSTR effect,
    largest first."""
    by_name = {r["name"]: r for r in records}
    groups: dict[str, list[tuple[str, dict]]] = {}
    for record in records:
        baseline = by_name.get(record["baseline"]["record"] or "")
        if baseline is not None:
            groups.setdefault(lever_of(record), []).append((record["name"], effect_on_baseline(record, baseline)))
    order = lambda item: item[1]["tstr"] if item[1]["tstr"] is not None else float("-inf")  # noqa: E731
    rows = []
    for lever, effects in groups.items():
        best, effect = max(effects, key=order)
        rows.append({"lever": lever, "runs": len(effects), "best": best, **effect})
    return sorted(rows, key=lambda row: -row["tstr"] if row["tstr"] is not None else float("inf"))


def ablation_rows(records: list[dict]) -> list[dict]:
    """One row per record for ``reports/ablation.md``: ``name``, ``baseline`` (its record name or "—"),
    ``difference`` (:func:`pipeline.records.describe_differences`), ``epoch`` and ``seconds`` (the last epoch;
    seconds "" when nothing was trained), ``machine`` (:func:`machine_cell`), ``figures`` (each
    :data:`ABLATION_COLUMNS` key's formatted value, "" where not measured), ``judge`` (sha256 prefix or "not recorded"),
    ``generator`` (the measured checkpoint's path, or "") and ``note``."""
    rows = []
    for record in records:
        last = record["results"]["epochs"][-1]
        rows.append({
            "name": record["name"], "baseline": record["baseline"]["record"] or "—",
            "difference": describe_differences(differences_from_baseline(record)), "epoch": last["epoch"],
            "seconds": f"{last['train_seconds']:.0f}" if last.get("train_seconds") is not None else "",
            "machine": machine_cell(record),
            "figures": {k: fmt(last[k]) if k in last else "" for k, (_, fmt) in ABLATION_COLUMNS.items()},
            "judge": (record["judge"]["sha256"] or "")[:8] or "not recorded",
            "generator": (record["generator"] or {}).get("path", ""), "note": record["note"],
        })
    return rows


def machine_where(machine: dict) -> str:
    """``"NVIDIA H100 80GB HBM3 GPU"`` or ``"AMD EPYC, AVX2"`` (the SIMD level left out where not recorded)
    from a :func:`pipeline.machine.machine_info` dict."""
    if machine.get("gpu"):
        return f"{machine['gpu']} GPU"
    return ", ".join(p for p in (machine.get("cpu", "?"), machine.get("cpu_capability")) if p)


def machine_text(machine: dict | None) -> str:
    """:func:`machine_where` with the threads: ``"NVIDIA H100 80GB HBM3 GPU, 16 CPU threads"`` or
    ``"AMD EPYC, AVX2, 2 threads"``; ``"machine not recorded"`` for None."""
    if not machine:
        return "machine not recorded"
    threads = f"{machine.get('torch_threads', '?')} {'CPU threads' if machine.get('gpu') else 'threads'}"
    return f"{machine_where(machine)}, {threads}"


def render_gpu(gpu: dict, cpu: dict) -> str:
    """The default pipeline run on a GPU next to the committed CPU run, as a Markdown table.

    ``gpu``: ``{"stages": <reports/gpu/stage_seconds.json>, "metrics": {name: <reports/gpu/metrics/name.json>},
    "benchmark": <reports/gpu/benchmark.json> or None}`` (``pipeline.timed_repro`` and ``pipeline.benchmark
    --device cuda``); ``cpu``: ``{"metrics": {name: <reports/metrics/
    name.json>}, "benchmark": <reports/metrics/benchmark.json> or None}``. Metric names: classifier, referee,
    cgan, generate, quality, augmentation. Quality figures are on the real test set (ratios: synthetic over
    the real reference) and depend on the latent scale the export was sampled with (its first row; a
    ``generate.json`` without ``latent_scale`` predates the param: 1); seconds are the wall seconds each
    stage's JSON records.
    """
    def quality_rows(m: dict) -> list[str]:
        q, a = m["quality"], m["augmentation"]
        return [f"{m['generate'].get('latent_scale', 1.0):g}",  # runs before the param existed sampled z ~ N(0, I)
                pct(m["classifier"]["test_accuracy"]),
                f"{pct(q['class_conditional_accuracy'])} (worst digit {pct(min(q['per_class_accuracy'].values()))})",
                pct(a["tstr_accuracy"]), f"{q['fid'] / q['fid_real_floor']:.1f} × ({q['fid']:.3f} / {q['fid_real_floor']:.3f})",
                f"{q['recall'] / q['recall_real_reference']:.3f} ×", f"{q['coverage'] / q['coverage_real_reference']:.3f} ×",
                pct(q["memorization"]["share_closer_than_heldout"]),
                f"{m['classifier']['wall_seconds']:.0f}", f"{m['referee']['wall_seconds']:.0f}",
                f"{m['cgan']['wall_seconds']:.0f}",
                f"{m['generate']['wall_seconds']:.0f} ({m['generate']['images_per_second']:,.0f} images/s)",
                f"{q['wall_seconds'] + a['wall_seconds']:.0f}"]

    def bench_rows(b: dict | None) -> list[str]:
        if not b:
            return ["not measured"] * 5
        target = b.get("time_to_target", {})
        reached = (f"{target['seconds']:.0f} s ({target['steps']} steps)" if target.get("reached")
                   else "not reached" if target else "not measured")
        return [machine_text(b.get("machine")), str(b.get("cgan_train_batch_size", "not recorded")),
                f"{b['cgan_train_images_per_second']:,.0f}", f"{b['generator_forward_images_per_second']:,.0f}",
                reached]

    names = ["the export's latent scale s, z ~ N(0, s² I)", "judge test accuracy", "class-conditional accuracy", "TSTR (test)", "FID / real floor",
             "recall / real reference", "coverage / real reference", "memorization share (5 % = like new real digits)",
             "judge training s", "referee training s", "cGAN training s", "generate s (60,000 images)",
             "evaluate s (quality + TSTR / augmentation runs)"]
    bench_names = ["benchmark machine", "cGAN batch size (train_cgan.batch_size of the run's params.yaml)",
                   "cGAN training images/s", "generator forward images/s (batch 1,000)",
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


def tstr_mean_row(augmentation: dict) -> str:
    """The report's metrics-table row (with its newline) of TSTR averaged over classifier seeds, or "" for a
    run with one seed (or an augmentation.json without the per-seed list ``tstr_accuracy_seeds``)."""
    seeds, accuracies = augmentation.get("tstr_classifier_seeds", []), augmentation.get("tstr_accuracy_seeds")
    if len(seeds) < 2 or accuracies is None:
        return ""
    values = ", ".join(pct(value) for value in accuracies)
    return (f"| TSTR, mean over classifier seeds {', '.join(map(str, seeds))} ({values}; validation mean "
            f"{pct(augmentation['tstr_val_accuracy_mean'])}) | {pct(augmentation['tstr_accuracy_mean'])} |\n")


def per_digit_table(digits: list[str], classifier: dict, quality: dict, runs: dict) -> str:
    """The report's per-digit table (judge on real test, class-conditional accuracy, diversity ratio and,
    when ``runs`` (augmentation.json's) has per-digit test accuracies, TSTR on real test and its gap to the
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
        row = (f"| {d} | {pct(classifier['per_class_accuracy'][d])} | {pct(quality['per_class_accuracy'][d])} | "
               f"{quality['diversity'][d]['ratio']:.3f} |")
        if tstr_digits:
            gap = 100 * (tstr_digits[d] - classifier["per_class_accuracy"][d])
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
                 "real_synthetic_fullgen", "synthetic_fullgen")
STUDY_GAINS = ("synthetic_over_real", "classical_over_real", "synthetic_over_classical", "synthetic_beyond_classical",
               "fullgen_synthetic_over_real")


def study_tables(study: dict) -> dict:
    """The augmentation study's tables for the report: ``accuracy`` (Markdown rows: test accuracy per budget and
    condition, mean and 95 % CI over seeds, in %), ``gains`` (Markdown rows: the paired gains :data:`STUDY_GAINS`
    in points), ``verdicts`` (one sentence per budget), ``seeds`` (their number) and ``cell_minutes``."""
    ci = lambda c: f"{100 * c['mean']:.2f} [{100 * c['ci_low']:.2f}, {100 * c['ci_high']:.2f}]"  # noqa: E731
    gain = lambda c: f"{100 * c['mean']:+.2f} [{100 * c['ci_low']:+.2f}, {100 * c['ci_high']:+.2f}]"  # noqa: E731
    budgets = study["budgets"]
    return {"accuracy": "\n".join(f"| {b} | " + " | ".join(ci(e["test_accuracy"][k]) for k in STUDY_COLUMNS) + " |"
                                  for b, e in budgets.items()),
            "gains": "\n".join(f"| {b} | " + " | ".join(gain(e["gains"][k]) for k in STUDY_GAINS) + " |"
                               for b, e in budgets.items()),
            "verdicts": [e["verdict"] for e in budgets.values()], "seeds": len(study["seeds"]),
            "cell_minutes": study["cell_wall_seconds"] / 60}


def headline_metrics(metrics: dict, study: dict | None) -> dict:
    """The pipeline's headline scalars, the top-level DVC metrics (``reports/metrics/headline.json``): few enough
    that ``dvc metrics show`` and ``dvc metrics diff`` stay readable; the detailed JSONs remain stage outputs.

    ``metrics``: ``{name: <reports/metrics/name.json>}`` for prepare, classifier, referee, cgan, generate, quality
    and augmentation; ``study``: ``augmentation_study.json`` or None. Accuracies and shares are fractions in
    [0, 1], gains differences of fractions, FID a distance in the judge's features, seconds wall-clock seconds.
    Raises KeyError when a stage's JSON lacks a field.
    """
    quality, augmentation = metrics["quality"], metrics["augmentation"]
    synthetic = {"class_conditional_accuracy": quality["class_conditional_accuracy"],
                 "worst_digit_accuracy": min(quality["per_class_accuracy"].values()),
                 "tstr_accuracy": augmentation["tstr_accuracy"],
                 "tstr_accuracy_mean": augmentation.get("tstr_accuracy_mean", augmentation["tstr_accuracy"]),
                 "fid": quality["fid"], "fid_real_floor": quality["fid_real_floor"],
                 "fid_over_floor": quality["fid"] / quality["fid_real_floor"],
                 "memorization_share": quality["memorization"]["share_closer_than_heldout"]}
    for name in ("precision", "recall", "coverage"):
        synthetic[name] = quality[name]
        synthetic[f"{name}_real_reference"] = quality[f"{name}_real_reference"]
    headline = {
        "judge": {"test_accuracy": metrics["classifier"]["test_accuracy"],
                  "val_accuracy": metrics["classifier"]["val_accuracy"]},
        "synthetic": synthetic,
        "augmentation": {"real_only_accuracy": augmentation["real_only_accuracy"],
                         "real_plus_synthetic_accuracy": augmentation["real_plus_synthetic_accuracy"],
                         "augmentation_gain": augmentation["augmentation_gain"]},
        "generate_images_per_second": metrics["generate"]["images_per_second"],
        "wall_seconds": {"prepare": metrics["prepare"]["wall_seconds"],
                         "train_classifier": metrics["classifier"]["wall_seconds"],
                         "train_referee": metrics["referee"]["wall_seconds"],
                         "train_cgan": metrics["cgan"]["wall_seconds"],
                         "generate": metrics["generate"]["wall_seconds"],
                         "evaluate": quality["wall_seconds"] + augmentation["wall_seconds"]},
    }
    if study:
        label = lambda budget: budget if budget == "all" else f"b{budget}"  # noqa: E731
        headline["study"] = {gain: {label(b): e["gains"][gain]["mean"] for b, e in study["budgets"].items()}
                             for gain in ("synthetic_beyond_classical", "classical_over_real")}
        headline["wall_seconds"]["study_cells"] = study["cell_wall_seconds"]
    return headline
