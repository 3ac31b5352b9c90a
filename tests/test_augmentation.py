"""The augmentation study's protocol (pipeline.evaluation.study_protocol, study_cell, study): subsets, budget-matched
generators, reproducible cells, and confidence intervals computed from per-seed results."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from scipy import stats

import pipeline.evaluation.study_protocol as augmentation
from pipeline.core.utils import PipelineError
from pipeline.data.splits import Splits
from pipeline.evaluation.study_protocol import (
    CONDITIONS,
    FULLGEN_CONDITIONS,
    classical_transforms,
    draw_subset,
    run_cell,
)
from pipeline.evaluation.study_summary import aggregate, summarize, verdict
from pipeline.training.networks import Generator, GeneratorConfig
from tests.conftest import run_module


def _splits(seed: int = 0) -> Splits:
    """Random-pixel splits, every image distinct: 40 train / 20 val / 20 test images per digit."""
    rng = np.random.default_rng(seed)
    images = lambda n: rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)  # noqa: E731
    labels = lambda n: np.arange(n) % 10  # noqa: E731
    return Splits(images(400), labels(400), images(200), labels(200), images(200), labels(200))


@pytest.fixture
def tiny(params):
    study = dataclasses.replace(params.study, budgets=[5], classifier_width=4, classifier_steps={5: 3}, val_size=50,
                                batch_size=8, gan_steps=7, gan_batch_size=8, gan_g_width=8, gan_d_width=8,
                                max_synthetic_per_class=20)
    return params.train_cgan, study  # the study's own gan_batch_size sets the cGAN's batch


def _fullgen(z_dim: int) -> Generator:
    torch.manual_seed(0)
    return Generator(GeneratorConfig(z_dim=z_dim, width=8)).eval()


def _rows(images: torch.Tensor | np.ndarray) -> set[bytes]:
    """Each image as bytes of its uint8 pixels (float inputs in [-1, 1] are mapped back first)."""
    if isinstance(images, torch.Tensor):
        images = ((images.squeeze(1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    return {image.tobytes() for image in images}


def test_subsets_come_from_train_only_with_exact_counts():
    splits = _splits()
    subset = draw_subset(splits.train_labels, 7, seed=3)
    assert len(subset) == 70 and np.bincount(splits.train_labels[subset]).tolist() == [7] * 10
    chosen = _rows(splits.train_images[subset])
    assert chosen.isdisjoint(_rows(splits.val_images)) and chosen.isdisjoint(_rows(splits.test_images))
    assert np.array_equal(subset, draw_subset(splits.train_labels, 7, seed=3))  # the seed fixes the subset
    assert not np.array_equal(subset, draw_subset(splits.train_labels, 7, seed=4))
    assert np.array_equal(draw_subset(splits.train_labels, 0, seed=1), np.arange(400))  # 0 = all
    with pytest.raises(PipelineError, match="digit 0 has only 40 train images"):
        draw_subset(splits.train_labels, 41, seed=0)


def test_budget_matched_generator_and_real_data_come_only_from_the_subset(tiny, params, monkeypatch):
    cgan, study = tiny
    splits = _splits()
    subset = draw_subset(splits.train_labels, 5, seed=1)
    allowed = _rows(splits.train_images[subset])
    seen_by_gan, seen_by_classifiers, streamed = [], [], []
    real_train_gan = augmentation.train_cgan
    real_fit = augmentation.fit_classifier

    def spy_gan(recipe, images, labels, device):
        seen_by_gan.append(_rows(images))
        return real_train_gan(recipe, images, labels, device)

    def spy_fit(images, labels, params, recipe, seed, steps, augment=None, stream=None, desc=""):
        seen_by_classifiers.append((desc, _rows(images)))
        if stream is not None:  # fresh samples: as many slots as the fixed pool, drawn from the budget's G
            streamed.append((desc, stream[0], len(stream[1])))
        return real_fit(images, labels, params, recipe, seed, steps, augment, stream, desc)

    monkeypatch.setattr(augmentation, "train_cgan", spy_gan)
    monkeypatch.setattr(augmentation, "fit_classifier", spy_fit)
    result = run_cell(splits, subset, 5, _fullgen(cgan.z_dim), cgan, params.train_judge, study, seed=1)
    assert len(seen_by_gan) == 1 and seen_by_gan[0] == allowed  # 7 steps x 8 >= 50: every subset image, nothing else
    real_of = {desc.split()[-1]: rows & _rows(splits.train_images) for desc, rows in seen_by_classifiers}
    assert real_of["real"] == allowed and all(rows <= allowed for rows in real_of.values())
    for desc, rows in seen_by_classifiers:  # validation and test images never train anything
        assert rows.isdisjoint(_rows(splits.val_images)) and rows.isdisjoint(_rows(splits.test_images)), desc
    assert set(result.test) == set(CONDITIONS) | set(FULLGEN_CONDITIONS)
    assert all(0.0 <= v <= 1.0 for v in result.test.values())
    assert result.picks["transform_strength"] in study.transform_strengths
    assert result.picks["synthetic_ratio"] in study.synthetic_ratios
    assert [desc.split()[-1] for desc, _, _ in streamed] == ["real_synthetic_stream", "synthetic_stream"]
    assert all(slots == 10 * min(20, 5 * result.picks["synthetic_ratio"]) for _, _, slots in streamed)


def test_classical_augmentation_changes_images_and_keeps_shape():
    torch.manual_seed(0)
    images = torch.rand(16, 1, 28, 28) * 2 - 1
    augmented = classical_transforms(1.0)(images)
    assert augmented.shape == images.shape and augmented.dtype == torch.float32
    assert not torch.equal(augmented, images) and augmented.min() >= -1.001 and augmented.max() <= 1.001
    assert classical_transforms(0.0)(images) is images


def test_same_seed_reproduces_a_cell_exactly(tmp_path, tiny_project, tiny_checkpoint):
    import yaml

    raw = yaml.safe_load((tiny_project / "params.yaml").read_text())
    raw["study"].update({"val_size": 20, "classifier_width": 4, "batch_size": 8, "budgets": [5],
                         "classifier_steps": {5: 3},
                                      "gan_steps": 2, "gan_batch_size": 16, "gan_g_width": 8, "gan_d_width": 8,
                                      "max_synthetic_per_class": 20})
    (tiny_project / "params.yaml").write_text(yaml.safe_dump(raw))
    outputs = []
    for name in ("a", "b", "other-seed"):
        seed = "2" if name == "other-seed" else "1"
        result = run_module("pipeline.study_cell", "--budget", "5", "--seed", seed, "--params",
                            str(tiny_project / "params.yaml"), "--data", str(tiny_project / "mnist.npz"),
                            "--fullgen", str(tiny_checkpoint), "--out", str(tmp_path / f"{name}.json"))
        assert result.returncode == 0, result.stderr
        cell = json.loads((tmp_path / f"{name}.json").read_text())
        cell.pop("wall_seconds")
        outputs.append(cell)
    assert outputs[0] == outputs[1]
    assert outputs[0]["subset_sha256"] != outputs[2]["subset_sha256"]


def test_intervals_come_from_per_seed_results_and_gains_are_paired():
    values = [0.90, 0.92, 0.91, 0.95, 0.89]
    summary = summarize(values)
    half = stats.t.ppf(0.975, 4) * np.std(values, ddof=1) / np.sqrt(5)
    assert summary["mean"] == pytest.approx(np.mean(values))
    assert (summary["ci_low"], summary["ci_high"]) == pytest.approx((np.mean(values) - half, np.mean(values) + half))
    # Paired: classical is 1 point better than real at every seed, although both vary a lot across seeds.
    cells = []
    for seed, base in enumerate([0.50, 0.70, 0.90]):
        test = {k: base for k in (*CONDITIONS, *FULLGEN_CONDITIONS)}
        test.update({"real_classical": base + 0.01, "real_synthetic_classical": base + 0.01})
        cells.append({"budget": 10, "seed": seed, "test": test, "picks": {}, "validation": {"synthetic": base - 0.1},
                      "gan_recipe": {"gan_steps": 9}, "classifier_steps": 5})
    entry = aggregate(cells, [10])["10"]
    gain = entry["gains"]["classical_over_real"]
    assert gain["mean"] == pytest.approx(0.01) and gain["ci_low"] == pytest.approx(0.01)
    assert entry["test_accuracy"]["real"]["values"] == [0.50, 0.70, 0.90]
    assert entry["gan_validation_tstr"]["values"] == pytest.approx([0.40, 0.60, 0.80])  # the recipe's pick figure
    assert entry["gan_recipe"] == {"gan_steps": 9} and entry["classifier_steps"] == 5
    assert entry["test_accuracy"]["real"]["ci_low"] < 0.5  # unpaired, the same data would be all noise
    assert "does not help beyond classical augmentation at b = 10" in entry["verdict"]
    assert "helps beyond" in verdict({"mean": 0.02, "ci_low": 0.01, "ci_high": 0.03, "n": 5}, "10")
    assert "hurts" in verdict({"mean": -0.02, "ci_low": -0.03, "ci_high": -0.01, "n": 5}, "10")
    with pytest.raises(PipelineError, match="no study cells for budget 100"):
        aggregate(cells, [10, 100])


def test_summary_stage_needs_every_cell(tmp_path):
    result = run_module("pipeline.study", "--cells", str(tmp_path), "--out", str(tmp_path / "s.json"),
                        "--figure", str(tmp_path / "s.png"))
    assert result.returncode != 0 and "missing study cell" in result.stderr and "Traceback" not in result.stderr
