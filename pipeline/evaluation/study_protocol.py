"""The augmentation study's protocol: real-data budgets, budget-matched generators, the five training
conditions, and confidence intervals over seeds. Pure and importable.

One *cell* is a (budget b, seed) pair. Its seed draws b real images per class from the train split
(never validation or test), trains a cGAN on those images only (the budget-matched generator), and
trains one classifier per condition, all with the same architecture, recipe and number of steps (the budget's):

1. ``real``: the b images per class;
2. ``real_classical``: + torchvision v2 affine and elastic augmentation (strength picked on validation);
3. ``real_synthetic``: + synthetic images (synthetic:real ratio picked on validation);
4. ``real_synthetic_classical``: both, with the picks of 2 and 3;
5. ``synthetic``: synthetic only (TSTR, Esteban et al. 2017), the synthetic set of 3;
6. ``real_synthetic_stream`` and 7. ``synthetic_stream``: 3 and 5 with fresh samples: every synthetic image a
   batch draws is a new G(z, y) ("dataset recycling", GaFi, arXiv 2305.10118), in the same proportion.

Conditions 3 and 5 are repeated with the pipeline's generator trained on all train images (suffix
``_fullgen``: "generator saw all 60k", at the ratio picked for the budget-matched generator), so the gap
between a budget-matched generator and a leaky one shows. Validation makes every pick; the test set is
scored once per final classifier, at the end.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F
from torchvision.transforms import v2
from tqdm import tqdm

from pipeline.core.params import CGANParams, ClassifierParams, StudyParams
from pipeline.core.utils import PipelineError, autocast
from pipeline.data.splits import Splits, to_tensor, to_uint8
from pipeline.generation.inference import InferenceGenerator, sample_images
from pipeline.training.cgan import train_cgan
from pipeline.training.classifier import accuracy
from pipeline.training.networks import NUM_CLASSES, Classifier, ClassifierConfig, Generator

log = logging.getLogger(__name__)

CONDITIONS = ("real", "real_classical", "real_synthetic", "real_synthetic_classical", "synthetic",
              "real_synthetic_stream", "synthetic_stream")
FULLGEN_CONDITIONS = ("real_synthetic_fullgen", "synthetic_fullgen")
#: torchvision v2 transforms draw one set of random parameters per call: they are called on groups of this
#: many images (8 draws per batch of 128): per image, the transforms would cost several times the training
#: step itself on a CPU.
AUGMENT_GROUP = 16


def draw_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices into the train split: ``per_class`` images of each digit, drawn without replacement by
    ``seed`` (``per_class = 0``: every index). Sorted ``(per_class * 10,) int64``.

    Raises:
        PipelineError: a digit has fewer than ``per_class`` train images.
    """
    if per_class == 0:
        return np.arange(len(labels), dtype=np.int64)
    rng = np.random.default_rng([seed, per_class])
    chosen = []
    for digit in range(NUM_CLASSES):
        pool = np.flatnonzero(labels == digit)
        if len(pool) < per_class:
            raise PipelineError(f"budget {per_class} per class: digit {digit} has only {len(pool)} train images")
        chosen.append(rng.choice(pool, per_class, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def subset_sha256(images: np.ndarray) -> str:
    """SHA-256 of the subset's pixels (uint8, in index order): which images a cell saw, in one string."""
    return hashlib.sha256(np.ascontiguousarray(images, dtype=np.uint8).tobytes()).hexdigest()


def classical_transforms(strength: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """torchvision v2 augmentation of ``(B, 1, 28, 28) float32`` in [-1, 1] (background -1): RandomAffine
    (rotation ``15 * strength`` degrees, shift and zoom ``0.1 * strength``) then ElasticTransform (alpha
    ``20 * strength``, sigma 4; Simard et al. 2003), one parameter draw per group of :data:`AUGMENT_GROUP`
    images. ``strength = 0``: identity. Randomness comes from torch's global generator (seeded per
    classifier by :func:`fit_classifier`).
    """
    if strength == 0:
        return lambda images: images
    transform = v2.Compose([
        v2.RandomAffine(degrees=15 * strength, translate=(0.1 * strength, 0.1 * strength),
                        scale=(1 - 0.1 * strength, 1 + 0.1 * strength), fill=-1.0),
        v2.ElasticTransform(alpha=20.0 * strength, sigma=4.0, fill=-1.0),
    ])
    return lambda images: torch.cat([transform(group) for group in images.split(AUGMENT_GROUP)])


def fit_classifier(images: torch.Tensor, labels: torch.Tensor, params: StudyParams, recipe: ClassifierParams,
                   seed: int, steps: int, augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   stream: tuple[Generator, torch.Tensor] | None = None, desc: str = "classifier") -> Classifier:
    """Train a :class:`Classifier` (width ``params.classifier_width``, the judge's dropout) for exactly ``steps``
    AdamW steps (the judge's weight decay) with a one-cycle schedule, batches of ``params.batch_size`` drawn
    uniformly with replacement, channels-last, in ``params.autocast`` (mixed precision, as the judge trains).

    Args:
        images: ``(N, 1, 28, 28) float32`` in [-1, 1]; ``labels``: ``(N,) int64``.
        recipe: the judge's params (``train_judge``): dropout and weight decay.
        seed: weights, batch draws, dropout, augmentation and stream randomness.
        steps: optimisation steps (the budget's, :meth:`StudyParams.steps_for`).
        stream: ``(generator, slot_labels (M,) int64)``: M more slots in the pool; a draw of slot j is a fresh
            G(z, slot_labels[j]) with a new z (stored as uint8 first, as an export would), never reused.
    Returns:
        The classifier after the last step, in eval mode (no selection on any data).
    """
    torch.manual_seed(seed)
    draws = torch.Generator().manual_seed(seed)
    latents = torch.Generator().manual_seed(seed + 1_000_003)  # any other seed: keeps z apart from the batch draws
    model = Classifier(ClassifierConfig(width=params.classifier_width, dropout=recipe.dropout))
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=recipe.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=params.lr, total_steps=steps)
    slots = len(images) + (0 if stream is None else len(stream[1]))
    device = torch.device("cpu")
    model.train()
    bar = tqdm(range(steps), desc=desc, leave=False, mininterval=1.0)
    for step in bar:
        idx = torch.randint(slots, (params.batch_size,), generator=draws)
        batch_x, batch_y = _draw(images, labels, idx, stream, latents)
        batch_x = batch_x if augment is None else augment(batch_x)
        with autocast(device, params.autocast):
            loss = F.cross_entropy(model(batch_x.contiguous(memory_format=torch.channels_last)), batch_y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return model.eval()


def _draw(images: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor, stream: tuple[Generator, torch.Tensor] | None,
          latents: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of pool slots ``idx``: stored images, and fresh samples of G for the stream's slots."""
    real = idx < len(images)
    if stream is None or bool(real.all()):
        return images[idx], labels[idx]
    generator, slot_labels = stream
    fresh_y = slot_labels[idx[~real] - len(images)]
    z = torch.randn(len(fresh_y), generator.config.z_dim, generator=latents)
    x = torch.empty((len(idx), *images.shape[1:]), dtype=images.dtype)
    x[real], x[~real] = images[idx[real]], to_tensor(to_uint8(sample_images(generator, z, fresh_y)))
    y = torch.empty(len(idx), dtype=torch.int64)
    y[real], y[~real] = labels[idx[real]], fresh_y
    return x, y


def train_budget_generator(images: np.ndarray, labels: np.ndarray, cgan: CGANParams, params: StudyParams,
                           seed: int) -> Generator:
    """The budget-matched cGAN: the pipeline's recipe (``cgan``) with each study key ``gan_<name>`` in place of
    its ``<name>`` (widths, learning rates, batch size, DiffAugment, ADA, consistency regularisation), trained for
    ``params.gan_steps`` steps on ``images (n, 28, 28) uint8`` only: passes over the subset, each in a new seeded
    order, fill the steps (a large subset is only partly seen). Returns the EMA generator in eval mode."""
    n_needed = params.gan_steps * params.gan_batch_size
    rng = np.random.default_rng([seed, len(images)])
    order = np.concatenate([rng.permutation(len(images)) for _ in range(math.ceil(n_needed / len(images)))])[:n_needed]
    tiled_x, tiled_y = to_tensor(images[order]), torch.from_numpy(labels[order]).long()
    study_keys = {key.removeprefix("gan_"): getattr(params, key) for key in params.gan_keys() if key != "gan_steps"}
    recipe = replace(cgan, seed=seed, epochs=1, max_train_images=0, lr_decay_epochs=0, **study_keys)
    generator, _ = train_cgan(recipe, tiled_x, tiled_y, torch.device("cpu"))
    return generator


def synthetic_set(generator: Generator, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` images of each digit from ``generator``, stored as uint8 pixels (as an export would),
    returned as ``((10 * per_class, 1, 28, 28) float32 in [-1, 1], (10 * per_class,) int64)``; G runs in float32
    on the inference path (:func:`pipeline.generation.inference.sample_images`), as the DVC export does."""
    labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    z = torch.randn(len(labels), generator.config.z_dim, generator=torch.Generator().manual_seed(seed))
    return to_tensor(to_uint8(sample_images(generator, z, labels))), labels


@dataclass
class CellResult:
    """One cell's outcome: ``test`` accuracies (in [0, 1]) per condition, the validation accuracy of every
    candidate and final model, and the picks."""

    test: dict[str, float]
    validation: dict[str, float]
    picks: dict[str, float]


def run_cell(splits: Splits, subset: np.ndarray, budget: int, fullgen: Generator, cgan: CGANParams,
             recipe: ClassifierParams, params: StudyParams, seed: int,
             budget_generator: Generator | None = None) -> CellResult:
    """Train every condition of one cell and score it: candidates on validation, finals once on test.

    Args:
        subset: indices into ``splits.train_*`` from :func:`draw_subset`; nothing else of train is read.
        budget: its images per class (0 = all), which sets every classifier's steps (``params.steps_for``).
        fullgen: the pipeline's generator (trained on the whole train split).
        cgan, recipe: the ``train_cgan`` and ``train_judge`` params the study's recipes start from.
        budget_generator: the budget-matched generator; default: trained here with
            :func:`train_budget_generator` on the subset only.
    """
    real_x, real_y = to_tensor(splits.train_images[subset]), torch.from_numpy(splits.train_labels[subset]).long()
    val_x = to_tensor(splits.val_images[: params.val_size])
    val_y = torch.from_numpy(splits.val_labels[: params.val_size]).long()
    per_class = len(subset) // NUM_CLASSES
    if budget_generator is None:
        budget_generator = train_budget_generator(splits.train_images[subset], splits.train_labels[subset], cgan,
                                                  params.for_budget(budget), seed)
    validation, finals, picks = {}, {}, {}

    steps = params.steps_for(budget)

    def fit(name: str, x, y, strength: float = 0.0, stream=None) -> Classifier:
        model = fit_classifier(x, y, params, recipe, seed, steps, classical_transforms(strength), stream,
                               desc=f"b{per_class} s{seed} {name}")
        validation[name] = accuracy(model, val_x, val_y)
        return model

    finals["real"] = fit("real", real_x, real_y)
    candidates = {s: fit(f"real_classical@{s:g}", real_x, real_y, s) for s in params.transform_strengths}
    picks["transform_strength"] = max(candidates, key=lambda s: (validation[f"real_classical@{s:g}"], -s))
    finals["real_classical"] = candidates[picks["transform_strength"]]
    most = min(params.max_synthetic_per_class, max(params.synthetic_ratios) * per_class)
    sampled = {}

    def pool(generator: Generator, ratio: int) -> tuple[torch.Tensor, torch.Tensor]:
        if id(generator) not in sampled:
            sampled[id(generator)] = synthetic_set(generator, most, seed)
        syn_x, syn_y = sampled[id(generator)]
        keep = (torch.arange(len(syn_y)) % most) < min(most, ratio * per_class)  # the first n of each digit
        return syn_x[keep], syn_y[keep]

    def with_real(x, y):
        return torch.cat([real_x, x]), torch.cat([real_y, y])

    pools = {r: pool(budget_generator, r) for r in params.synthetic_ratios}
    mixed = {r: fit(f"real_synthetic@{r:g}", *with_real(*pools[r])) for r in params.synthetic_ratios}
    ratio = picks["synthetic_ratio"] = max(mixed, key=lambda r: (validation[f"real_synthetic@{r:g}"], -r))
    finals["real_synthetic"] = mixed[ratio]
    finals["real_synthetic_classical"] = fit("real_synthetic_classical", *with_real(*pools[ratio]),
                                             picks["transform_strength"])
    finals["synthetic"] = fit("synthetic", *pools[ratio])
    # The fresh-samples conditions: the same pools, every synthetic draw a new G(z, y).
    fresh = InferenceGenerator(budget_generator)
    empty = real_x[:0], real_y[:0]
    finals["real_synthetic_stream"] = fit("real_synthetic_stream", real_x, real_y, stream=(fresh, pools[ratio][1]))
    finals["synthetic_stream"] = fit("synthetic_stream", *empty, stream=(fresh, pools[ratio][1]))
    full_pool = pool(fullgen, ratio)
    finals["real_synthetic_fullgen"] = fit("real_synthetic_fullgen", *with_real(*full_pool))
    finals["synthetic_fullgen"] = fit("synthetic_fullgen", *full_pool)
    for name, model in finals.items():
        validation.setdefault(name, accuracy(model, val_x, val_y))
    # The test set, once per final classifier, after every pick is made.
    test_x, test_y = to_tensor(splits.test_images), torch.from_numpy(splits.test_labels).long()
    test = {name: accuracy(model, test_x, test_y) for name, model in finals.items()}
    return CellResult(test=test, validation=validation, picks=picks)
