"""Which image goes in which row of an export, and how it is sampled: the shard layout, per-image latent
streams, and judge-curated rejection sampling.

Every image is a pure function of ``(seed, digit, index)`` (and, when curated, of the judge): its latent z
comes from a stream seeded by ``numpy.random.SeedSequence([seed, digit, index // BLOCK_SIZE])``, so any
shard, any digit or any range of rows can be regenerated alone with the same bytes. Pure and importable.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from pipeline.core.utils import PipelineError
from pipeline.data.splits import to_tensor, to_uint8
from pipeline.training.networks import Classifier, Generator

#: Latent z is drawn in blocks of this many images per digit, each block from its own seeded stream.
BLOCK_SIZE = 1000
#: A curated row that is still rejected after this many draws stops the export with an error.
MAX_ATTEMPTS = 100


@dataclass(frozen=True)
class ShardLayout:
    """Rows of an export: row ``r`` holds digit ``digits[r % k]`` with per-digit index ``r // k``
    (``k = len(digits)``), so every shard is class-balanced; shard ``s`` holds rows
    ``[s * rows_per_shard, min(total, (s + 1) * rows_per_shard))``.
    """

    digits: tuple[int, ...]
    per_class: int
    num_shards: int

    def __post_init__(self):
        if not self.digits or self.per_class < 1:
            raise PipelineError("an export needs at least one digit and --per-class >= 1")
        if not 1 <= self.num_shards <= self.total:
            raise PipelineError(f"--num-shards must be in 1..{self.total} (the number of images), got {self.num_shards}")

    @classmethod
    def with_shard_size(cls, digits, per_class: int, shard_size: int) -> "ShardLayout":
        """The layout with the fewest shards of at most ``shard_size`` rows each."""
        if shard_size < 1:
            raise PipelineError(f"--shard-size must be >= 1, got {shard_size}")
        return cls(tuple(digits), per_class, math.ceil(len(digits) * per_class / shard_size))

    @property
    def total(self) -> int:
        return len(self.digits) * self.per_class

    @property
    def rows_per_shard(self) -> int:
        return math.ceil(self.total / self.num_shards)

    def shard_rows(self, shard: int) -> range:
        """Global row numbers of ``shard`` (0-based).

        Raises:
            PipelineError: ``shard`` is not in ``0..num_shards - 1``.
        """
        if not 0 <= shard < self.num_shards:
            raise PipelineError(f"--shard-index must be in 0..{self.num_shards - 1}, got {shard}")
        return range(shard * self.rows_per_shard, min(self.total, (shard + 1) * self.rows_per_shard))

    def labels_and_indices(self, rows: range) -> tuple[np.ndarray, np.ndarray]:
        """``(digits (n,) int64, per-digit indices (n,) int64)`` of the given global rows."""
        r = np.arange(rows.start, rows.stop, dtype=np.int64)
        return np.asarray(self.digits, dtype=np.int64)[r % len(self.digits)], r // len(self.digits)


def block_latents(seed: int, digit: int, block: int, z_dim: int, attempt: int = 0) -> torch.Tensor:
    """Latent z ``(BLOCK_SIZE, z_dim) float32`` ~ N(0, I) for one block of one digit.

    Seeded by ``SeedSequence([seed, digit, block])`` (draw 0) or ``[seed, digit, block, attempt]`` (the
    re-draws of curated rows), so it depends on nothing else: not on the other digits, N or the sharding.
    """
    key = [seed, digit, block] if attempt == 0 else [seed, digit, block, attempt]
    stream_seed = int(np.random.SeedSequence(key).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.randn(BLOCK_SIZE, z_dim, generator=torch.Generator().manual_seed(stream_seed))


class LatentStreams:
    """Latent z of any ``(digit, index, attempt)``, with the few most recent blocks cached.

    ``scale`` multiplies every z, so z ~ N(0, scale² I): below 1 this is the truncation trick's trade of
    diversity for fidelity (as Kingma & Dhariwal 2018's sampling temperature; Brock et al. 2019 truncate
    instead), above 1 it widens the samples. The streams themselves do not depend on it.
    """

    def __init__(self, seed: int, z_dim: int, cache_blocks: int = 64, scale: float = 1.0):
        self.seed, self.z_dim, self.cache_blocks, self.scale = seed, z_dim, cache_blocks, scale
        self._cache: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()

    def __call__(self, digits: np.ndarray, indices: np.ndarray, attempt: int = 0) -> torch.Tensor:
        """``(n, z_dim) float32`` latents of rows with ``digits (n,)`` and per-digit ``indices (n,)``."""
        # Gathered in NumPy: torch's indexed assignment of a few rows costs far more per call than the copy.
        z = np.empty((len(digits), self.z_dim), np.float32)
        blocks = indices // BLOCK_SIZE
        for digit, block in sorted(set(zip(digits.tolist(), blocks.tolist()))):
            key = (digit, block, attempt)
            if key not in self._cache:
                self._cache[key] = block_latents(self.seed, digit, block, self.z_dim, attempt).numpy()
                if len(self._cache) > self.cache_blocks:
                    self._cache.popitem(last=False)
            rows = np.flatnonzero((digits == digit) & (blocks == block))
            z[rows] = self._cache[key][indices[rows] % BLOCK_SIZE]
        z = torch.from_numpy(z)
        return z * self.scale if self.scale != 1.0 else z


@torch.inference_mode()
def judge_images(judge: Classifier, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The judge's class probabilities of ``images (n, 28, 28) uint8`` (the stored pixels, not G's floats).

    Returns:
        ``(probabilities (n, 10) float32, predicted labels (n,) int64)``.
    """
    # Chunks of 250: the judge's 28x28 activations for a whole batch of 1,000 would take ~100 MB each.
    probs = np.concatenate([F.softmax(judge(to_tensor(images[i : i + 250])), dim=1).numpy()
                            for i in range(0, len(images), 250)]) if len(images) else np.empty((0, 10), np.float32)
    return probs, probs.argmax(1).astype(np.int64)


