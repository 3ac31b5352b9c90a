"""Markdown sections of the report, rendered from metric dicts: the ablation table, the GPU run, the
augmentation study and the evaluating-classifier line.

Pure functions of the JSONs that ``pipeline.report`` reads (no file I/O); every number comes from them.
"""

from __future__ import annotations

from pipeline.machine import training_precision
from pipeline.params import CGAN_PARAMS_BEFORE_THEY_EXISTED


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


def machine_cell(run_: dict) -> str:
    """Where an ablation run trained: ``"<cpu>, <SIMD level>, <float32|bfloat16>"`` from the run's ``machine``
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


def sampling_change(sampling: dict) -> str:
    """The sampling-time choices of an ablation run (``pipeline.ablation --latent-scale / --standing-stats``)
    that differ from plain sampling, e.g. ``"sampling: z x 1.2, standing statistics (100 batches of 64)"``;
    ``""`` for plain sampling or runs made before the choices existed."""
    parts = []
    if sampling.get("latent_scale", 1.0) != 1.0:
        parts.append(f"z x {sampling['latent_scale']:g}")
    if sampling.get("standing_stats_batches", 0) > 0:
        parts.append(f"standing statistics ({sampling['standing_stats_batches']} batches of "
                     f"{sampling['standing_stats_batch_size']})")
    return "sampling: " + ", ".join(parts) if parts else ""


def render_ablation(runs: list[dict], current: dict) -> str:
    """Markdown table of ablation runs (``pipeline.ablation`` JSONs): each run's last epoch and the
    epoch with the best TSTR proxy (and the epoch today's default stops at, when the run went on), all
    on the validation split, with 1-thread training seconds, the machine they were measured on
    (:func:`machine_cell`: they differ about 3.4x between CPUs) and the first 8 hex digits of the sha256 of the
    judge that measured the run (``judge_sha256``), so rows measured by different judges stand out.
    ``current``: today's ``train_cgan`` params; the "change" column is each run's difference from them."""
    if not runs:
        return "_No ablation runs in `reports/ablation/`._"
    head = ("| run | difference from params.yaml | epoch | train s | machine | "
            + " | ".join(c for c, _ in ABLATION_COLUMNS.values()) + " | judge |")
    rows = [head, "|" + " --- |" * (6 + len(ABLATION_COLUMNS))]
    for run_ in sorted(runs, key=lambda r: r["name"]):
        run_params = {**{k: v for k, v in CGAN_PARAMS_BEFORE_THEY_EXISTED.items() if k in current}, **run_["params"]}
        differences = ", ".join(f"{k}={v!r}" if v == "" else f"{k}={v}" for k, v in run_params.items()
                                if k != "epochs" and current.get(k) != v)
        change = "; ".join(p for p in (differences, sampling_change(run_.get("sampling", {}))) if p)
        change = change or "(none: the default)"
        remarks = [f"measured `{run_['generator']}`, not trained by the run"] if run_.get("generator") else []
        remarks += [run_["note"]] if run_.get("note") else []
        if remarks:
            change += f" ({'; '.join(remarks)})"
        machine = machine_cell(run_)
        judge = run_.get("judge_sha256", "")[:8] or "not recorded"
        with_tstr = [e for e in run_["epochs"] if "tstr_proxy_val" in e]
        shown = [run_["epochs"][-1]]
        if with_tstr:
            best = max(with_tstr, key=lambda e: e["tstr_proxy_val"])
            if best is not shown[0]:
                shown.insert(0, best)
        # A run longer than today's default also shows the epoch the default stops at.
        shown += [e for e in run_["epochs"] if e["epoch"] == current.get("epochs") and e not in shown]
        shown.sort(key=lambda e: e["epoch"])
        for e in shown:
            cells = [fmt(e[k]) if k in e else "" for k, (_, fmt) in ABLATION_COLUMNS.items()]
            seconds = f"{e['train_seconds']:.0f}" if e.get("train_seconds") is not None else ""
            rows.append(f"| {run_['name']} | {change} | {e['epoch']} | {seconds} | {machine} | "
                        + " | ".join(cells) + f" | {judge} |")
    return "\n".join(rows)


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


NO_GPU_RUN = "_No GPU run recorded in `reports/gpu/`._"


def render_gpu(gpu: dict | None, cpu: dict) -> str:
    """The default pipeline run on a GPU next to the committed CPU run, as a Markdown table.

    ``gpu``: ``{"stages": <reports/gpu/stage_seconds.json>, "metrics": {name: <reports/gpu/metrics/name.json>},
    "benchmark": <reports/gpu/benchmark.json> or None}`` (``pipeline.timed_repro`` and ``pipeline.benchmark
    --device cuda``), or None when no GPU run is recorded; ``cpu``: ``{"metrics": {name: <reports/metrics/
    name.json>}, "benchmark": <reports/metrics/benchmark.json> or None}``. Metric names: classifier, referee,
    cgan, generate, quality, augmentation. Quality figures are on the real test set (ratios: synthetic over
    the real reference) and depend on the latent scale the export was sampled with (its first row; a
    ``generate.json`` without ``latent_scale`` predates the param: 1); seconds are the wall seconds each
    stage's JSON records.
    """
    if not gpu:
        return NO_GPU_RUN

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


def gpu_section(gpu: dict | None, cpu: dict) -> str:
    """The report's GPU section below its heading: how the run was made, :func:`render_gpu`'s table and the
    run's own note (``stage_seconds.json``); :data:`NO_GPU_RUN` when ``gpu`` is None. Arguments as for
    :func:`render_gpu`."""
    if not gpu:
        return NO_GPU_RUN
    note = f"How the GPU run was timed: {gpu['stages']['note']}." if gpu["stages"].get("note") else ""
    machine = machine_text(gpu["stages"].get("machine"))
    return f"""The params and seeds of its day, run stage by stage on a lent GPU ({machine}) with
`python -m pipeline.timed_repro --out reports/gpu` in a scratch clone (the stages pick the GPU with
their `--device auto` default; generate samples on the CPU, its default) and
`python -m pipeline.benchmark --device cuda --out reports/gpu/benchmark.json`. Different hardware
and kernels give other numbers from the same seeds, so the quality rows show what one GPU run
measured, not the committed generator. The CPU column's quality and seconds are the committed run's
(`reports/metrics`); its benchmark rows are `reports/metrics/benchmark.json`, measured on the machine
they name. Study cells run on the CPU only and are not part of the GPU run. Where the two runs used
different params (the export's latent scale, the first row; the cGAN's batch size, in the benchmark rows),
their quality rows differ by that too.

{render_gpu(gpu, cpu)}

{note}"""


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


def render_study(study: dict | None, figures: str) -> str:
    """The augmentation study's section: test accuracy per budget and condition (mean and 95 % CI over
    seeds), the paired gains, the verdicts and the plot; a placeholder line without a study."""
    if not study:
        return "(no augmentation study in reports/metrics/augmentation_study.json)"
    budgets = study["budgets"]
    n = len(study["seeds"])
    ci = lambda c: f"{100 * c['mean']:.2f} [{100 * c['ci_low']:.2f}, {100 * c['ci_high']:.2f}]"  # noqa: E731
    gain = lambda c: f"{100 * c['mean']:+.2f} [{100 * c['ci_low']:+.2f}, {100 * c['ci_high']:+.2f}]"  # noqa: E731
    accuracy_rows = "\n".join(f"| {b} | " + " | ".join(ci(e["test_accuracy"][k]) for k in STUDY_COLUMNS) + " |"
                               for b, e in budgets.items())
    gain_rows = "\n".join(f"| {b} | " + " | ".join(gain(e["gains"][k]) for k in STUDY_GAINS) + " |"
                           for b, e in budgets.items())
    verdicts = "\n".join(f"- {e['verdict']}." for e in budgets.values())
    return f"""Real labeled images per class b are drawn from MNIST train (never validation or test), one subset per
seed; the budget-matched cGAN is trained on that subset only. Every classifier has the same architecture,
recipe and number of steps; validation picks the classical-augmentation strength and the synthetic:real
ratio in each cell; each final classifier is scored once on the real test set. Mean test accuracy (%) and
95 % Student-t interval over {n} seeds; "G saw all 60k" = the pipeline's generator, trained on every
train image (leakage: it has seen far more real data than b).

| b | real only | + classical | + synthetic | + synthetic + classical | synthetic only (TSTR) | + synthetic, G saw all 60k | TSTR, G saw all 60k |
| --- | --- | --- | --- | --- | --- | --- | --- |
{accuracy_rows}

Paired gains (same seed; points, 95 % interval of the per-seed differences):

| b | + synthetic vs real only | + classical vs real only | + synthetic vs + classical | + synthetic + classical vs + classical | + synthetic (G saw all 60k) vs real only |
| --- | --- | --- | --- | --- | --- |
{gain_rows}

{verdicts}

![augmentation study]({figures}/augmentation_study.png)

Cells took {study['cell_wall_seconds'] / 60:.1f} min in all (`python -m pipeline.study_cell`, one DVC stage per cell)."""
