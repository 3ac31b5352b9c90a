"""The writer process of ``pipeline.generate`` (not for direct use): reads pickled messages from stdin,
PNG-encodes the images and streams them into Parquet shards / an image folder with
:class:`pipeline.generation.formats.ShardWriter`, and answers on stdout.

Usage: ``python -m pipeline.generation.writer ROOT FORMAT CURATED SEED``. Messages: ``("open", shard)``,
``("rows", {"images", "labels", "indices", ...})``, ``("close", None)`` (answers ``("closed", info)``)
and ``None`` (exit 0). On any error it answers ``("error", one line)`` and exits 1; at the end of its
input (the parent was killed) it exits 1 without answering. It imports no torch, so it stays small.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

from pipeline.generation.formats import ShardWriter, to_table


def serve(root: Path, fmt: str, curated: bool, seed: int, inbox, outbox) -> int:
    """Handle messages from ``inbox`` until ``None`` (returns 0), an error or end of input (returns 1)."""
    writer = None
    try:
        while True:
            try:
                message = pickle.load(inbox)
            except EOFError:
                return 1
            if message is None:
                return 0
            kind, body = message
            if kind == "open":
                writer = ShardWriter(root, body, fmt, curated)
            elif kind == "rows":
                writer.write(to_table(body["images"], body["labels"], body["indices"], seed,
                                      body.get("judge_label"), body.get("judge_confidence")))
            elif kind == "close":
                pickle.dump(("closed", writer.close()), outbox)
                outbox.flush()
    except Exception as error:  # noqa: BLE001 - reported to the parent as one line
        pickle.dump(("error", f"export writer failed: {type(error).__name__}: {error}"), outbox)
        outbox.flush()
        return 1


if __name__ == "__main__":
    if len(sys.argv) != 5 or not sys.argv[4].lstrip("-").isdigit():
        sys.exit("Error: pipeline.generation.writer is started by pipeline.generate (usage: ROOT FORMAT CURATED SEED)")
    os.nice(5)  # sampling G is the bottleneck: encoding and writing take the CPU time it leaves
    root, fmt, curated, seed = sys.argv[1:5]
    sys.exit(serve(Path(root), fmt, curated == "1", int(seed), sys.stdin.buffer, sys.stdout.buffer))
