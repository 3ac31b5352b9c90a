"""What a timing or a float-precision-dependent figure depends on: the machine it was measured on.

Used by ``pipeline.tools.benchmark``, ``pipeline.tools.ablation`` and ``pipeline.tools.timed_repro`` (none is a DVC stage), so
that every JSON of measured seconds says which CPU or GPU, threads and kernels produced them, and by the
report stage (which depends on this module) to read them back.
"""

from __future__ import annotations

import os
import platform

import torch

from pipeline.core.utils import bfloat16_is_native


def machine_info(device: torch.device) -> dict:
    """The machine ``device`` belongs to, as plain JSON values.

    Keys: ``cpu`` (``model name`` of ``/proc/cpuinfo``, else ``platform.processor()``), ``cpu_count``
    (``os.cpu_count()``), ``cpu_capability`` (the widest SIMD level PyTorch dispatches its CPU kernels to:
    ``torch.backends.cpu.get_cpu_capability()``, e.g. ``"AVX2"``, ``"AVX512"``), ``torch_threads``
    (``torch.get_num_threads()`` now), ``device`` (``str(device)``), ``gpu`` (CUDA device name or None),
    ``torch`` (version), ``platform`` and ``bfloat16_native`` (:func:`pipeline.core.utils.bfloat16_is_native`:
    without it the ``autocast`` param trains in float32: compare reports/metrics/benchmark_avx2.json with
    benchmark.json). Never raises for a missing ``/proc/cpuinfo``.
    """
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads(), "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "torch": torch.__version__, "platform": platform.platform(), "bfloat16_native": bfloat16_is_native(device)}


def training_precision(autocast: str, bfloat16_native: bool) -> str:
    """The precision a training run with the ``autocast`` param (``""`` or ``"bfloat16"``) actually ran in:
    ``"bfloat16"`` only where it was asked for and the device has fast bfloat16 kernels, else ``"float32"``
    (the fallback of :func:`pipeline.core.utils.autocast`)."""
    return "bfloat16" if autocast == "bfloat16" and bfloat16_native else "float32"


def machine_where(machine: dict) -> str:
    """``"NVIDIA H100 80GB HBM3 GPU"`` or ``"AMD EPYC, AVX2"`` (the SIMD level left out where not recorded)
    from a :func:`pipeline.core.machine.machine_info` dict."""
    if machine.get("gpu"):
        return f"{machine['gpu']} GPU"
    return ", ".join(p for p in (machine.get("cpu", "?"), machine.get("cpu_capability")) if p)


def machine_text(machine: dict | None) -> str:
    """:func:`machine_where` with the threads: ``"NVIDIA H100 80GB HBM3 GPU, 16 CPU threads"`` or
    ``"AMD EPYC, AVX2, 2 threads"``; ``"machine not recorded"`` for None."""
    if not machine:
        return "machine not recorded"
    threads = f"{machine.get('torch_threads', '?')} {'CPU threads' if machine.get('gpu') else 'threads'}"
    return f"{machine_where(machine)}, {threads}"
