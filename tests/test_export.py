import json

import numpy as np
import pyarrow.parquet as pq

from pipeline.export import PARQUET_NAME, decode_png, encode_png, read_parquet_images, to_table, write_imagefolder


def _images(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10


def test_png_round_trip_is_lossless_and_deterministic():
    images, _ = _images(2)
    assert encode_png(images[0]) == encode_png(images[0].copy())
    np.testing.assert_array_equal(decode_png(encode_png(images[1])), images[1])


def test_parquet_round_trip_with_huggingface_features(tmp_path):
    images, labels = _images()
    path = tmp_path / PARQUET_NAME
    pq.write_table(to_table(images, labels, np.arange(len(labels)), seed=7), path)
    back_images, back_labels = read_parquet_images(path)
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


def test_huggingface_datasets_sees_image_and_classlabel(tmp_path):
    import datasets

    images, labels = _images()
    pq.write_table(to_table(images, labels, np.arange(len(labels)), seed=0), tmp_path / PARQUET_NAME)
    dataset = datasets.load_dataset("parquet", data_files=str(tmp_path / PARQUET_NAME), split="train",
                                    cache_dir=str(tmp_path / "hf-cache"))
    assert isinstance(dataset.features["image"], datasets.Image)
    assert isinstance(dataset.features["label"], datasets.ClassLabel)
    assert dataset.features["label"].names[4] == "4"
    row = dataset[5]
    assert row["label"] == 5
    np.testing.assert_array_equal(np.asarray(row["image"]), images[5])


def test_imagefolder_is_read_by_torchvision(tmp_path):
    from torchvision.datasets import ImageFolder

    images, labels = _images(20)
    write_imagefolder(tmp_path, to_table(images, labels, np.arange(20), seed=0))
    folder = ImageFolder(tmp_path, loader=lambda p: decode_png(open(p, "rb").read()))
    assert folder.classes == [str(d) for d in range(10)]
    assert len(folder) == 20
    image, label = folder[0]
    assert folder.samples[0][0].endswith("0/000000.png") and label == 0
    np.testing.assert_array_equal(image, images[0])
