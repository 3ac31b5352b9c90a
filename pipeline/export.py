"""Labeled synthetic digits on disk: Parquet in the Hugging Face Image layout, image folders, manifests.

Parquet schema: ``image`` struct<bytes: binary (PNG), path: string> (the ``datasets.Image`` storage
layout), ``label`` int64 (``datasets.ClassLabel`` with names "0"-"9"), ``seed`` int64 and ``index``
int64 (per-row provenance: the generation seed and the image's index within its digit). The schema
metadata key ``huggingface`` carries the features, so ``datasets.load_dataset("parquet", ...)`` sees
Image and ClassLabel without extra arguments (https://huggingface.co/docs/datasets/image_load).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pipeline.models import NUM_CLASSES

CLASS_NAMES = [str(d) for d in range(NUM_CLASSES)]
PARQUET_NAME = "part-00000.parquet"

HF_FEATURES = {
    "image": {"_type": "Image"},
    "label": {"_type": "ClassLabel", "names": CLASS_NAMES},
    "seed": {"_type": "Value", "dtype": "int64"},
    "index": {"_type": "Value", "dtype": "int64"},
}

SCHEMA = pa.schema(
    [
        pa.field("image", pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])),
        pa.field("label", pa.int64()),
        pa.field("seed", pa.int64()),
        pa.field("index", pa.int64()),
    ],
    metadata={"huggingface": json.dumps({"info": {"features": HF_FEATURES}})},
)


def image_path(label: int, index: int) -> str:
    """Relative path of one image, ``"<label>/<index:06d>.png"``, in both export formats."""
    return f"{label}/{index:06d}.png"


def encode_png(image: np.ndarray) -> bytes:
    """``(28, 28) uint8`` grayscale -> PNG bytes (deterministic: same pixels, same bytes)."""
    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> ``(H, W) uint8`` grayscale array.

    Raises:
        ValueError: the bytes are not a readable image.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except Exception as error:  # noqa: BLE001 - PIL raises many types
        raise ValueError(f"not a readable PNG image ({type(error).__name__})") from None


def to_table(images: np.ndarray, labels: np.ndarray, indices: np.ndarray, seed: int) -> pa.Table:
    """Rows for ``images (N, 28, 28) uint8``, ``labels (N,) int`` in 0-9, ``indices (N,) int``."""
    pngs = [encode_png(image) for image in images]
    paths = [image_path(int(label), int(index)) for label, index in zip(labels, indices)]
    image_column = pa.StructArray.from_arrays(
        [pa.array(pngs, pa.binary()), pa.array(paths, pa.string())], fields=list(SCHEMA.field("image").type)
    )
    return pa.Table.from_arrays(
        [image_column, pa.array(labels, pa.int64()), pa.array(np.full(len(labels), seed), pa.int64()),
         pa.array(indices, pa.int64())],
        schema=SCHEMA,
    )


def write_imagefolder(root: str | Path, table: pa.Table) -> None:
    """Write each row's PNG bytes to ``root/<label>/<index>.png`` (torchvision ``ImageFolder`` layout)."""
    root = Path(root)
    for row in table.select(["image"]).to_pylist():
        path = root / row["image"]["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(row["image"]["bytes"])


def read_parquet_images(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an export back: ``(images (N, 28, 28) uint8, labels (N,) int64)``.

    Raises:
        ValueError: the file is not Parquet or lacks the ``image``/``label`` columns.
    """
    try:
        table = pq.read_table(path, columns=["image", "label"])
    except (pa.ArrowInvalid, KeyError) as error:
        raise ValueError(f"{path}: not a synthetic-digit Parquet file ({error})") from None
    images = np.stack([decode_png(b) for b in table.column("image").combine_chunks().field("bytes").to_pylist()])
    return images, table.column("label").to_numpy().astype(np.int64)
