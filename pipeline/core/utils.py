"""Small shared helpers: seeding, device choice, atomic writes, hashing, logging.

Pure and importable: nothing here runs at import time.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import random
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

log = logging.getLogger(__name__)


class PipelineError(Exception):
    """Base of the errors a user can cause (bad params, files, checkpoints); stages print them as one line."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) and ask torch for deterministic kernels.

    Args:
        seed: any int in [0, 2**32).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def get_device(name: str = "auto") -> torch.device:
    """Return ``cuda`` when ``name`` is "auto" and a GPU is present, else ``cpu``; other names
    (``"cpu"``, ``"cuda"``, ``"cuda:1"``) pass through.

    Raises:
        PipelineError: (one line) ``name`` is not a device torch knows, or names CUDA on a machine without
            a CUDA GPU.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PipelineError(f"--device {name!r} is not a device torch knows (cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PipelineError(f"--device {name}: this machine has no CUDA GPU (use cpu or auto)")
    return device


AUTOCAST_DTYPES = {"": None, "bfloat16": torch.bfloat16}


def bfloat16_is_native(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 convolutions and matrix products with fast kernels.

    CPU: the check PyTorch's oneDNN bfloat16 path makes (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``:
    AVX-512 BW, VL and DQ; a PyTorch without that op counts as true). Without it PyTorch emulates bfloat16
    with reference kernels, far slower than float32.
    CUDA: ``torch.cuda.is_bf16_supported()``. Other devices: True (left to torch).
    """
    if device.type == "cpu":
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return True if check is None else bool(check())
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return True


@functools.lru_cache(maxsize=None)
def _warn_bfloat16_emulated(device_type: str) -> None:
    logging.getLogger(__name__).warning(
        "autocast 'bfloat16' requested, but this %s has no fast bfloat16 kernels (a CPU needs AVX-512; emulated "
        "bfloat16 made a cGAN step 11x slower than float32): training in float32 instead", device_type)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed-precision context for a training step (``torch.autocast``, PyTorch AMP documentation).

    ``precision`` is ``""`` (float32 throughout: a no-op context) or ``"bfloat16"``: convolutions and
    matrix products run in bfloat16 while weights, batch-norm statistics, optimiser state and the losses
    stay float32. On a CPU with AVX512-BF16 it trains the judge and the cGAN faster (their ratio:
    ``autocast_comparison`` in reports/metrics/benchmark.json). Where the device has no fast
    bfloat16 kernels (:func:`bfloat16_is_native` is False) ``"bfloat16"`` falls back to float32 with one
    warning per process: emulated bfloat16 measured an order of magnitude slower there. Inference
    (export, metrics) always runs in float32.

    Raises:
        PipelineError: an unknown ``precision``.
    """
    if precision not in AUTOCAST_DTYPES:
        raise PipelineError(f"autocast must be one of {sorted(AUTOCAST_DTYPES)}, got {precision!r}")
    if AUTOCAST_DTYPES[precision] is None:
        return contextlib.nullcontext()
    if AUTOCAST_DTYPES[precision] is torch.bfloat16 and not bfloat16_is_native(device):
        _warn_bfloat16_emulated(device.type)
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def temporary_sibling(destination: str | Path) -> Path:
    """A fresh, empty folder beside ``destination``, named ``.<name>.tmp-<host>-<pid>-<random>``.

    Folders of that pattern left by killed processes of this host (their pid is gone) are removed first, so
    an interrupted write leaves nothing behind for long and never anything that looks finished.
    """
    destination = Path(destination)
    host, prefix = socket.gethostname(), f".{destination.name}.tmp-"
    for old in destination.parent.glob(prefix + "*"):
        parts = old.name[len(prefix):].split("-")
        if len(parts) >= 3 and "-".join(parts[:-2]) == host and parts[-2].isdigit() and not _alive(int(parts[-2])):
            log.info("removing %s, left by a run that was killed", old)
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{host}-{os.getpid()}-", dir=destination.parent))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def replace_path(source: str | Path, destination: str | Path) -> None:
    """Rename ``source`` (a file or a folder) to ``destination`` on the same file system.

    A file replaces an existing one atomically (``os.replace``). An existing folder is moved aside first and
    deleted after, so a complete one is at ``destination`` at every moment but one rename.
    """
    source, destination = Path(source), Path(destination)
    if destination.is_dir() and not destination.is_symlink():
        aside = Path(tempfile.mkdtemp(prefix=f".{destination.name}.old-", dir=destination.parent))
        os.replace(destination, aside / destination.name)
        os.replace(source, destination)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(source, destination)


@contextlib.contextmanager
def atomic_path(destination: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; rename it into place only if the block succeeds.

    Works for a file or a folder written at the yielded path (inside :func:`temporary_sibling`). On any error
    the temporary folder is removed, so nothing half-written ever sits at ``destination``; an existing
    ``destination`` is replaced only after the new one is complete (:func:`replace_path`).
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(destination)
    try:
        yield tmp / destination.name
        replace_path(tmp / destination.name, destination)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented, key-sorted JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """``torch.save`` a dict of tensors and plain values, atomically."""
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def setup_logging(verbose: bool = False) -> None:
    """Configure stdlib logging for a stage's ``main()``: one line per message on stderr."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
