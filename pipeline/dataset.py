"""Reading an export back: integrity checks against its manifest, whole-export arrays, and a PyTorch
``Dataset`` for training code (also usable in a multi-worker ``DataLoader``); and :class:`SyntheticStream`,
fresh samples of G drawn on the fly with no export at all.

An export folder holds ``part-NNNNN.parquet`` shards, ``manifest.json`` (shard sha256 and row counts)
and a ``README.md`` dataset card. Pure and importable.
"""

from __future__ import annotations

import bisect
import itertools
import json
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pipeline.core.utils import PipelineError, sha256_file
from pipeline.generation.formats import decode_png
from pipeline.generation.inference import InferenceGenerator, resolve_precision
from pipeline.generation.sampling import LatentStreams, sample_rows
from pipeline.training.checkpoints import load_generator


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


class SyntheticStream(torch.utils.data.IterableDataset):
    """Fresh labeled digits drawn from G(z, y) on the fly, as a PyTorch ``IterableDataset``: no export on disk,
    and every epoch (``set_epoch``) new samples ("dataset recycling", training on fresh samples instead of a fixed
    set: e.g. GaFi, arXiv 2305.10118).

    Items are ``(image (1, 28, 28) float32 in [0, 1], label int)``, as :class:`SyntheticDigits` gives them. Sample
    ``i`` of epoch ``e`` is row ``e * samples_per_epoch + i`` of a ``pipeline.generate`` export with the same
    checkpoint, seed, digits, latent scale and precision (digit ``digits[r % k]``, index ``r // k``;
    :mod:`pipeline.generation.sampling`), pixel for pixel, stored as uint8 first. In a
    ``DataLoader(num_workers=k)``, worker ``w`` draws the blocks of ``batch_size`` rows ``w, w + k, w + 2k, ...``
    of the epoch: no two workers repeat a sample, each worker's sequence is fixed by (seed, epoch, w, k), and
    the set of an epoch's samples does not depend on k. Without ``samples_per_epoch`` the stream never ends.

    Args:
        checkpoint: a generator checkpoint written by ``train_cgan`` (``models/generator.pt``).
        digits: the digits to draw, in the order rows cycle through them (default 0-9: class-balanced).
        seed: the sampling seed (``generate --seed``).
        latent_scale: s in z ~ N(0, s² I) (``generate --latent-scale``).
        precision: G's arithmetic, as ``generate --precision`` (``float32``, ``bfloat16`` or ``auto``).
        samples_per_epoch: images per epoch (``len(stream)``), or None for an endless stream.
        batch_size: images per call of G (one block of rows per worker at a time).
        transform: optional callable applied to each image tensor.
        device: where G runs (``cpu``; ``cuda`` in the main process only, with ``num_workers=0``).
    Raises:
        PipelineError: a digit outside 0-9 or repeated, ``samples_per_epoch`` or ``batch_size`` < 1, or an
            unknown precision; CheckpointError (a PipelineError): the checkpoint is missing or not a generator.
    """

    def __init__(self, checkpoint: str | Path, digits: list[int] | None = None, seed: int = 0,
                 latent_scale: float = 1.0, precision: str = "auto", samples_per_epoch: int | None = None,
                 batch_size: int = 500, transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 device: str = "cpu"):
        digits = list(range(10)) if digits is None else [int(d) for d in digits]
        if not digits or len(set(digits)) != len(digits) or not all(0 <= d <= 9 for d in digits):
            raise PipelineError(f"digits must be distinct digits in 0-9, got {digits}")
        if (samples_per_epoch is not None and samples_per_epoch < 1) or batch_size < 1:
            raise PipelineError("samples_per_epoch and batch_size must be >= 1")
        resolve_precision(precision, torch.device(device))  # an unknown precision fails here, not in a worker
        self.generator, _ = load_generator(checkpoint, "cpu")
        self.digits, self.seed, self.latent_scale, self.precision = np.asarray(digits), seed, latent_scale, precision
        self.samples_per_epoch, self.batch_size, self.transform, self.device = (samples_per_epoch, batch_size,
                                                                                transform, device)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the rows of epoch ``epoch`` next (call before each epoch, as with ``DistributedSampler``)."""
        self.epoch = epoch

    def __len__(self) -> int:
        if self.samples_per_epoch is None:
            raise TypeError("an endless SyntheticStream has no length; give samples_per_epoch")
        return self.samples_per_epoch

    def _blocks(self, epoch: int, worker: int, workers: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(images (n, 28, 28) uint8, labels (n,) int64)`` for blocks ``worker, worker + workers, ...`` of
        ``epoch``'s rows, in order."""
        generator = InferenceGenerator(self.generator.to(self.device), self.precision)
        latents = LatentStreams(self.seed, self.generator.config.z_dim, scale=self.latent_scale)
        size = self.samples_per_epoch
        start = 0 if size is None else epoch * size
        for block in itertools.count(worker, workers):
            first = start + block * self.batch_size
            last = first + self.batch_size if size is None else min(start + size, first + self.batch_size)
            if first >= last:
                return
            rows = np.arange(first, last, dtype=np.int64)
            labels = self.digits[rows % len(self.digits)]
            yield sample_rows(generator, latents, labels, rows // len(self.digits))["images"], labels.astype(np.int64)

    def arrays(self, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """All of one epoch's samples at once, in row order, as :func:`read_export` gives an export:
        ``(images (samples_per_epoch, 28, 28) uint8, labels (samples_per_epoch,) int64)``; ``epoch``
        defaults to the one ``set_epoch`` chose. The transform is not applied.

        Raises:
            PipelineError: the stream is endless (no ``samples_per_epoch``).
        """
        if self.samples_per_epoch is None:
            raise PipelineError("an endless SyntheticStream has no epoch to return; give samples_per_epoch")
        blocks = list(self._blocks(self.epoch if epoch is None else epoch, 0, 1))
        return np.concatenate([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        for images, labels in self._blocks(self.epoch, worker, workers):
            for image, label in zip(images, labels.tolist()):
                tensor = torch.from_numpy(image).float().div_(255).unsqueeze(0)
                yield (tensor if self.transform is None else self.transform(tensor)), label
