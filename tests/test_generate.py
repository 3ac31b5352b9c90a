import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.core.params import load_params
from pipeline.core.utils import PipelineError
from pipeline.dataset import read_export
from pipeline.generation.sampling import ShardLayout
from tests.conftest import REPO, assert_one_line_error, run_module


def generate(checkpoint, out, *extra):
    return run_module("pipeline.generate", "--checkpoint", str(checkpoint), "--out", str(out), *extra)


def test_generate_writes_exact_counts_manifest_and_card(tmp_path, tiny_checkpoint):
    out = tmp_path / "synthetic"
    result = generate(tiny_checkpoint, out, "--per-class", "7", "--digits", "0,3,9", "--format", "both")
    assert result.returncode == 0, result.stderr
    images, labels = read_export(out)
    assert images.shape == (21, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == [7, 0, 0, 7, 0, 0, 0, 0, 0, 7]
    assert labels[:6].tolist() == [0, 3, 9, 0, 3, 9]  # classes interleaved row by row
    assert sorted(p.name for p in out.iterdir()) == ["0", "3", "9", "README.md", "manifest.json", "part-00000.parquet"]
    assert len(list((out / "3").glob("*.png"))) == 7
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"0": 7, "3": 7, "9": 7} and manifest["total"] == 21 and manifest["seed"] == 3
    scale = load_params(REPO / "params.yaml").generate.latent_scale
    assert manifest["latent_scale"] == scale  # generate.latent_scale in params.yaml
    assert len(manifest["generator_checkpoint"]["sha256"]) == 64
    assert manifest["shards"][0]["file"] == "part-00000.parquet" and len(manifest["shards"][0]["sha256"]) == 64
    assert len(manifest["code_revision"]["source_sha256"]) == 64 and "pipeline.generate" in manifest["code_revision"]["modules"]
    assert manifest["curation"] is None
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["license"] and header["task_categories"] == ["image-classification"]
    assert header["configs"][0]["data_files"][0]["path"] == "part-*.parquet"
    assert [f["name"] for f in header["dataset_info"]["features"]][:2] == ["image", "label"]
    assert "## How it was made" in card and "## Measured quality" in card
    assert f"latent z ~ N(0, {scale:g}² I)" in card


def test_latent_scale_scales_z_and_is_recorded(tmp_path, tiny_checkpoint):
    from pipeline.generation.sampling import LatentStreams

    digits, indices = np.array([0, 3, 3, 9]), np.array([0, 1, 700, 5])
    plain = LatentStreams(7, 16)(digits, indices)
    scaled = LatentStreams(7, 16, scale=0.5)(digits, indices)
    np.testing.assert_allclose(scaled.numpy(), 0.5 * plain.numpy())
    a, b = tmp_path / "a", tmp_path / "b"
    assert generate(tiny_checkpoint, a, "--per-class", "4", "--latent-scale", "1").returncode == 0
    assert generate(tiny_checkpoint, b, "--per-class", "4", "--latent-scale", "0.5").returncode == 0
    assert json.loads((b / "manifest.json").read_text())["latent_scale"] == 0.5
    assert "latent z ~ N(0, I)" in (a / "README.md").read_text()
    images_a, labels_a = read_export(a)
    images_b, labels_b = read_export(b)
    assert (labels_a == labels_b).all() and (images_a != images_b).any(axis=(1, 2)).all()


def test_same_seed_same_bytes_and_digit_subsets_agree(tmp_path, tiny_checkpoint):
    a, b, c, d = (tmp_path / name for name in "abcd")
    assert generate(tiny_checkpoint, a, "--per-class", "5", "--seed", "11").returncode == 0
    assert generate(tiny_checkpoint, b, "--per-class", "5", "--seed", "11").returncode == 0
    assert (a / "part-00000.parquet").read_bytes() == (b / "part-00000.parquet").read_bytes()
    assert generate(tiny_checkpoint, c, "--per-class", "5", "--seed", "12").returncode == 0
    assert (a / "part-00000.parquet").read_bytes() != (c / "part-00000.parquet").read_bytes()
    # Digit 3 alone gives the same images as digit 3 within the full run.
    assert generate(tiny_checkpoint, d, "--per-class", "5", "--seed", "11", "--digits", "3").returncode == 0
    full_images, full_labels = read_export(a)
    only_images, _ = read_export(d)
    np.testing.assert_array_equal(only_images, full_images[full_labels == 3])


def test_shards_are_bounded_and_each_can_be_made_alone(tmp_path, tiny_checkpoint):
    full = tmp_path / "full"
    assert generate(tiny_checkpoint, full, "--per-class", "25", "--shard-size", "100").returncode == 0
    names = sorted(p.name for p in full.glob("part-*.parquet"))
    assert names == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [pq.ParquetFile(full / n).metadata.num_rows for n in names] == [84, 84, 82]  # 250 rows in 3 shards
    manifest = json.loads((full / "manifest.json").read_text())
    assert [s["file"] for s in manifest["shards"]] == names
    for shard in (2, 0):
        alone = tmp_path / f"alone-{shard}"
        result = generate(tiny_checkpoint, alone, "--per-class", "25", "--num-shards", "3", "--shard-index", str(shard))
        assert result.returncode == 0, result.stderr
        assert [p.name for p in alone.glob("part-*.parquet")] == [names[shard]]
        assert (alone / names[shard]).read_bytes() == (full / names[shard]).read_bytes()
        assert json.loads((alone / "manifest.json").read_text())["shards"][0]["sha256"] == manifest["shards"][shard]["sha256"]


