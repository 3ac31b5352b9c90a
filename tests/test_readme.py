"""README.md is for users: short, the quick start near the top, and a results table that cannot drift from
``reports/metrics/headline.json`` (the top-level DVC metrics the default ``dvc repro`` writes)."""

from __future__ import annotations

import json
import re

from pipeline.reporting.sections import pct
from tests.conftest import REPO

README = (REPO / "README.md").read_text()
HEADLINE = json.loads((REPO / "reports" / "metrics" / "headline.json").read_text())


def points(x: float) -> str:
    return f"{100 * x:+.2f} points".replace("-", "−")


def results_table() -> dict[str, list[str]]:
    """The rows of the README's results table: ``{metric: [this run, real-data reference, target]}``."""
    section = README.split("## Results", 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split(" | ")]
            for line in section.splitlines() if line.startswith("| ")]
    assert rows[0] == ["metric", "this run", "real-data reference", "target"]
    return {row[0]: row[1:] for row in rows[2:]}


def expected_cells() -> dict[str, tuple[str, str]]:
    """Each results row's "this run" and "real-data reference" cells, formatted from headline.json."""
    s, a = HEADLINE["synthetic"], HEADLINE["downstream"]
    return {
        "judge accuracy on real test": (pct(HEADLINE["judge"]["test_accuracy"]), "—"),
        "class-conditional accuracy (judge agrees with the requested digit), worst digit":
            (f"{pct(s['class_conditional_accuracy'])}, {pct(s['worst_digit_accuracy'])}", "—"),
        "TSTR: 60,000 synthetic images only → real test, mean of 2 classifier seeds":
            (pct(s["tstr_accuracy_mean"]), f"{pct(a['real_only_accuracy'])} (real only)"),
        "TSTR-stream: a fresh synthetic set every epoch, mean of 2 classifier seeds":
            (pct(s["tstr_stream_accuracy_mean"]), f"{pct(a['real_only_accuracy'])} (real only)"),
        "FID in judge features": (f"{s['fid']:.3f} ({s['fid_over_floor']:.1f} × the floor)",
                                  f"{s['fid_real_floor']:.3f} (real train vs real test)"),
        "precision (Kynkäänniemi et al. 2019)": (f"{s['precision']:.3f}", f"{s['precision_real_reference']:.3f}"),
        "recall": (f"{s['recall']:.3f}", f"{s['recall_real_reference']:.3f}"),
        "coverage (Naeem et al. 2020)": (f"{s['coverage']:.3f}", f"{s['coverage_real_reference']:.3f}"),
        "memorization: synthetic closer to train than 95 % of held-out real": (pct(s["memorization_share"]),
                                                                               "5 % (no copying)"),
        "real + synthetic (augmentation gain)": (f"{pct(a['real_plus_synthetic_accuracy'])} ({points(a['augmentation_gain'])})",
                                                 f"{pct(a['real_only_accuracy'])} (real only)"),
        "augmentation study, b = 10 per class: synthetic on top of classical":
            (points(HEADLINE["study"]["synthetic_beyond_classical"]["b10"]), "—"),
        "generate stage, 60,000 images": (f"{HEADLINE['generate_images_per_second']:,.0f} images/s", "—"),
    }


def test_results_table_equals_the_committed_headline_metrics():
    table = results_table()
    assert 1 <= len(table) <= 12
    assert {name: cells[:2] for name, cells in table.items()} == {name: list(cells) for name, cells in expected_cells().items()}


def test_readme_is_short_with_the_quick_start_first_and_no_run_history():
    lines = README.splitlines()
    assert len(lines) <= 300
    first = "\n".join(lines[:60])
    assert "pip install -e" in first and "\ndvc repro" in first and "\npytest" in first
    assert len([line for line in lines if re.search(r"\b20\d\d-\d\d-\d\d\b", line)]) <= 2


