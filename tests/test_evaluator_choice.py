"""A curated export is never evaluated by the classifier that curated it."""

import pytest

from pipeline.evaluate import choose_evaluator
from pipeline.utils import PipelineError, sha256_file


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
