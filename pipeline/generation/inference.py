"""The generator's inference path: G(z, y) as everything that samples runs it (generate, the app, the study,
the judging helpers), with BatchNorm folded into the layer before it, channels-last activations and, where
asked for, bfloat16.

Three precisions (``--precision`` of ``pipeline.generate``, ``generate.precision`` for the DVC stage):

- ``float32``: folded and channels-last, float32 arithmetic. Its pixels differ from the reference path's
  in about one pixel in a million, by one grey level (BatchNorm folding rounds differently; tested), and
  they did not change with the oneDNN kernel level (AVX2, AVX-512, AVX-512 BF16) in the runs recorded in
  reports/experiments.md: the path of the DVC stage.
- ``bfloat16``: the same under ``torch.autocast(dtype=torch.bfloat16)`` (PyTorch AMP documentation); its
  bytes depend on the kernels the CPU gets (native AVX-512 BF16, AMX or emulation), so they are
  reproducible on one machine, not promised across CPU types.
- ``auto``: ``bfloat16`` where the device has native bfloat16 (:func:`bfloat16_inference_is_native`),
  else ``float32``.

The reference path (``reference=True``: float32, channels-first, BatchNorm as trained, eager) is what
every export used before this module; the benchmark measures against it and the tests check the fast
paths against it. ``torch.compile`` is not used: the benchmark measures whether it pays back its compile
time (``inference`` section of reports/metrics/benchmark.json).
"""

from __future__ import annotations

import copy
import ctypes
import functools
import logging

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from pipeline.core.utils import PipelineError
from pipeline.training.networks import Generator, GeneratorConfig

log = logging.getLogger(__name__)

#: The choices of ``--precision``.
PRECISIONS = ("float32", "bfloat16", "auto")
#: On a CPU, G runs over at most this many images at a time: the activations of a larger batch (over 32 MB, the
#: most glibc's malloc serves from its heap) are mapped fresh and page-faulted in on every call, which cost
#: more than the smaller batches' overhead (benchmark: ``inference`` in reports/metrics/benchmark.json).
CPU_CHUNK = 500


def bfloat16_inference_is_native(device: torch.device) -> bool:
    """Whether ``device`` has native bfloat16 arithmetic: on a CPU, AVX-512 BF16 or AMX tiles (torch's own
    queries ``torch.cpu._is_avx512_bf16_supported()`` and ``torch.cpu._is_amx_tile_supported()``); on CUDA,
    ``torch.cuda.is_bf16_supported()``; other devices: False. Stricter than
    :func:`pipeline.core.utils.bfloat16_is_native`, the training autocast's test, which also accepts oneDNN's
    bfloat16 on AVX-512 without BF16 instructions (fast enough for training, not faster than float32 here)."""
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"float32"`` or ``"bfloat16"`` for a ``--precision`` choice on ``device`` (``auto``: bfloat16 only where
    it is native).

    Raises:
        PipelineError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise PipelineError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bfloat16" if bfloat16_inference_is_native(device) else "float32"
    if precision == "bfloat16" and not bfloat16_inference_is_native(device):
        log.warning("bfloat16 asked for, but this %s has no native bfloat16: it is emulated (slower than float32)",
                    device.type)
    return precision


def fold_batchnorm(generator: Generator) -> Generator:
    """A copy of ``generator`` in eval mode with each plain BatchNorm folded into the Linear, Conv2d or
    ConvTranspose2d before it (``torch.nn.utils.fusion``) and replaced by ``nn.Identity``.

    Class-conditional BatchNorm (``conditional_bn``) is left as it is: its gain and bias depend on the label.
    The original is not modified.
    """
    folded = copy.deepcopy(generator).eval()
    for block in (folded.project, folded.upsample):
        for i in range(len(block) - 1):
            layer, norm = block[i], block[i + 1]
            if not isinstance(norm, (nn.BatchNorm1d, nn.BatchNorm2d)):
                continue
            if isinstance(layer, nn.Linear):
                block[i] = fuse_linear_bn_eval(layer, norm)
            elif isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                block[i] = fuse_conv_bn_eval(layer, norm, transpose=isinstance(layer, nn.ConvTranspose2d))
            else:
                continue
            block[i + 1] = nn.Identity()
    return folded