def test_readme_layout_is_the_tree_of_the_package():
    """Every top-level module and package of pipeline/ is in the layout map, every module on its package's
    line (or the lines below it), and the map names nothing that is not there."""
    layout = README.split("## Layout", 1)[1].split("```")[1]
    blocks, current = {}, None
    for line in layout.splitlines():
        match = re.match(r"  (\w+)/\s", line)
        if match:
            current = match.group(1)
        elif not line.startswith("    "):
            current = None
        if current:
            blocks[current] = blocks.get(current, "") + line + "\n"
    packages = {p.name for p in (REPO / "pipeline").iterdir() if (p / "__init__.py").is_file()}
    assert set(blocks) - {"templates"} == packages
    for package in packages:
        modules = {f.stem for f in (REPO / "pipeline" / package).glob("*.py")} - {"__init__"}
        assert sorted(m for m in modules if not re.search(rf"\b{m}\b", blocks[package])) == [], package
    top = {p.name for p in (REPO / "pipeline").glob("*.py")} - {"__init__.py"}
    assert sorted(m for m in top if m not in layout) == []
    named = set(re.findall(r"\b(\w+\.py)\b", layout))
    assert named <= top


def speed_lines() -> str:
    """The README's speed figures, formatted from ``reports/metrics/benchmark.json`` (the benchmark's 1M-image
    exports and forward passes, one run on one machine)."""
    bench = json.loads((REPO / "reports" / "metrics" / "benchmark.json").read_text())
    machine, export = bench["machine"], bench["export"]
    runs = export["runs"]
    default, baseline, one = runs["default"], runs["baseline"], runs["default_samplers_1"]
    forward = sum(default["forward_around"]) / 2
    return (f"On the benchmark's machine ({machine['cpu']}, {machine['torch_threads']} threads), a "
            f"{default['images']:,}-image export with the defaults ({default['samplers']} sampler processes) ran at "
            f"{default['images_per_second']:,.0f} images/s in {default['precision']}, "
            f"{export['speedup_over_baseline']:.2f} × the float32 reference path's {baseline['images_per_second']:,.0f} "
            f"(G as trained, channels-first, PNG encoding in one process beside it) and "
            f"{100 * default['ratio_to_forward']:.0f} % of G's forward pass timed around it ({forward:,.0f} images/s); "
            f"`--samplers 1` ran at {one['images_per_second']:,.0f} ({100 * one['ratio_to_forward']:.0f} %), "
            f"`--precision float32` at {runs['float32']['images_per_second']:,.0f}. Peak memory "
            f"{default['peak_pss_mb_sum_sampled']:,.0f} MB over all its processes (proportional set size; RSS sum "
            f"{default['peak_rss_mb_sum_sampled']:,.0f} MB) (`reports/metrics/benchmark.json`).")


def ray_lines() -> str:
    """The README's Ray figures, formatted from the benchmark's ``--ray local`` exports (same run as speed_lines)."""
    bench = json.loads((REPO / "reports" / "metrics" / "benchmark.json").read_text())
    default, ray = bench["export"]["runs"]["default"], bench["export"]["ray_runs"]
    one, two = ray["ray_1_worker"], ray["ray_2_workers"]
    peak = max(run["peak_pss_mb_sum_sampled"] for run in ray.values())
    return (f"Same benchmark run, local Ray cluster, {one['ray']['tasks']} shard tasks: "
            f"{one['images_per_second']:,.0f} images/s with one worker ({one['ray']['cpus_per_task']:g} CPUs per "
            f"task), {two['images_per_second']:,.0f} with two ({two['ray']['cpus_per_task']:g} CPU each), against "
            f"{default['images_per_second']:,.0f} without Ray; peak memory {peak:,.0f} MB (PSS) with Ray's processes.")


def test_readme_ray_figures_equal_the_benchmark():
    section = README.split("<!-- ray -->\n", 1)[1].split("\n\n", 1)[0]
    assert " ".join(section.split()) == ray_lines()


def test_readme_speed_figures_equal_the_benchmark():
    section = README.split("<!-- speed -->\n", 1)[1].split("\n\n", 1)[0]
    assert " ".join(section.split()) == speed_lines()
