"""The cGAN's losses: hinge loss (Lim & Ye 2017; Miyato et al. 2018) on the projection discriminator, the AC-GAN
auxiliary class loss (Odena et al. 2017), its twin-classifier correction (TAC-GAN, Gong et al. 2019) and the
mode-seeking term (MSGAN, Mao et al. 2019). Pure functions of logits and images; each weight 0 switches its
term off. Pure and importable.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def mode_seeking_loss(fake_images: torch.Tensor, z: torch.Tensor, half: int, eps: float = 1e-5) -> torch.Tensor:
    """Mode-seeking regularisation (Mao et al. 2019, "Mode Seeking Generative Adversarial Networks for
    Diverse Image Synthesis", eq. 3 and the authors' code): ``1 / (mean|G(z1, y) - G(z2, y)| / mean|z1 - z2| + eps)``,
    which the generator minimises so that two latents of the same digit give different images.

    Args:
        fake_images: ``(B, 1, 28, 28)``, where rows ``i`` and ``i + half`` (``i < half``) were drawn for the same
            digit; z: their latents ``(B, z_dim)``; half: the number of pairs (``<= B // 2``).
    Returns:
        A scalar float32 tensor > 0.
    """
    image_distance = (fake_images[:half].float() - fake_images[half : 2 * half].float()).abs().mean()
    z_distance = (z[:half] - z[half : 2 * half]).abs().mean()
    return 1.0 / (image_distance / z_distance + eps)


def discriminator_loss(real_logit: torch.Tensor, fake_logit: torch.Tensor, real_class: torch.Tensor,
                       labels: torch.Tensor, fake_twin: torch.Tensor | None, fake_labels: torch.Tensor,
                       aux_weight: float, twin_aux_weight: float) -> torch.Tensor:
    """D's loss, a scalar: hinge on the real and fake logits ``(B,)``, plus ``aux_weight`` x cross-entropy of its
    class head on real images (``real_class (B, 10)`` logits, ``labels (B,) int64``), plus ``twin_aux_weight`` x
    cross-entropy of the twin head on fake images (``fake_twin (B, 10)``, the digits G was asked for), so that the
    twin head learns G's class boundaries."""
    loss = F.relu(1 - real_logit).mean() + F.relu(1 + fake_logit).mean()
    if aux_weight > 0:
        loss = loss + aux_weight * F.cross_entropy(real_class, labels)
    if twin_aux_weight > 0:
        loss = loss + twin_aux_weight * F.cross_entropy(fake_twin, fake_labels)
    return loss


def generator_loss(fake_logit: torch.Tensor, fake_class: torch.Tensor, fake_twin: torch.Tensor | None,
                   fake_labels: torch.Tensor, fake_images: torch.Tensor, z: torch.Tensor, half: int,
                   aux_weight: float, twin_aux_weight: float, mode_seeking: float) -> torch.Tensor:
    """G's loss, a scalar: the negated hinge logit of its fakes, plus ``aux_weight`` x D's class cross-entropy on
    them, minus ``twin_aux_weight`` x the twin head's (TAC-GAN: G must not be told apart by a classifier of its
    own digits), plus ``mode_seeking`` x :func:`mode_seeking_loss` over the ``half`` pairs of the batch."""
    loss = -fake_logit.mean()
    if aux_weight > 0:
        loss = loss + aux_weight * F.cross_entropy(fake_class, fake_labels)
    if twin_aux_weight > 0:
        loss = loss - twin_aux_weight * F.cross_entropy(fake_twin, fake_labels)
    if mode_seeking > 0:
        loss = loss + mode_seeking * mode_seeking_loss(fake_images, z, half)
    return loss
