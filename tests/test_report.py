import json
from dataclasses import asdict

import pytest
import torch

from pipeline.core.machine import machine_info
from pipeline.core.params import load_params
from pipeline.reporting.levers import ablation_rows, effect_on_baseline, lever_summary, machine_cell
from pipeline.reporting.records import (
    ABLATION_SCHEMA_VERSION,
    RecordError,
    describe_differences,
    differences_from_baseline,
    read_ablation_records,
    validate_ablation_record,
)
from tests.conftest import REPO


def _record(name, baseline, epochs, params=None, sampling=None, baseline_params=None):
    """A schema-valid ablation record with today's train_cgan params changed by ``params``."""
    cgan = asdict(load_params(REPO / "params.yaml").train_cgan)
    plain = {"latent_scale": 1.0, "standing_stats_batches": 0, "standing_stats_batch_size": cgan["batch_size"]}
    rows = [{"epoch": i + 1, "train_seconds": 100.0 * (i + 1), "class_conditional_accuracy": 0.99,
             "worst_digit_accuracy": 0.98, "fid_val": 1.0, **row} for i, row in enumerate(epochs)]
    return validate_ablation_record({
        "schema_version": ABLATION_SCHEMA_VERSION, "name": name, "params": {**cgan, **(params or {})},
        "sampling": {**plain, **(sampling or {})}, "tstr_recipe": None, "overrides": params or {},
        "baseline": {"record": baseline, "params": {**cgan, **(baseline_params or {})}, "sampling": plain},
        "generator": None, "judge": {"path": "models/judge.pt", "sha256": "a" * 64}, "machine": None,
        "threads": 1, "train_images": 55000, "measured_on": "validation", "note": "", "results": {"epochs": rows}})


def test_every_committed_ablation_record_validates_against_one_schema():
    records = read_ablation_records(REPO / "reports" / "ablation")
    assert len(records) == len(list((REPO / "reports" / "ablation").glob("*.json"))) > 0
    names = {r["name"] for r in records}
    assert all(r["baseline"]["record"] in names | {None} for r in records)  # every baseline is a record


def test_invalid_records_get_a_one_line_error_naming_the_field(tmp_path):
    good = _record("x", None, [{}])
    for change, fragment in [({"schema_version": 0}, "schema_version"), ({"params": {"seed": 2}}, "params"),
                             ({"tstr_recipe": {"seed": 1}}, "tstr_recipe"),
                             ({"note": None}, "note"), ({"extra": 1}, "extra")]:
        with pytest.raises(RecordError) as error:
            validate_ablation_record({**good, **change}, "x.json")
        assert fragment in str(error.value) and str(error.value).startswith("x.json: ") and "\n" not in str(error.value)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(RecordError, match="bad.json: not valid JSON"):
        read_ablation_records(tmp_path)


def test_each_run_is_compared_with_its_own_baseline_not_with_todays_params():
    base = _record("base", None, [{"tstr_proxy_val": 0.90}, {"tstr_proxy_val": 0.92, "tstr_val": 0.97}],
                   params={"batch_size": 64}, baseline_params={"batch_size": 64})
    run_ = _record("b32", "base", [{"tstr_proxy_val": 0.91}, {"tstr_proxy_val": 0.93, "tstr_val": 0.975,
                                                              "train_seconds": 250.0}],
                   params={"batch_size": 32}, baseline_params={"batch_size": 64})
    wide = _record("wide_z", "base", [{"epoch": 2, "tstr_val": 0.965, "fid_val": 0.5}], sampling={"latent_scale": 1.1},
                   params={"batch_size": 64}, baseline_params={"batch_size": 64})
    del wide["results"]["epochs"][0]["train_seconds"]  # measured, not trained
    assert differences_from_baseline(run_) == {"batch_size": (64, 32)}  # today's params use 32: no difference there
    assert describe_differences(differences_from_baseline(wide)) == "sampling.latent_scale 1 → 1.1"
    summary = {row["lever"]: row for row in lever_summary([base, run_, wide])}
    assert set(summary) == {"batch_size", "sampling.latent_scale"}  # the baseline itself is no lever
    assert summary["batch_size"]["tstr"] == pytest.approx(0.5) and summary["batch_size"]["tstr_figure"] == "judge recipe"
    assert summary["batch_size"]["cost"] == pytest.approx(1.25)
    assert summary["sampling.latent_scale"]["tstr"] == pytest.approx(-0.5) and summary["sampling.latent_scale"]["cost"] is None
    assert summary["sampling.latent_scale"]["fid"] == pytest.approx(-0.5)
    rows = {row["name"]: row for row in ablation_rows([base, run_, wide])}
    assert rows["b32"]["baseline"] == "base" and rows["b32"]["difference"] == "batch_size 64 → 32"
    assert rows["base"]["baseline"] == "—" and rows["wide_z"]["seconds"] == ""


