"""The class-conditional GAN: training loop, sampling and checkpoint loading.

The losses are :mod:`pipeline.training.losses` (hinge, AC-GAN class loss, TAC-GAN twin classifier, mode seeking);
Adam (Kingma & Ba 2015); an exponential moving average of the generator weights is what gets sampled and
saved (Karras et al. 2018; Yazıcı et al. 2019).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode
from torchvision.utils import save_image
from tqdm import tqdm

from pipeline.core.params import CGANParams
from pipeline.core.utils import PipelineError, atomic_path, autocast, save_checkpoint
from pipeline.training.losses import discriminator_loss, generator_loss
from pipeline.training.networks import NUM_CLASSES, Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from pipeline.training.transforms import AdaptiveProbability, diff_augment

log = logging.getLogger(__name__)


class TrainingDivergedError(PipelineError):
    """A GAN loss became NaN or infinite."""



MAX_ABS_LOSS = 1e4  # a hinge/CE loss this large means the game has blown up even if still finite



@dataclass
class EpochLog:
    epoch: int
    d_loss: float
    g_loss: float
    d_real_accuracy: float  # share of real images with a positive D logit
    d_fake_accuracy: float  # share of fake images with a negative D logit


#: The per-epoch statistics of :class:`EpochLog`, in its field order: means over the epoch's steps.
EPOCH_STATISTICS = tuple(f.name for f in fields(EpochLog) if f.name != "epoch")


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



def lr_scale(step: int, total_steps: int, decay_steps: int) -> float:
    """Learning-rate factor for 0-based ``step`` of ``total_steps``: 1, then linear towards 0 over the last
    ``decay_steps`` (the schedule of CycleGAN, Zhu et al. 2017). ``decay_steps <= 0`` keeps 1; more than
    ``total_steps`` decays over all of them. In (0, 1]."""
    decay_steps = min(decay_steps, total_steps)
    start = total_steps - decay_steps
    if decay_steps <= 0 or step < start:
        return 1.0
    return (total_steps - step) / decay_steps


def generator_config(params: CGANParams) -> GeneratorConfig:
    """The generator's shape from the ``train_cgan`` params."""
    return GeneratorConfig(z_dim=params.z_dim, width=params.g_width, conditional_bn=params.g_conditional_bn,
                           refine=params.g_refine)


@torch.no_grad()
def _ema_update(ema: Generator, model: Generator, decay: float) -> None:
    for ema_p, p in zip(ema.parameters(), model.parameters()):
        ema_p.lerp_(p, 1.0 - decay)
    for ema_b, b in zip(ema.buffers(), model.buffers()):
        ema_b.copy_(b)


