"""Reading an export back: integrity checks against its manifest, whole-export arrays, and a PyTorch
``Dataset`` for training code (also usable in a multi-worker ``DataLoader``).

An export folder holds ``part-NNNNN.parquet`` shards, ``manifest.json`` (shard sha256 and row counts)
and a ``README.md`` dataset card. Pure and importable.
"""

from __future__ import annotations

import bisect
import json
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pipeline.core.utils import PipelineError, sha256_file
from pipeline.generation.formats import decode_png


class ExportError(PipelineError, ValueError):
    """An export folder or shard is missing, truncated, corrupt, or not a synthetic-digit export."""


def read_manifest(root: str | Path) -> dict:
    """``root/manifest.json`` as a dict.

    Raises:
        ExportError: the folder or its manifest is missing or not JSON.
    """
    path = Path(root) / "manifest.json"
    if not Path(root).is_dir():
        raise ExportError(f"{root}: no such export folder")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ExportError(f"{path}: missing or unreadable manifest ({type(error).__name__})") from None


def shard_paths(root: str | Path, verify: bool = True) -> list[Path]:
    """The Parquet shards listed in the manifest, in order; with ``verify``, each file's size and sha256
    are checked against it (about 1 s per GB).

    Raises:
        ExportError: a shard is missing, truncated (size differs) or corrupt (sha256 differs).
    """
    root = Path(root)
    paths = []
    for shard in read_manifest(root).get("shards", []):
        if shard.get("file") is None:
            continue
        path = root / shard["file"]
        if not path.is_file():
            raise ExportError(f"{path}: shard listed in the manifest is missing")
        if verify and path.stat().st_size != shard["bytes"]:
            raise ExportError(f"{path}: truncated shard ({path.stat().st_size} of {shard['bytes']} bytes)")
        if verify and sha256_file(path) != shard["sha256"]:
            raise ExportError(f"{path}: corrupt shard (sha256 differs from the manifest)")
        paths.append(path)
    if not paths:
        raise ExportError(f"{root}: the manifest lists no Parquet shards (an image-folder-only export?)")
    return paths


def read_shard(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """One shard as an Arrow table.

    Raises:
        ExportError: the file is not readable Parquet or lacks the ``image``/``label`` columns.
    """
    try:
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as error:
        raise ExportError(f"{path}: corrupt or truncated Parquet shard ({str(error).splitlines()[0]})") from None
    if not {"image", "label"} <= set(table.column_names):
        raise ExportError(f"{path}: not a synthetic-digit shard (no image/label columns)")
    return table


def _shard_images(path: Path) -> tuple[pa.BinaryArray, np.ndarray]:
    """``(PNG bytes of every row, labels (n,) int64)`` of one shard."""
    table = read_shard(path, ["image", "label"])
    return table.column("image").combine_chunks().field("bytes"), table.column("label").to_numpy().astype(np.int64)


def read_export(root: str | Path, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Every image of an export: ``(images (N, 28, 28) uint8, labels (N,) int64)`` in row order.

    Raises:
        ExportError: see :func:`shard_paths` and :func:`read_shard`.
    """
    images, labels = [], []
    for path in shard_paths(root, verify):
        pngs, shard_labels = _shard_images(path)
        images += [decode_png(b) for b in pngs.to_pylist()]
        labels.append(shard_labels)
    return np.stack(images), np.concatenate(labels)


class SyntheticDigits(torch.utils.data.Dataset):
    """An export as a map-style PyTorch dataset: item ``i`` is ``(image (1, 28, 28) float32 in [0, 1],
    label int)`` (the layout of ``torchvision.datasets.MNIST`` with ``ToTensor()``), then ``transform``.

    The PNG bytes of every shard are held in memory as Arrow buffers (~350 MB per million images) and
    decoded per item, so it works in a ``DataLoader`` with any number of workers.

    Args:
        root: an export folder (shards checked against ``manifest.json``, see :func:`shard_paths`).
        transform: optional callable applied to each image tensor.
    Raises:
        ExportError: a shard is missing, truncated or corrupt.
    """

    def __init__(self, root: str | Path, transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 verify: bool = True):
        self.transform = transform
        self.images, self.labels, self.starts = [], [], [0]
        for path in shard_paths(root, verify):
            pngs, labels = _shard_images(path)
            self.images.append(pngs)
            self.labels.append(labels)
            self.starts.append(self.starts[-1] + len(labels))

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index %= len(self)
        shard = bisect.bisect_right(self.starts, index) - 1
        row = index - self.starts[shard]
        image = torch.from_numpy(decode_png(self.images[shard][row].as_py())).float().div_(255).unsqueeze(0)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[shard][row])