def test_a_run_stopped_early_is_compared_at_the_epoch_where_it_stopped():
    base = _record("base", None, [{"tstr_proxy_val": 0.5 + 0.1 * i} for i in range(4)])
    early = _record("early", "base", [{"tstr_proxy_val": 0.65}], params={"aux_weight": 0.0})
    effect = effect_on_baseline(early, base)
    assert effect["tstr"] == pytest.approx(15.0) and effect["tstr_figure"] == "proxy"


def test_ablation_machine_cell_names_the_cpu_and_the_precision_of_each_run():
    """Train seconds differ ~3.4x between an AVX-512 CPU (bfloat16) and an AVX2-only one (float32)."""
    machine = json.loads(json.dumps(machine_info(torch.device("cpu"))))  # as stored in the record
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and machine["cpu_count"] >= 1
    cells = []
    for autocast, native in [("bfloat16", True), ("bfloat16", False), ("", True)]:
        cells.append(machine_cell({"machine": {**machine, "cpu": "Some CPU", "cpu_capability": "AVX512",
                                               "bfloat16_native": native}, "params": {"autocast": autocast}}))
    assert cells == ["Some CPU, AVX512, bfloat16", "Some CPU, AVX512, float32", "Some CPU, AVX512, float32"]
    assert machine_cell({"machine": None}) == "not recorded"


def test_ablation_machine_cell_names_the_gpu_a_run_trained_or_was_measured_on():
    gpu = {"cpu": "Intel(R) Xeon(R) Processor", "cpu_capability": "AVX512", "gpu": "NVIDIA H100 80GB HBM3",
           "bfloat16_native": True, "device": "cuda"}
    assert machine_cell({"machine": gpu, "params": {"autocast": "bfloat16"}}) == "NVIDIA H100 80GB HBM3 GPU, bfloat16"
    assert machine_cell({"machine": gpu, "params": {"autocast": ""}}) == "NVIDIA H100 80GB HBM3 GPU, float32"
    measured = {"machine": gpu, "params": {}, "generator": {"path": "g.pt", "sha256": "b" * 64}}
    assert machine_cell(measured) == "NVIDIA H100 80GB HBM3 GPU (measured only)"


def _pipeline_metrics(tstr, cgan_seconds):
    quality = {"class_conditional_accuracy": 0.997, "per_class_accuracy": {"0": 0.999, "8": 0.9935}, "fid": 2.0,
               "fid_real_floor": 0.2, "recall": 0.9, "recall_real_reference": 0.95, "coverage": 0.88,
               "coverage_real_reference": 0.96, "memorization": {"share_closer_than_heldout": 0.031}, "wall_seconds": 100}
    return {"judge": {"test_accuracy": 0.9958, "wall_seconds": 271}, "referee": {"wall_seconds": 68},
            "cgan": {"wall_seconds": cgan_seconds}, "generate": {"wall_seconds": 23, "images_per_second": 2787.6},
            "quality": quality, "downstream": {"tstr_accuracy": tstr, "wall_seconds": 500}}


def test_gpu_section_puts_the_gpu_run_next_to_the_cpu_run_row_by_row():
    from pipeline.reporting.sections import render_gpu
    cpu_bench = {"machine": {"cpu": "AMD EPYC", "torch_threads": 2}, "cgan_train_images_per_second": 445.2,
                 "cgan_train_batch_size": 32,
                 "generator_forward_images_per_second": 3027.0,
                 "time_to_target": {"reached": True, "seconds": 238.6, "steps": 1800},
                 "inference": {"default_precision": "bfloat16",
                               "forward_images_per_second": {"float32": 9000.0, "bfloat16": 18500.4}},
                 "export": {"speedup_over_baseline": 3.514,
                            "runs": {"default": {"images_per_second": 15012.0, "precision": "bfloat16"},
                                     "baseline": {"images_per_second": 4272.0, "precision": "float32"}}}}
    gpu_bench = {"machine": {"gpu": "NVIDIA H100 80GB HBM3", "torch_threads": 16}, "cgan_train_images_per_second": 2990.5,
                 "generator_forward_images_per_second": 1279194.1, "time_to_target": {"reached": False}}
    gpu = {"stages": {"total_seconds": 302.3}, "metrics": _pipeline_metrics(0.976, 159.2), "benchmark": gpu_bench}
    cpu = _pipeline_metrics(0.9775, 572.7)
    cpu["generate"]["latent_scale"] = 1.1  # the GPU run's generate.json predates the param
    table = render_gpu(gpu, {"metrics": cpu, "benchmark": cpu_bench}).splitlines()
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in table[2:]}
    assert rows["the export's latent scale s, z ~ N(0, s² I)"] == ["1.1", "1 |"]
    assert rows["TSTR (test)"] == ["97.75 %", "97.60 % |"]
    assert rows["class-conditional accuracy"][0] == "99.70 % (worst digit 99.35 %)"
    assert rows["FID / real floor"][0] == "10.0 × (2.000 / 0.200)"
    assert rows["cGAN training s"] == ["573", "159 |"]
    assert rows["the six stages' processes, prepare to evaluate, s"] == ["not measured", "302 |"]
    assert rows["benchmark machine"] == ["AMD EPYC, 2 threads", "NVIDIA H100 80GB HBM3 GPU, 16 CPU threads |"]
    assert rows["generator forward images/s (batch 1,000, float32 reference path)"] == ["3,027", "1,279,194 |"]
    assert rows["generator forward images/s, inference path (`--precision auto`)"] == ["18,500 (bfloat16)",
                                                                                       "not measured |"]
    assert rows["export images/s, defaults vs reference path (1M images)"] == [
        "15,012 (bfloat16) vs 4,272 (3.51 ×)", "not measured |"]
    assert rows["cGAN batch size (train_cgan.batch_size of the run's params.yaml)"] == ["32", "not recorded |"]
    assert rows["cGAN training images/s"] == ["445", "2,990 |"]  # 2,990.5 rounds half to even
    assert rows["training time to 99 % class-conditional accuracy (validation)"] == ["239 s (1800 steps)", "not reached |"]


