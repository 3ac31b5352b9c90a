"""Random image transforms used while training: DiffAugment on every discriminator input (cGAN training), at
ADA's adaptive probability where asked, and the classical transforms (rotation, shift, zoom) of classifier
training (``train_judge.transform_*``).

Both draw from the training run's CPU ``torch.Generator``, so a run's bytes depend only on its seed.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

DIFFAUGMENT_POLICIES = ("translation", "cutout")


def diff_augment(images: torch.Tensor, policy: str, generator: torch.Generator,
                 probability: float = 1.0) -> torch.Tensor:
    """DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"):
    the same differentiable random transforms on real and fake images before every D call.

    As in the authors' ``DiffAugment_pytorch.py``: ``translation`` shifts each image by up to 1/8 of
    its size (integer pixels), ``cutout`` blanks a random square of half its size; both fill with the
    background value -1 rather than 0, since MNIST's background is -1 here.

    Args:
        images: ``(B, 1, H, W)`` in [-1, 1]; policy: comma-separated subset of ``DIFFAUGMENT_POLICIES``
            ("" = identity); generator: the CPU RNG of the training run.
        probability: each transform is applied to each image with this probability, in [0, 1] (ADA's p,
            :class:`AdaptiveProbability`); at 1 (the default) to every image, drawing nothing more from
            ``generator``.
    Raises:
        ValueError: an unknown policy name.
    """
    b, _, h, w = images.shape
    batch = torch.arange(b, device=images.device).view(b, 1, 1)
    for name in filter(None, (p.strip() for p in policy.split(","))):
        skip = None  # (B, 1, 1) bool: images this transform leaves as they are
        if probability < 1:
            skip = (torch.rand(b, generator=generator) >= probability).view(b, 1, 1).to(images.device)
        if name == "translation":
            sh, sw = int(h * 0.125 + 0.5), int(w * 0.125 + 0.5)
            tx = torch.randint(-sh, sh + 1, (b, 1, 1), generator=generator).to(images.device)
            ty = torch.randint(-sw, sw + 1, (b, 1, 1), generator=generator).to(images.device)
            if skip is not None:
                tx, ty = tx.masked_fill(skip, 0), ty.masked_fill(skip, 0)
            gi, gj = torch.meshgrid(torch.arange(h, device=images.device), torch.arange(w, device=images.device),
                                    indexing="ij")
            gi = (gi.unsqueeze(0) + tx + 1).clamp(0, h + 1)
            gj = (gj.unsqueeze(0) + ty + 1).clamp(0, w + 1)
            padded = F.pad(images, [1, 1, 1, 1], value=-1.0)
            images = padded[batch, :, gi, gj].permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
        elif name == "cutout":
            ch, cw = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
            ox = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), generator=generator).to(images.device)
            oy = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), generator=generator).to(images.device)
            gi, gj = torch.meshgrid(torch.arange(ch, device=images.device), torch.arange(cw, device=images.device),
                                    indexing="ij")
            gi = (gi.unsqueeze(0) + ox - ch // 2).clamp(0, h - 1)
            gj = (gj.unsqueeze(0) + oy - cw // 2).clamp(0, w - 1)
            keep = torch.ones(b, h, w, dtype=torch.bool, device=images.device)
            keep[batch, gi, gj] = False
            if skip is not None:
                keep |= skip
            images = torch.where(keep.unsqueeze(1), images, torch.full_like(images, -1.0))
        else:
            raise ValueError(f"unknown DiffAugment policy {name!r}; use a subset of {DIFFAUGMENT_POLICIES}")
    return images


class AdaptiveProbability:
    """The augmentation probability p of ADA (Karras et al. 2020, "Training Generative Adversarial Networks with
    Limited Data", section 3; ``ada_target``, ``ada_interval`` and ``ada_kimg`` in NVlabs/stylegan2-ada-pytorch's
    training loop), for :func:`diff_augment`'s ``probability``.

    p starts at 0. :meth:`update` takes each D step's logits on its (augmented) real images; every ``interval``
    steps, with r the mean of sign(logit) over them (r -> 1: D tells the reals apart, it overfits), p moves by
    sign(r - ``target``) x (images seen in those steps) / (``kimg`` x 1000), clamped to [0, 1]: from 0 to 1 in
    ``kimg`` thousand images at the fastest.
    """

    def __init__(self, target: float, kimg: float, interval: int = 4):
        if not 0 < target < 1 or not kimg > 0 or interval < 1:
            raise ValueError(f"ADA needs 0 < target < 1, kimg > 0 and interval >= 1, got {target}, {kimg}, {interval}")
        self.target, self.kimg, self.interval = target, kimg, interval
        self.p, self._signs, self._images, self._steps = 0.0, 0.0, 0, 0

    def update(self, real_logit: torch.Tensor) -> float:
        """Record one D step's logits on its real images ``(B,)``; returns p for the next step."""
        self._signs += float(torch.sign(real_logit.detach().float()).sum())
        self._images += len(real_logit)
        self._steps += 1
        if self._steps % self.interval == 0:
            r = self._signs / self._images
            step = math.copysign(self._images / (self.kimg * 1000), r - self.target) if r != self.target else 0.0
            self.p = min(1.0, max(0.0, self.p + step))
            self._signs, self._images = 0.0, 0
        return self.p

    def state_dict(self) -> dict:
        return {"p": self.p, "signs": self._signs, "images": self._images, "steps": self._steps}

    def load_state_dict(self, state: dict) -> None:
        self.p, self._signs, self._images, self._steps = state["p"], state["signs"], state["images"], state["steps"]


def random_affine(images: torch.Tensor, generator: torch.Generator, degrees: float, translate: float, scale: float) -> torch.Tensor:
    """Per-image random rotation, shift and zoom of ``(B, 1, H, W)`` images in [-1, 1] (background -1).

    Args:
        degrees: rotation drawn uniformly in [-degrees, degrees].
        translate: shift drawn uniformly in [-translate, translate], as a fraction of the image size.
        scale: zoom drawn uniformly in [1 - scale, 1 + scale].
    Returns:
        Tensor of the same shape and dtype (bilinear resampling with ``torch.nn.functional.grid_sample``).
    """
    if degrees == 0 and translate == 0 and scale == 0:
        return images
    n = images.shape[0]
    uniform = lambda: torch.rand(n, generator=generator) * 2 - 1  # noqa: E731 - U(-1, 1)
    angle = uniform() * math.radians(degrees)
    zoom = 1 + uniform() * scale
    shift = torch.stack([uniform(), uniform()], dim=1) * 2 * translate  # grid units span 2
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
    return F.grid_sample(images + 1, grid, align_corners=False, padding_mode="zeros") - 1
