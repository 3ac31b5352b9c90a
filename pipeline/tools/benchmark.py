"""Benchmark: cGAN training and generator throughput on this machine -> reports/metrics/benchmark.json.

\b
Measures, with the params.yaml defaults:
  * cGAN training images/s (one D step + one G step per batch, after warm-up);
  * cGAN and judge training images/s in float32 and in bfloat16 (the ``autocast`` param; bfloat16 only
    where the CPU has AVX-512: elsewhere ``autocast`` trains in float32, and the JSON says so);
  * the generator's pure forward pass G(z, y) in images/s (batches of ``--batch-size``, inference
    mode) and its FLOPs per image (``torch.utils.flop_counter``);
  * unless ``--quick``: the training time from scratch until the class-conditional accuracy of
    5,000 EMA-generator samples, judged by the judge on the VALIDATION protocol, reaches the
    target (checked every ``--check-every`` steps; checking time excluded), or ``--max-minutes``;
  * the inference path (``inference``, measured after the training figures: it tunes the process's
    malloc): G's forward pass
    on the reference path (float32, channels-first, BatchNorm as trained: the figure above, timed again
    next to the others) against the
    folded channels-last path in float32 and, where native, bfloat16; whether ``torch.compile`` pays back
    its compile time for 10,000, 60,000 and 1,000,000 images; PNG encoding µs per image with the
    standard library's zlib at level 6 (the encoder before zlib-ng) and with zlib-ng at level 1;
  * with ``--export-per-class N`` (e.g. 100000 = 1M images): ``python -m pipeline.generate`` run as a
    user runs it, on the baseline (``--reference --writers 1``: sampling and writing as before the
    inference path) and with the defaults (``--precision auto``; one sampler process per core for an export
    this large), plus ``--precision float32``, the default with ``--samplers 1`` (G's threads in one process,
    encoding between its batches) and that with 1 and 2 writer processes: images/s, the default's ratio to
    the baseline, each run's ratio to G's forward pass on its path (timed right before and after the run),
    peak memory (the sum of the proportional set sizes
    of the process and its descendants, and the sum of their RSS: an upper bound) and the sampling process's
    minor page faults; the smaller exports of ``--samplers-per-class`` with 1 sampler process and with one per
    core (``export.samplers``: where the processes pay for their start-up); where Ray is installed, also the
    defaults with ``--ray local`` and 1 and 2 workers (shard tasks at a time), and their images/s as a share
    of the default's on one machine (``ray_runs``).
    ``--export-only`` skips the training figures and keeps those already in ``--out``.
Figures depend on the machine, so the JSON records it (``pipeline.core.machine.machine_info``: CPU model and SIMD
level, threads, device, torch, whether bfloat16 is native).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import click
import torch

from pipeline.core.cli import run, user_errors
from pipeline.core.machine import machine_info, training_precision
from pipeline.core.params import CGANParams, ClassifierParams, load_params
from pipeline.core.utils import PipelineError, bfloat16_is_native, get_device, write_json
from pipeline.data.splits import load_splits, to_tensor
from pipeline.evaluation.judging import PER_CLASS, judged_samples
from pipeline.evaluation.metrics import class_conditional_accuracy
from pipeline.generation.throughput import (
    ForwardMeter,
    export_comparison,
    generator_throughput,
    inference_benchmark,
    samplers_comparison,
    sync,
)
from pipeline.training.cgan import generator_flops_per_image, train_cgan
from pipeline.training.checkpoints import load_classifier, load_generator
from pipeline.training.classifier import train_classifier
from pipeline.training.networks import NUM_CLASSES, Generator

log = logging.getLogger("pipeline.tools.benchmark")


@click.command(help=__doc__)
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Params file.")
@click.option("--data", default="data/prepared/mnist.npz", show_default=True, help="Prepared splits.")
@click.option("--checkpoint", default="models/generator.pt", show_default=True, help="Generator to time.")
@click.option("--judge", "judge_path", default="models/judge.pt", show_default=True, help="The judge.")
@click.option("--out", default="reports/metrics/benchmark.json", show_default=True, help="JSON to write.")
@click.option("--train-steps", default=100, show_default=True, help="Timed cGAN training steps.")
@click.option("--forward-images", default=20000, show_default=True, help="Images for the forward-pass timing.")
@click.option("--batch-size", default=1000, show_default=True, help="Forward-pass batch size.")
@click.option("--target", default=0.99, show_default=True, help="Class-conditional accuracy target.")
@click.option("--check-every", default=200, show_default=True, help="Steps between target checks.")
@click.option("--max-minutes", default=20.0, show_default=True, help="Give up on the target after this much training.")
@click.option("--quick", is_flag=True, help="Skip the time-to-target run (seconds instead of minutes).")
@click.option("--export-per-class", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also time `pipeline.generate` with this many images per digit (0 = skip; 100000 = 1M images).")
@click.option("--samplers-per-class", default="10000,30000", show_default=True,
              help="With --export-per-class: also these smaller exports (images per digit, comma-separated) with 1 "
                   "sampler process and with one per core.")
@click.option("--export-only", is_flag=True, help="Only the forward pass and export figures; keep the rest of --out.")
@click.option("--compile/--no-compile", "compile_model", default=True, show_default=True,
              help="Time torch.compile of the inference path (tens of seconds of compiling).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
def main(params_path, data, checkpoint, judge_path, out, train_steps, forward_images, batch_size, target,
         check_every, max_minutes, quick, export_per_class, samplers_per_class, export_only, compile_model,
         device) -> None:
    with user_errors():
        if train_steps < 1 or forward_images < 1 or batch_size < 1 or check_every < 1:
            raise PipelineError("--train-steps, --forward-images, --batch-size and --check-every must be >= 1")
        sizes = [part.strip() for part in samplers_per_class.split(",") if part.strip()]
        if not all(size.isdigit() and int(size) > 0 for size in sizes):
            raise PipelineError(f"--samplers-per-class takes positive integers, got {samplers_per_class!r}")
        dev = get_device(device)
        all_params = load_params(params_path)
        params = all_params.train_cgan
        generator, _ = load_generator(checkpoint, dev)
        previous = json.loads(Path(out).read_text()) if export_only and Path(out).is_file() else {}
        result = {**previous, "machine": machine_info(dev), "generator_checkpoint": checkpoint,
                  "generator_parameters": sum(p.numel() for p in generator.parameters()),
                  "generator_flops_per_image": generator_flops_per_image(generator),
                  "generator_forward_images_per_second": round(
                      generator_throughput(generator, dev, forward_images, batch_size), 1),
                  "generator_forward_batch_size": batch_size}
        log.info("G forward: %.0f images/s, %.2f MFLOPs/image", result["generator_forward_images_per_second"],
                 result["generator_flops_per_image"] / 1e6)
        if not export_only:
            splits = load_splits(data)
            images, labels = to_tensor(splits.train_images), torch.from_numpy(splits.train_labels)
            # Both precisions are timed; the default's figure is the one its params select (not timed a third time).
            result["autocast_comparison"] = autocast_comparison(params, all_params.train_judge, images, labels, dev,
                                                                train_steps)
            result["cgan_train_autocast"] = training_precision(params.autocast, result["machine"]["bfloat16_native"])
            result["cgan_train_images_per_second"] = \
                result["autocast_comparison"]["cgan_train_images_per_second"][result["cgan_train_autocast"]]
            result["cgan_train_batch_size"] = params.batch_size
            if not quick:
                result["time_to_target"] = time_to_target(params, images, labels, load_classifier(judge_path, dev),
                                                          dev, target, check_every, max_minutes)
        # From here on the inference path runs in this process, which tunes its malloc: after the training figures.
        if export_per_class:
            meter = ForwardMeter(generator, dev, forward_images, batch_size)
            result["export"] = export_comparison(params_path, checkpoint, judge_path, export_per_class, meter)
            result["export"]["samplers"] = samplers_comparison(params_path, checkpoint, judge_path,
                                                               tuple(map(int, sizes)))
        result["inference"] = inference_benchmark(generator, dev, forward_images, batch_size, compile_model)
        write_json(out, result)
        log.info("wrote %s", out)


def cgan_train_throughput(params: CGANParams, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                          steps: int, warmup: int = 10) -> float:
    """Images/s of ``steps`` cGAN training steps (one D and one G update per batch) after ``warmup`` steps."""
    n = (warmup + steps) * params.batch_size
    marks = {}

    def mark(step: int, _generator: Generator) -> bool:
        if step in (warmup, warmup + steps):
            sync(device)
            marks[step] = time.perf_counter()
        return step == warmup + steps  # stop there

    train_cgan(dataclasses.replace(params, epochs=1, max_train_images=0), images[:n], labels[:n], device, abort_fn=mark)
    return steps * params.batch_size / (marks[warmup + steps] - marks[warmup])


def classifier_train_throughput(recipe: ClassifierParams, images: torch.Tensor, labels: torch.Tensor,
                                device: torch.device, steps: int) -> float:
    """Images/s of ``steps`` training steps of the judge's recipe (after a 10-step warm-up run); the
    time includes one validation pass over 100 images."""
    train_classifier(recipe, images, labels, images[:100], labels[:100], device, total_steps=10, desc="warm-up")
    sync(device)
    start = time.perf_counter()
    train_classifier(recipe, images, labels, images[:100], labels[:100], device, total_steps=steps, desc="timed")
    sync(device)
    return steps * recipe.batch_size / (time.perf_counter() - start)


def autocast_comparison(cgan: CGANParams, judge: ClassifierParams, images: torch.Tensor, labels: torch.Tensor,
                        device: torch.device, steps: int) -> dict:
    """Training images/s of the cGAN and of the judge's recipe in float32 and in bfloat16 (``autocast``
    param, ``torch.autocast``), and their ratio: whether mixed precision pays on this machine.

    On a device without fast bfloat16 kernels (a CPU without AVX-512) the ``autocast`` param trains in float32
    (:func:`pipeline.core.utils.autocast`), so only float32 is timed and ``bfloat16`` and ``ratio`` are None.
    """
    native = bfloat16_is_native(device)
    out = {}
    for name, measure in (("cgan", lambda p: cgan_train_throughput(dataclasses.replace(cgan, autocast=p), images,
                                                                   labels, device, steps)),
                          ("judge", lambda p: classifier_train_throughput(dataclasses.replace(judge, autocast=p),
                                                                          images, labels, device, steps))):
        speeds = {"float32": round(measure(""), 1), "bfloat16": round(measure("bfloat16"), 1) if native else None}
        ratio = round(speeds["bfloat16"] / speeds["float32"], 2) if native else None
        out[f"{name}_train_images_per_second"] = {**speeds, "ratio": ratio}
        if native:
            log.info("%s training: %.0f images/s float32, %.0f bfloat16 (%.2fx)", name, speeds["float32"],
                     speeds["bfloat16"], ratio)
        else:
            log.info("%s training: %.0f images/s float32 (bfloat16 not timed: no fast bfloat16 kernels here)", name,
                     speeds["float32"])
    return out


def time_to_target(params, images, labels, judge, device, target: float, check_every: int, max_minutes: float) -> dict:
    """Train the default cGAN from scratch; every ``check_every`` steps judge 5,000 EMA samples."""
    clock = {"train": 0.0, "last": time.perf_counter()}
    checks = []

    def check(step: int, generator: Generator) -> bool:
        """Judge the EMA generator every ``check_every`` steps; True (stop) at the target or the time limit."""
        if step % check_every:
            return False
        sync(device)
        clock["train"] += time.perf_counter() - clock["last"]
        probs, _, wanted = judged_samples(generator, judge, torch.Generator().manual_seed(0))  # same z every check
        cca, _ = class_conditional_accuracy(probs.argmax(1).numpy(), wanted.numpy())
        checks.append({"step": step, "train_seconds": round(clock["train"], 1), "class_conditional_accuracy": cca})
        log.info("step %d, %.0f s: class-conditional accuracy %.4f", step, clock["train"], cca)
        clock["last"] = time.perf_counter()
        return cca >= target or clock["train"] > 60 * max_minutes

    train_cgan(dataclasses.replace(params, epochs=1000), images, labels, device, abort_fn=check)
    reached = checks[-1]["class_conditional_accuracy"] >= target if checks else False
    return {"target_class_conditional_accuracy": target, "reached": reached,
            "seconds": checks[-1]["train_seconds"] if reached else None,
            "steps": checks[-1]["step"] if reached else None,
            "samples": NUM_CLASSES * PER_CLASS, "checks": checks,
            "protocol": "EMA generator samples (fixed z) judged by the judge; training time only"}


if __name__ == "__main__":
    run(main)
