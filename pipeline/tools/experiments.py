"""Tables of ablation records for ``reports/experiments.md``, and the check that keeps its tables true.

``python -m pipeline.tools.experiments table NAME [NAME ...]`` prints the Markdown table of the named records
(``reports/ablation/<NAME>.json``): each run's difference from its own baseline and its validation figures
at its last epoch. In ``reports/experiments.md`` every such table follows a line
``<!-- records: NAME NAME ... -->``; ``python -m pipeline.tools.experiments fill`` writes them, and
``python -m pipeline.tools.experiments check`` (and a test) fails when a table differs from what the records give,
so the write-up cannot drift from its records.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import click

from pipeline.core.cli import run, user_errors
from pipeline.core.utils import PipelineError, atomic_path
from pipeline.reporting.levers import ABLATION_COLUMNS, ablation_rows
from pipeline.reporting.records import read_ablation_records

log = logging.getLogger("pipeline.tools.experiments")
#: The figures an experiments table shows, in order (keys of ABLATION_COLUMNS).
FIGURES = ("tstr_val", "tstr_proxy_val", "fid_val", "class_conditional_accuracy", "worst_digit_accuracy",
           "recall_val", "coverage_val")
#: A marker line and the table rows under it (none yet: a new entry whose table ``fill`` will write).
MARKER = re.compile(r"<!-- records: ([^>]*?) -->\n((?:\|.*\n)*)")


def records_table(records: list[dict], names: list[str]) -> str:
    """Markdown table (with a trailing newline) of the records called ``names``, in that order: run, difference
    from its baseline record, epoch, :data:`FIGURES` at the last epoch ("" where not measured), train seconds;
    the cells are :func:`pipeline.reporting.sections.ablation_rows`'.

    Raises:
        PipelineError: a name is not among ``records``.
    """
    by_name = {r["name"]: r for r in records}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise PipelineError(f"no ablation record named {', '.join(missing)}")
    head = ["run", "difference from its baseline", "epoch", *(ABLATION_COLUMNS[k][0] for k in FIGURES), "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in ablation_rows([by_name[name] for name in names]):
        difference = f"{row['difference']} (vs {row['baseline']})" if row["baseline"] != "—" else "(a baseline)"
        cells = [row["name"], difference, str(row["epoch"]), *(row["figures"][k] for k in FIGURES), row["seconds"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fill_tables(text: str, records: list[dict]) -> str:
    """``text`` with every ``<!-- records: ... -->`` table replaced by :func:`records_table`'s (a marker followed by
    a blank line gets its table inserted)."""
    return MARKER.sub(lambda m: f"<!-- records: {m.group(1)} -->\n" + records_table(records, m.group(1).split()), text)


def stale_tables(text: str, records: list[dict]) -> list[str]:
    """The ``<!-- records: ... -->`` tables of ``text`` that differ from :func:`records_table`, as the marker
    lines' record lists; ``[]`` when every table is true."""
    return [match.group(1) for match in MARKER.finditer(text)
            if match.group(2) != records_table(records, match.group(1).split())]


@click.group(help=__doc__, invoke_without_command=True)
@click.pass_context
def main(ctx: click.Context) -> None:
    if ctx.invoked_subcommand is None:  # as `git` without a command: the help, not an error
        click.echo(ctx.get_help())


@main.command(help="Print the Markdown table of the named ablation records.")
@click.argument("names", nargs=-1, required=True)
@click.option("--ablation-dir", default="reports/ablation", show_default=True, help="Folder of the records.")
def table(names, ablation_dir) -> None:
    with user_errors():
        sys.stdout.write(records_table(read_ablation_records(ablation_dir), list(names)))


def _write_up_options(command):
    """The options of ``fill`` and ``check``: the write-up and the folder of its records."""
    command = click.option("--ablation-dir", default="reports/ablation", show_default=True,
                           help="Folder of the records.")(command)
    return click.option("--experiments", default="reports/experiments.md", show_default=True,
                        help="The write-up.")(command)


@main.command(help="Rewrite every records table of the write-up from its records.")
@_write_up_options
def fill(experiments, ablation_dir) -> None:
    with user_errors():
        text = Path(experiments).read_text()
        with atomic_path(experiments) as tmp:
            tmp.write_text(fill_tables(text, read_ablation_records(ablation_dir)))


@main.command(help="Fail when a records table in the write-up differs from its records.")
@_write_up_options
def check(experiments, ablation_dir) -> None:
    with user_errors():
        text = Path(experiments).read_text()
        stale = stale_tables(text, read_ablation_records(ablation_dir))
        if stale:
            raise PipelineError(f"{experiments}: tables differ from their records: {'; '.join(stale)}")
        log.info("%s: %d tables match their records", experiments, len(MARKER.findall(text)))


if __name__ == "__main__":
    run(main)
