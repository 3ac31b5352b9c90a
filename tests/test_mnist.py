import gzip
import hashlib

import numpy as np
import pytest

from pipeline.data import mnist
from pipeline.data.mnist import MnistError, load_mnist, parse_idx, read_raw_bytes, verify_md5
from tests.conftest import assert_one_line_error, run_module


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_parse_idx_round_trip():
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    np.testing.assert_array_equal(parse_idx(idx_bytes(images)), images)
    labels = np.array([3, 1, 4], np.uint8)
    np.testing.assert_array_equal(parse_idx(idx_bytes(labels)), labels)


def test_parse_idx_rejects_truncated_and_bad_magic():
    data = idx_bytes(np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(MnistError, match="the IDX header says"):
        parse_idx(data[:-5], "train-images-idx3-ubyte")
    with pytest.raises(MnistError, match="bad magic"):
        parse_idx(b"\x01\x02" + data[2:])


def test_verify_md5_names_file():
    with pytest.raises(MnistError, match="t10k-labels-idx1-ubyte: MD5"):
        verify_md5("t10k-labels-idx1-ubyte", b"not mnist")


def test_read_raw_bytes_gz_and_missing(tmp_path):
    (tmp_path / "a.gz").write_bytes(gzip.compress(b"hello"))
    assert read_raw_bytes(tmp_path, "a") == b"hello"
    (tmp_path / "b.gz").write_bytes(gzip.compress(b"hello" * 100)[:20])
    with pytest.raises(MnistError, match="b.gz: cannot read"):
        read_raw_bytes(tmp_path, "b")
    with pytest.raises(MnistError, match="c\\[.gz\\]: file not found"):
        read_raw_bytes(tmp_path, "c")


def test_load_mnist_verifies_real_files(mnist_dir):
    arrays = load_mnist(mnist_dir)
    assert arrays.train_images.shape == (60000, 28, 28) and arrays.train_images.dtype == np.uint8
    assert arrays.test_images.shape == (10000, 28, 28)
    assert set(np.unique(arrays.test_labels)) == set(range(10))


def test_load_mnist_reads_raw_idx_too(mnist_dir, tmp_path):
    for name in mnist.MNIST_FILES:
        (tmp_path / name).write_bytes(gzip.decompress((mnist_dir / f"{name}.gz").read_bytes()))
    assert load_mnist(tmp_path).test_labels.shape == (10000,)


def _broken_copy(mnist_dir, tmp_path, name, data):
    for other in mnist.MNIST_FILES:
        if other != name:
            (tmp_path / f"{other}.gz").symlink_to(mnist_dir / f"{other}.gz")
    if data is not None:
        (tmp_path / f"{name}.gz").write_bytes(data)
    return tmp_path


@pytest.mark.parametrize("case", ["missing", "truncated", "wrong"])
def test_prepare_rejects_bad_mnist_file_with_one_line(mnist_dir, tmp_path, case):
    name = "t10k-labels-idx1-ubyte"
    original = gzip.decompress((mnist_dir / f"{name}.gz").read_bytes())
    data = {
        "missing": None,
        "truncated": gzip.compress(original[:-100]),
        "wrong": gzip.compress(original[:-1] + bytes([(original[-1] + 1) % 256])),
    }[case]
    folder = _broken_copy(mnist_dir, tmp_path / "mnist", name, data) if (tmp_path / "mnist").mkdir() is None else None
    out = tmp_path / "prepared"
    result = run_module("pipeline.prepare", "--out", str(out), "--metrics", str(tmp_path / "m.json"),
                        env={"MNIST_DIR": str(folder)})
    assert_one_line_error(result, name)
    assert not out.exists()
    assert not (tmp_path / "m.json").exists()
    assert hashlib.md5(original).hexdigest() == mnist.MNIST_FILES[name]
