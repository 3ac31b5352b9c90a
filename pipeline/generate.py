"""Stage ``generate``: mass-generate labeled synthetic digits with the trained generator G(z, y).

Writes exactly N images per requested digit to OUT as Parquet shards part-00000.parquet, ... (Hugging
Face Image + ClassLabel features, row groups written as they fill) and/or an image folder
OUT/<label>/<index>.png, plus OUT/manifest.json (shard sha256, counts, provenance) and an OUT/README.md
dataset card. G samples with BatchNorm folded and channels-last (--precision: float32, or bfloat16 where
the CPU or GPU has it natively). On a CPU, large exports sample and PNG-encode in --samplers processes at
once (one per core); on a GPU, encoding runs in --writers processes beside G. The rows are written in order
and memory stays flat, whatever the number of processes. Same checkpoint, seed and precision on one
machine: the same bytes; float32 exports are also the same on other CPU types. The export is assembled in
a temporary folder beside OUT and renamed into place when complete; --shard-index writes one shard alone,
byte-identical to the same shard of a full run.
With --min-confidence p, only images the classifier (--judge) assigns to their digit with probability
>= p are kept (rejection sampling; exact counts still hold).

OUT may be a URL (file://, s3://bucket/prefix, or any pyarrow or fsspec file system): the export is staged
beside it and published once complete, manifest.json last. With --ray ADDRESS each shard is a task on a Ray
cluster (local starts one here), written byte-identically to the same shard of a run on one machine.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click
import torch

from pipeline.core.cli import run, user_errors
from pipeline.core.params import load_params
from pipeline.core.utils import PipelineError, get_device, sha256_file, write_json
from pipeline.generation.card import dataset_card
from pipeline.generation.destination import Destination
from pipeline.generation.inference import PRECISIONS, InferenceGenerator
from pipeline.generation.manifest import build_manifest, card_quality, curation_record, inference_record
from pipeline.generation.samplers import BatchSampler, SamplerPool, default_samplers
from pipeline.generation.sampling import LatentStreams, ShardLayout
from pipeline.generation.staging import check_free_disk, default_writers, export_shards, open_writer
from pipeline.training.checkpoints import load_classifier, load_generator
from pipeline.training.networks import NUM_CLASSES

log = logging.getLogger("pipeline.generate")


def parse_digits(text: str | None) -> list[int]:
    """``"0,3,7"`` -> ``[0, 3, 7]``; ``None`` -> all ten digits.

    Raises:
        click.BadParameter: an entry is not an integer in 0-9, or a digit repeats.
    """
    if text is None:
        return list(range(NUM_CLASSES))
    digits = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) >= NUM_CLASSES:
            raise click.BadParameter(f"'{part}' is not a digit in 0-9", param_hint="'--digits'")
        if int(part) in digits:
            raise click.BadParameter(f"digit {part} is listed twice", param_hint="'--digits'")
        digits.append(int(part))
    return digits


@click.command(help=__doc__)
@click.option("--per-class", type=click.IntRange(min=1), default=None,
              help="Images per digit. Default: generate.per_class in params.yaml.")
@click.option("--digits", default=None, help="Comma-separated digits to generate, e.g. 0,3,7. Default: 0-9.")
@click.option("--seed", type=int, default=None, help="Sampling seed. Default: generate.seed in params.yaml.")
@click.option("--out", default="data/generated", show_default=True,
              help="Output folder: a path or a URL (file:///..., s3://bucket/prefix with the usual AWS settings).")
@click.option("--format", "fmt", type=click.Choice(["parquet", "imagefolder", "both"]), default="parquet",
              show_default=True, help="Parquet shards, ImageFolder tree, or both.")
@click.option("--checkpoint", default="models/generator.pt", show_default=True, help="Generator checkpoint.")
@click.option("--judge", default="models/judge.pt", show_default=True,
              help="Classifier for --min-confidence and the card's quality line (skipped if absent and not curating).")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=None,
              help="Keep only images the judge assigns to their digit with at least this probability. "
                   "Default: generate.min_confidence in params.yaml (0 = keep all).")
@click.option("--latent-scale", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Sample z ~ N(0, s^2 I) with this s (< 1 trades diversity for fidelity, as the truncation "
                   "trick). Default: generate.latent_scale in params.yaml.")
@click.option("--shard-size", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Most images per Parquet shard (about 29 MB per 100,000).")
@click.option("--num-shards", type=click.IntRange(min=1), default=None,
              help="Split into exactly this many shards instead (overrides --shard-size).")
@click.option("--shard-index", type=click.IntRange(min=0), default=None,
              help="Write only this shard (0-based), e.g. one task of a job array.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT folder (only once the new one is complete).")
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Params file.")
@click.option("--device", default="cpu", show_default=True, help="cpu (bit-reproducible) or cuda/auto.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="Arithmetic of G: float32 (the same bytes on every CPU type), bfloat16 (several times faster "
                   "where native; the same bytes only on the same machine), auto (bfloat16 where the CPU has "
                   "AVX-512 BF16 or AMX, or on a GPU with bfloat16; else float32). The DVC stage passes "
                   "generate.precision.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch threads for sampling. Default: torch's (all cores; writer processes run at lower "
                   "priority).")
@click.option("--samplers", type=click.IntRange(min=1), default=None,
              help="Processes that sample G on the CPU and PNG-encode batches, each with the torch threads divided "
                   "among them, while this one writes the rows in order; 1 = sample here. The bytes do not depend "
                   "on it. Default: one per torch thread (at most 8) for exports of 300,000 images or more on a "
                   "CPU, else 1.")
@click.option("--writers", type=click.IntRange(min=0), default=None,
              help="With --samplers 1: processes that PNG-encode and write beside the sampling one; 0 = encode "
                   "between batches of G in the sampling process. Default: 0 when G runs on the CPU (its threads "
                   "use every core), else the CPU cores less one, at most 8.")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Run each shard as a Ray task: local (a cluster on this machine), auto (the cluster of `ray job "
                   "submit` or RAY_ADDRESS), HOST:PORT or ray://HOST:PORT. Tasks run in parallel across shards: "
                   "set --num-shards. Needs pip install -e '.[ray]'.")
@click.option("--ray-cpus-per-task", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Logical CPUs Ray reserves for each shard task (also its torch threads, unless --threads).")
@click.option("--ray-gpus-per-task", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="GPUs Ray reserves for each shard task; > 0 samples on CUDA.")
@click.option("--ray-retries", type=click.IntRange(min=0), default=3, show_default=True,
              help="Times Ray reruns a shard task whose worker died or that hit an I/O error.")
@click.option("--reference", is_flag=True, hidden=True,
              help="Sample with the reference path (float32, channels-first, BatchNorm as trained): the "
                   "benchmark's baseline.")
@click.option("--metrics", default=None, type=click.Path(dir_okay=False),
              help="Also write wall time, images/s, peak memory and page faults to this JSON (the DVC stage "
                   "does).")
def main(per_class, digits, seed, out, fmt, checkpoint, judge, min_confidence, latent_scale, shard_size, num_shards,
         shard_index, overwrite, params_path, device, precision, threads, samplers, writers, ray_address,
         ray_cpus_per_task, ray_gpus_per_task, ray_retries, reference, metrics) -> None:
    with user_errors():
        start = time.perf_counter()
        params = load_params(params_path).generate
        per_class = per_class or params.per_class
        seed = params.seed if seed is None else seed
        min_confidence = params.min_confidence if min_confidence is None else min_confidence
        latent_scale = params.latent_scale if latent_scale is None else latent_scale
        wanted = parse_digits(digits)
        layout = (ShardLayout(tuple(wanted), per_class, num_shards) if num_shards
                  else ShardLayout.with_shard_size(wanted, per_class, shard_size))
        shards = [shard_index] if shard_index is not None else list(range(layout.num_shards))
        total = sum(len(layout.shard_rows(s)) for s in shards)
        destination = Destination.parse(out)
        if destination.exists() and not overwrite:
            raise PipelineError(f"{out} already exists; pass --overwrite to replace it")
        if destination.is_local:
            Path(destination.path).parent.mkdir(parents=True, exist_ok=True)
        if ray_address is None:
            check_free_disk(Path(destination.path).parent if destination.is_local else Path(tempfile.gettempdir()),
                            total, fmt)
        if threads:
            torch.set_num_threads(threads)
        dev = get_device(device)
        trained, ckpt = load_generator(checkpoint, dev)
        if samplers is None:
            samplers = 1 if writers or ray_address else default_samplers(dev, total, torch.get_num_threads())
        elif samplers > 1 and (writers or ray_address or dev.type != "cpu"):
            raise PipelineError("--samplers > 1 samples on the CPU on this machine: not with --writers, --ray or a GPU")
        writers = default_writers(dev) if writers is None and ray_address is None else writers
        classifier = load_classifier(judge, dev) if min_confidence > 0 or Path(judge).is_file() else None
        curator = classifier if min_confidence > 0 else None
        staging = destination.staging()
        # Everything is written here first: the staging folder itself when it is local, else a local folder
        # that is uploaded to it (the shards of Ray tasks go to the staging location directly).
        local = Path(staging.path) if staging.is_local else Path(tempfile.mkdtemp(prefix="generate-"))
        writer, ray_record = None, None
        try:
            sample_start, faults_start = time.perf_counter(), _minor_page_faults()
            if ray_address is not None:
                # Imported here, so a one-machine export's code revision (manifest.json) leaves the Ray module out
                # and a change to it does not make DVC rerun the evaluation.
                from pipeline.generation.distributed import RayOptions, ShardJob, run_on_ray

                done, ray_record = run_on_ray(
                    RayOptions(ray_address, ray_cpus_per_task, ray_gpus_per_task, ray_retries),
                    ShardJob(layout, seed, fmt, latent_scale, params.batch_size, precision, reference,
                             "cuda" if ray_gpus_per_task > 0 else dev.type,
                             writers, min_confidence, threads or max(1, int(ray_cpus_per_task))),
                    shards, checkpoint, judge if curator is not None else None, staging)
                inference = done["inference"][0] if len(done["inference"]) == 1 else done["inference"]
            else:
                generator = InferenceGenerator(trained, precision, reference=reference)
                latents = LatentStreams(seed, generator.config.z_dim, scale=latent_scale)
                writer = open_writer(local, fmt, curator is not None, seed, writers)
                with contextlib.ExitStack() as stack:
                    pool = None
                    if samplers > 1:
                        sampler = BatchSampler(generator, latents, curator, min_confidence, seed, local, fmt)
                        pool = (sampler, stack.enter_context(SamplerPool(
                            sampler, samplers, max(1, torch.get_num_threads() // samplers))))
                    done = export_shards(generator, latents, layout, shards, params.batch_size, writer, local, curator,
                                         min_confidence, samplers=pool)
                inference = inference_record(generator, dev)
            export_seconds = time.perf_counter() - sample_start
            page_faults = _minor_page_faults() - faults_start
            writer_peak = writer.peak_rss_mb() if writer else None
            if writer:
                writer.close()
            quality = card_quality(classifier, judge, done["first"], curator is not None) if classifier else None
            manifest = build_manifest(
                layout=layout, shards=done["shards"], shard_index=shard_index, seed=seed, fmt=fmt,
                latent_scale=latent_scale,
                checkpoint={"path": str(checkpoint), "sha256": sha256_file(checkpoint), "epoch": ckpt["epoch"],
                            "model_args": ckpt["model_args"], "params": ckpt["params"]},
                curation=None if curator is None else curation_record(
                    min_confidence, judge, sha256_file(judge), done["draws"], done["kept"], wanted),
                quality=quality, batch_size=params.batch_size, inference=inference, ray=ray_record)
            write_json(local / "manifest.json", manifest)
            (local / "README.md").write_text(dataset_card(manifest))
            staging.upload(local)
            staging.publish(destination, overwrite)
        except BaseException:
            if writer:
                writer.close()
            staging.remove()
            raise
        finally:
            if not staging.is_local:
                shutil.rmtree(local, ignore_errors=True)
        elapsed = time.perf_counter() - start
        peak = {"peak_rss_mb_sampler": _peak_mb(), "peak_rss_mb_writer": writer_peak}
        precision_used = manifest["inference"]["precision"] if isinstance(inference, dict) else "mixed"
        if metrics:
            write_json(metrics, {"images": total, "format": fmt, "seed": seed, "latent_scale": latent_scale,
                                 "precision": precision_used, "samplers": samplers, "writers": writers,
                                 "shards": len(shards),
                                 "wall_seconds": round(elapsed, 2),
                                 "export_seconds": round(export_seconds, 2),
                                 "images_per_second": round(total / export_seconds, 1),
                                 "torch_threads": torch.get_num_threads(), **peak,
                                 "page_faults_sampler": page_faults,
                                 **({"ray": ray_record} if ray_record else {})})
        writers_peak = "" if writer_peak is None else f" + {writer_peak} MB (writers)"
        where = f" on Ray ({len(shards)} tasks on {len(ray_record['nodes'])} node(s))" if ray_record else ""
        log.info("wrote %d images in %d shard(s) to %s%s in %s: %.0f images/s (sample + encode + write), %.1f s "
                 "in all, peak RSS %s MB%s", total, len(shards), out, where, precision_used, total / export_seconds,
                 elapsed, peak["peak_rss_mb_sampler"], writers_peak)


def _minor_page_faults() -> int:
    """Minor page faults of this process so far (``getrusage``): memory malloc handed back and took again."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _peak_mb() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(kib / (1 << 20 if sys.platform == "darwin" else 1 << 10), 1)


if __name__ == "__main__":
    run(main)
