import numpy as np
import pytest

from pipeline.evaluation.metrics import (
    class_conditional_accuracy,
    diversity_ratio,
    frechet_distance,
    mean_pairwise_distance,
    top_confusions,
)


def test_frechet_distance_zero_for_same_sample_and_mean_shift_for_shifted():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Same covariance, mean shifted by (1, 2, 0, 0): the distance is ||shift||^2 = 5.
    assert frechet_distance(a, a + np.array([1.0, 2.0, 0, 0])) == pytest.approx(5.0, abs=1e-6)


def test_frechet_distance_known_covariances():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(200000, 2))
    b = rng.normal(size=(200000, 2)) * 2.0
    # N(0, I) vs N(0, 4I): Tr(I + 4I - 2 * 2I) = 2 * (1 + 4 - 4) = 2.
    assert frechet_distance(a, b) == pytest.approx(2.0, rel=0.02)


def test_frechet_distance_rejects_bad_shapes():
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))


def test_class_conditional_accuracy():
    overall, per_class = class_conditional_accuracy(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]))
    assert overall == 0.75
    assert per_class["0"] == 1.0 and per_class["1"] == 0.5 and per_class["2"] == 1.0
    assert np.isnan(per_class["9"])


def test_top_confusions_counts_errors_largest_first_and_skips_correct_predictions():
    labels = np.array([1, 1, 1, 1, 6, 6, 6, 2, 3, 3])
    predicted = np.array([2, 2, 2, 1, 8, 8, 6, 7, 3, 3])
    assert top_confusions(predicted, labels) == [
        {"true": 1, "predicted": 2, "count": 3}, {"true": 6, "predicted": 8, "count": 2},
        {"true": 2, "predicted": 7, "count": 1}]
    assert top_confusions(predicted, labels, k=1) == [{"true": 1, "predicted": 2, "count": 3}]
    assert top_confusions(labels, labels) == []


def test_diversity_exposes_collapsed_class():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 8))
    real_labels = np.repeat([0, 1], 100)
    synthetic = rng.normal(size=(200, 8))
    synthetic[100:] = synthetic[100] + 0.01 * rng.normal(size=(100, 8))  # digit 1 collapsed
    ratios = diversity_ratio(synthetic, real_labels, real, real_labels, per_class=50, seed=0)
    assert 0.8 < ratios["0"]["ratio"] < 1.2
    assert ratios["1"]["ratio"] < 0.05
    assert mean_pairwise_distance(np.array([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0)


def test_prdc_same_distribution_far_apart_and_collapsed():
    from pipeline.evaluation.metrics import precision_recall_density_coverage

    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(1000, 4)), rng.normal(size=(1000, 4))
    same = precision_recall_density_coverage(real, fake, k=5)
    assert same["precision"] > 0.9 and same["recall"] > 0.9 and same["coverage"] > 0.9
    assert 0.8 < same["density"] < 1.2
    far = precision_recall_density_coverage(real, fake + 100.0, k=5)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    # Mode collapse: every fake sits near the real mean -> high fidelity, no diversity.
    collapsed = precision_recall_density_coverage(real, 0.01 * fake, k=5)
    assert collapsed["precision"] == 1.0 and collapsed["recall"] < 0.05 and collapsed["coverage"] < 0.05
    with pytest.raises(ValueError):
        precision_recall_density_coverage(real[:5], fake, k=5)


def test_memorization_flags_copies_not_fresh_samples():
    from pipeline.evaluation.metrics import memorization

    rng = np.random.default_rng(0)
    train, heldout, fresh = (rng.uniform(-1, 1, size=(n, 1, 28, 28)) for n in (2000, 500, 500))
    copies = train[:500] + 0.001 * rng.normal(size=(500, 1, 28, 28))
    copied = memorization(copies, heldout, train)
    assert copied["share_closer_than_heldout"] == 1.0
    assert (copied["fake_nearest"] == np.arange(500)).all()
    honest = memorization(fresh, heldout, train)
    assert 0.0 <= honest["share_closer_than_heldout"] < 0.15
    assert honest["heldout_distance_threshold"] > 0
