"""A real export (the committed generator, 3 shards, Parquet + image folder) read as is by every common
loader, the project's Dataset in a multi-worker DataLoader, the README's training example, and the
one-line errors for corrupt or truncated shards."""

import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from pipeline.dataset import ExportError, SyntheticDigits, read_export
from tests.conftest import REPO, assert_one_line_error, readme_python, run_module

PER_CLASS = 30


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    out = root / "data" / "generated"
    result = run_module("pipeline.generate", "--checkpoint", str(REPO / "models/generator.pt"), "--out", str(out),
                        "--per-class", str(PER_CLASS), "--shard-size", "120", "--format", "both")
    assert result.returncode == 0, result.stderr
    return out


def shards(out):
    return sorted(glob.glob(str(out / "part-*.parquet")))


def test_huggingface_datasets_reads_image_and_classlabel(export, tmp_path):
    import datasets

    assert len(shards(export)) == 3
    ds = datasets.load_dataset("parquet", data_files=shards(export), split="train", cache_dir=str(tmp_path / "hf"))
    assert isinstance(ds.features["image"], datasets.Image)
    assert isinstance(ds.features["label"], datasets.ClassLabel) and ds.features["label"].names[4] == "4"
    assert len(ds) == 10 * PER_CLASS
    images, labels = read_export(export)
    assert ds[123]["label"] == labels[123]
    np.testing.assert_array_equal(np.asarray(ds[123]["image"]), images[123])
    # The folder itself, through the dataset card's configs.
    card_ds = datasets.load_dataset(str(export), split="train", cache_dir=str(tmp_path / "hf2"))
    assert len(card_ds) == 10 * PER_CLASS and isinstance(card_ds.features["label"], datasets.ClassLabel)


def test_pandas_and_pyarrow_dataset(export):
    import pandas as pd
    import pyarrow.dataset

    df = pd.read_parquet(shards(export))
    assert len(df) == 10 * PER_CLASS and df.label.value_counts().to_dict() == dict.fromkeys(range(10), PER_CLASS)
    assert df.image[0]["bytes"][:8] == b"\x89PNG\r\n\x1a\n"
    table = pyarrow.dataset.dataset(shards(export), format="parquet").to_table(columns=["label", "index"])
    assert table.num_rows == 10 * PER_CLASS


def test_torchvision_imagefolder_grayscale(export):
    from torchvision import datasets as tvd
    from torchvision import transforms

    folder = tvd.ImageFolder(export, transform=transforms.Compose([transforms.Grayscale(), transforms.ToTensor()]))
    assert folder.classes == [str(d) for d in range(10)] and len(folder) == 10 * PER_CLASS
    image, label = folder[PER_CLASS]  # sorted by class: the first image of digit 1
    assert image.shape == (1, 28, 28) and label == 1
    images, labels = read_export(export)
    np.testing.assert_array_equal((image[0] * 255).round().byte().numpy(), images[labels == 1][0])


def test_project_dataset_in_a_multi_worker_dataloader(export):
    dataset = SyntheticDigits(export)
    image, label = dataset[7]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and isinstance(label, int)
    assert 0.0 <= image.min() and image.max() <= 1.0
    seen = []
    for images, labels in torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True, num_workers=2,
                                                      generator=torch.Generator().manual_seed(0)):
        assert images.shape[1:] == (1, 28, 28)
        seen += labels.tolist()
    assert sorted(seen) == sorted(read_export(export)[1].tolist())


def test_readme_training_example_runs(export):
    code = readme_python("downstream-example")
    result = subprocess.run([sys.executable, "-c", code], cwd=export.parents[1], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "epoch 1: last batch loss" in result.stdout


@pytest.mark.parametrize("damage, fragment", [
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "truncated shard"),
    (lambda p: p.write_bytes(p.read_bytes()[:1000] + b"garbage!" + p.read_bytes()[1008:]), "corrupt shard"),
    (lambda p: p.unlink(), "missing"),
])
def test_corrupt_or_truncated_shard_is_one_clear_error(export, tmp_path, damage, fragment):
    copy = tmp_path / "copy"
    shutil.copytree(export, copy)
    damage(copy / "part-00001.parquet")
    with pytest.raises(ExportError, match=fragment):
        SyntheticDigits(copy)
    result = run_module("pipeline.verify", str(copy))
    assert_one_line_error(result, "part-00001.parquet", fragment)
    assert (copy / "part-00000.parquet").read_bytes() == (export / "part-00000.parquet").read_bytes()  # nothing lost
    assert run_module("pipeline.verify", str(export)).returncode == 0


def test_unverified_reader_still_names_a_truncated_shard(export, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(export, copy)
    path = copy / "part-00002.parquet"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ExportError, match="part-00002.parquet: corrupt or truncated Parquet shard"):
        SyntheticDigits(copy, verify=False)
