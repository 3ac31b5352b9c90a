"""The ablation records as report rows: one row per record against its own baseline (``reports/ablation.md``,
``reports/experiments.md``) and one row per lever, its best validation TSTR effect (the report's summary).

Pure functions of the records (:mod:`pipeline.reporting.records`); no file I/O.
"""

from __future__ import annotations

from pipeline.core.machine import machine_where, training_precision
from pipeline.reporting.records import describe_differences, differences_from_baseline
from pipeline.reporting.sections import pct

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
    (:func:`pipeline.core.machine.machine_info`; the precision from :func:`pipeline.core.machine.training_precision`),
    ``"<gpu> GPU, <precision>"`` for a run on a GPU (``pipeline.tools.ablation --device cuda``),
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
    ``difference`` (:func:`pipeline.reporting.records.describe_differences`), ``epoch`` and ``seconds`` (the last epoch;
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