@torch.inference_mode()
def sample_rows(generator: Generator, latents: LatentStreams, digits: np.ndarray, indices: np.ndarray,
                judge: Classifier | None = None, min_confidence: float = 0.0) -> dict[str, np.ndarray]:
    """Images of the rows ``(digits (n,), indices (n,))``, one G(z, y) batch per draw.

    Without a judge each row is ``G(z_0, digit)``. With a judge (rejection sampling), row i keeps the
    first draw ``a = 0, 1, ...`` whose stored pixels the judge assigns to ``digits[i]`` with probability
    ``>= min_confidence``; rejected rows are re-drawn together, so the result does not depend on the
    other rows' outcomes beyond the batch they share.

    Returns:
        ``{"images": (n, 28, 28) uint8, "draws": (n,) int64}`` and, with a judge, ``"judge_label" (n,)
        int64`` and ``"judge_confidence" (n,) float32`` (probability of the predicted label).
    Raises:
        PipelineError: a row is still rejected after :data:`MAX_ATTEMPTS` draws (threshold too strict).
    """
    n = len(digits)
    out = {"images": np.empty((n, 28, 28), np.uint8), "draws": np.zeros(n, np.int64)}
    if judge is not None:
        out["judge_label"], out["judge_confidence"] = np.empty(n, np.int64), np.empty(n, np.float32)
    pending = np.arange(n)
    for attempt in range(MAX_ATTEMPTS):
        z = latents(digits[pending], indices[pending], attempt)
        labels = torch.from_numpy(digits[pending])
        images = to_uint8(generator(z, labels))  # (m, 28, 28) uint8
        if judge is None:
            out["images"][pending], out["draws"][pending] = images, 1
            return out
        probs, predicted = judge_images(judge, images)
        accepted = probs[np.arange(len(pending)), digits[pending]] >= min_confidence
        rows = pending[accepted]
        out["images"][rows], out["draws"][rows] = images[accepted], attempt + 1
        out["judge_label"][rows] = predicted[accepted]
        out["judge_confidence"][rows] = probs[accepted, predicted[accepted]]
        pending = pending[~accepted]
        if len(pending) == 0:
            return out
    worst = np.bincount(digits[pending], minlength=10).argmax()
    raise PipelineError(f"digit {worst}: an image still falls below --min-confidence {min_confidence} after "
                        f"{MAX_ATTEMPTS} draws; lower the threshold")
