"""Generated digits as the judge sees them: samples rounded to the 256 grey levels an export stores, and the
judge's probabilities and features for a fixed number per digit. Shared by the ablation tool and the benchmark.
Pure and importable.
"""

from __future__ import annotations

import torch

from pipeline.data.splits import to_tensor, to_uint8
from pipeline.generation.inference import sample_images
from pipeline.training.classifier import predict
from pipeline.training.networks import NUM_CLASSES, Classifier, Generator

#: Samples per digit the judge scores (5,000 in all, as many as the validation images they are compared with).
PER_CLASS = 500


def exported_samples(generator: Generator, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """G(z, y) in float32 on the inference path (as the DVC export samples), rounded to the 256 grey levels an
    export stores: ``(N, 1, 28, 28) float32`` in [-1, 1]."""
    return to_tensor(to_uint8(sample_images(generator, z, labels)))


def judged_samples(generator: Generator, judge: Classifier,
                   rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:data:`PER_CLASS` exported samples per digit (z drawn from ``rng``), through the judge.

    Returns:
        ``(probabilities (N, 10) float32, features (N, 128) float32, requested labels (N,) int64)``, digit-major.
    """
    z = torch.randn(NUM_CLASSES * PER_CLASS, generator.config.z_dim, generator=rng)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(PER_CLASS)
    probs, feats = predict(judge, exported_samples(generator, z, labels))
    return probs, feats, labels
