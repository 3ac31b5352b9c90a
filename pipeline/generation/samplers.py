"""Sampler processes of ``pipeline.generate --samplers N``: on a CPU, N processes, each with G (and the judge
of a curated export) and its share of the torch threads, sample and PNG-encode whole batches of rows, while
the exporting process writes them in row order.

Why: with one process, the cores G's threads use sit idle while it encodes between batches, and an encoding
process beside G preempts one of its threads, which stalls the others at every operator. Independent
samplers, each sampling and encoding its own batches, keep every core busy. A batch is a pure function of its
rows (:mod:`.sampling`) and G's pixels do not depend on its thread count (tested), so the bytes do not depend
on N.

The processes start with ``concurrent.futures.ProcessPoolExecutor`` (``spawn``: the parent's OpenMP threads
do not survive a ``fork``); until one has imported torch and answered, the exporting process samples with all
its threads, so an export does not wait for them.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from pipeline.core.utils import PipelineError
from pipeline.generation.inference import InferenceGenerator, reuse_freed_memory
from pipeline.generation.sampling import LatentStreams, sample_rows
from pipeline.generation.writer import encode_batch
from pipeline.training.networks import Classifier

#: With ``--samplers`` not given, an export on a CPU uses sampler processes only from this many images on: the
#: processes take seconds to start (importing torch), which a smaller export does not win back (benchmark:
#: ``export.samplers`` in reports/metrics/benchmark.json).
MIN_IMAGES_FOR_SAMPLERS = 300_000
#: At most this many sampler processes by default (each holds a copy of torch and G).
MAX_DEFAULT_SAMPLERS = 8


def default_samplers(device: torch.device, images: int, threads: int) -> int:
    """Samplers when ``--samplers`` is not given: on a CPU, one per torch thread (``threads``), at most
    :data:`MAX_DEFAULT_SAMPLERS`, for exports of at least :data:`MIN_IMAGES_FOR_SAMPLERS` images; else 1 (G
    samples in the exporting process alone, on all its threads or on the GPU)."""
    if device.type != "cpu" or images < MIN_IMAGES_FOR_SAMPLERS:
        return 1
    return max(1, min(MAX_DEFAULT_SAMPLERS, threads))


class BatchSampler:
    """One batch of rows, sampled and encoded: ``__call__(labels (n,) int64, indices (n,) int64, keep_images)``
    -> ``{"table": pa.Table (the export's schema, PNG-encoded), "draws": (n,) int64, "images": (n, 28, 28)
    uint8 or None}``. Image-folder files are written here too. The same object runs in the exporting process
    and, pickled, in each sampler process."""

    def __init__(self, generator: InferenceGenerator, latents: LatentStreams, curator: Classifier | None,
                 min_confidence: float, seed: int, root: Path, fmt: str):
        self.generator, self.latents, self.curator, self.min_confidence = generator, latents, curator, min_confidence
        self.seed, self.root, self.fmt = seed, root, fmt

    def __call__(self, labels: np.ndarray, indices: np.ndarray, keep_images: bool) -> dict:
        body = sample_rows(self.generator, self.latents, labels, indices, self.curator, self.min_confidence)
        table: pa.Table = encode_batch({**body, "labels": labels, "indices": indices}, self.seed, self.root, self.fmt)
        return {"table": table, "draws": body["draws"], "images": body["images"] if keep_images else None}


_worker: BatchSampler | None = None


def _start(sampler: BatchSampler, threads: int) -> None:
    global _worker
    torch.set_num_threads(threads)
    reuse_freed_memory()
    _worker = sampler


def _ready() -> int:
    return os.getpid()


def _sample(labels: np.ndarray, indices: np.ndarray, keep_images: bool) -> dict:
    return _worker(labels, indices, keep_images)


def _trim_heap() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc manual, "Memory Allocation Tunables"; not there off glibc
    except (OSError, AttributeError):
        pass


def _context() -> multiprocessing.context.BaseContext:
    """``forkserver`` with this module preloaded where there is one (one process imports torch, the samplers
    are forked from it), else ``spawn``; never a plain ``fork`` of a process whose OpenMP threads have run."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


class SamplerPool:
    """``processes`` sampler processes, each running ``sampler`` with ``threads`` torch threads. Use as a
    context manager; :meth:`submit` only once :meth:`ready`."""

    def __init__(self, sampler: BatchSampler, processes: int, threads: int):
        self.processes, self.threads = processes, threads
        self.batches = 0  # submitted so far
        self.executor = ProcessPoolExecutor(processes, _context(), initializer=_start, initargs=(sampler, threads))
        self._ready: list[Future] = []
        self._error: BaseException | None = None
        self._started = False
        # Starting the processes blocks until the fork server has imported torch: in a thread, so that the
        # exporting process samples meanwhile.
        self._starter = threading.Thread(target=self._launch, daemon=True)
        self._starter.start()

    def _launch(self) -> None:
        try:
            self._ready = [self.executor.submit(_ready) for _ in range(self.processes)]
        except Exception as error:  # noqa: BLE001 - raised by ready() in the exporting thread
            self._error = error

    def ready(self) -> bool:
        """Whether a sampler process has started and answered. The first time it has, this process hands the
        heap it sampled with back to the system (``malloc_trim``, glibc): from then on it only writes.

        Raises:
            PipelineError: the processes could not be started, or one died.
        """
        if self._error is not None:
            raise PipelineError(f"the sampler processes did not start ({self._error}); rerun with --samplers 1")
        if not self._started:
            if self._starter.is_alive() or not any(future.done() for future in self._ready):
                return False
            self._check(next(future for future in self._ready if future.done()))
            self._started = True
            _trim_heap()
        return True

    def submit(self, labels: np.ndarray, indices: np.ndarray, keep_images: bool) -> Future:
        """A future of ``BatchSampler(labels, indices, keep_images)`` run in a sampler process."""
        self.batches += 1
        return self.executor.submit(_sample, labels, indices, keep_images)

    @staticmethod
    def result(future: Future) -> dict:
        """A batch's result; a sampler process that died becomes a :class:`PipelineError`."""
        return SamplerPool._check(future)

    @staticmethod
    def _check(future: Future):
        try:
            return future.result()
        except BrokenProcessPool as error:
            raise PipelineError(f"a sampler process stopped ({error}); rerun with --samplers 1") from None

    def __enter__(self) -> "SamplerPool":
        return self

    def __exit__(self, *exc) -> None:
        self._starter.join()
        self.executor.shutdown(wait=True, cancel_futures=True)
