"""What the interactive app (``pipeline/app.py``) does with a request, without Streamlit: validate it,
sample the digits with their judge labels, and package them as a ZIP of PNGs or a Parquet file.

Images are the rows an export with the same seed would hold: row ``r`` of a request for ``digits`` is
digit ``digits[r % k]`` with per-digit index ``r // k`` (:class:`pipeline.generation.sampling.ShardLayout`), its
latent z from :class:`pipeline.generation.sampling.LatentStreams`. So the app's 100 images of "all digits, seed s"
are the first 100 rows of ``python -m pipeline.generate --seed s`` (with the same latent scale and precision:
the app samples with ``--precision``'s default, ``auto``), and the app's Parquet file uses the export's schema.
Pure and importable.
"""

from __future__ import annotations

import base64
import html
import io
import math
import secrets
import zipfile
from dataclasses import dataclass
from functools import cached_property
from typing import Mapping, Sequence

import click
import numpy as np
import pyarrow.parquet as pq

from pipeline.core.utils import PipelineError
from pipeline.generation.formats import encode_pngs, image_path, to_table
from pipeline.generation.sampling import LatentStreams, ShardLayout, judge_images, sample_rows
from pipeline.training.networks import NUM_CLASSES, Classifier, Generator

#: Most images one request may ask for.
MAX_IMAGES = 100
#: Seeds are drawn from and checked against 0..MAX_SEED (numpy SeedSequence needs non-negative integers).
MAX_SEED = 2**31 - 1
#: Highest --min-confidence the app offers: at 1.0 rejection sampling would almost never finish.
MAX_MIN_CONFIDENCE = 0.999
#: Widest latent scale the app offers (z ~ N(0, s² I)); validation quality falls off beyond ~1.2 already.
MAX_LATENT_SCALE = 2.0
#: On the page each 28x28 digit is drawn this many times larger, pixel for pixel.
ZOOM = 3
#: Environment variables an operator may set instead of the command line (the command line wins).
GENERATOR_ENV, JUDGE_ENV = "SYNTHETIC_DIGITS_GENERATOR", "SYNTHETIC_DIGITS_JUDGE"
#: ZIP entries carry this fixed timestamp, so the same images give the same ZIP bytes.
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Request:
    """One press of Generate: ``count`` images of ``digits`` with sampling ``seed`` and latent z ~ N(0,
    ``latent_scale``² I); with ``min_confidence > 0`` only images the judge assigns to their digit with at
    least that probability.

    Raises:
        PipelineError: (one line) a digit outside 0-9 or repeated, ``count`` outside 1..:data:`MAX_IMAGES`,
            ``seed`` outside 0..:data:`MAX_SEED`, ``min_confidence`` outside [0, :data:`MAX_MIN_CONFIDENCE`],
            ``latent_scale`` outside (0, :data:`MAX_LATENT_SCALE`].
    """

    digits: tuple[int, ...]
    count: int
    seed: int
    min_confidence: float = 0.0
    latent_scale: float = 1.0

    def __post_init__(self):
        if not self.digits or len(set(self.digits)) != len(self.digits) or not all(
                isinstance(d, int) and 0 <= d < NUM_CLASSES for d in self.digits):
            raise PipelineError(f"digits must be distinct integers in 0-9, got {list(self.digits)}")
        if not isinstance(self.count, int) or not 1 <= self.count <= MAX_IMAGES:
            raise PipelineError(f"the number of images must be in 1..{MAX_IMAGES}, got {self.count}")
        if not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise PipelineError(f"the seed must be an integer in 0..{MAX_SEED}, got {self.seed}")
        if not 0.0 <= self.min_confidence <= MAX_MIN_CONFIDENCE:
            raise PipelineError(f"the minimum judge confidence must be in [0, {MAX_MIN_CONFIDENCE}], "
                                f"got {self.min_confidence}")
        if not 0.0 < self.latent_scale <= MAX_LATENT_SCALE:
            raise PipelineError(f"the latent scale must be in (0, {MAX_LATENT_SCALE}], got {self.latent_scale}")


