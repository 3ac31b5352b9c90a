"""Shared fixtures: a tiny untrained generator checkpoint, the MNIST folder, CLI runner."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.core.params import load_params
from pipeline.training.checkpoints import model_checkpoint
from pipeline.training.networks import Generator, GeneratorConfig

REPO = Path(__file__).resolve().parents[1]


def run_module(module: str, *args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m <module> args`` as a user would; returns the completed process (text output)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          cwd=cwd or REPO, env=full_env, timeout=600)


def readme_python(marker: str) -> str:
    """The README's Python block right after ``<!-- marker -->`` (examples that tests run as they are)."""
    readme = (REPO / "README.md").read_text()
    return re.search(rf"<!-- {marker} -->\n```python\n(.*?)```", readme, re.S).group(1)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Non-zero exit, no traceback, and the last stderr line is an ``Error:`` line naming the fragments."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("Error: "), result.stderr
    errors = [line for line in lines if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])


@pytest.fixture(scope="session")
def params():
    return load_params(REPO / "params.yaml")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, params) -> Path:
    """An untrained generator of the default architecture, saved as the pipeline saves it."""
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(z_dim=params.train_cgan.z_dim, width=16)).eval()
    path = tmp_path_factory.mktemp("ckpt") / "generator.pt"
    torch.save(model_checkpoint("generator", generator, params.train_cgan, epoch=0), path)
    return path


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder of the four official MNIST files ($MNIST_DIR); tests that need it skip without it."""
    folder = os.environ.get("MNIST_DIR")
    if not folder or not Path(folder).is_dir():
        pytest.skip("MNIST_DIR is not set to the MNIST folder (.ci/run sets it)")
    return Path(folder).resolve()


@pytest.fixture
def tiny_project(tmp_path, params) -> Path:
    """``tmp_path`` with a random-pixel ``mnist.npz`` (1,600 train / 20 val / 20 test) and a
    ``params.yaml`` whose cGAN is tiny, for stage runs that must finish in seconds."""
    import numpy as np
    import yaml

    from pipeline.data.splits import Splits, save_splits

    rng = np.random.default_rng(0)
    images = lambda n: rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)  # noqa: E731
    labels = lambda n: np.arange(n) % 10  # noqa: E731
    save_splits(Splits(images(1600), labels(1600), images(20), labels(20), images(20), labels(20)),
                tmp_path / "mnist.npz")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["train_cgan"].update({"g_width": 16, "d_width": 8, "epochs": 4, "batch_size": 16, "max_train_images": 0})
    raw["train_judge"].update({"width": 4})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    return tmp_path
