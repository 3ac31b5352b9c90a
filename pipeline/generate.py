"""Stage ``generate``: mass-generate labeled synthetic digits with the trained generator G(z, y).

Writes exactly N images per requested digit to OUT as Parquet shards part-00000.parquet, ... (Hugging
Face Image + ClassLabel features, row groups written as they fill) and/or an image folder
OUT/<label>/<index>.png, plus OUT/manifest.json (shard sha256, counts, provenance) and an OUT/README.md
dataset card. Sampling runs here while a second process PNG-encodes and writes, so memory stays flat
whatever N is. The export is assembled in a temporary folder beside OUT and renamed into place when
complete; --shard-index writes one shard alone, byte-identical to the same shard of a full run.
With --min-confidence p, only images the classifier (--judge) assigns to their digit with probability
>= p are kept (rejection sampling; exact counts still hold).
"""

from __future__ import annotations

import logging
import os
import pickle
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import torch
from tqdm import tqdm

from pipeline.card import dataset_card
from pipeline.cli import run, user_errors
from pipeline.export import BYTES_PER_IMAGE
from pipeline.gan import load_generator
from pipeline.manifest import build_manifest, card_quality
from pipeline.models import NUM_CLASSES
from pipeline.params import load_params
from pipeline.sampling import LatentStreams, ShardLayout, sample_rows
from pipeline.training import load_classifier
from pipeline.utils import PipelineError, get_device, sha256_file, write_json

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


def staging_folder(out: Path) -> Path:
    """A fresh temporary folder beside ``out``, named after this host and process; stale ones left by
    killed runs of this host (their process is gone) are removed first."""
    host, prefix = socket.gethostname(), f".{out.name}.tmp-"
    for old in out.parent.glob(prefix + "*"):
        parts = old.name[len(prefix):].split("-")
        if len(parts) >= 3 and "-".join(parts[:-2]) == host and parts[-2].isdigit() and not _alive(int(parts[-2])):
            log.info("removing %s, left by a run that was killed", old)
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{host}-{os.getpid()}-", dir=out.parent))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_free_disk(out: Path, images: int, fmt: str) -> None:
    """Raise :class:`PipelineError` when the file system of ``out`` lacks room for ``images`` images."""
    per_image = sum(BYTES_PER_IMAGE[f] for f in (["parquet", "imagefolder"] if fmt == "both" else [fmt]))
    needed, free = images * per_image, shutil.disk_usage(out.parent).free
    if needed > free:
        raise PipelineError(f"{images:,} images need about {needed / 1e9:,.1f} GB but {out.parent} has only "
                            f"{free / 1e9:,.1f} GB free; lower --per-class")


