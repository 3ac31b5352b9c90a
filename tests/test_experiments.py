"""reports/experiments.md: its record tables are what the committed ablation records give."""

from __future__ import annotations

import pytest

from pipeline.core.utils import PipelineError
from pipeline.reporting.records import read_ablation_records
from pipeline.tools.experiments import MARKER, fill_tables, records_table, stale_tables
from tests.conftest import REPO, assert_one_line_error, run_module

EXPERIMENTS = REPO / "reports" / "experiments.md"


@pytest.fixture(scope="module")
def records():
    return read_ablation_records(REPO / "reports" / "ablation")


def test_every_table_of_the_write_up_equals_its_records(records):
    text = EXPERIMENTS.read_text()
    markers = MARKER.findall(text)
    assert len(markers) >= 10 and text.count("<!-- records:") == len(markers)  # no marker without its table
    assert stale_tables(text, records) == []
    assert run_module("pipeline.tools.experiments", "check", "--experiments", str(EXPERIMENTS)).returncode == 0


def test_a_changed_figure_is_caught_and_fill_restores_it(records, tmp_path):
    table = records_table(records, ["seed_5", "seed_7"])
    assert table.splitlines()[2].startswith("| seed_5 | seed 2 → 5 (vs committed_default) | 6 | ")
    true = "intro\n<!-- records: seed_5 seed_7 -->\n" + table + "\nafter\n"
    edited = true.replace("| 6 |", "| 7 |", 1)
    assert stale_tables(true, records) == [] and stale_tables(edited, records) == ["seed_5 seed_7"]
    assert fill_tables(edited, records) == true
    path = tmp_path / "experiments.md"
    path.write_text("<!-- records: seed_7 -->\n\ntext after\n")  # a new entry: the marker, its table to come
    assert run_module("pipeline.tools.experiments", "fill", "--experiments", str(path)).returncode == 0
    assert path.read_text() == "<!-- records: seed_7 -->\n" + records_table(records, ["seed_7"]) + "\ntext after\n"
    path.write_text(edited)
    assert_one_line_error(run_module("pipeline.tools.experiments", "check", "--experiments", str(path)),
                          "tables differ from their records: seed_5 seed_7")


def test_an_unknown_record_is_a_one_line_error(records):
    with pytest.raises(PipelineError, match="no ablation record named nope"):
        records_table(records, ["seed_5", "nope"])
    assert_one_line_error(run_module("pipeline.tools.experiments", "table", "nope"), "no ablation record named nope")
