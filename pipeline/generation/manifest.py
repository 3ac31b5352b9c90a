"""An export's ``manifest.json``: what it holds (counts, shards with sha256), how it was made (seed,
layout, generator checkpoint, curation, code revision, library versions) and its export-time quality.
Pure and importable.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import sys
from pathlib import Path

import numpy as np
import PIL
import pyarrow
import torch
import zlib_ng

from pipeline.generation.inference import InferenceGenerator, bfloat16_inference_is_native
from pipeline.generation.sampling import BLOCK_SIZE, ShardLayout, judge_images
from pipeline.training.networks import Classifier


def code_revision() -> dict:
    """The code that made an export: the package version and the sha256 of the source of every
    ``pipeline`` module loaded in this process (sorted by name; a git commit would change with every
    commit, even one that leaves generation alone, and make DVC rerun the evaluation)."""
    digest, sources = hashlib.sha256(), {}
    for module in list(sys.modules.values()):  # a stage run with -m is "__main__"; its spec has the real name
        name = getattr(getattr(module, "__spec__", None), "name", None) or getattr(module, "__name__", "")
        source = getattr(module, "__file__", None)
        if (name == "pipeline" or name.startswith("pipeline.")) and source and Path(source).is_file():
            sources[name] = Path(source)
    modules = sorted(sources)
    for name in modules:
        digest.update(name.encode() + b"\0" + sources[name].read_bytes() + b"\0")
    try:
        version = importlib.metadata.version("synthetic-digits")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"package_version": version, "source_sha256": digest.hexdigest(), "modules": modules}


def card_quality(classifier: Classifier, classifier_path: str, first: list[tuple[np.ndarray, np.ndarray]],
                 same_as_curator: bool) -> dict:
    """Class-conditional accuracy and mean confidence of ``classifier`` on the first rows of an export.

    Args:
        first: ``(images (n, 28, 28) uint8, labels (n,) int64)`` batches, in row order.
    """
    images, labels = np.concatenate([f[0] for f in first]), np.concatenate([f[1] for f in first])
    probs, predicted = judge_images(classifier, images)
    return {"classifier": str(classifier_path), "images": int(len(labels)),
            "class_conditional_accuracy": float((predicted == labels).mean()),
            "mean_confidence": float(probs.max(1).mean()), "same_as_curator": same_as_curator}


def curation_record(min_confidence: float, classifier_path: str, classifier_sha256: str, draws: np.ndarray,
                    kept: np.ndarray, digits) -> dict:
    """The manifest's ``curation``: threshold, curating classifier, and acceptance = kept / draws per digit
    (``draws``, ``kept``: ``(10,) int`` counts)."""
    return {"min_confidence": min_confidence, "draws": int(draws.sum()),
            "classifier": {"path": str(classifier_path), "sha256": classifier_sha256},
            "acceptance_rate": {"overall": float(kept.sum() / draws.sum()),
                                "per_class": {str(d): float(kept[d] / draws[d]) for d in digits}}}


def inference_record(generator: InferenceGenerator, device: torch.device) -> dict:
    """The manifest's ``inference``: how G ran (``precision``, ``path``), where (``device``, the CPU's
    ``cpu_capability`` from ``torch.backends.cpu.get_cpu_capability()``, ``bfloat16_native``), and which
    bytes it promises (``reproducible``): float32 the same on every CPU type, bfloat16 on this machine only."""
    return {**generator.record, "device": str(device), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "bfloat16_native": bfloat16_inference_is_native(device),
            "reproducible": ("same bytes on any CPU" if generator.precision == "float32" and device.type == "cpu"
                             else "same bytes on this machine")}


def build_manifest(layout: ShardLayout, shards: list[dict], shard_index: int | None, seed: int, fmt: str,
                   checkpoint: dict, curation: dict | None, quality: dict | None, batch_size: int,
                   latent_scale: float = 1.0, inference: dict | None = None, ray: dict | None = None) -> dict:
    """The manifest of an export of ``shards`` (each ``{"index", "first_row", "file", "rows", "bytes",
    "sha256"}``) cut from ``layout``; ``shard_index`` is set when only that shard was written;
    ``latent_scale``: the s of z ~ N(0, s² I) (:class:`pipeline.generation.sampling.LatentStreams`);
    ``inference``: :func:`inference_record` (a list of them when Ray tasks on different machines ran G
    differently); ``ray``: how a Ray run was spread (:class:`pipeline.generation.distributed.RayOptions`,
    ``tasks``, ``nodes``), absent for a run on one machine."""
    counts = dict.fromkeys(map(str, layout.digits), 0)
    for shard in shards:
        rows = range(shard["first_row"], shard["first_row"] + shard["rows"])
        labels, _ = layout.labels_and_indices(rows)
        for digit, count in zip(*np.unique(labels, return_counts=True)):
            counts[str(digit)] += int(count)
    manifest = {
        "total": sum(s["rows"] for s in shards),
        "counts": counts,
        "seed": seed,
        "latent_scale": latent_scale,
        "format": fmt,
        "shard_index": shard_index,
        "shards": shards,
        "layout": {"digits": list(layout.digits), "per_class": layout.per_class, "num_shards": layout.num_shards,
                   "rows_per_shard": layout.rows_per_shard, "batch_size": batch_size, "block_size": BLOCK_SIZE,
                   "row_order": "row r holds digit digits[r % len(digits)], index r // len(digits)"},
        "generator_checkpoint": checkpoint,
        "inference": inference,
        "curation": curation,
        "quality": quality,
        "code_revision": code_revision(),
        "torch_version": torch.__version__,
        "pyarrow_version": pyarrow.__version__,
        "pillow_version": PIL.__version__,
        "zlib_ng_version": zlib_ng.__version__,
    }
    if ray is not None:
        manifest["ray"] = ray
    return manifest