class Exporter:
    """The writer process (``python -m pipeline.writer``) and the messages to it: rows go in through a
    pipe while G samples the next batch; the pipe's buffer is the only queue, so memory stays flat."""

    def __init__(self, root: Path, fmt: str, curated: bool, seed: int):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]),
                                                                          os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.writer", str(root), fmt, "1" if curated else "0", str(seed)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    def send(self, message) -> None:
        try:
            pickle.dump(message, self.process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        except BrokenPipeError:
            self._failed()

    def result(self) -> dict:
        try:
            self.process.stdin.flush()
            kind, body = pickle.load(self.process.stdout)
        except (BrokenPipeError, EOFError):
            self._failed()
        if kind == "error":
            raise PipelineError(body)
        return body

    def _failed(self):
        self.process.wait()
        try:
            kind, body = pickle.load(self.process.stdout)
        except Exception:  # noqa: BLE001 - no answer: it died without a word
            lines = self.process.stderr.read().decode(errors="replace").strip().splitlines()
            body = lines[-1] if lines else f"exit code {self.process.returncode}"
        raise PipelineError(f"the export writer process stopped: {body}")

    def peak_rss_mb(self) -> float | None:
        """The writer's peak resident memory so far (``VmHWM``; Linux only, else None)."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), None)
        return None if kib is None else round(kib / 1024, 1)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send(None)
                self.process.stdin.close()
            except (PipelineError, OSError):
                pass
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@click.command(help=__doc__)
@click.option("--per-class", type=click.IntRange(min=1), default=None,
              help="Images per digit. Default: generate.per_class in params.yaml.")
@click.option("--digits", default=None, help="Comma-separated digits to generate, e.g. 0,3,7. Default: 0-9.")
@click.option("--seed", type=int, default=None, help="Sampling seed. Default: generate.seed in params.yaml.")
@click.option("--out", default="data/generated", show_default=True, type=click.Path(), help="Output folder.")
@click.option("--format", "fmt", type=click.Choice(["parquet", "imagefolder", "both"]), default="parquet",
              show_default=True, help="Parquet shards, ImageFolder tree, or both.")
@click.option("--checkpoint", default="models/generator.pt", show_default=True, help="Generator checkpoint.")
@click.option("--judge", default="models/classifier.pt", show_default=True,
              help="Classifier for --min-confidence and the card's quality line (skipped if absent and not curating).")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=None,
              help="Keep only images the judge assigns to their digit with at least this probability. "
                   "Default: generate.min_confidence in params.yaml (0 = keep all).")
@click.option("--shard-size", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Most images per Parquet shard (about 35 MB per 100,000).")
@click.option("--num-shards", type=click.IntRange(min=1), default=None,
              help="Split into exactly this many shards instead (overrides --shard-size).")
@click.option("--shard-index", type=click.IntRange(min=0), default=None,
              help="Write only this shard (0-based), e.g. one task of a job array.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT folder (only once the new one is complete).")
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Params file.")
@click.option("--device", default="cpu", show_default=True, help="cpu (bit-reproducible) or cuda/auto.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch threads for sampling. Default: torch's (all cores; the writer runs at lower priority).")
@click.option("--metrics", default=None, type=click.Path(dir_okay=False),
              help="Also write wall time, images/s and peak memory to this JSON (the DVC stage does).")
def main(per_class, digits, seed, out, fmt, checkpoint, judge, min_confidence, shard_size, num_shards, shard_index,
         overwrite, params_path, device, threads, metrics) -> None:
    with user_errors():
        start = time.perf_counter()
        params = load_params(params_path).generate
        per_class = per_class or params.per_class
        seed = params.seed if seed is None else seed
        min_confidence = params.min_confidence if min_confidence is None else min_confidence
        wanted = parse_digits(digits)
        layout = (ShardLayout(tuple(wanted), per_class, num_shards) if num_shards
                  else ShardLayout.with_shard_size(wanted, per_class, shard_size))
        shards = [shard_index] if shard_index is not None else list(range(layout.num_shards))
        total = sum(len(layout.shard_rows(s)) for s in shards)
        out = Path(out)
        if out.exists() and not overwrite:
            raise PipelineError(f"{out} already exists; pass --overwrite to replace it")
        out.parent.mkdir(parents=True, exist_ok=True)
        check_free_disk(out, total, fmt)
        if threads:
            torch.set_num_threads(threads)
        dev = get_device(device)
        generator, ckpt = load_generator(checkpoint, dev)
        classifier = load_classifier(judge, dev) if min_confidence > 0 or Path(judge).is_file() else None
        curator = classifier if min_confidence > 0 else None
        latents = LatentStreams(seed, generator.config.z_dim)
        tmp = staging_folder(out)
        exporter = Exporter(tmp, fmt, curator is not None, seed)
        try:
            shard_info, draws, kept, first = [], np.zeros(NUM_CLASSES, np.int64), np.zeros(NUM_CLASSES, np.int64), []
            sample_start = time.perf_counter()
            with tqdm(total=total, desc="generate", unit="img", mininterval=1.0, smoothing=0.1) as bar:
                for shard in shards:
                    rows = layout.shard_rows(shard)
                    exporter.send(("open", shard))
                    for batch_start in range(rows.start, rows.stop, params.batch_size):
                        labels, indices = layout.labels_and_indices(range(batch_start, min(rows.stop, batch_start + params.batch_size)))
                        body = sample_rows(generator, latents, labels, indices, curator, min_confidence)
                        np.add.at(draws, labels, body.pop("draws"))
                        np.add.at(kept, labels, 1)
                        if sum(len(f[0]) for f in first) < 2000:
                            first.append((body["images"], labels))
                        exporter.send(("rows", {**body, "labels": labels, "indices": indices}))
                        bar.update(len(labels))
                    exporter.send(("close", None))
                    info = exporter.result()
                    info["sha256"] = sha256_file(tmp / info["file"]) if info["file"] else None
                    shard_info.append({"index": shard, "first_row": rows.start, **info})
            export_seconds = time.perf_counter() - sample_start
            writer_peak = exporter.peak_rss_mb()
            exporter.close()
            quality = card_quality(classifier, judge, first, same_as_curator=curator is not None) if classifier else None
            manifest = build_manifest(
                layout=layout, shards=shard_info, shard_index=shard_index, seed=seed, fmt=fmt,
                checkpoint={"path": str(checkpoint), "sha256": sha256_file(checkpoint), "epoch": ckpt["epoch"],
                            "model_args": ckpt["model_args"], "params": ckpt["params"]},
                curation=None if curator is None else {
                    "min_confidence": min_confidence, "draws": int(draws.sum()),
                    "classifier": {"path": str(judge), "sha256": sha256_file(judge)},
                    "acceptance_rate": {"overall": float(kept.sum() / draws.sum()),
                                        "per_class": {str(d): float(kept[d] / draws[d]) for d in wanted}}},
                quality=quality, batch_size=params.batch_size)
            write_json(tmp / "manifest.json", manifest)
            (tmp / "README.md").write_text(dataset_card(manifest))
            _move_into_place(tmp, out, overwrite)
        except BaseException:
            exporter.close()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        elapsed = time.perf_counter() - start
        peak = {"peak_rss_mb_sampler": _peak_mb(), "peak_rss_mb_writer": writer_peak}
        if metrics:
            write_json(metrics, {"images": total, "format": fmt, "seed": seed, "shards": len(shards),
                                 "wall_seconds": round(elapsed, 2), "export_seconds": round(export_seconds, 2),
                                 "images_per_second": round(total / export_seconds, 1),
                                 "torch_threads": torch.get_num_threads(), **peak})
        log.info("wrote %d images in %d shard(s) to %s: %.0f images/s (sample + encode + write), %.1f s in all, "
                 "peak RSS %s MB + %s MB (writer)", total, len(shards), out, total / export_seconds, elapsed,
                 peak["peak_rss_mb_sampler"], peak["peak_rss_mb_writer"])


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    if out.exists():
        if not overwrite:  # appeared while we were writing
            raise PipelineError(f"{out} already exists; pass --overwrite to replace it")
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _peak_mb() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(kib / (1 << 20 if sys.platform == "darwin" else 1 << 10), 1)


if __name__ == "__main__":
    run(main)
