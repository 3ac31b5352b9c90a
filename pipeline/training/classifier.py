"""The judge's training recipe, shared by the judge, the referee and the evaluation's TSTR and real + synthetic runs.

Recipe (after pytorch/examples mnist): AdamW with a one-cycle learning-rate schedule, cross-entropy,
a fixed number of optimisation steps; the weights of the epoch with the best validation accuracy
are kept (selection never looks at the test set).

Classifiers train and predict in the channels-last memory layout (PyTorch's "(beta) Channels Last Memory
Format" tutorial): the same arithmetic in another order of the same numbers, so the results differ from
channels-first only in float rounding; on CPUs with AVX-512 the convolutions and the max pooling run
faster in it (``python -m pipeline.tools.benchmark`` times the judge's training).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.nn import functional as F
from tqdm import tqdm

from pipeline.core.params import ClassifierParams
from pipeline.core.utils import PipelineError, autocast
from pipeline.training.networks import Classifier, ClassifierConfig
from pipeline.training.transforms import random_affine

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: Classifier
    best_epoch: int
    best_val_accuracy: float
    history: list[dict] = field(default_factory=list)  # one row per epoch: loss, val_accuracy



def steps_per_epoch(num_images: int, batch_size: int) -> int:
    """Optimisation steps in one pass over ``num_images`` (last partial batch dropped)."""
    return max(1, num_images // batch_size)


@torch.inference_mode()
def predict(model: Classifier, images: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities and penultimate features of ``images (N, 1, 28, 28)`` in [-1, 1].

    Puts ``model`` in eval mode and in the channels-last layout (in place; its values are unchanged).

    Returns:
        ``(probabilities (N, 10) float32, features (N, 128) float32)`` on the CPU.
    """
    model.eval().to(memory_format=torch.channels_last)
    device = next(model.parameters()).device
    probs, feats = [], []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device, memory_format=torch.channels_last)
        features = model.features(batch)
        probs.append(F.softmax(model.head(features), dim=1).cpu())
        feats.append(features.cpu())
    return torch.cat(probs), torch.cat(feats)


def accuracy(model: Classifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of ``images`` whose arg-max prediction equals ``labels``, in [0, 1]."""
    probs, _ = predict(model, images)
    return float((probs.argmax(1) == labels.cpu()).float().mean())


def train_classifier(
    params: ClassifierParams,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    val_images: torch.Tensor,
    val_labels: torch.Tensor,
    device: torch.device,
    total_steps: int | None = None,
    seed: int | None = None,
    desc: str = "classifier",
    on_epoch: Callable[[dict], None] | None = None,
    fresh: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> TrainResult:
    """Train a :class:`Classifier` with the judge's recipe and keep the best-on-validation epoch.

    Args:
        train_images: ``(N, 1, 28, 28) float32`` in [-1, 1]; ``train_labels``: ``(N,) int64``.
        val_images, val_labels: real validation data used for the model selection.
        total_steps: optimisation steps; default ``params.epochs`` passes over ``train_images``.
            Give the same number to compare training sets at equal budget.
        seed: overrides ``params.seed`` (weights init, batch order, dropout).
        on_epoch: called with each epoch's history row (e.g. to log it with dvclive).
        fresh: ``fresh(epoch)`` (epochs count from 1) gives the training set of every epoch after the first,
            ``(images, labels)`` of the same shapes as ``train_images`` and ``train_labels``: a new draw of
            synthetic images per epoch (the evaluation's stream conditions). Default: the same set every epoch.
    Returns:
        :class:`TrainResult` with the selected model (in eval mode) and per-epoch history.
    Raises:
        PipelineError: ``fresh`` gave a set of another size.
    """
    seed = params.seed if seed is None else seed
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = Classifier(ClassifierConfig(width=params.width, dropout=params.dropout)).to(device, memory_format=torch.channels_last)
    per_epoch = steps_per_epoch(len(train_images), params.batch_size)
    total_steps = total_steps or params.epochs * per_epoch
    epochs = math.ceil(total_steps / per_epoch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=params.lr, total_steps=total_steps)
    best_state, best_acc, best_epoch, history = None, -1.0, 0, []
    step = 0
    for epoch in range(1, epochs + 1):
        model.train()
        if fresh is not None and epoch > 1:
            size, (train_images, train_labels) = len(train_images), fresh(epoch)
            if len(train_images) != size or len(train_labels) != size:
                raise PipelineError(f"fresh({epoch}) gave {len(train_images)} images, the first epoch had {size}")
        order = torch.randperm(len(train_images), generator=generator)
        n_steps = min(per_epoch, total_steps - step)
        running = 0.0
        bar = tqdm(range(n_steps), desc=f"{desc} epoch {epoch}/{epochs}", leave=False, mininterval=1.0)
        for i in bar:
            idx = order[i * params.batch_size : (i + 1) * params.batch_size]
            images, labels = train_images[idx], train_labels[idx].to(device)
            images = random_affine(images, generator, params.transform_degrees, params.transform_translate,
                                   params.transform_scale)
            images = images.to(device, memory_format=torch.channels_last)
            with autocast(device, params.autocast):
                loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.item()
            if i % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
        step += n_steps
        val_acc = accuracy(model, val_images, val_labels)
        history.append({"epoch": epoch, "loss": running / n_steps, "val_accuracy": val_acc})
        if on_epoch is not None:
            on_epoch(history[-1])
        log.info("%s epoch %d/%d loss %.4f val_accuracy %.4f", desc, epoch, epochs, running / n_steps, val_acc)
        if val_acc > best_acc:
            best_acc, best_epoch, best_state = val_acc, epoch, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model=model, best_epoch=best_epoch, best_val_accuracy=best_acc, history=history)

