"""Labeled synthetic digits on disk: Parquet shards in the Hugging Face Image layout, image folders.

Parquet schema: ``image`` struct<bytes: binary (PNG), path: string> (the ``datasets.Image`` storage
layout), ``label`` int64 (``datasets.ClassLabel`` with names "0"-"9"), ``seed`` int64 and ``index``
int64 (per-row provenance: the generation seed and the image's index within its digit); curated exports
add ``judge_label`` int64 and ``judge_confidence`` float32. The schema metadata key ``huggingface``
carries the features, so ``datasets.load_dataset("parquet", ...)`` sees Image and ClassLabel without
extra arguments (https://huggingface.co/docs/datasets/image_load).

:class:`ShardWriter` is the consumer side of an export (run by ``pipeline.generation.writer`` in a process of its
own, so that sampling G(z, y) overlaps with encoding and writing). This module does not import torch,
so that process stays small.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from zlib_ng import zlib_ng

CLASS_NAMES = [str(d) for d in range(10)]  # the MNIST digits (pipeline.training.networks.NUM_CLASSES; no torch import here)
#: Rows per Parquet row group: each is written as soon as it fills (~3.5 MB of PNGs).
ROW_GROUP_ROWS = 10_000
#: Conservative bytes per image on disk, for the free-space check (a Parquet row is a PNG of about 300 B plus
#: its columns; an image folder takes one 4 KiB file-system block per PNG).
BYTES_PER_IMAGE = {"parquet": 512, "imagefolder": 4096}


def shard_name(shard: int) -> str:
    """File name of shard ``shard``: ``"part-00000.parquet"``, ``"part-00001.parquet"``, ..."""
    return f"part-{shard:05d}.parquet"


def hf_features(curated: bool = False) -> dict:
    """The ``datasets`` features of an export (stored in the Parquet schema metadata)."""
    features = {
        "image": {"_type": "Image"},
        "label": {"_type": "ClassLabel", "names": CLASS_NAMES},
        "seed": {"_type": "Value", "dtype": "int64"},
        "index": {"_type": "Value", "dtype": "int64"},
    }
    if curated:
        features["judge_label"] = {"_type": "Value", "dtype": "int64"}
        features["judge_confidence"] = {"_type": "Value", "dtype": "float32"}
    return features


def export_schema(curated: bool = False) -> pa.Schema:
    """Arrow schema of an export's shards (curated exports carry the judge's columns)."""
    fields = [
        pa.field("image", pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])),
        pa.field("label", pa.int64()),
        pa.field("seed", pa.int64()),
        pa.field("index", pa.int64()),
    ]
    if curated:
        fields += [pa.field("judge_label", pa.int64()), pa.field("judge_confidence", pa.float32())]
    return pa.schema(fields, metadata={"huggingface": json.dumps({"info": {"features": hf_features(curated)}})})


def image_path(label: int, index: int) -> str:
    """Relative path of one image, ``"<label>/<index:06d>.png"``, in both export formats."""
    return f"{label}/{index:06d}.png"


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Deflate level of the PNGs: zlib-ng's fastest level that still compresses, since encoding shares the CPU
#: cores with G; higher levels buy slightly smaller shards with more CPU time per image.
PNG_LEVEL = 1


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_pngs(images: np.ndarray, compress=None) -> list[bytes]:
    """``(N, H, W) uint8`` grayscale -> N PNG files as bytes: 8-bit grayscale, no interlace, filter type 0
    on every row, deflated by zlib-ng (https://github.com/pycompression/python-zlib-ng) at :data:`PNG_LEVEL`
    (PNG spec, https://www.w3.org/TR/png/). Deterministic for a given zlib-ng version (the manifest records it).

    Written here rather than with Pillow, and with zlib-ng rather than the standard library's zlib, because
    encoding runs on the CPU cores that also sample G: Pillow's per-image overhead and zlib's compression of
    small inputs cost several times zlib-ng's level 1 per 28x28 image (``inference.png_encode_us_per_image``
    in reports/metrics/benchmark.json). Pillow decodes the result to the same pixels (tested). ``compress`` (bytes ->
    zlib stream) replaces the deflater, for that benchmark.
    """
    compress = compress or (lambda data: zlib_ng.compress(data, PNG_LEVEL))
    n, height, width = images.shape
    header = _PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    end = _png_chunk(b"IEND", b"")
    rows = np.concatenate([np.zeros((n, height, 1), np.uint8), images], axis=2).reshape(n, -1)  # filter byte 0
    return [header + _png_chunk(b"IDAT", compress(row.tobytes())) + end for row in rows]


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> ``(H, W) uint8`` grayscale array.

    Raises:
        ValueError: the bytes are not a readable image.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.array(image.convert("L"), dtype=np.uint8)
    except Exception as error:  # noqa: BLE001 - PIL raises many types
        raise ValueError(f"not a readable PNG image ({type(error).__name__})") from None


def to_table(images: np.ndarray, labels: np.ndarray, indices: np.ndarray, seed: int,
             judge_label: np.ndarray | None = None, judge_confidence: np.ndarray | None = None) -> pa.Table:
    """Rows for ``images (N, 28, 28) uint8``, ``labels (N,) int`` in 0-9, ``indices (N,) int``; with
    ``judge_label (N,) int`` and ``judge_confidence (N,) float`` the curated schema."""
    curated = judge_label is not None
    schema = export_schema(curated)
    pngs = encode_pngs(np.ascontiguousarray(images, dtype=np.uint8))
    paths = [image_path(label, index) for label, index in zip(labels.tolist(), indices.tolist())]
    image_column = pa.StructArray.from_arrays(
        [pa.array(pngs, pa.binary()), pa.array(paths, pa.string())], fields=list(schema.field("image").type)
    )
    columns = [image_column, pa.array(labels, pa.int64()), pa.array(np.full(len(labels), seed), pa.int64()),
               pa.array(indices, pa.int64())]
    if curated:
        columns += [pa.array(judge_label, pa.int64()), pa.array(judge_confidence, pa.float32())]
    return pa.Table.from_arrays(columns, schema=schema)


def write_imagefolder(root: str | Path, table: pa.Table) -> None:
    """Write each row's PNG bytes to ``root/<label>/<index>.png`` (torchvision ``ImageFolder`` layout)."""
    root = Path(root)
    column = table.column("image").combine_chunks()
    for data, path in zip(column.field("bytes").to_pylist(), column.field("path").to_pylist()):
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


class ShardWriter:
    """Streams rows into one Parquet shard (row groups written as they fill) and counts the rows of a shard of
    any format."""

    def __init__(self, root: Path, shard: int, fmt: str, curated: bool):
        self.root, self.fmt, self.name = root, fmt, shard_name(shard)
        self.writer = pq.ParquetWriter(root / self.name, export_schema(curated)) if fmt != "imagefolder" else None
        self.pending: list[pa.Table] = []
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        """Add the rows of ``table`` (from :func:`to_table`) to the Parquet shard; an image folder's files are
        written by the caller (:func:`write_imagefolder`), which may run in another process."""
        self.rows += table.num_rows
        if self.writer is not None:
            self.pending.append(table)
            if sum(t.num_rows for t in self.pending) >= ROW_GROUP_ROWS:
                self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.concat_tables(self.pending), row_group_size=ROW_GROUP_ROWS)
            self.pending = []

    def close(self) -> dict:
        """Finish the shard: ``{"file", "rows", "bytes"}`` (file None and 0 bytes for image folders)."""
        if self.writer is None:
            return {"file": None, "rows": self.rows, "bytes": 0}
        self._flush()
        self.writer.close()
        return {"file": self.name, "rows": self.rows, "bytes": (self.root / self.name).stat().st_size}
