"""Run the default pipeline's stages as dvc.yaml writes them, in order, and time each one -> JSON.

\b
``python -m pipeline.tools.timed_repro --out reports/gpu`` runs prepare, train_judge, train_referee,
train_cgan, generate and evaluate: each stage's ``cmd`` from dvc.yaml, verbatim, with this Python and
without DVC (no cache, so every stage runs). Then it writes ``<out>/stage_seconds.json`` (wall seconds of
each stage's process, the command, the order they ran in, the machine: ``pipeline.core.machine.machine_info``)
and copies the metrics JSONs dvc.yaml names for those stages to ``<out>/metrics/``.
``reports/gpu`` holds such a run on an H100 GPU: the stages take a GPU through their
``--device auto`` default (generate samples on the CPU, its default, so that exports are bit-reproducible).
Study cells (CPU only) and the report are not run.
The stages write where dvc.yaml says, replacing the checkout's models/, data/ and reports/metrics/:
run it in a scratch clone.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click
import yaml

from pipeline.core.cli import run, user_errors
from pipeline.core.machine import machine_info
from pipeline.core.utils import PipelineError, atomic_path, get_device, write_json

log = logging.getLogger("pipeline.tools.timed_repro")

DEFAULT_STAGES = "prepare,train_judge,train_referee,train_cgan,generate,evaluate"


def _paths(stage: dict, key: str) -> list[str]:
    """The paths of a dvc.yaml stage's ``outs`` or ``metrics`` list (an entry is a path or ``{path: options}``)."""
    return [next(iter(o)) if isinstance(o, dict) else o for o in stage.get(key, [])]


def stage_commands(dvc_yaml: str | Path, names: list[str]) -> dict[str, dict]:
    """``{stage: {"argv": [...], "metrics": [paths]}}`` for ``names``, in that order, read from ``dvc_yaml``.

    ``argv`` is the stage's ``cmd`` split as a shell would (``shlex``), its leading ``python`` replaced by
    this interpreter; ``metrics`` are the stage's JSON outputs under ``reports/metrics/`` (plain ``outs``;
    ``metrics`` entries count too).
    Raises:
        PipelineError: the file is unreadable, a name is not a stage, or a stage has no plain ``cmd``
            (templated stages, ``matrix`` / ``foreach`` or ``${...}`` in the command, need DVC to expand them).
    """
    try:
        stages = yaml.safe_load(Path(dvc_yaml).read_text())["stages"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        raise PipelineError(f"{dvc_yaml}: not a readable dvc.yaml with stages ({error})") from None
    out = {}
    for name in names:
        if name not in stages or not isinstance(stages[name].get("cmd"), str):
            raise PipelineError(f"{dvc_yaml}: no stage {name!r} with a plain cmd (stages: {', '.join(stages)})")
        if "${" in stages[name]["cmd"]:
            raise PipelineError(f"{dvc_yaml}: stage {name!r} is templated (matrix, foreach or ${{...}}): "
                                "run it with dvc repro")
        argv = shlex.split(stages[name]["cmd"])
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        json_outs = [o for o in _paths(stages[name], "outs")
                     if o.startswith("reports/metrics/") and o.endswith(".json")]
        metrics = _paths(stages[name], "metrics") + json_outs
        out[name] = {"argv": argv, "metrics": metrics}
    return out


@click.command(help=__doc__)
@click.option("--out", required=True, help="Folder for stage_seconds.json and metrics/ (e.g. reports/gpu).")
@click.option("--stages", default=DEFAULT_STAGES, show_default=True, help="Comma-separated stages, run in this order.")
@click.option("--dvc-yaml", default="dvc.yaml", show_default=True, help="Where the stage commands are read.")
def main(out, stages, dvc_yaml) -> None:
    with user_errors():
        commands = stage_commands(dvc_yaml, [s.strip() for s in stages.split(",") if s.strip()])
        out_dir = Path(out)
        timings = {}
        for name, stage in commands.items():
            log.info("stage %s: %s", name, shlex.join(stage["argv"][1:]))
            start = time.perf_counter()
            returncode = subprocess.run(stage["argv"]).returncode
            if returncode:
                raise PipelineError(f"stage {name} failed (exit {returncode}); the stages before it ran")
            timings[name] = {"wall_seconds": round(time.perf_counter() - start, 1), "cmd": shlex.join(stage["argv"][1:])}
        (out_dir / "metrics").mkdir(parents=True, exist_ok=True)
        for stage in commands.values():
            for path in stage["metrics"]:
                with atomic_path(out_dir / "metrics" / Path(path).name) as tmp:
                    shutil.copy(path, tmp)
        write_json(out_dir / "stage_seconds.json", {
            "stages": timings, "order": list(timings), "total_seconds": round(sum(t["wall_seconds"] for t in timings.values()), 1),
            "machine": machine_info(get_device("auto")),
            "note": "each stage's whole process (imports, data loading, writing) as dvc.yaml runs it"})
        log.info("wrote %s", out_dir / "stage_seconds.json")


if __name__ == "__main__":
    run(main)
