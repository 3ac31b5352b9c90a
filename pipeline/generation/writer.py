"""The writer process of ``pipeline.generate`` (not for direct use): reads pickled messages from stdin,
PNG-encodes the images and streams them into Parquet shards / an image folder with
:class:`pipeline.generation.formats.ShardWriter`, and answers on stdout.

Usage: ``python -m pipeline.generation.writer ROOT FORMAT CURATED SEED WRITERS``. Messages: ``("open", shard)``,
``("rows", {"images", "labels", "indices", ...})``, ``("table", pa.Table)`` (rows encoded elsewhere),
``("close", None)`` (answers ``("closed", info)``)
and ``None`` (exit 0). On any error it answers ``("error", one line)`` and exits 1; at the end of its
input (the parent was killed) it exits 1 without answering. It imports no torch, so it stays small.

With WRITERS = 1 this process encodes and writes; with more, a pool of WRITERS encoder processes
(``concurrent.futures.ProcessPoolExecutor``) PNG-encodes batches (and writes their image-folder files) while
this process writes the Parquet row groups in row order, so the bytes do not depend on WRITERS (tested).
:class:`ExportWriter` also serves ``pipeline.generate --writers 0`` inside the sampling process.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pyarrow as pa

from pipeline.generation.formats import ShardWriter, to_table, write_imagefolder


def encode_batch(body: dict, seed: int, root: Path, fmt: str) -> pa.Table:
    """One ``rows`` message as an Arrow table (PNG-encoded); image-folder files are written here."""
    table = to_table(body["images"], body["labels"], body["indices"], seed, body.get("judge_label"),
                     body.get("judge_confidence"))
    if fmt != "parquet":
        write_imagefolder(root, table)
    return table


def _nice() -> None:
    os.nice(5)  # sampling G is the bottleneck: encoding and writing take the CPU time it leaves


class ExportWriter:
    """The messages' handler: ``handle(("open", shard))``, ``handle(("rows", body))``, ``handle(("table",
    table))``, ``handle(("close", None))`` -> ``{"file", "rows", "bytes"}`` (else None). With ``encoders`` > 0, a pool of that many processes
    (``concurrent.futures.ProcessPoolExecutor``) PNG-encodes batches, at most two per process ahead, and the
    Parquet row groups are written here in row order; with 0 this object encodes itself."""

    def __init__(self, root: Path, fmt: str, curated: bool, seed: int, encoders: int = 0):
        self.root, self.fmt, self.curated, self.seed, self.encoders = root, fmt, curated, seed, encoders
        self.pool = (ProcessPoolExecutor(encoders, multiprocessing.get_context("spawn"), initializer=_nice)
                     if encoders > 0 else None)
        self.pending: deque = deque()
        self.shard: ShardWriter | None = None

    def handle(self, message: tuple) -> dict | None:
        kind, body = message
        if kind == "open":
            self.shard = ShardWriter(self.root, body, self.fmt, self.curated)
        elif kind == "table":  # already encoded (by a sampler process of pipeline.generation.samplers)
            self.shard.write(body)
        elif kind == "rows" and self.pool is None:
            self.shard.write(encode_batch(body, self.seed, self.root, self.fmt))
        elif kind == "rows":
            self.pending.append(self.pool.submit(encode_batch, body, self.seed, self.root, self.fmt))
            self._drain(2 * self.encoders)
        elif kind == "close":
            self._drain(0)
            return self.shard.close()
        return None

    def _drain(self, keep: int) -> None:
        while len(self.pending) > keep:
            self.shard.write(self.pending.popleft().result())

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def serve(root: Path, fmt: str, curated: bool, seed: int, inbox, outbox, writers: int = 1) -> int:
    """Handle messages from ``inbox`` until ``None`` (returns 0), an error or end of input (returns 1).
    ``writers`` processes encode: this one alone (1), or a pool of that many beside it (> 1)."""
    writer = ExportWriter(root, fmt, curated, seed, writers if writers > 1 else 0)
    try:
        while True:
            try:
                message = pickle.load(inbox)
            except EOFError:
                return 1
            if message is None:
                return 0
            answer = writer.handle(message)
            if answer is not None:
                pickle.dump(("closed", answer), outbox)
                outbox.flush()
    except Exception as error:  # noqa: BLE001 - reported to the parent as one line
        pickle.dump(("error", f"export writer failed: {type(error).__name__}: {error}"), outbox)
        outbox.flush()
        return 1
    finally:
        writer.shutdown()


if __name__ == "__main__":
    if len(sys.argv) != 6 or not sys.argv[4].lstrip("-").isdigit() or not sys.argv[5].isdigit():
        sys.exit("Error: pipeline.generation.writer is started by pipeline.generate "
                 "(usage: ROOT FORMAT CURATED SEED WRITERS)")
    _nice()
    root, fmt, curated, seed, writers = sys.argv[1:6]
    sys.exit(serve(Path(root), fmt, curated == "1", int(seed), sys.stdin.buffer, sys.stdout.buffer,
                   max(1, int(writers))))