@dataclass(frozen=True)
class Batch:
    """The answer to a :class:`Request`.

    Attributes:
        images: ``(n, 28, 28) uint8`` in [0, 255], as stored in an export.
        labels: ``(n,) int64`` the digit each image was generated as (the condition y).
        indices: ``(n,) int64`` per-digit index (the export's ``index`` column).
        judge_label: ``(n,) int64`` the judge's predicted digit, or None without a judge.
        judge_confidence: ``(n,) float32`` in [0, 1], the judge's probability of ``judge_label``, or None.
    """

    request: Request
    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    judge_label: np.ndarray | None
    judge_confidence: np.ndarray | None

    @cached_property
    def pngs(self) -> list[bytes]:
        """Each image as PNG bytes (:func:`pipeline.generation.formats.encode_pngs`), encoded once for the grid and the ZIP."""
        return encode_pngs(self.images)


@dataclass(frozen=True)
class ServedModels:
    """The checkpoints the app serves, chosen by its operator (never by a visitor): paths as given."""

    generator: str
    judge: str


@click.command(context_settings={"help_option_names": []})
@click.option("--generator", envvar=GENERATOR_ENV, default="models/generator.pt")
@click.option("--judge", envvar=JUDGE_ENV, default="models/judge.pt")
def _served_models(generator: str, judge: str) -> ServedModels:
    return ServedModels(generator, judge)


def served_models(argv: Sequence[str]) -> ServedModels:
    """The models the operator serves, from the script's arguments (``streamlit run pipeline/app.py --
    --generator PATH --judge PATH``), else the environment (:data:`GENERATOR_ENV`, :data:`JUDGE_ENV`), else
    ``models/generator.pt`` and ``models/judge.pt``. The paths are not checked here.

    Raises:
        PipelineError: (one line) an unknown option, or an option without its value.
    """
    try:
        return _served_models.main(list(argv), prog_name="pipeline/app.py", standalone_mode=False)
    except click.ClickException as error:
        raise PipelineError(f"app options: {error.format_message()} (expected --generator PATH --judge PATH)") from None


#: What a page opened without query parameters shows.
DEFAULT_COUNT = 50


def request_from_query(query: Mapping[str, str], latent_scale: float = 1.0) -> Request:
    """The request a shared URL describes, ``?digit=7&count=20&seed=3&min_confidence=0.9&latent_scale=1.1``
    (``digit=all`` or absent: all ten; absent keys: :data:`DEFAULT_COUNT` images, seed 0, no minimum
    confidence, the given ``latent_scale``).

    Raises:
        PipelineError: (one line) a value is not a number or out of range (see :class:`Request`).
    """
    def number(key: str, kind, default):
        text = query.get(key)
        if text is None:
            return default
        try:
            return kind(text)
        except ValueError:
            raise PipelineError(f"query parameter {key}={text!r} is not a{'n integer' if kind is int else ' number'}") from None

    digit = query.get("digit", "all")
    digits = tuple(range(NUM_CLASSES)) if digit == "all" else (number("digit", int, 0),)
    return Request(digits, number("count", int, DEFAULT_COUNT), number("seed", int, 0),
                   number("min_confidence", float, 0.0), number("latent_scale", float, latent_scale))


def query_of(request: Request) -> dict[str, str]:
    """The query parameters that reproduce ``request`` (inverse of :func:`request_from_query`)."""
    digit = "all" if len(request.digits) == NUM_CLASSES else ",".join(map(str, request.digits))
    query = {"digit": digit, "count": str(request.count), "seed": str(request.seed)}
    if request.min_confidence > 0:
        query["min_confidence"] = repr(request.min_confidence)
    query["latent_scale"] = repr(request.latent_scale)  # always: the app's default comes from params.yaml
    return query


def random_seed() -> int:
    """A fresh seed in 0..:data:`MAX_SEED` from the OS's randomness (for "random seed")."""
    return secrets.randbelow(MAX_SEED + 1)


