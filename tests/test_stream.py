"""pipeline.dataset.SyntheticStream: fresh samples of G on the fly, equal to the rows of an export with the same
seed, new rows every epoch, and no sample twice across DataLoader workers."""

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from pipeline.core.utils import PipelineError
from pipeline.dataset import SyntheticStream, read_export
from tests.conftest import REPO, readme_python, run_module

GENERATOR = REPO / "models/generator.pt"


def as_uint8(images: torch.Tensor) -> np.ndarray:
    """``(n, 1, 28, 28)`` float in [0, 1] -> ``(n, 28, 28)`` uint8 (the stream's images are stored pixels / 255)."""
    return (images[:, 0] * 255).round().to(torch.uint8).numpy()


def stream(**kwargs) -> SyntheticStream:
    return SyntheticStream(GENERATOR, **{"seed": 5, "precision": "float32", "latent_scale": 1.15,
                                         "digits": [0, 3, 7], **kwargs})


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """The export the stream must equal: 2 x 300 rows of digits 0, 3, 7 (seed 5, float32, z x 1.15)."""
    out = tmp_path_factory.mktemp("stream") / "export"
    result = run_module("pipeline.generate", "--checkpoint", str(GENERATOR), "--out", str(out), "--per-class", "200",
                        "--digits", "0,3,7", "--seed", "5", "--precision", "float32", "--latent-scale", "1.15")
    assert result.returncode == 0, result.stderr
    return read_export(out)


def test_each_epoch_is_the_next_rows_of_the_export_with_the_same_seed(export):
    images, labels = export
    data = stream(samples_per_epoch=300, batch_size=128)
    assert len(data) == 300
    for epoch in (0, 1):
        data.set_epoch(epoch)
        items = list(data)
        rows = slice(300 * epoch, 300 * (epoch + 1))
        assert len(items) == 300 and items[0][0].shape == (1, 28, 28) and items[0][0].dtype == torch.float32
        assert np.array_equal(as_uint8(torch.stack([image for image, _ in items])), images[rows])
        assert [label for _, label in items] == labels[rows].tolist()


def test_workers_share_out_the_rows_without_repeating_one(export):
    images, _ = export
    seen = []
    for workers in (0, 1, 2):
        loader = torch.utils.data.DataLoader(stream(samples_per_epoch=300, batch_size=50), batch_size=64,
                                             num_workers=workers)
        batches = list(loader)
        pixels = as_uint8(torch.cat([batch[0] for batch in batches]))
        assert len(pixels) == 300 and len({row.tobytes() for row in pixels}) == 300  # no sample twice
        seen.append(sorted(row.tobytes() for row in pixels))
    assert seen[0] == seen[1] == seen[2] == sorted(row.tobytes() for row in images[:300])  # the same set for any k


def test_an_endless_stream_and_transforms():
    data = stream(transform=lambda image: image * 2 - 1, batch_size=64, digits=None)
    items = list(itertools.islice(iter(data), 150))
    assert [label for _, label in items[:12]] == list(range(10)) + [0, 1]  # class-balanced, digits in order
    assert min(image.min().item() for image, _ in items) >= -1 and max(i.max().item() for i, _ in items) <= 1
    with pytest.raises(TypeError, match="endless"):
        len(data)


@pytest.mark.parametrize("kwargs, fragment", [({"digits": [1, 12]}, "digits"), ({"digits": [3, 3]}, "digits"),
                                              ({"samples_per_epoch": 0}, ">= 1"), ({"precision": "fp8"}, "precision")])
def test_bad_arguments_are_one_clear_error(kwargs, fragment):
    with pytest.raises(PipelineError, match=fragment):
        stream(**kwargs)


def test_readme_stream_example_runs():
    code = readme_python("stream-example")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "epoch 1: 128 fresh images, digits [0, 1, 2, 3, 4" in result.stdout


def test_arrays_give_an_epoch_at_once_as_the_export_stores_it(export):
    images, labels = export
    data = stream(samples_per_epoch=300, batch_size=128)
    epoch_images, epoch_labels = data.arrays(1)
    assert epoch_images.dtype == np.uint8 and epoch_labels.dtype == np.int64
    assert np.array_equal(epoch_images, images[300:600]) and np.array_equal(epoch_labels, labels[300:600])
    data.set_epoch(0)
    assert np.array_equal(data.arrays()[0], images[:300])  # default: the epoch set_epoch chose
    with pytest.raises(PipelineError, match="endless"):
        stream().arrays(0)
