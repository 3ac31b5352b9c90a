"""One tiny end-to-end `dvc repro` on a small slice of real MNIST, in a temporary copy of the project."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.dataset import read_export
from tests.conftest import REPO, assert_one_line_error, run_module

TINY = {
    "prepare": {"val_size": 200, "subset_per_class": 60},
    "train_judge": {"width": 8, "epochs": 2, "batch_size": 64},
    "train_referee": {"width": 4, "epochs": 1, "batch_size": 64},
    "train_cgan": {"g_width": 16, "d_width": 8, "epochs": 2, "batch_size": 64, "max_train_images": 400},
    "generate": {"per_class": 30},
    "evaluate": {"fid_samples": 200, "diversity_per_class": 20, "synthetic_train_size": 300},
    "study": {"budgets": [5, 0], "seeds": [0, 1], "val_size": 50, "classifier_width": 4,
                           "classifier_steps": {5: 5, 0: 5}, "batch_size": 16, "gan_steps": 3, "gan_g_width": 8, "gan_d_width": 8,
                           "max_synthetic_per_class": 20},
}


def sh(*args, cwd, env):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_tiny_dvc_repro(tmp_path, mnist_dir):
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pipeline", "dvc.yaml", "params.yaml", ".dvc/config", ".dvcignore", ".gitignore", "reports/ablation",
                 "reports/gpu", "reports/metrics/benchmark.json"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, project / name)
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "MNIST_DIR": str(mnist_dir), "DVC_NO_ANALYTICS": "1", "TQDM_DISABLE": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    sh("git", "init", "-q", cwd=project, env=env)
    sh("git", "add", "-A", cwd=project, env=env)
    sh("git", "commit", "-qm", "tiny", cwd=project, env=env)
    sh(sys.executable, "-m", "dvc", "repro", cwd=project, env=env)

    classifier = json.loads((project / "reports/metrics/judge.json").read_text())
    assert 0.0 <= classifier["test_accuracy"] <= 1.0 and set(classifier["per_class_accuracy"]) == set(map(str, range(10)))
    quality = json.loads((project / "reports/metrics/quality.json").read_text())
    for key in ("class_conditional_accuracy", "per_class_accuracy", "fid", "fid_real_floor", "diversity", "wall_seconds",
                "precision", "recall", "density", "coverage", "recall_real_reference", "coverage_real_reference"):
        assert key in quality
    assert 0.0 <= quality["memorization"]["share_closer_than_heldout"] <= 1.0
    assert (project / "reports/figures/memorization_closest_pairs.png").stat().st_size > 0
    augmentation = json.loads((project / "reports/metrics/downstream.json").read_text())
    assert augmentation["augmentation_gain"] == pytest.approx(
        augmentation["real_plus_synthetic_accuracy"] - augmentation["real_only_accuracy"])
    for run in augmentation["runs"].values():  # per digit: the test images of each digit, 10 digits
        assert set(run["test_accuracy_per_digit"]) == set(map(str, range(10)))
        assert sum(c["count"] for c in run["test_confusions"]) <= round((1 - run["test_accuracy"]) * 10000)
    real_only = augmentation["runs"]["real_only"]
    assert real_only["test_accuracy_per_digit"] == pytest.approx(classifier["per_class_accuracy"])
    seed = params["train_judge"]["seed"]  # evaluate.tstr_seeds: 2, the repo's default
    assert augmentation["tstr_classifier_seeds"] == [seed, seed + 1]
    tstr_runs = augmentation["runs"]["tstr"], augmentation["runs"][f"tstr_seed_{seed + 1}"]
    assert augmentation["tstr_accuracy_seeds"] == [run["test_accuracy"] for run in tstr_runs]
    assert augmentation["tstr_accuracy_mean"] == pytest.approx(sum(run["test_accuracy"] for run in tstr_runs) / 2)
    stream_runs = augmentation["runs"]["tstr_stream"], augmentation["runs"][f"tstr_stream_seed_{seed + 1}"]
    assert augmentation["tstr_stream_accuracy_seeds"] == [run["test_accuracy"] for run in stream_runs]
    assert augmentation["tstr_stream_accuracy_mean"] == pytest.approx(sum(augmentation["tstr_stream_accuracy_seeds"]) / 2)
    assert augmentation["stream"]["seed"] == params["evaluate"]["stream_seed"]
    # every epoch draws a new set of synthetic_train_size (300) images: the judge's steps span several
    assert all(run["synthetic_images_drawn"] % 300 == 0 and run["synthetic_images_drawn"] > 300 for run in stream_runs)
    assert augmentation["stream_augmentation_gain"] == pytest.approx(
        augmentation["real_plus_stream_accuracy"] - augmentation["real_only_accuracy"])
    images, labels = read_export(project / "data/synthetic")
    assert np.bincount(labels).tolist() == [30] * 10
    assert quality["evaluation_classifier"]["role"] == "judge" and quality["curation"] is None
    assert json.loads((project / "reports/metrics/referee.json").read_text())["seed"] == params["train_referee"]["seed"]
    study = json.loads((project / "reports/metrics/study.json").read_text())
    assert set(study["budgets"]) == {"5", "all"} and study["seeds"] == [0, 1]
    assert study["budgets"]["5"]["test_accuracy"]["real_synthetic"]["n"] == 2
    assert sorted(p.name for p in (project / "reports/study/cells").iterdir()) == [
        "b0-s0.json", "b0-s1.json", "b5-s0.json", "b5-s1.json"]
    assert (project / "reports/figures/study.png").stat().st_size > 0
    report = (project / "reports/report.md").read_text()
    assert "## Augmentation study" in report and "beyond classical augmentation at b = 5" in report
    assert report.count("|") > 20 and "## Ablation" in report and "coverage" in report
    assert "computed with the judge" in report and "not curated" in report
    assert "| TSTR on real test | TSTR − judge |" in report and "The TSTR classifier's most frequent errors" in report
    assert "## The default pipeline on a GPU" in report and "How the GPU run was timed" in report
    for figure in ("samples.png", "training_curves.png", "cgan_epochs/epoch_002.png"):
        assert (project / "reports/figures" / figure).stat().st_size > 0
    assert (project / "reports/live/cgan/plots/metrics/d_loss.tsv").read_text().count("\n") == 3
    # Nothing to do on a second run: the pipeline is fully cached.
    status = sh(sys.executable, "-m", "dvc", "status", cwd=project, env=env)
    assert "up to date" in status.stdout
    assert "| lever | runs | best run |" in report and (project / "reports/ablation.md").read_text().count("\n| ") > 10
    # `dvc metrics show` holds the headline scalars only: readable, and `dvc metrics diff` with it.
    shown = json.loads(sh(sys.executable, "-m", "dvc", "metrics", "show", "--json", cwd=project, env=env).stdout)
    metrics = {path: data["data"] for path, data in next(iter(shown.values()))["data"].items()}
    assert list(metrics) == ["reports/metrics/headline.json"]
    numbers = count_numbers(metrics)
    assert 20 <= numbers <= 40
    headline = metrics["reports/metrics/headline.json"]
    assert headline["synthetic"]["class_conditional_accuracy"] == quality["class_conditional_accuracy"]
    assert headline["synthetic"]["tstr_accuracy_mean"] == augmentation["tstr_accuracy_mean"]
    assert set(headline["study"]["synthetic_beyond_classical"]) == {"b5", "all"}
    # evaluate refuses, in one line, an export whose manifest predates the latent scale and another generator
    old_export = tmp_path / "old_export"
    shutil.copytree(project / "data/synthetic", old_export)
    manifest = json.loads((old_export / "manifest.json").read_text())
    del manifest["latent_scale"]
    (old_export / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(run_module("pipeline.evaluate", "--synthetic", str(old_export), cwd=project),
                          "has no latent_scale")
    assert_one_line_error(run_module("pipeline.evaluate", "--checkpoint", "models/judge.pt", cwd=project),
                          "is not the generator that made")


def count_numbers(tree) -> int:
    """Numbers (not booleans) in a nested JSON value."""
    if isinstance(tree, dict):
        return sum(count_numbers(v) for v in tree.values())
    if isinstance(tree, list):
        return sum(count_numbers(v) for v in tree)
    return int(isinstance(tree, (int, float)) and not isinstance(tree, bool))
