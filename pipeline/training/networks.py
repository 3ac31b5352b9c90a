"""Networks: the judge CNN, the cGAN generator G(z, y) and discriminator D(x, y).

Shapes follow MNIST: images ``(B, 1, 28, 28) float32`` in [-1, 1] (pixel / 127.5 - 1), labels
``(B,) int64`` in 0-9. Heads return logits. Each model's shape is a small frozen dataclass, stored in
checkpoints as ``model_args`` so loading needs nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

NUM_CLASSES = 10
IMAGE_SHAPE = (1, 28, 28)


@dataclass(frozen=True)
class ClassifierConfig:
    width: int = 32
    dropout: float = 0.25
    num_classes: int = NUM_CLASSES


def _conv_bn(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class Classifier(nn.Module):
    """CNN MNIST classifier (the judge): three conv stages at 28, 14 and 7 px, then a 128-d feature layer.

    ``forward(x)`` maps ``(B, 1, 28, 28) float32`` in [-1, 1] to logits ``(B, 10)``;
    ``features(x)`` returns the penultimate layer ``(B, 128)`` (pre-ReLU), the space FID and diversity use.
    """

    feature_dim = 128

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.body = nn.Sequential(
            _conv_bn(1, w),
            nn.MaxPool2d(2),  # (B, w, 14, 14)
            _conv_bn(w, 2 * w),
            _conv_bn(2 * w, 2 * w),
            nn.MaxPool2d(2),  # (B, 2w, 7, 7)
            _conv_bn(2 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),  # (B, 4w)
            nn.Linear(4 * w, self.feature_dim),  # (B, 128): the feature layer, before its ReLU
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(self.feature_dim, config.num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features ``(B, 128) float32``, taken before the ReLU so no unit is always 0
        (dead units would make the feature covariance singular for FID)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@dataclass(frozen=True)
class GeneratorConfig:
    z_dim: int = 64
    width: int = 128
    num_classes: int = NUM_CLASSES
    conditional_bn: bool = False  # class-conditional BatchNorm gains and biases instead of learned constants
    refine: bool = False  # a 3x3 conv block at 14x14 and a 3x3 output conv at 28x28


class ConditionalBatchNorm(nn.Module):
    """BatchNorm whose gain and bias are looked up per class (de Vries et al. 2017; used in the generator of
    Miyato & Koyama 2018): ``(B, C, ...)`` and labels ``(B,) int64`` -> ``(B, C, ...)``.

    Gains start at 1 and biases at 0, so at initialisation it equals a plain BatchNorm.
    """

    def __init__(self, num_features: int, num_classes: int, dims: int):
        super().__init__()
        self.norm = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(num_features, affine=False)
        self.embed = nn.Embedding(num_classes, 2 * num_features)
        with torch.no_grad():
            self.embed.weight[:, :num_features].fill_(1.0)
            self.embed.weight[:, num_features:].zero_()

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        gain, bias = self.embed(labels).chunk(2, dim=1)  # (B, C) each
        shape = (len(x), -1) + (1,) * (x.dim() - 2)
        return self.norm(x) * gain.view(shape) + bias.view(shape)


class _LabelledSequential(nn.Sequential):
    """``nn.Sequential`` that hands the labels to its :class:`ConditionalBatchNorm` layers."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for module in self:
            x = module(x, labels) if isinstance(module, ConditionalBatchNorm) else module(x)
        return x


