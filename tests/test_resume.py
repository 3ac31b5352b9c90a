"""The train_cgan stage, killed with SIGKILL mid-run, resumes and ends with the same bytes as a straight run."""

import json
import os
import signal
import subprocess
import sys
import time

import torch

from tests.conftest import REPO

TINY_CGAN_EPOCHS = 4  # as set by the tiny_project fixture


def _cmd(tmp_path, run):
    return [sys.executable, "-m", "pipeline.train_cgan", "--params", str(tmp_path / "params.yaml"),
            "--data", str(tmp_path / "mnist.npz"), "--model-out", str(tmp_path / run / "generator.pt"),
            "--metrics", str(tmp_path / run / "cgan.json"), "--live-dir", str(tmp_path / run / "live"),
            "--grid-dir", str(tmp_path / run / "grids"), "--state", str(tmp_path / run / "state.pt"), "--device", "cpu"]


def test_killed_training_resumes_to_the_same_generator(tiny_project):
    tmp_path = tiny_project
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    straight = subprocess.run(_cmd(tmp_path, "straight"), env=env, capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr

    state = tmp_path / "killed" / "state.pt"
    proc = subprocess.Popen(_cmd(tmp_path, "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists() and not (tmp_path / "killed" / "generator.pt").exists()
    killed_at = torch.load(state, weights_only=True)["epoch"]
    assert 1 <= killed_at < TINY_CGAN_EPOCHS

    resumed = subprocess.run(_cmd(tmp_path, "killed"), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming cGAN training after epoch {killed_at}" in resumed.stderr
    assert json.loads((tmp_path / "killed" / "cgan.json").read_text())["resumed_after_epoch"] == killed_at
    assert not state.exists()  # deleted once the generator checkpoint is written
    a = torch.load(tmp_path / "straight" / "generator.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "killed" / "generator.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    d_loss = (tmp_path / "killed" / "live" / "plots" / "metrics" / "d_loss.tsv").read_text().strip().splitlines()
    assert len(d_loss) == 1 + TINY_CGAN_EPOCHS  # header + one row per epoch, replayed from the state
    assert len(list((tmp_path / "killed" / "grids").glob("epoch_*.png"))) == TINY_CGAN_EPOCHS
