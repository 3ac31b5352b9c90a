"""How fast G samples on this machine: the forward pass on the reference and inference paths, the
``torch.compile`` trade-off and PNG encoding cost. Measurement functions of ``pipeline.tools.benchmark``
(which writes them to reports/metrics/benchmark.json); pure and importable.
"""

from __future__ import annotations

import logging
import time
import zlib

import numpy as np
import torch

from pipeline.generation.formats import encode_pngs
from pipeline.generation.inference import InferenceGenerator, bfloat16_inference_is_native, resolve_precision
from pipeline.training.networks import NUM_CLASSES, Generator

log = logging.getLogger(__name__)


def sync(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA); nothing on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def generator_throughput(generator: Generator | InferenceGenerator, device: torch.device, images: int,
                         batch_size: int) -> float:
    """Images/s of the pure forward pass G(z, y), z and labels already on ``device``, after one warm-up batch
    (an :class:`InferenceGenerator` also returns its images to the CPU, as sampling does)."""
    generator.eval()
    z = torch.randn(batch_size, generator.config.z_dim, device=device)
    labels = torch.arange(batch_size, device=device) % NUM_CLASSES
    with torch.inference_mode():
        generator(z, labels)
        sync(device)
        start = time.perf_counter()
        done = 0
        while done < images:
            generator(z, labels)
            done += batch_size
        sync(device)
    return done / (time.perf_counter() - start)


def inference_benchmark(generator: Generator, device: torch.device, images: int, batch_size: int,
                        compile_model: bool) -> dict:
    """G's forward images/s on the reference path and on the inference path per precision (bfloat16 only where
    native), their ratios, the ``torch.compile`` trade-off and PNG encoding µs per image (see the module doc)."""
    reference = generator_throughput(InferenceGenerator(generator, reference=True), device, images, batch_size)
    forward = {"reference_float32": round(reference, 1)}
    for precision in ("float32", "bfloat16"):
        native = precision == "float32" or bfloat16_inference_is_native(device)
        forward[precision] = round(generator_throughput(InferenceGenerator(generator, precision), device, images,
                                                        batch_size), 1) if native else None
    default = resolve_precision("auto", device)
    log.info("G forward, inference path: %s images/s (reference float32: %.0f)",
             ", ".join(f"{k} {v:,.0f}" for k, v in forward.items() if k != "reference_float32" and v), reference)
    out = {"batch_size": batch_size, "default_precision": default, "forward_images_per_second": forward,
           "forward_ratio_to_reference": {k: round(v / reference, 2) if v else None for k, v in forward.items()
                                          if k != "reference_float32"},
           "png_encode_us_per_image": png_encode_costs()}
    if compile_model:
        out["compile"] = compile_tradeoff(InferenceGenerator(generator, default), device, batch_size,
                                          forward[default])
    return out


def compile_tradeoff(model: InferenceGenerator, device: torch.device, batch_size: int, eager: float) -> dict:
    """Compile ``model``'s network with ``torch.compile`` (default mode): the seconds of its first call, its
    images/s after that, and the seconds 10,000, 60,000 and 1,000,000 images take eager (at ``eager``
    images/s) and compiled (first call + images / compiled images/s)."""
    model.model = torch.compile(model.model)
    z = torch.randn(batch_size, model.config.z_dim, device=device)
    labels = torch.arange(batch_size, device=device) % NUM_CLASSES
    start = time.perf_counter()
    model(z, labels)
    sync(device)
    first_call = time.perf_counter() - start
    compiled = generator_throughput(model, device, 10 * batch_size, batch_size)
    seconds = {str(n): {"eager": round(n / eager, 1), "compiled": round(first_call + n / compiled, 1)}
               for n in (10_000, 60_000, 1_000_000)}
    log.info("torch.compile: %.1f s to compile, then %.0f images/s (eager %.0f)", first_call, compiled, eager)
    return {"precision": model.precision, "compile_seconds": round(first_call, 1),
            "images_per_second": round(compiled, 1), "seconds": seconds,
            "pays_for": [n for n, s in seconds.items() if s["compiled"] < s["eager"]]}


def png_encode_costs(images: int = 10_000) -> dict:
    """µs per 28x28 PNG (:func:`pipeline.generation.formats.encode_pngs`) with the standard library's zlib at
    level 6 and with zlib-ng at :data:`pipeline.generation.formats.PNG_LEVEL`, on MNIST-like test digits
    (blurred random strokes, so deflate finds as much structure as in G's digits)."""
    rng = np.random.default_rng(0)
    strokes = (rng.random((images, 28, 28)) < 0.08).astype(np.float32)
    digits = torch.nn.functional.avg_pool2d(torch.from_numpy(strokes)[:, None], 3, 1, 1)[:, 0].numpy()
    digits = (np.clip(digits * 3, 0, 1) * 255).astype(np.uint8)
    costs = {}
    for name, compress in (("zlib_level_6", lambda data: zlib.compress(data, 6)), ("zlib_ng_level_1", None)):
        start = time.perf_counter()
        encode_pngs(digits, compress)
        costs[name] = round((time.perf_counter() - start) / images * 1e6, 2)
    return costs
