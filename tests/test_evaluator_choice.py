"""A curated export is never evaluated by the classifier that curated it."""

import pytest

from pipeline.core.utils import PipelineError, sha256_file
from pipeline.evaluation.quality import choose_evaluator


def test_the_curating_classifier_never_evaluates(tmp_path):
    judge, referee = tmp_path / "judge.pt", tmp_path / "referee.pt"
    judge.write_bytes(b"judge weights")
    referee.write_bytes(b"referee weights")
    candidates = {"judge": str(judge), "referee": str(referee)}
    assert choose_evaluator({"curation": None}, candidates) == ("judge", str(judge))
    curated = {"curation": {"classifier": {"path": str(judge), "sha256": sha256_file(judge)}}}
    assert choose_evaluator(curated, candidates) == ("referee", str(referee))
    referee.write_bytes(b"judge weights")  # the "referee" is a copy of the curator
    with pytest.raises(PipelineError, match="curated by .*judge.pt; evaluate it with a classifier not used for filtering"):
        choose_evaluator(curated, candidates)


def test_score_on_test_matches_the_accuracy_helper_from_one_pass_of_predictions():
    import torch

    from pipeline.evaluation.downstream import score_on_test
    from pipeline.training.classifier import accuracy, predict
    from pipeline.training.networks import Classifier, ClassifierConfig

    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(width=4))
    images = torch.rand(200, 1, 28, 28) * 2 - 1
    labels = torch.arange(10).repeat(20)
    scores = score_on_test(model, images, labels)
    assert scores["test_accuracy"] == accuracy(model, images, labels)  # the same float, bit for bit
    predicted = predict(model, images)[0].argmax(1)
    for digit in range(10):
        mask = labels == digit
        assert scores["test_accuracy_per_digit"][str(digit)] == float((predicted[mask] == digit).double().mean())
    wrong = int((predicted != labels).sum())
    assert sum(c["count"] for c in scores["test_confusions"]) <= wrong
    assert all(c["true"] != c["predicted"] for c in scores["test_confusions"])
