"""MNIST as published: find the four IDX files, verify their uncompressed bytes, parse them.

Source of the format and checksums: http://yann.lecun.com/exdb/mnist/ (IDX format) and
torchvision.datasets.MNIST (mirrors). The bytes are only read, never edited.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.utils import PipelineError

#: MD5 of the *uncompressed* official files (they equal the published values).
MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

_IDX_UBYTE = 0x08


class MnistError(PipelineError):
    """An MNIST file is missing, unreadable, truncated, or not the published bytes."""


@dataclass(frozen=True)
class MnistArrays:
    """The four MNIST arrays: images ``(N, 28, 28) uint8`` (0 = background), labels ``(N,) int64`` in 0-9."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def read_raw_bytes(folder: str | Path, name: str) -> bytes:
    """Uncompressed bytes of ``name`` from ``folder``, taken from ``name`` or ``name.gz``.

    Raises:
        MnistError: neither file exists, or the gzip stream is corrupt or truncated.
    """
    folder = Path(folder)
    plain, gzipped = folder / name, folder / f"{name}.gz"
    try:
        if plain.is_file():
            return plain.read_bytes()
        if gzipped.is_file():
            return gzip.decompress(gzipped.read_bytes())
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        path = plain if plain.is_file() else gzipped
        raise MnistError(f"{path}: cannot read ({error})") from None
    raise MnistError(f"{plain}[.gz]: file not found")


def verify_md5(name: str, data: bytes) -> None:
    """Check the uncompressed bytes of one MNIST file against its published MD5.

    Raises:
        MnistError: ``name`` is not an MNIST file, or the checksum differs (wrong or truncated file).
    """
    if name not in MNIST_FILES:
        raise MnistError(f"{name}: not one of the four MNIST files")
    actual = hashlib.md5(data).hexdigest()
    if actual != MNIST_FILES[name]:
        raise MnistError(
            f"{name}: MD5 of the uncompressed bytes is {actual}, expected {MNIST_FILES[name]} "
            f"({len(data)} bytes; wrong or truncated file)"
        )


def parse_idx(data: bytes, name: str = "<idx>") -> np.ndarray:
    """Parse an IDX file of unsigned bytes into an array of its declared shape.

    Args:
        data: the uncompressed file bytes (magic ``0x0000 08 <ndim>``, big-endian int32 dims, payload).
        name: used in error messages.
    Returns:
        ``uint8`` array of shape given by the header (e.g. ``(60000, 28, 28)`` or ``(60000,)``).
    Raises:
        MnistError: bad magic number, unsupported type, or payload shorter/longer than the header says.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise MnistError(f"{name}: not an IDX file (bad magic number)")
    if data[2] != _IDX_UBYTE:
        raise MnistError(f"{name}: IDX type 0x{data[2]:02x} is not unsigned byte")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MnistError(f"{name}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise MnistError(f"{name}: {len(data)} bytes, the IDX header says {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def load_verified(folder: str | Path, name: str) -> np.ndarray:
    """Read, MD5-verify and parse one MNIST file from ``folder`` (raw or ``.gz``)."""
    data = read_raw_bytes(folder, name)
    verify_md5(name, data)
    return parse_idx(data, name)


def download_with_torchvision(root: str | Path) -> Path:
    """Download MNIST from the official mirrors via ``torchvision.datasets.MNIST``; return the raw folder.

    torchvision checks the MD5 of the downloaded ``.gz`` files and unpacks them to ``root/MNIST/raw``;
    :func:`load_mnist` then verifies the uncompressed bytes again.

    Raises:
        MnistError: the download failed (e.g. no internet).
    """
    from torchvision.datasets import MNIST

    try:
        MNIST(root=str(root), train=True, download=True)
        MNIST(root=str(root), train=False, download=True)
    except Exception as error:  # noqa: BLE001 - any network/IO failure becomes one line
        raise MnistError(f"downloading MNIST with torchvision failed: {error}") from None
    return Path(root) / "MNIST" / "raw"


def load_mnist(mnist_dir: str | Path | None = None, download_root: str | Path = "data/raw") -> MnistArrays:
    """Load and verify all four MNIST files.

    Args:
        mnist_dir: folder holding the IDX files (raw or gzipped); ``None`` means the environment
            variable ``MNIST_DIR`` if set, else a torchvision download into ``download_root``.
    Returns:
        :class:`MnistArrays` with 60,000 train and 10,000 test images.
    Raises:
        MnistError: a file is missing, truncated, corrupt, or not the published bytes.
    """
    if mnist_dir is None:
        mnist_dir = os.environ.get("MNIST_DIR") or None
    folder = Path(mnist_dir) if mnist_dir else download_with_torchvision(download_root)
    if not folder.is_dir():
        raise MnistError(f"{folder}: MNIST folder not found")
    arrays = {name: load_verified(folder, name) for name in MNIST_FILES}
    return MnistArrays(
        train_images=arrays["train-images-idx3-ubyte"],
        train_labels=arrays["train-labels-idx1-ubyte"].astype(np.int64),
        test_images=arrays["t10k-images-idx3-ubyte"],
        test_labels=arrays["t10k-labels-idx1-ubyte"].astype(np.int64),
    )