class Generator(nn.Module):
    """G(z, y): latent ``z (B, z_dim)`` and labels ``y (B,) int64`` -> images ``(B, 1, 28, 28)`` in [-1, 1].

    DCGAN-style (Radford et al. 2016): a linear layer to ``(width, 7, 7)`` then two stride-2 transposed
    convolutions; the class enters as a learned embedding concatenated to z (Mirza & Osindero 2014) and,
    with ``conditional_bn``, as per-class BatchNorm gains and biases. ``refine`` adds a 3x3 conv block at
    14x14 and makes the last transposed convolution output ``width / 4`` channels, mapped to the image
    by a 3x3 conv at 28x28 (about 2.6x the FLOPs at width 64).
    """

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        w, c = config.width, config.num_classes

        def norm(channels: int, dims: int = 2) -> nn.Module:
            if config.conditional_bn:
                return ConditionalBatchNorm(channels, c, dims)
            return nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)

        self.embed = nn.Embedding(c, config.z_dim)
        self.project = _LabelledSequential(
            nn.Linear(2 * config.z_dim, w * 7 * 7, bias=False), norm(w * 7 * 7, 1), nn.ReLU(inplace=True)
        )
        layers = [
            nn.ConvTranspose2d(w, w // 2, 4, stride=2, padding=1, bias=False),  # (B, w/2, 14, 14)
            norm(w // 2),
            nn.ReLU(inplace=True),
        ]
        if config.refine:
            layers += [
                nn.Conv2d(w // 2, w // 2, 3, padding=1, bias=False), norm(w // 2), nn.ReLU(inplace=True),
                nn.ConvTranspose2d(w // 2, w // 4, 4, stride=2, padding=1, bias=False),  # (B, w/4, 28, 28)
                norm(w // 4),
                nn.ReLU(inplace=True),
                nn.Conv2d(w // 4, 1, 3, padding=1),  # (B, 1, 28, 28)
            ]
        else:
            layers.append(nn.ConvTranspose2d(w // 2, 1, 4, stride=2, padding=1))  # (B, 1, 28, 28)
        self.upsample = _LabelledSequential(*layers, nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.project(torch.cat([z, self.embed(labels)], dim=1), labels)
        return self.upsample(h.view(-1, self.config.width, 7, 7), labels)


@dataclass(frozen=True)
class DiscriminatorConfig:
    width: int = 64
    num_classes: int = NUM_CLASSES
    minibatch_std: bool = True
    head_conv: bool = True  # a 3x3 conv at 7x7 after the minibatch-std channel (about half of D's FLOPs)
    twin_classifier: bool = False  # a second class head trained on G's images (TAC-GAN, Gong et al. 2019)


def minibatch_std(h: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append one channel with the feature std across groups of samples (Karras et al. 2018, ProGAN).

    ``(B, C, H, W) -> (B, C + 1, H, W)``. It lets D see a batch's variety, so a generator that
    ignores z (mode collapse) is easy to tell apart from real data.
    """
    b, c, height, width = h.shape
    g = group if b % group == 0 else b  # else one group: the whole batch
    grouped = h.float().view(g, b // g, c, height, width)
    # Two-pass population std in float32, written out as in ProGAN's reference code (eps keeps the gradient
    # finite where a feature does not vary within a group): torch's std over the leading dim is many times slower
    # on a CPU and was a large share of a cGAN training step.
    deviation = grouped - grouped.mean(dim=0, keepdim=True)
    std = (deviation.square().mean(dim=0) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (B/g,)
    std = std.view(1, b // g, 1, 1, 1).expand(g, b // g, 1, height, width).reshape(b, 1, height, width)
    return torch.cat([h, std.to(h.dtype)], dim=1)


class Discriminator(nn.Module):
    """D(x, y): images ``(B, 1, 28, 28)`` and labels ``(B,)`` -> (real/fake logit ``(B,)``, class logits ``(B, 10)``,
    twin class logits ``(B, 10)`` or ``None`` without ``twin_classifier``).

    Spectrally normalised convolutions (Miyato et al. 2018), a projection term ``<embed(y), h>``
    (Miyato & Koyama 2018) for the conditional logit, and an auxiliary classifier head (AC-GAN,
    Odena et al. 2017) whose loss pushes G to draw the requested digit. With ``twin_classifier``, a twin head
    learns to classify G's own images; G's loss subtracts its cross-entropy, which cancels AC-GAN's pull towards
    images the classifier is sure about (TAC-GAN, Gong et al. 2019: that pull narrows each class).
    """

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.down = nn.Sequential(
            spectral_norm(nn.Conv2d(1, w, 4, stride=2, padding=1)),  # (B, w, 14, 14)
            nn.LeakyReLU(0.2, inplace=True),
            spectral_norm(nn.Conv2d(w, 2 * w, 4, stride=2, padding=1)),  # (B, 2w, 7, 7)
            nn.LeakyReLU(0.2, inplace=True),
        )
        extra = 1 if config.minibatch_std else 0
        if config.head_conv:
            self.head = nn.Sequential(
                spectral_norm(nn.Conv2d(2 * w + extra, 2 * w, 3, padding=1)),  # (B, 2w, 7, 7)
                nn.LeakyReLU(0.2, inplace=True),
            )
            feat = 2 * w * 7 * 7
        else:
            self.head = nn.Identity()
            feat = (2 * w + extra) * 7 * 7
        self.linear = spectral_norm(nn.Linear(feat, 1))
        self.embed = spectral_norm(nn.Embedding(config.num_classes, feat))
        self.aux = nn.Linear(feat, config.num_classes)
        self.twin = nn.Linear(feat, config.num_classes) if config.twin_classifier else None

    def forward(self, x: torch.Tensor,
                labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        h = self.down(x)
        if self.config.minibatch_std:
            h = minibatch_std(h)
        h = self.head(h).flatten(1)  # (B, 2w*49)
        logit = self.linear(h).squeeze(1) + (self.embed(labels) * h).sum(dim=1)
        return logit, self.aux(h), (self.twin(h) if self.twin is not None else None)

