"""How an export is written (the parent's side of ``pipeline.generate``): the free-space check, the
sampling loop, and the writer process that
PNG-encodes and writes while G samples (``pipeline.generation.writer``).
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import subprocess
import sys
from collections import deque
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.core.utils import PipelineError, sha256_file
from pipeline.generation.formats import BYTES_PER_IMAGE
from pipeline.generation.inference import InferenceGenerator
from pipeline.generation.samplers import BatchSampler, SamplerPool
from pipeline.generation.sampling import LatentStreams, ShardLayout, sample_rows
from pipeline.generation.writer import ExportWriter
from pipeline.training.networks import NUM_CLASSES, Classifier, Generator

log = logging.getLogger(__name__)


def check_free_disk(folder: Path, images: int, fmt: str) -> None:
    """Raise :class:`PipelineError` when the file system of ``folder`` lacks room for ``images`` images."""
    per_image = sum(BYTES_PER_IMAGE[f] for f in (["parquet", "imagefolder"] if fmt == "both" else [fmt]))
    needed, free = images * per_image, shutil.disk_usage(folder).free
    if needed > free:
        raise PipelineError(f"{images:,} images need about {needed / 1e9:,.1f} GB but {folder} has only "
                            f"{free / 1e9:,.1f} GB free; lower --per-class")


def default_writers(device: torch.device) -> int:
    """Writer processes when ``--writers`` is not given: 0 when G runs on the CPU (its threads use every core),
    else the CPU cores less one, at most 8."""
    return 0 if device.type == "cpu" else max(1, min(8, (os.cpu_count() or 2) - 1))


class WriterProcess:
    """The writer process (``python -m pipeline.generation.writer``) and the messages to it: rows go in through a
    pipe while G samples the next batch; the pipe's buffer and at most two batches per encoder process are the
    only queues, so memory stays flat. ``writers`` > 1 PNG-encodes in that many processes."""

    def __init__(self, root: Path, fmt: str, curated: bool, seed: int, writers: int = 1):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[2]),
                                                                          os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.generation.writer", str(root), fmt, "1" if curated else "0", str(seed),
             str(writers)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    def send(self, message) -> None:
        try:
            pickle.dump(message, self.process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        except BrokenPipeError:
            self._failed()

    def result(self) -> dict:
        try:
            self.process.stdin.flush()
            kind, body = pickle.load(self.process.stdout)
        except (BrokenPipeError, EOFError):
            self._failed()
        if kind == "error":
            raise PipelineError(body)
        return body

    def _failed(self):
        self.process.wait()
        try:
            kind, body = pickle.load(self.process.stdout)
        except Exception:  # noqa: BLE001 - no answer: it died without a word
            lines = self.process.stderr.read().decode(errors="replace").strip().splitlines()
            body = lines[-1] if lines else f"exit code {self.process.returncode}"
        raise PipelineError(f"the export writer process stopped: {body}")

    def peak_rss_mb(self) -> float | None:
        """The peak resident memory so far of the writer and its encoder processes, summed (``VmHWM`` of each;
        Linux only, else None)."""
        peaks = [_peak_rss_kib(pid) for pid in [self.process.pid, *child_pids(self.process.pid)]]
        return None if peaks[0] is None else round(sum(p or 0 for p in peaks) / 1024, 1)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send(None)
                self.process.stdin.close()
            except (PipelineError, OSError):
                pass
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class InlineWriter:
    """:class:`WriterProcess`'s interface in this process (``--writers 0``): each batch is PNG-encoded and written
    between two batches of G, so nothing competes with G's threads for the CPU cores."""

    def __init__(self, root: Path, fmt: str, curated: bool, seed: int):
        self.writer = ExportWriter(root, fmt, curated, seed)
        self.answer: dict | None = None

    def send(self, message) -> None:
        if message is not None:
            self.answer = self.writer.handle(message)

    def result(self) -> dict:
        return self.answer

    def peak_rss_mb(self) -> None:
        return None  # counted in this process's own peak

    def close(self) -> None:
        self.writer.shutdown()


def open_writer(root: Path, fmt: str, curated: bool, seed: int, writers: int) -> "WriterProcess | InlineWriter":
    """The export's writer: in this process for ``writers`` = 0, else :class:`WriterProcess` with ``writers``
    encoding processes."""
    return InlineWriter(root, fmt, curated, seed) if writers == 0 else WriterProcess(root, fmt, curated, seed, writers)


def _peak_rss_kib(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), None)