@functools.lru_cache(maxsize=None)
def reuse_freed_memory() -> bool:
    """Let glibc's malloc serve blocks up to 32 MiB from its heap and keep up to 256 MiB of freed heap
    (``mallopt(M_MMAP_THRESHOLD)``, ``mallopt(M_TRIM_THRESHOLD)``; glibc manual, "Malloc Tunable Parameters"),
    once per process; returns whether it applied (False off glibc).

    G's activations on a CPU are a few MB to 25 MB per call; by default malloc maps such blocks fresh and
    unmaps them on free, so every call page-faults them in again, a large share of a call's time
    (benchmark: ``inference`` in reports/metrics/benchmark.json). The kept heap is several times one call's
    peak because an export encodes and writes between G's calls: with less, malloc still hands memory back
    that the next call faults in again (``page_faults_sampler`` of the benchmark's export runs). The PyTorch
    performance tuning guide recommends another allocator for the same reason; this keeps the standard one.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(-3, 32 << 20) and libc.mallopt(-1, 256 << 20))  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD


class InferenceGenerator(nn.Module):
    """G(z, y) for sampling: ``forward(z (B, z_dim) float32, labels (B,) int64)`` on any device ->
    ``(B, 1, 28, 28) float32`` in [-1, 1] on the CPU, contiguous, in eval mode and without gradients.

    Args:
        generator: the trained generator (not modified; its device is the one used).
        precision: one of :data:`PRECISIONS`; resolved once with :func:`resolve_precision`.
        reference: run the reference path (float32, channels-first, BatchNorm as trained) instead.

    Attributes:
        config: the generator's :class:`GeneratorConfig` (``config.z_dim`` for the latents).
        precision: ``"float32"`` or ``"bfloat16"``, as resolved.
        record: what ran, for manifests: ``{"precision", "path": "reference" | "folded, channels-last"}``.
    """

    def __init__(self, generator: Generator, precision: str = "float32", reference: bool = False):
        super().__init__()
        self.device = next(generator.parameters()).device
        self.config: GeneratorConfig = generator.config
        self.reference = reference
        self.precision = "float32" if reference else resolve_precision(precision, self.device)
        if reference:
            self.model = copy.deepcopy(generator).eval()
        else:
            self.model = fold_batchnorm(generator).to(memory_format=torch.channels_last)
            if self.device.type == "cpu":
                reuse_freed_memory()
        self.record = {"precision": self.precision, "path": "reference" if reference else "folded, channels-last"}

    @torch.inference_mode()
    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z, labels = z.to(self.device), labels.to(self.device)
        chunk = CPU_CHUNK if self.device.type == "cpu" and not self.reference else max(1, len(z))
        images = torch.empty(len(z), 1, 28, 28)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16"):
            for i in range(0, len(z), chunk):  # copy_ converts to float32 and channels-first in one pass
                images[i : i + chunk].copy_(self.model(z[i : i + chunk], labels[i : i + chunk]))
        return images


def sample_images(generator: nn.Module, z: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000,
                  precision: str = "float32") -> torch.Tensor:
    """G(z, y) for ``z (N, z_dim)`` and ``labels (N,) int64`` in batches of ``batch_size``: ``(N, 1, 28, 28)
    float32`` in [-1, 1] on the CPU. A :class:`Generator` runs as an :class:`InferenceGenerator` with
    ``precision``; any other module with the same call (an :class:`InferenceGenerator`, a wrapper of one) runs
    as it is."""
    model = InferenceGenerator(generator, precision) if isinstance(generator, Generator) else generator
    with torch.inference_mode():
        out = [model(z[i : i + batch_size], labels[i : i + batch_size]).float().cpu()
               for i in range(0, len(z), batch_size)]
    return torch.cat(out) if out else torch.empty(0, 1, 28, 28)
