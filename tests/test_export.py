import json

import numpy as np
import pyarrow.parquet as pq

from pipeline.dataset import read_export
from pipeline.generation.formats import decode_png, encode_pngs, to_table

PARQUET_NAME = "part-00000.parquet"


def _images(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10


def test_png_round_trip_is_lossless_and_deterministic():
    images, _ = _images(2)
    assert encode_pngs(images[:1]) == encode_pngs(images[:1].copy())
    np.testing.assert_array_equal(decode_png(encode_pngs(images[1:2])[0]), images[1])


def test_parquet_round_trip_with_huggingface_features(tmp_path):
    images, labels = _images()
    path = tmp_path / PARQUET_NAME
    pq.write_table(to_table(images, labels, np.arange(len(labels)), seed=7), path)
    manifest = {"counts": {}, "shards": [{"file": PARQUET_NAME, "bytes": path.stat().st_size, "sha256": None}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    back_images, back_labels = read_export(tmp_path, verify=False)
    np.testing.assert_array_equal(back_images, images)
    np.testing.assert_array_equal(back_labels, labels)
    schema = pq.read_schema(path)
    features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert features["image"] == {"_type": "Image"}
    assert features["label"]["_type"] == "ClassLabel" and features["label"]["names"] == [str(d) for d in range(10)]
    table = pq.read_table(path)
    assert table.column("seed").to_pylist() == [7] * len(labels)
    assert str(table.schema.field("label").type) == "int64"
    assert table.column("image")[3].as_py()["path"] == "3/000003.png"