def child_pids(pid: int) -> list[int]:
    """The process ids of ``pid``'s children (Linux ``/proc``; [] elsewhere or once it has exited)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def export_shards(generator: Generator | InferenceGenerator, latents: LatentStreams, layout: ShardLayout,
                  shards: list[int], batch_size: int, writer: WriterProcess | InlineWriter, root: Path,
                  curator: Classifier | None = None, min_confidence: float = 0.0, keep_first: int = 2000,
                  progress: bool = True,
                  samplers: tuple[BatchSampler, SamplerPool] | None = None) -> dict:
    """Sample every row of ``shards`` in batches of ``batch_size`` and send them to ``writer`` in row order (a
    progress bar unless not ``progress``).

    With ``samplers`` (a :class:`BatchSampler` and a :class:`SamplerPool` of it; ``writer`` must then be an
    :class:`InlineWriter`), batches are sampled and encoded here until the pool's processes have started, then
    in them (at most two batches per process ahead of the writing).

    Returns:
        ``{"shards": [{"index", "first_row", "file", "rows", "bytes", "sha256"}], "draws": (10,) int64,
        "kept": (10,) int64 (per digit), "first": [(images, labels)] (the first ``keep_first`` rows)}``.
    """
    out = {"shards": [], "draws": np.zeros(NUM_CLASSES, np.int64), "kept": np.zeros(NUM_CLASSES, np.int64), "first": []}
    total = sum(len(layout.shard_rows(s)) for s in shards)
    sampler, pool = samplers or (None, None)
    submitted = 0
    # In row order: ("open", shard), ("rows", labels, result or a Future of one), ("close", shard, first row). The
    # shards follow each other without a pause, so the samplers do not wait for a shard to be closed.
    pending: deque = deque()
    with tqdm(total=total, desc="generate", unit="img", mininterval=1.0, smoothing=0.1, disable=not progress) as bar:
        for shard in shards:
            rows = layout.shard_rows(shard)
            pending.append(("open", shard))
            for start in range(rows.start, rows.stop, batch_size):
                labels, indices = layout.labels_and_indices(range(start, min(rows.stop, start + batch_size)))
                keep, submitted = submitted < keep_first, submitted + len(labels)
                if pool is None:
                    body = sample_rows(generator, latents, labels, indices, curator, min_confidence)
                    draws = body.pop("draws")
                    result = {"rows": {**body, "labels": labels, "indices": indices}, "draws": draws,
                              "images": body["images"]}
                elif pool.ready():
                    result = pool.submit(labels, indices, keep)
                else:  # until the pool's processes have started
                    result = sampler(labels, indices, keep)
                pending.append(("rows", labels, result))
                _write_done(pending, writer, root, out, bar, keep_first, most=2 * pool.processes if pool else 0)
            pending.append(("close", shard, rows.start))
        _write_done(pending, writer, root, out, bar, keep_first, most=0)
    return out


def _write_done(pending: deque, writer: WriterProcess | InlineWriter, root: Path, out: dict, bar: tqdm,
                keep_first: int, most: int) -> None:
    """Carry out the steps at the front of ``pending`` (see :func:`export_shards`): those whose batch is finished,
    and the others (waiting for them) until at most ``most`` batches remain; count draws, rows and shards into
    ``out``."""
    def waiting() -> bool:
        return pending[0][0] == "rows" and isinstance(pending[0][2], Future) and not pending[0][2].done()

    while pending and (sum(step[0] == "rows" for step in pending) > most or not waiting()):
        step = pending.popleft()
        if step[0] == "open":
            writer.send(step)
        elif step[0] == "close":
            writer.send(("close", None))
            info = writer.result()
            info["sha256"] = sha256_file(root / info["file"]) if info["file"] else None
            out["shards"].append({"index": step[1], "first_row": step[2], **info})
        else:
            labels, result = step[1], step[2]
            if isinstance(result, Future):
                result = SamplerPool.result(result)
            writer.send(("table", result["table"]) if "table" in result else ("rows", result["rows"]))
            np.add.at(out["draws"], labels, result["draws"])
            np.add.at(out["kept"], labels, 1)
            if result["images"] is not None:
                keep_first_rows(out["first"], (result["images"], labels), keep_first)
            bar.update(len(labels))


def keep_first_rows(first: list[tuple[np.ndarray, np.ndarray]], batch: tuple[np.ndarray, np.ndarray],
                    keep_first: int) -> None:
    """Append ``batch`` (``(images, labels)``) to ``first`` while it holds fewer than ``keep_first`` rows: whole
    batches, in row order (the rows the card's quality line is measured on)."""
    if sum(len(labels) for _, labels in first) < keep_first:
        first.append(batch)