def generate_batch(generator: Generator, judge: Classifier | None, request: Request) -> Batch:
    """Sample the request's images with G(z, y) and label each with the judge.

    Raises:
        PipelineError: ``request.min_confidence > 0`` without a judge, or rejection sampling gave up
            (:data:`pipeline.generation.sampling.MAX_ATTEMPTS` draws).
    """
    if request.min_confidence > 0 and judge is None:
        raise PipelineError("a minimum judge confidence needs the judge (classifier checkpoint)")
    per_class = math.ceil(request.count / len(request.digits))
    layout = ShardLayout(request.digits, per_class, num_shards=1)
    labels, indices = layout.labels_and_indices(range(request.count))
    latents = LatentStreams(request.seed, generator.config.z_dim, scale=request.latent_scale)
    curator = judge if request.min_confidence > 0 else None
    rows = sample_rows(generator, latents, labels, indices, curator, request.min_confidence)
    judge_label = judge_confidence = None
    if curator is not None:
        judge_label, judge_confidence = rows["judge_label"], rows["judge_confidence"]
    elif judge is not None:
        probs, judge_label = judge_images(judge, rows["images"])
        judge_confidence = probs[np.arange(len(judge_label)), judge_label]
    return Batch(request, rows["images"], labels, indices, judge_label, judge_confidence)


def zip_of_pngs(batch: Batch) -> bytes:
    """The batch as a ZIP of 28x28 grayscale PNGs named ``<label>/<index:06d>.png`` (the export's image
    folder layout); the same batch always gives the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # PNGs are already deflated
        for png, label, index in zip(batch.pngs, batch.labels.tolist(), batch.indices.tolist()):
            archive.writestr(zipfile.ZipInfo(image_path(label, index), date_time=_ZIP_DATE), png)
    return buffer.getvalue()


def parquet_bytes(batch: Batch) -> bytes:
    """The batch as one Parquet file in the export's schema (:func:`pipeline.generation.formats.export_schema`):
    ``image``, ``label``, ``seed``, ``index``, plus ``judge_label`` and ``judge_confidence`` when the
    request was curated (``min_confidence > 0``), as ``python -m pipeline.generate`` writes them."""
    curated = batch.request.min_confidence > 0
    table = to_table(batch.images, batch.labels, batch.indices, batch.request.seed,
                     batch.judge_label if curated else None, batch.judge_confidence if curated else None)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def captions(batch: Batch) -> list[str]:
    """One caption per image: ``"judge 7 · 99.8 %"`` (or ``"asked 7"`` without a judge); a judge label
    that differs from the digit asked for is flagged ``"asked 7, judge 1 · 62.0 %"``."""
    if batch.judge_label is None:
        return [f"asked {label}" for label in batch.labels.tolist()]
    out = []
    for asked, judged, confidence in zip(batch.labels.tolist(), batch.judge_label.tolist(),
                                         batch.judge_confidence.tolist()):
        prefix = "judge" if asked == judged else f"asked {asked}, judge"
        out.append(f"{prefix} {judged} · {100 * confidence:.1f} %")
    return out


def grid_html(batch: Batch, zoom: int = ZOOM) -> str:
    """The batch as one HTML grid: each digit an ``<img>`` with its PNG inline (``data:image/png;base64``,
    the bytes :func:`zip_of_pngs` stores) drawn ``zoom`` times larger without smoothing, above its
    :func:`captions` entry. One element with no media requests, so 100 digits render in one round trip.
    """
    size = 28 * zoom
    cells = []
    for png, caption, label, index in zip(batch.pngs, captions(batch), batch.labels.tolist(),
                                          batch.indices.tolist()):
        source = base64.b64encode(png).decode("ascii")
        cells.append(f'<figure class="digit"><img src="data:image/png;base64,{source}" width="{size}" height="{size}" '
                     f'alt="{html.escape(image_path(label, index))}"><figcaption>{html.escape(caption)}</figcaption></figure>')
    # Ten columns when all ten digits are asked for, so each row is one 0-9 cycle (columns shrink on
    # narrow screens); otherwise as many as fit.
    columns = "10,minmax(0," if len(batch.request.digits) == NUM_CLASSES else "auto-fill,("
    style = (f"<style>#digits{{display:grid;grid-template-columns:repeat({columns}{size + 12}px));gap:8px 4px}}"
             "#digits figure{margin:0;text-align:center;font-size:12px;line-height:1.3}"
             "#digits img{image-rendering:pixelated;display:block;margin:0 auto 2px;max-width:100%;height:auto}"
             "</style>")
    return f'{style}<div id="digits">{"".join(cells)}</div>'
