import re

import pytest
import yaml

from pipeline.core.params import ParamsError, load_params, params_from_dict


def test_repo_params_load(params):
    assert params.generate.per_class > 0
    assert 0 < params.prepare.val_size < 60000


def _raw(repo_params_path):
    return yaml.safe_load(repo_params_path.read_text())


def test_unknown_key_fails(tmp_path):
    from tests.conftest import REPO

    raw = _raw(REPO / "params.yaml")
    raw["train_cgan"]["learning_rate"] = 0.1
    with pytest.raises(ParamsError, match="unknown key.*learning_rate"):
        params_from_dict(raw)


def test_missing_key_fails():
    from tests.conftest import REPO

    raw = _raw(REPO / "params.yaml")
    del raw["generate"]["seed"]
    with pytest.raises(ParamsError, match="generate.*missing key.*seed"):
        params_from_dict(raw)


def test_missing_section_and_bad_file(tmp_path):
    from tests.conftest import REPO

    raw = _raw(REPO / "params.yaml")
    del raw["evaluate"]
    with pytest.raises(ParamsError, match="missing section 'evaluate'"):
        params_from_dict(raw)
    bad = tmp_path / "params.yaml"
    bad.write_text("prepare: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(ParamsError, match="cannot read"):
        load_params(tmp_path / "absent.yaml")


@pytest.mark.parametrize("section, key, value, fragment", [
    ("train_cgan", "epochs", "abc", "train_cgan.epochs must be int, got 'abc'"),
    ("train_cgan", "epochs", True, "train_cgan.epochs must be int, got True"),
    ("train_cgan", "minibatch_std", 1, "train_cgan.minibatch_std must be bool"),
    ("study", "budgets", 10, "study.budgets must be a non-empty list[int], got 10"),
    ("study", "seeds", [], "study.seeds must be a non-empty list[int]"),
    ("study", "transform_strengths", [0.5, "x"], "study.transform_strengths must be a non-empty list[float]"),
    ("generate", "min_confidence", "high", "generate.min_confidence must be float"),
    ("train_cgan", "autocast", "float16", "train_cgan.autocast must be one of ['', 'bfloat16'], got 'float16'"),
    ("train_judge", "autocast", 16, "train_judge.autocast must be str, got 16"),
    ("evaluate", "tstr_seeds", 0, "evaluate.tstr_seeds must be >= 1, got 0"),
    ("evaluate", "tstr_seeds", 1.5, "evaluate.tstr_seeds must be int, got 1.5"),
])
def test_wrong_value_types_fail_with_the_key_named(section, key, value, fragment):
    from tests.conftest import REPO

    raw = _raw(REPO / "params.yaml")
    raw[section][key] = value
    with pytest.raises(ParamsError, match=re.escape(fragment)):
        params_from_dict(raw)



def test_latent_scale_must_be_positive():
    from tests.conftest import REPO

    raw = _raw(REPO / "params.yaml")
    raw["generate"]["latent_scale"] = 0
    with pytest.raises(ParamsError, match=re.escape("generate.latent_scale must be > 0, got 0")):
        params_from_dict(raw)


def test_an_int_is_a_fine_float():
    from tests.conftest import REPO

    raw = _raw(REPO / "params.yaml")
    raw["train_cgan"]["lr_g"] = 1
    assert params_from_dict(raw).train_cgan.lr_g == 1


def test_params_comments_give_meaning_not_measurements():
    """Measurements go stale: params.yaml's comments may name a record, never quote a result or a speed."""
    from tests.conftest import REPO

    measured = re.compile(r"%|faster|slower|images/s|\d\s*(s|min)\b|\b(TSTR|FID|recall|coverage)\s+(proxy\s+)?\d")
    comments = [line.split("#", 1)[1] for line in (REPO / "params.yaml").read_text().splitlines() if "#" in line]
    assert comments and [c for c in comments if measured.search(c)] == []
    assert not measured.search("  # weight of the mode-seeking term (records mode_seeking_*)")
    assert measured.search("# 16 (float32): validation TSTR 97.76 %") and measured.search("# trains in 570 s")
