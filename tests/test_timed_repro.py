"""pipeline.tools.timed_repro runs dvc.yaml's stage commands in order, times them and copies their metrics."""

import json
import subprocess
import sys

import yaml

from pipeline.tools.timed_repro import stage_commands
from tests.conftest import REPO

WRITE = "import json, sys; json.dump({{'stage': '{name}'}}, open('{path}', 'w'))"


def timed_repro(cwd, *args):
    return subprocess.run([sys.executable, "-m", "pipeline.tools.timed_repro", *args], cwd=cwd, capture_output=True,
                          text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def write_dvc_yaml(tmp_path, stages):
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))


def test_runs_the_stages_in_order_times_them_and_copies_their_metrics(tmp_path):
    write_dvc_yaml(tmp_path, {
        "first": {"cmd": f'python -c "{WRITE.format(name="first", path="a.json")}"', "metrics": [{"a.json": {"cache": False}}]},
        "second": {"cmd": f'python -c "import json; assert json.load(open(\'a.json\'))[\'stage\'] == \'first\'; '
                          f'{WRITE.format(name="second", path="b.json")}"', "metrics": ["b.json"]},
        "not_asked": {"cmd": "python -c 'raise SystemExit(3)'"},
    })
    result = timed_repro(tmp_path, "--out", "gpu", "--stages", "first,second")
    assert result.returncode == 0, result.stderr
    timings = json.loads((tmp_path / "gpu/stage_seconds.json").read_text())
    assert list(timings["stages"]) == ["first", "second"]
    assert timings["order"] == ["first", "second"]  # the JSON's keys are sorted
    assert all(t["wall_seconds"] >= 0 for t in timings["stages"].values())
    assert timings["stages"]["first"]["cmd"].startswith("-c ")
    assert timings["machine"]["device"] in ("cpu", "cuda")
    assert json.loads((tmp_path / "gpu/metrics/b.json").read_text()) == {"stage": "second"}
    assert json.loads((tmp_path / "gpu/metrics/a.json").read_text()) == {"stage": "first"}


def test_a_failing_stage_or_an_unknown_one_is_a_one_line_error(tmp_path):
    write_dvc_yaml(tmp_path, {"fails": {"cmd": "python -c 'raise SystemExit(3)'"}})
    failed = timed_repro(tmp_path, "--out", "gpu", "--stages", "fails")
    assert failed.returncode == 1 and "stage fails failed (exit 3)" in failed.stderr
    assert not (tmp_path / "gpu/stage_seconds.json").exists()
    unknown = timed_repro(tmp_path, "--out", "gpu", "--stages", "nope")
    assert unknown.returncode == 1 and "no stage 'nope'" in unknown.stderr
    assert unknown.stderr.count("\n") == 1 and "Traceback" not in unknown.stderr
    write_dvc_yaml(tmp_path, {"cell": {"matrix": {"seed": [0, 1]}, "cmd": "python -c 'print(${item.seed})'"}})
    templated = timed_repro(tmp_path, "--out", "gpu", "--stages", "cell")
    assert templated.returncode == 1 and "stage 'cell' is templated" in templated.stderr


def test_the_json_outputs_under_reports_metrics_are_copied_too():
    commands = stage_commands(REPO / "dvc.yaml", ["prepare", "train_judge", "evaluate"])
    assert commands["prepare"]["metrics"] == ["reports/metrics/prepare.json"]
    assert commands["train_judge"]["metrics"] == ["reports/metrics/judge.json"]
    assert commands["evaluate"]["metrics"] == ["reports/metrics/quality.json", "reports/metrics/downstream.json"]
