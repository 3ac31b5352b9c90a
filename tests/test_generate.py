import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.export import PARQUET_NAME, read_parquet_images
from tests.conftest import assert_one_line_error, run_module


def generate(tmp_path, checkpoint, out, *extra):
    return run_module("pipeline.generate", "--checkpoint", str(checkpoint), "--out", str(out), *extra)


def test_generate_writes_exact_counts_and_manifest(tmp_path, tiny_checkpoint):
    out = tmp_path / "synthetic"
    result = generate(tmp_path, tiny_checkpoint, out, "--per-class", "7", "--digits", "0,3,9", "--format", "both")
    assert result.returncode == 0, result.stderr
    images, labels = read_parquet_images(out / PARQUET_NAME)
    assert images.shape == (21, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == [7, 0, 0, 7, 0, 0, 0, 0, 0, 7]
    assert sorted(p.name for p in out.iterdir()) == ["0", "3", "9", "manifest.json", PARQUET_NAME]
    assert len(list((out / "3").glob("*.png"))) == 7
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"0": 7, "3": 7, "9": 7}
    assert len(manifest["generator_checkpoint"]["sha256"]) == 64
    table = pq.read_table(out / PARQUET_NAME)
    assert table.column("index").to_pylist()[:7] == list(range(7))


def test_same_seed_same_bytes_and_digit_subsets_agree(tmp_path, tiny_checkpoint):
    a, b, c, d = (tmp_path / name for name in "abcd")
    assert generate(tmp_path, tiny_checkpoint, a, "--per-class", "5", "--seed", "11").returncode == 0
    assert generate(tmp_path, tiny_checkpoint, b, "--per-class", "5", "--seed", "11").returncode == 0
    assert (a / PARQUET_NAME).read_bytes() == (b / PARQUET_NAME).read_bytes()
    assert generate(tmp_path, tiny_checkpoint, c, "--per-class", "5", "--seed", "12").returncode == 0
    assert (a / PARQUET_NAME).read_bytes() != (c / PARQUET_NAME).read_bytes()
    # Digit 3 alone gives the same images as digit 3 within the full run.
    assert generate(tmp_path, tiny_checkpoint, d, "--per-class", "5", "--seed", "11", "--digits", "3").returncode == 0
    full_images, full_labels = read_parquet_images(a / PARQUET_NAME)
    only_images, _ = read_parquet_images(d / PARQUET_NAME)
    np.testing.assert_array_equal(only_images, full_images[full_labels == 3])


@pytest.mark.parametrize("args, fragment", [
    (["--per-class", "0"], "--per-class"),
    (["--per-class", "-3"], "--per-class"),
    (["--per-class", "abc"], "--per-class"),
    (["--digits", "12"], "'12' is not a digit"),
    (["--digits", "3,x"], "'x' is not a digit"),
    (["--format", "zip"], "--format"),
])
def test_bad_arguments_give_one_line_error(tmp_path, tiny_checkpoint, args, fragment):
    out = tmp_path / "out"
    result = generate(tmp_path, tiny_checkpoint, out, *args)
    assert_one_line_error(result, fragment)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_missing_and_corrupt_checkpoint(tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    assert_one_line_error(generate(tmp_path, tmp_path / "nope.pt", out, "--per-class", "2"), "not found")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(tiny_checkpoint.read_bytes()[:500])
    assert_one_line_error(generate(tmp_path, corrupt, out, "--per-class", "2"), "corrupt.pt")
    assert not out.exists()


def test_unwritable_destination(tmp_path, tiny_checkpoint):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = generate(tmp_path, tiny_checkpoint, blocker / "out", "--per-class", "2")
    assert_one_line_error(result, "a-file")
    assert blocker.read_text() == "x"


def test_existing_destination_needs_overwrite(tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_one_line_error(generate(tmp_path, tiny_checkpoint, out, "--per-class", "2"), "--overwrite")
    assert (out / "keep.txt").read_text() == "mine"
    assert generate(tmp_path, tiny_checkpoint, out, "--per-class", "2", "--overwrite").returncode == 0
    assert not (out / "keep.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left behind


def test_help_explains_options():
    result = run_module("pipeline.generate", "--help")
    assert result.returncode == 0
    for option in ("--per-class", "--digits", "--seed", "--out", "--format", "--checkpoint"):
        assert option in result.stdout