def test_per_digit_table_adds_tstr_columns_and_its_confusions_only_when_recorded():
    from pipeline.reporting.sections import per_digit_table
    classifier = {"per_class_accuracy": {"0": 0.999, "1": 0.998}}
    quality = {"per_class_accuracy": {"0": 0.995, "1": 0.99}, "diversity": {"0": {"ratio": 0.95}, "1": {"ratio": 0.9}}}
    tstr = {"test_accuracy": 0.983, "test_accuracy_per_digit": {"0": 0.99, "1": 0.968},
            "test_confusions": [{"true": 1, "predicted": 2, "count": 14}]}
    lines = per_digit_table(["0", "1"], classifier, quality, {"tstr": tstr}).splitlines()
    assert lines[0].endswith("| TSTR on real test | TSTR − judge |")
    assert lines[3] == "| 1 | 99.80 % | 99.00 % | 0.900 | 96.80 % | -3.00 points |"
    assert lines[-1].endswith("1.70 % of the test images are errors in all): 1 read as 2 (14).")
    old = per_digit_table(["0", "1"], classifier, quality, {"tstr": {"test_accuracy": 0.983}}).splitlines()
    assert len(old) == 4 and old[0].endswith("| diversity (synthetic / real) |")
    assert old[2] == "| 0 | 99.90 % | 99.50 % | 0.950 |"


def test_tstr_mean_row_lists_each_classifier_seed_and_is_empty_for_one_seed():
    from pipeline.reporting.sections import tstr_mean_row
    augmentation = {"tstr_classifier_seeds": [1, 2], "tstr_accuracy_seeds": [0.983, 0.982],
                    "tstr_accuracy_mean": 0.9825, "tstr_val_accuracy_mean": 0.981}
    assert tstr_mean_row(augmentation) == (
        "| TSTR, mean over classifier seeds 1, 2 (98.30 %, 98.20 %; validation mean 98.10 %) | 98.25 % |\n")
    one_seed = {"tstr_classifier_seeds": [1], "tstr_accuracy_seeds": [0.983]}
    without_list = {key: value for key, value in augmentation.items() if key != "tstr_accuracy_seeds"}
    assert tstr_mean_row(one_seed) == tstr_mean_row(without_list) == tstr_mean_row({}) == ""


def test_study_recipe_rows_name_the_augmentation_of_d():
    from pipeline.reporting.sections import _recipe_row

    ci = lambda c: f"{100 * c['mean']:.2f}"  # noqa: E731
    plain = {"gan_steps": 400, "gan_diffaugment": "", "gan_ada_target": 0.0, "gan_ada_kimg": 16, "gan_cr_weight": 0.0}
    assert _recipe_row("all", {"gan_recipe": plain, "classifier_steps": 900}, ci) == "| all | 900 | 400 | none | — |"
    adaptive = {**plain, "gan_steps": 1000, "gan_diffaugment": "cutout", "gan_ada_target": 0.6, "gan_cr_weight": 10.0}
    row = _recipe_row("10", {"gan_recipe": adaptive, "classifier_steps": 200, "gan_validation_tstr": {"mean": 0.7}}, ci)
    assert row == "| 10 | 200 | 1000 | cutout, ADA (target 0.6, 16 kimg), bCR 10 | 70.00 |"
    assert _recipe_row("5", {}, ci) == "| 5 | — | — | none | — |"  # an older study.json
