"""How fast G samples on this machine: the forward pass on the reference and inference paths, the
``torch.compile`` trade-off, PNG encoding cost, and ``pipeline.generate`` exports run as a user runs them.
Measurement functions of ``pipeline.tools.benchmark`` (which writes them to reports/metrics/benchmark.json);
importable, no files opened at import.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from pipeline.core.utils import PipelineError
from pipeline.generation.formats import encode_pngs
from pipeline.generation.inference import InferenceGenerator, bfloat16_inference_is_native, resolve_precision
from pipeline.generation.staging import child_pids
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


#: The exports the benchmark runs: name -> extra arguments of ``python -m pipeline.generate``.
EXPORT_RUNS = {"baseline": ["--reference", "--writers", "1"], "default": [], "float32": ["--precision", "float32"],
               "default_samplers_1": ["--samplers", "1"], "default_writers_1": ["--writers", "1"],
               "default_writers_2": ["--writers", "2"]}
#: Ray workers (concurrent shard tasks) of the benchmark's ``--ray local`` exports; each task reserves the
#: machine's cores divided by this many CPUs.
RAY_WORKERS = (1, 2)


def ray_runs() -> dict[str, list[str]]:
    """The defaults on a local Ray cluster (:data:`RAY_WORKERS`): name -> extra arguments of ``pipeline.generate``;
    {} when Ray is not installed."""
    try:
        import ray  # noqa: F401 - only whether it is there
    except ImportError:
        return {}
    cores = os.cpu_count() or 1
    return {f"ray_{workers}_worker{'s' if workers > 1 else ''}":
            ["--ray", "local", "--ray-cpus-per-task", str(max(1, cores // workers))] for workers in RAY_WORKERS}


def export_comparison(params_path: str, checkpoint: str, judge_path: str, per_class: int,
                      forward: "ForwardMeter") -> dict:
    """Every export of :data:`EXPORT_RUNS` and :func:`ray_runs`, one after the other, the default's speed-up on
    the baseline, and each Ray run's images/s as a share of the default's on one machine. Each run of
    :data:`EXPORT_RUNS` also gets G's forward images/s on its path timed right before and right after it
    (``forward_around``) and its images/s as a share of their mean (``ratio_to_forward``): this machine's speed
    drifts over minutes, so a forward pass timed apart from the export would skew the ratio."""
    runs = {}
    for name, extra in EXPORT_RUNS.items():
        path = "reference" if "--reference" in extra else "float32" if "float32" in extra else "auto"
        before = forward(path)
        runs[name] = export_benchmark(params_path, checkpoint, judge_path, per_class, extra)
        around = [round(before, 1), round(forward(path), 1)]
        runs[name].update(forward_around=around,
                          ratio_to_forward=round(runs[name]["images_per_second"] / (sum(around) / 2), 3))
    speedup = runs["default"]["images_per_second"] / runs["baseline"]["images_per_second"]
    log.info("export: default %.0f images/s = %.2fx the baseline's %.0f and %.3f of G's forward pass",
             runs["default"]["images_per_second"], speedup, runs["baseline"]["images_per_second"],
             runs["default"]["ratio_to_forward"])
    ray = {name: export_benchmark(params_path, checkpoint, judge_path, per_class, extra)
           for name, extra in ray_runs().items()}
    for run_result in ray.values():
        run_result["ratio_to_default"] = round(run_result["images_per_second"]
                                               / runs["default"]["images_per_second"], 3)
    return {"runs": runs, "speedup_over_baseline": round(speedup, 2), "ray_runs": ray}


class ForwardMeter:
    """``meter(path)`` -> G's forward images/s now (:func:`generator_throughput`, ``images`` images in batches of
    ``batch_size``) on ``path``: ``"reference"`` (the reference path) or a ``--precision`` choice of the
    inference path (``"auto"`` resolved as ``pipeline.generate`` does)."""

    def __init__(self, generator: Generator, device: torch.device, images: int, batch_size: int):
        self.generator, self.device, self.images, self.batch_size = generator, device, images, batch_size
        self.models: dict[str, InferenceGenerator] = {}

    def __call__(self, path: str) -> float:
        if path not in self.models:
            self.models[path] = (InferenceGenerator(self.generator, reference=True) if path == "reference"
                                 else InferenceGenerator(self.generator, path))
        return generator_throughput(self.models[path], self.device, self.images, self.batch_size)


def samplers_comparison(params_path: str, checkpoint: str, judge_path: str, sizes: tuple[int, ...]) -> dict:
    """Smaller exports (``sizes``: images per digit) with ``--samplers 1`` and with one sampler process per core,
    one after the other: where sampler processes start to pay for their start-up
    (:data:`pipeline.generation.samplers.MIN_IMAGES_FOR_SAMPLERS`)."""
    cores = str(os.cpu_count() or 1)
    out = {}
    for per_class in sizes:
        runs = {n: export_benchmark(params_path, checkpoint, judge_path, per_class, ["--samplers", n])
                for n in ("1", cores)}
        out[str(per_class * NUM_CLASSES)] = {
            f"samplers_{n}": {"images_per_second": r["images_per_second"], "samplers": r["samplers"],
                              "peak_pss_mb_sum_sampled": r["peak_pss_mb_sum_sampled"]} for n, r in runs.items()}
    return out


def export_benchmark(params_path: str, checkpoint: str, judge_path: str, per_class: int,
                     extra: list[str] | tuple = ()) -> dict:
    """Run ``python -m pipeline.generate ... extra`` into a temporary folder beside the repo's ``data/``; return
    its metrics (images/s, precision, samplers, writers, peak RSS per process), the peak memory of it and its
    descendants and the Parquet bytes.

    Peak memory, sampled (Linux ``/proc``; 0 elsewhere): ``peak_rss_mb_sum_sampled``, the sum of the processes'
    resident sets every 0.1 s, counts the pages they share (torch's libraries, a fork server's heap) once per
    process: an upper bound; ``peak_pss_mb_sum_sampled``, the sum of their proportional set sizes (``Pss`` of
    ``/proc/PID/smaps_rollup``, each shared page split among its sharers; Linux kernel documentation,
    "The /proc Filesystem") every second: the memory the export takes."""
    Path("data").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".benchmark-export-", dir="data") as tmp:
        metrics = Path(tmp) / "metrics.json"
        command = [sys.executable, "-m", "pipeline.generate", "--params", params_path, "--checkpoint", checkpoint,
                   "--judge", judge_path, "--per-class", str(per_class), "--out", str(Path(tmp) / "export"),
                   "--metrics", str(metrics), *extra]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        peak, peak_pss, ticks, seen = 0, 0, 0, set()
        while process.poll() is None:
            peak = max(peak, _tree_memory(process.pid, "status", "VmRSS:", seen))
            if ticks % 10 == 0:
                peak_pss = max(peak_pss, _tree_memory(process.pid, "smaps_rollup", "Pss:", seen))
            ticks += 1
            time.sleep(0.1)
        _wait_until_gone(seen - {process.pid})  # a fork server exits a moment after its parent
        if process.returncode != 0:
            raise PipelineError(f"the export failed: {process.stderr.read().strip().splitlines()[-1]}")
        run_metrics = json.loads(metrics.read_text())
        size = sum(p.stat().st_size for p in (Path(tmp) / "export").glob("part-*.parquet"))
    export = {**run_metrics, "peak_rss_mb_sum_sampled": round(peak / 2**20, 1),
              "peak_pss_mb_sum_sampled": round(peak_pss / 2**20, 1), "parquet_bytes": size,
              "command": " ".join(command[1:])}
    log.info("export of %d images (%s): %.0f images/s; peak memory %.0f MB (PSS; RSS sum %.0f MB)", export["images"],
             " ".join(extra) or "defaults", export["images_per_second"], export["peak_pss_mb_sum_sampled"],
             export["peak_rss_mb_sum_sampled"])
    return export


def _wait_until_gone(pids: set[int], timeout: float = 60.0) -> None:
    """Wait until none of ``pids`` runs any more (gone or a zombie; Linux /proc), at most ``timeout`` seconds, so
    that the next timing does not share the cores with an export's last processes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.05)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _tree_memory(pid: int, file: str, key: str, seen: set[int]) -> int:
    """Bytes of ``key`` (``VmRSS:`` of ``status``, ``Pss:`` of ``smaps_rollup``) of ``pid`` and all its
    descendants (sampler and writer pools, a local Ray cluster's workers; Linux /proc; 0 elsewhere); adds their
    process ids to ``seen``."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        seen.add(p)
        todo += child_pids(p)
        try:
            for line in Path(f"/proc/{p}/{file}").read_text().splitlines():
                if line.startswith(key):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            continue
    return total