def test_shard_layout_covers_every_row_once():
    layout = ShardLayout((0, 3, 9), per_class=7, num_shards=4)
    rows = [r for s in range(4) for r in layout.shard_rows(s)]
    assert rows == list(range(21))
    labels, indices = layout.labels_and_indices(range(21))
    assert sorted(zip(labels.tolist(), indices.tolist())) == [(d, i) for d in (0, 3, 9) for i in range(7)]
    with pytest.raises(PipelineError, match="--shard-index"):
        layout.shard_rows(4)
    with pytest.raises(PipelineError, match="--num-shards"):
        ShardLayout((1,), per_class=2, num_shards=3)


def test_curated_export_keeps_counts_and_stores_judge_columns(tmp_path):
    """With the committed generator and judge: every kept image reaches the threshold, counts stay exact."""
    out = tmp_path / "curated"
    result = generate(REPO / "models/generator.pt", out, "--per-class", "20", "--min-confidence", "0.999",
                      "--judge", str(REPO / "models/judge.pt"))
    assert result.returncode == 0, result.stderr
    table = pq.read_table(out / "part-00000.parquet")
    assert np.bincount(table.column("label").to_numpy()).tolist() == [20] * 10
    assert (table.column("judge_label").to_numpy() == table.column("label").to_numpy()).all()
    assert table.column("judge_confidence").to_numpy().min() >= 0.999
    manifest = json.loads((out / "manifest.json").read_text())
    curation = manifest["curation"]
    assert curation["min_confidence"] == 0.999 and curation["draws"] > 200  # some images were rejected
    assert 0 < curation["acceptance_rate"]["overall"] < 1
    assert "Curated" in (out / "README.md").read_text()
    # The stored confidence is what the judge gives the stored pixels.
    from pipeline.generation.sampling import judge_images
    from pipeline.training.checkpoints import load_classifier

    images, _ = read_export(out)
    probs, _ = judge_images(load_classifier(REPO / "models/judge.pt"), images)
    np.testing.assert_allclose(probs.max(1), table.column("judge_confidence").to_numpy(), atol=1e-5)


def test_kill_9_leaves_nothing_that_looks_finished_and_next_run_succeeds(tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "pipeline.generate", "--checkpoint", str(tiny_checkpoint),
                                "--out", str(out), "--per-class", "50000", "--shard-size", "20000"],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".out.tmp-*/part-00001.parquet")):
        time.sleep(0.2)
    assert list(tmp_path.glob(".out.tmp-*/part-00001.parquet")), "the export never got to its second shard"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()
    assert generate(tiny_checkpoint, out, "--per-class", "3").returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the killed run's folder was removed
    assert read_export(out)[1].tolist() == list(range(10)) * 3


@pytest.mark.parametrize("args, fragment", [
    (["--per-class", "0"], "--per-class"),
    (["--per-class", "-3"], "--per-class"),
    (["--per-class", "abc"], "--per-class"),
    (["--per-class", "100000000000"], "GB free"),
    (["--digits", "12"], "'12' is not a digit"),
    (["--digits", "3,x"], "'x' is not a digit"),
    (["--digits", "3,3"], "listed twice"),
    (["--format", "zip"], "--format"),
    (["--num-shards", "3", "--shard-index", "3"], "--shard-index must be in 0..2"),
    (["--per-class", "1", "--num-shards", "11"], "--num-shards must be in 1..10"),
    (["--min-confidence", "1.5"], "--min-confidence"),
    (["--latent-scale", "0"], "--latent-scale"),
])
def test_bad_arguments_give_one_line_error(tmp_path, tiny_checkpoint, args, fragment):
    out = tmp_path / "out"
    result = generate(tiny_checkpoint, out, *args)
    assert_one_line_error(result, fragment)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_missing_corrupt_and_wrong_kind_of_checkpoint(tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    assert_one_line_error(generate(tmp_path / "nope.pt", out, "--per-class", "2"), "not found")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(tiny_checkpoint.read_bytes()[:500])
    assert_one_line_error(generate(corrupt, out, "--per-class", "2"), "corrupt.pt")
    assert_one_line_error(generate(REPO / "models/judge.pt", out, "--per-class", "2"), "not a generator checkpoint")
    assert not out.exists()


def test_unwritable_destination(tmp_path, tiny_checkpoint):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = generate(tiny_checkpoint, blocker / "out", "--per-class", "2")
    assert_one_line_error(result, "a-file")
    assert blocker.read_text() == "x"


def test_existing_destination_needs_overwrite(tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_one_line_error(generate(tiny_checkpoint, out, "--per-class", "2"), "--overwrite")
    assert (out / "keep.txt").read_text() == "mine"
    assert generate(tiny_checkpoint, out, "--per-class", "2", "--overwrite").returncode == 0
    assert not (out / "keep.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left behind


def test_help_explains_options():
    result = run_module("pipeline.generate", "--help")
    assert result.returncode == 0
    for option in ("--per-class", "--digits", "--seed", "--out", "--format", "--checkpoint", "--min-confidence",
                   "--shard-index", "--num-shards", "--shard-size", "--overwrite"):
        assert option in result.stdout
