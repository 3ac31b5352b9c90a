"""Self-describing checkpoints (nanoGPT's layout): writing one for any model, loading the generator and the
classifiers (judge, referee) back, and the resumable state of an interrupted cGAN training.

Every checkpoint is a dict of tensors and plain values, loadable with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from pipeline.core.utils import PipelineError
from pipeline.training.networks import Classifier, ClassifierConfig, Generator, GeneratorConfig

log = logging.getLogger(__name__)

#: The model each checkpoint kind rebuilds: ``kind -> (model class, its config class)``.
KINDS = {"generator": (Generator, GeneratorConfig), "classifier": (Classifier, ClassifierConfig)}


class CheckpointError(PipelineError):
    """A checkpoint is missing, unreadable, of another kind, or of another architecture."""


def model_checkpoint(kind: str, model: nn.Module, params, epoch: int) -> dict:
    """Self-describing checkpoint of ``model`` (``kind``: "generator" or "classifier", the judge and the
    referee alike): ``{"kind", "model": state_dict on CPU, "model_args": asdict(model.config),
    "params": asdict(params), "epoch"}``."""
    return {
        "kind": kind,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_args": asdict(model.config),
        "params": asdict(params),
        "epoch": epoch,
    }


def load_model(path: str | Path, kind: str, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model of a :func:`model_checkpoint` of ``kind``.

    Returns:
        ``(model in eval mode on device, checkpoint dict)``.
    Raises:
        CheckpointError: the file is missing, not a torch checkpoint, not of ``kind``, or of another architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{kind} checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # noqa: BLE001 - unpickling errors come in many types
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != kind:
        raise CheckpointError(f"{path}: not a {kind} checkpoint")
    model_class, config_class = KINDS[kind]
    try:
        model = model_class(config_class(**checkpoint["model_args"]))
        model.load_state_dict(checkpoint["model"])
    except (TypeError, KeyError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: does not match the {kind} architecture ({first})") from None
    return model.to(device).eval(), checkpoint


def load_generator(path: str | Path, device: torch.device | str = "cpu") -> tuple[Generator, dict]:
    """The generator of a checkpoint written by ``train_cgan``: ``(generator in eval mode, checkpoint dict)``.

    Raises:
        CheckpointError: as :func:`load_model`.
    """
    return load_model(path, "generator", device)


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> Classifier:
    """The classifier (judge or referee) of a checkpoint written by ``train_classifier``, in eval mode.

    Raises:
        CheckpointError: as :func:`load_model`.
    """
    return load_model(path, "classifier", device)[0]


def read_training_state(path: str | Path | None, key: str) -> dict | None:
    """The resumable cGAN training state at ``path`` if it exists and was written for ``key``, else None.

    ``key`` identifies the run (params other than ``epochs``, and the data); a state written by another
    run, or an unreadable file, is ignored (training then starts afresh and overwrites it).
    """
    if path is None or not Path(path).is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a half-written or foreign file is simply not resumed from
        log.warning("ignoring unreadable training state %s", path)
        return None
    if not isinstance(state, dict) or state.get("key") != key:
        log.info("training state %s belongs to another run; starting afresh", path)
        return None
    return state