def _set_learning_rates(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_cgan(
    params: CGANParams,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    device: torch.device,
    on_epoch: Callable[[EpochLog, Generator], None] | None = None,
    state_path: str | Path | None = None,
    state_key: str = "",
    resume: dict | None = None,
    abort_fn: Callable[[int, Generator], bool] | None = None,
) -> tuple[Generator, list[EpochLog]]:
    """Train G(z, y) and D(x, y) on ``train_images (N, 1, 28, 28) float32`` in [-1, 1], ``train_labels (N,) int64``.

    Args:
        on_epoch: called after each epoch with its log and the (EMA) generator, e.g. to save a grid.
        state_path: where to save the full training state (G, D, EMA, optimisers, RNG) after every
            epoch, tagged with ``state_key``, so an interrupted run can continue.
        resume: a state from :func:`read_training_state`; training continues after its epoch and
            gives the same bytes as an uninterrupted run.
        abort_fn: called after every optimisation step with the number of steps done and the (EMA)
            generator; training stops there when it returns True (as StyleGAN2-ADA's ``abort_fn``; the
            benchmark uses it to stop at a quality target). The unfinished epoch is not logged.
    Returns:
        The generator to sample from (the EMA copy when ``ema_decay > 0``), in eval mode, and the logs of the
        finished epochs.
    Raises:
        TrainingDivergedError: d_loss or g_loss became NaN/inf or exceeded ``MAX_ABS_LOSS``.
    """
    torch.manual_seed(params.seed)
    rng = torch.Generator().manual_seed(params.seed)
    generator = Generator(generator_config(params)).to(device)
    discriminator = Discriminator(DiscriminatorConfig(
        width=params.d_width, minibatch_std=params.minibatch_std, head_conv=params.d_head_conv,
        twin_classifier=params.twin_aux_weight > 0)).to(device)
    ada = AdaptiveProbability(params.ada_target, params.ada_kimg) if params.ada_target > 0 else None
    augment = lambda x: (diff_augment(x, params.diffaugment, rng, ada.p if ada else 1.0)  # noqa: E731
                         if params.diffaugment else x)
    ema = copy.deepcopy(generator).eval() if params.ema_decay > 0 else generator
    opt_g = torch.optim.Adam(generator.parameters(), lr=params.lr_g, betas=(params.beta1, params.beta2))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=params.lr_d, betas=(params.beta1, params.beta2))
    n_batches = len(train_images) // params.batch_size
    total_steps = params.epochs * n_batches
    logs: list[EpochLog] = []
    first_epoch = 1
    if resume is not None:
        generator.load_state_dict(resume["generator"])
        discriminator.load_state_dict(resume["discriminator"])
        ema.load_state_dict(resume["ema"])
        opt_g.load_state_dict(resume["opt_g"])
        opt_d.load_state_dict(resume["opt_d"])
        rng.set_state(resume["rng"])
        if ada is not None:
            ada.load_state_dict(resume["ada"])
        logs = [EpochLog(**entry) for entry in resume["logs"]]
        first_epoch = resume["epoch"] + 1
        log.info("resuming cGAN training after epoch %d", resume["epoch"])
    for epoch in range(first_epoch, params.epochs + 1):
        generator.train()
        discriminator.train()
        order = torch.randperm(len(train_images), generator=rng)
        sums = torch.zeros(len(EPOCH_STATISTICS))  # float32, in EPOCH_STATISTICS order
        bar = tqdm(range(n_batches), desc=f"cGAN epoch {epoch}/{params.epochs}", leave=False, mininterval=1.0)
        for i in bar:
            step = (epoch - 1) * n_batches + i  # 0-based over the whole run
            idx = order[i * params.batch_size : (i + 1) * params.batch_size]
            real_images, labels = train_images[idx].to(device), train_labels[idx].to(device)  # (B, 1, 28, 28)
            z = torch.randn(len(idx), params.z_dim, generator=rng).to(device)
            scale = lr_scale(step, total_steps, params.lr_decay_epochs * n_batches)
            _set_learning_rates(opt_g, params.lr_g * scale)
            _set_learning_rates(opt_d, params.lr_d * scale)
            fake_labels, half = labels, len(idx) // 2
            if params.mode_seeking > 0:  # pairs (i, i + half) share a digit and differ in z
                fake_labels = labels.clone()
                fake_labels[half : 2 * half] = labels[:half]
            with autocast(device, params.autocast):
                fake_images = generator(z, fake_labels)

                # --- train discriminator
                real_logit, real_class, _ = discriminator(augment(real_images), labels)
                fake_logit, _, fake_twin = discriminator(augment(fake_images.detach()), fake_labels)
                d_loss = discriminator_loss(real_logit, fake_logit, real_class, labels, fake_twin, fake_labels,
                                            params.aux_weight, params.twin_aux_weight)
                if params.cr_weight > 0:  # bCR: D's logit must not move when the policy transforms its input
                    d_loss = d_loss + params.cr_weight * (
                        consistency_loss(discriminator, real_images, labels, real_logit, params.diffaugment, rng)
                        + consistency_loss(discriminator, fake_images.detach(), fake_labels, fake_logit,
                                           params.diffaugment, rng))
            if ada is not None:
                ada.update(real_logit)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()

            # --- train generator
            with autocast(device, params.autocast):
                fake_logit_g, fake_class, fake_twin_g = discriminator(augment(fake_images), fake_labels)
                g_loss = generator_loss(fake_logit_g, fake_class, fake_twin_g, fake_labels, fake_images, z, half,
                                        params.aux_weight, params.twin_aux_weight, params.mode_seeking)
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            steps_done = step + 1
            if params.ema_decay > 0:
                # Warm-up (as TensorFlow's ExponentialMovingAverage with num_updates): early on the
                # average must not be dominated by the random initial weights.
                _ema_update(ema, generator, min(params.ema_decay, (1 + steps_done) / (10 + steps_done)))

            d_val, g_val = d_loss.item(), g_loss.item()
            if not all(math.isfinite(v) and abs(v) < MAX_ABS_LOSS for v in (d_val, g_val)):
                raise TrainingDivergedError(
                    f"cGAN training diverged at epoch {epoch}, batch {i}: d_loss={d_val}, g_loss={g_val}; "
                    "lower the learning rates in params.yaml"
                )
            sums += torch.tensor([
                d_val, g_val, float((real_logit > 0).float().mean()), float((fake_logit < 0).float().mean())
            ])
            if i % 50 == 0:
                bar.set_postfix(d_loss=f"{d_val:.3f}", g_loss=f"{g_val:.3f}")
            if abort_fn is not None and abort_fn(steps_done, ema):
                bar.close()
                return ema.eval(), logs
        entry = EpochLog(epoch, **dict(zip(EPOCH_STATISTICS, (sums / max(n_batches, 1)).tolist())))
        logs.append(entry)
        log.info("cGAN epoch %d/%d d_loss %.4f g_loss %.4f D(real)>0 %.3f D(fake)<0 %.3f", epoch, params.epochs,
                 entry.d_loss, entry.g_loss, entry.d_real_accuracy, entry.d_fake_accuracy)
        if ada is not None:
            log.info("cGAN epoch %d/%d ADA augmentation probability %.3f", epoch, params.epochs, ada.p)
        if state_path is not None:
            save_checkpoint(state_path, {
                "key": state_key, "epoch": epoch, "logs": [asdict(e) for e in logs], "rng": rng.get_state(),
                "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
                "ema": ema.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                **({"ada": ada.state_dict()} if ada is not None else {}),
            })
        if on_epoch is not None:
            on_epoch(entry, ema)
    ema.eval()
    return ema, logs


def consistency_loss(discriminator: Discriminator, images: torch.Tensor, labels: torch.Tensor, logit: torch.Tensor,
                     policy: str, rng: torch.Generator) -> torch.Tensor:
    """bCR's term for one side (Zhao et al. 2021, "Improved Consistency Regularization for GANs", eq. 3), a scalar:
    the mean squared difference between D's logits ``logit (B,)`` (on ``images (B, 1, 28, 28)`` as D saw them in
    its loss) and D's logits on ``images`` transformed anew by the DiffAugment ``policy`` on every image."""
    moved, _, _ = discriminator(diff_augment(images, policy, rng), labels)
    return (logit - moved).float().pow(2).mean()


def generator_flops_per_image(generator: Generator) -> int:
    """Floating-point operations of one G(z, y) forward pass per image (a multiply-add counts 2),
    counted by ``torch.utils.flop_counter.FlopCounterMode`` on a batch of 100."""
    generator.eval()
    device = next(generator.parameters()).device
    z = torch.zeros(100, generator.config.z_dim, device=device)
    labels = torch.arange(100, device=device) % NUM_CLASSES
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        generator(z, labels)
    return counter.get_total_flops() // 100

