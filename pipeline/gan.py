"""The class-conditional GAN: training loop, sampling and checkpoint loading.

Loss: hinge loss (Lim & Ye 2017; Miyato et al. 2018) on a projection discriminator plus an AC-GAN
auxiliary class loss (Odena et al. 2017) weighted by ``aux_weight``; Adam (Kingma & Ba 2015);
an exponential moving average of the generator weights is what gets sampled and saved
(Karras et al. 2018; Yazıcı et al. 2019).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.nn import functional as F
from torchvision.utils import save_image
from tqdm import tqdm

from pipeline.models import NUM_CLASSES, Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from pipeline.params import CGANParams
from pipeline.utils import PipelineError, atomic_path

log = logging.getLogger(__name__)


class TrainingDivergedError(PipelineError):
    """A GAN loss became NaN or infinite."""


class CheckpointError(PipelineError):
    """A generator checkpoint is missing, unreadable, or not a generator checkpoint."""


@dataclass
class EpochLog:
    epoch: int
    d_loss: float
    g_loss: float
    d_real_accuracy: float  # share of real images with a positive D logit
    d_fake_accuracy: float  # share of fake images with a negative D logit


def fixed_noise(z_dim: int, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent z ``(10 * per_class, z_dim) float32`` and labels ``(10 * per_class,) int64``, digit-major.

    Row ``d`` of a grid with ``nrow=per_class`` shows digit ``d``.
    """
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(NUM_CLASSES * per_class, z_dim, generator=generator)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    return z, labels


@torch.inference_mode()
def sample(generator: Generator, z: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """G(z, y) in eval mode: ``(N, 1, 28, 28) float32`` in [-1, 1] on the CPU."""
    generator.eval()
    device = next(generator.parameters()).device
    out = [
        generator(z[i : i + batch_size].to(device), labels[i : i + batch_size].to(device)).cpu()
        for i in range(0, len(z), batch_size)
    ]
    return torch.cat(out) if out else torch.empty(0, 1, 28, 28)


def save_grid(images: torch.Tensor, path: str | Path) -> None:
    """Save ``(10 * k, 1, 28, 28)`` images in [-1, 1], digit-major, as a PNG grid with one row per digit."""
    with atomic_path(path) as tmp:
        save_image(images, tmp, nrow=len(images) // 10, normalize=True, value_range=(-1, 1), padding=2, format="png")


@torch.no_grad()
def _ema_update(ema: Generator, model: Generator, decay: float) -> None:
    for ema_p, p in zip(ema.parameters(), model.parameters()):
        ema_p.lerp_(p, 1.0 - decay)
    for ema_b, b in zip(ema.buffers(), model.buffers()):
        ema_b.copy_(b)


def train_cgan(
    params: CGANParams,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    device: torch.device,
    on_epoch: Callable[[EpochLog, Generator], None] | None = None,
) -> tuple[Generator, list[EpochLog]]:
    """Train G(z, y) and D(x, y) on ``train_images (N, 1, 28, 28) float32`` in [-1, 1], ``train_labels (N,) int64``.

    Args:
        on_epoch: called after each epoch with its log and the (EMA) generator, e.g. to save a grid.
    Returns:
        The generator to sample from (the EMA copy when ``ema_decay > 0``), in eval mode, and the logs.
    Raises:
        TrainingDivergedError: d_loss or g_loss became NaN/inf.
    """
    torch.manual_seed(params.seed)
    rng = torch.Generator().manual_seed(params.seed)
    generator = Generator(GeneratorConfig(z_dim=params.z_dim, width=params.g_width)).to(device)
    discriminator = Discriminator(DiscriminatorConfig(width=params.d_width)).to(device)
    ema = copy.deepcopy(generator).eval() if params.ema_decay > 0 else generator
    opt_g = torch.optim.Adam(generator.parameters(), lr=params.lr_g, betas=(params.beta1, params.beta2))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=params.lr_d, betas=(params.beta1, params.beta2))
    n_batches = len(train_images) // params.batch_size
    logs: list[EpochLog] = []
    for epoch in range(1, params.epochs + 1):
        generator.train()
        discriminator.train()
        order = torch.randperm(len(train_images), generator=rng)
        sums = torch.zeros(4)
        bar = tqdm(range(n_batches), desc=f"cGAN epoch {epoch}/{params.epochs}", leave=False, mininterval=1.0)
        for i in bar:
            idx = order[i * params.batch_size : (i + 1) * params.batch_size]
            real_images, labels = train_images[idx].to(device), train_labels[idx].to(device)  # (B, 1, 28, 28)
            z = torch.randn(len(idx), params.z_dim, generator=rng).to(device)
            fake_images = generator(z, labels)

            # --- train discriminator
            real_logit, real_class = discriminator(real_images, labels)
            fake_logit, _ = discriminator(fake_images.detach(), labels)
            d_loss = F.relu(1 - real_logit).mean() + F.relu(1 + fake_logit).mean()
            if params.aux_weight > 0:
                d_loss = d_loss + params.aux_weight * F.cross_entropy(real_class, labels)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()

            # --- train generator
            fake_logit_g, fake_class = discriminator(fake_images, labels)
            g_loss = -fake_logit_g.mean()
            if params.aux_weight > 0:
                g_loss = g_loss + params.aux_weight * F.cross_entropy(fake_class, labels)
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            if params.ema_decay > 0:
                _ema_update(ema, generator, params.ema_decay)

            d_val, g_val = d_loss.item(), g_loss.item()
            if not (math.isfinite(d_val) and math.isfinite(g_val)):
                raise TrainingDivergedError(
                    f"cGAN training diverged at epoch {epoch}, batch {i}: d_loss={d_val}, g_loss={g_val}"
                )
            sums += torch.tensor([
                d_val, g_val, float((real_logit > 0).float().mean()), float((fake_logit < 0).float().mean())
            ])
            if i % 50 == 0:
                bar.set_postfix(d_loss=f"{d_val:.3f}", g_loss=f"{g_val:.3f}")
        means = (sums / max(n_batches, 1)).tolist()
        entry = EpochLog(epoch, *means)
        logs.append(entry)
        log.info(
            "cGAN epoch %d/%d d_loss %.4f g_loss %.4f D(real)>0 %.3f D(fake)<0 %.3f",
            epoch, params.epochs, *means,
        )
        if on_epoch is not None:
            on_epoch(entry, ema)
    ema.eval()
    return ema, logs


def generator_checkpoint(generator: Generator, params: CGANParams, epoch: int) -> dict:
    """Self-describing checkpoint: ``{"model", "model_args", "params", "epoch", "kind"}``."""
    return {
        "kind": "generator",
        "model": {k: v.detach().cpu() for k, v in generator.state_dict().items()},
        "model_args": asdict(generator.config),
        "params": asdict(params),
        "epoch": epoch,
    }


def load_generator(path: str | Path, device: torch.device | str = "cpu") -> tuple[Generator, dict]:
    """Rebuild the generator from a checkpoint written with :func:`generator_checkpoint`.

    Returns:
        ``(generator in eval mode, checkpoint dict)``.
    Raises:
        CheckpointError: the file is missing, not a torch checkpoint, or not a generator of this architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"generator checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # noqa: BLE001 - unpickling errors come in many types
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != "generator":
        raise CheckpointError(f"{path}: not a generator checkpoint")
    try:
        generator = Generator(GeneratorConfig(**checkpoint["model_args"]))
        generator.load_state_dict(checkpoint["model"])
    except (TypeError, KeyError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: does not match the generator architecture ({first})") from None
    return generator.to(device).eval(), checkpoint
