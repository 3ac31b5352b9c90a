"""Training on fresh synthetic samples: the judge's recipe with a new training set every epoch
(pipeline.training.classifier ``fresh``), and the study's classifier with fresh G(z, y) for its stream slots."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import pipeline.evaluation.study_protocol as protocol
from pipeline.core.params import ParamsError
from pipeline.core.utils import PipelineError
from pipeline.training.classifier import train_classifier
from pipeline.training.networks import Generator, GeneratorConfig


def _set(n: int, digit: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(n, 1, 28, 28) * 2 - 1, torch.full((n,), digit, dtype=torch.int64)


def test_fresh_replaces_the_training_set_every_epoch_after_the_first(params, monkeypatch):
    recipe = dataclasses.replace(params.train_judge, width=4, batch_size=16, epochs=3, autocast="")
    asked, seen = [], []
    first = _set(64, 0)

    def fresh(epoch):
        asked.append(epoch)
        return _set(64, epoch)

    real_cross_entropy = torch.nn.functional.cross_entropy

    def spy(logits, labels):
        seen.append(int(labels[0]))
        return real_cross_entropy(logits, labels)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", spy)
    train_classifier(recipe, *first, *_set(20, 1), torch.device("cpu"), fresh=fresh)
    assert asked == [2, 3]
    assert seen == [0] * 4 + [2] * 4 + [3] * 4  # 64 / 16 = 4 steps per epoch, each epoch on its own set
    with pytest.raises(PipelineError, match="gave 32 images, the first epoch had 64"):
        train_classifier(recipe, *first, *_set(20, 1), torch.device("cpu"), fresh=lambda epoch: _set(32, 1))


def test_stream_slots_draw_a_new_generator_sample_every_time(params, monkeypatch):
    study = dataclasses.replace(params.study, classifier_width=4, batch_size=32, autocast="")
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(z_dim=8, width=8)).eval()
    drawn = []
    real_sample = protocol.sample_images

    def spy(model, z, labels, *args, **kwargs):
        drawn.append((z.clone(), labels.clone()))
        return real_sample(model, z, labels, *args, **kwargs)

    monkeypatch.setattr(protocol, "sample_images", spy)
    real_x, real_y = _set(10, 1)
    slot_labels = torch.tensor([7] * 30)
    protocol.fit_classifier(real_x, real_y, study, params.train_judge, 0, 5, stream=(generator, slot_labels))
    z = torch.cat([z for z, _ in drawn])
    labels = torch.cat([y for _, y in drawn])
    assert len(drawn) == 5 and 100 < len(z) < 160  # about 30 of every 40 draws hit a stream slot
    assert set(labels.tolist()) == {7} and len({tuple(row.tolist()) for row in z}) == len(z)  # no z twice


def test_study_steps_and_gan_recipes_per_budget(params):
    study = params.study
    assert all(study.steps_for(b) >= 1 for b in study.budgets)
    changed = dataclasses.replace(study, gan_recipes={10: {"gan_steps": 7, "gan_diffaugment": "cutout"}})
    assert changed.for_budget(10).gan_steps == 7 and changed.for_budget(100).gan_steps == study.gan_steps
    recipe = changed.gan_recipe(10)
    assert list(recipe) == study.gan_keys() and "gan_recipes" not in recipe and "gan_ada_target" in recipe
    assert recipe["gan_steps"] == 7 and recipe["gan_diffaugment"] == "cutout"
    assert changed.gan_recipe(100)["gan_steps"] == study.gan_steps
    cgan_fields = {f.name for f in dataclasses.fields(params.train_cgan)}
    assert {k.removeprefix("gan_") for k in study.gan_keys()} - cgan_fields == {"steps"}  # the rest map onto train_cgan
    with pytest.raises(ParamsError, match="classifier_steps must map every budget"):
        dataclasses.replace(study, classifier_steps={10: 5})
    with pytest.raises(ParamsError, match="gan_recipes must map budgets"):
        dataclasses.replace(study, gan_recipes={10: {"lr": 0.1}})
    with pytest.raises(ParamsError, match="no steps for budget 7"):
        study.steps_for(7)
