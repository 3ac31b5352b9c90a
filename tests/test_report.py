import json

import torch

from pipeline.machine import machine_info
from pipeline.report_sections import render_ablation


def _run(name, lr_g, epochs):
    return {"name": name, "overrides": {}, "params": {"lr_g": lr_g, "epochs": len(epochs), "seed": 2},
            "epochs": [{"epoch": i + 1, "train_seconds": 100.0 * (i + 1), **row} for i, row in enumerate(epochs)]}


def test_ablation_table_shows_difference_from_current_params_and_best_tstr_epoch():
    runs = [
        _run("baseline", 0.0002, [{"class_conditional_accuracy": 0.9, "tstr_proxy_val": 0.8},
                                  {"class_conditional_accuracy": 0.95}]),
        _run("slow_g", 0.0001, [{"class_conditional_accuracy": 0.7, "tstr_proxy_val": 0.9},
                                {"class_conditional_accuracy": 0.8, "tstr_proxy_val": 0.85}]),
    ]
    table = render_ablation(runs, current={"lr_g": 0.0002, "epochs": 7, "seed": 2}).splitlines()
    assert table[0].startswith("| run | difference from params.yaml | epoch | train s | machine |")
    rows = [line for line in table[2:]]
    assert rows[0].startswith("| baseline | (none: the default) | 1 | 100 | not recorded |")  # best TSTR proxy epoch
    assert rows[1].startswith("| baseline | (none: the default) | 2 | 200 | not recorded | 95.00 %")  # last epoch
    assert rows[2].startswith("| slow_g | lr_g=0.0001 | 1 | 100 | not recorded | 70.00 %")
    assert rows[3].startswith("| slow_g | lr_g=0.0001 | 2 | 200 | not recorded | 80.00 %")
    assert render_ablation([], {}).startswith("_No ablation runs")


def test_ablation_table_names_params_older_runs_predate_and_shows_the_default_epoch():
    old = _run("old", 0.0002, [{"class_conditional_accuracy": 0.9}])  # made before `autocast` existed
    new = _run("long", 0.0002, [{"class_conditional_accuracy": 0.5 + 0.1 * i} for i in range(4)])
    new["params"]["autocast"] = "bfloat16"
    table = render_ablation([old, new], current={"lr_g": 0.0002, "epochs": 2, "seed": 2, "autocast": "bfloat16"})
    rows = table.splitlines()[2:]
    assert rows[0].startswith("| long | (none: the default) | 2 | 200 | not recorded | 60.00 %")  # where the default stops
    assert rows[1].startswith("| long | (none: the default) | 4 | 400 | not recorded | 80.00 %")  # its last epoch
    assert rows[2].startswith("| old | autocast='' | 1 | 100 | not recorded | 90.00 %")  # float32, before the param
    assert rows[2].endswith("| not recorded |") and rows[0].endswith("| not recorded |")


def test_ablation_table_names_the_judge_of_each_run():
    run = _run("judged", 0.0002, [{"class_conditional_accuracy": 0.9}])
    run["judge_sha256"] = "764ee159127b3b2b"
    table = render_ablation([run], current={"lr_g": 0.0002, "epochs": 1, "seed": 2}).splitlines()
    assert table[0].endswith("| judge |") and table[2].endswith("| 764ee159 |")


def test_ablation_table_has_a_column_for_the_judge_recipe_tstr():
    run = _run("full", 0.0002, [{"class_conditional_accuracy": 0.9, "tstr_proxy_val": 0.95, "tstr_val": 0.9764}])
    table = render_ablation([run], current={"lr_g": 0.0002, "epochs": 1, "seed": 2}).splitlines()
    assert "| TSTR proxy | TSTR, judge recipe | judge |" in table[0]
    assert table[2].endswith("| 95.00 % | 97.64 % | not recorded |")


def test_ablation_table_says_which_cpu_and_precision_trained_each_run():
    """Train seconds differ ~3.4x between an AVX-512 CPU (bfloat16) and an AVX2-only one (float32)."""
    machine = json.loads(json.dumps(machine_info(torch.device("cpu"))))  # as stored in the run JSON
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and machine["cpu_count"] >= 1
    runs = []
    for name, autocast, native in [("fast", "bfloat16", True), ("emulated", "bfloat16", False), ("fp32", "", True)]:
        run = _run(name, 0.0002, [{"class_conditional_accuracy": 0.9}])
        run["params"]["autocast"] = autocast
        run["machine"] = {**machine, "cpu": "Some CPU", "cpu_capability": "AVX512", "bfloat16_native": native}
        runs.append(run)
    rows = render_ablation(runs, current={"lr_g": 0.0002, "epochs": 1, "seed": 2, "autocast": "bfloat16"}).splitlines()
    assert rows[0].startswith("| run | difference from params.yaml | epoch | train s | machine | class-cond. acc.")
    assert rows[2].startswith("| emulated | (none: the default) | 1 | 100 | Some CPU, AVX512, float32 | 90.00 %")
    assert rows[3].startswith("| fast | (none: the default) | 1 | 100 | Some CPU, AVX512, bfloat16 | 90.00 %")
    assert rows[4].startswith("| fp32 | autocast='' | 1 | 100 | Some CPU, AVX512, float32 | 90.00 %")


def test_ablation_table_shows_sampling_choices_and_measured_generators():
    machine = {"cpu": "Some CPU", "cpu_capability": "AVX2", "bfloat16_native": False}
    measured = _run("standing", 0.0002, [{"class_conditional_accuracy": 0.9}])
    del measured["epochs"][0]["train_seconds"]  # measured, not trained
    measured.update(generator="models/generator.pt", machine=machine,
                    sampling={"latent_scale": 1.2, "standing_stats_batches": 100, "standing_stats_batch_size": 64})
    trained = _run("wide_z", 0.0001, [{"class_conditional_accuracy": 0.8}])
    trained.update(machine=machine, sampling={"latent_scale": 1.5, "standing_stats_batches": 0,
                                              "standing_stats_batch_size": 64})
    plain = _run("plain", 0.0002, [{"class_conditional_accuracy": 0.7}])
    plain["sampling"] = {"latent_scale": 1.0, "standing_stats_batches": 0, "standing_stats_batch_size": 64}
    rows = render_ablation([measured, trained, plain], current={"lr_g": 0.0002, "epochs": 1, "seed": 2}).splitlines()
    assert rows[2].startswith("| plain | (none: the default) | 1 | 100 | not recorded | 70.00 %")
    assert rows[3].startswith("| standing | sampling: z x 1.2, standing statistics (100 batches of 64) (measured "
                              "`models/generator.pt`, not trained by the run) | 1 |  | Some CPU, AVX2 (measured only) | 90.00 %")
    assert rows[4].startswith("| wide_z | lr_g=0.0001; sampling: z x 1.5 | 1 | 100 | Some CPU, AVX2, float32 | 80.00 %")


def test_ablation_machine_cell_names_the_gpu_a_run_trained_or_was_measured_on():
    from pipeline.report_sections import machine_cell
    gpu = {"cpu": "Intel(R) Xeon(R) Processor", "cpu_capability": "AVX512", "gpu": "NVIDIA H100 80GB HBM3",
           "bfloat16_native": True, "device": "cuda"}
    assert machine_cell({"machine": gpu, "params": {"autocast": "bfloat16"}}) == "NVIDIA H100 80GB HBM3 GPU, bfloat16"
    assert machine_cell({"machine": gpu, "params": {"autocast": ""}}) == "NVIDIA H100 80GB HBM3 GPU, float32"
    measured = {"machine": gpu, "params": {}, "generator": "g.pt"}
    assert machine_cell(measured) == "NVIDIA H100 80GB HBM3 GPU (measured only)"


def _pipeline_metrics(tstr, cgan_seconds):
    quality = {"class_conditional_accuracy": 0.997, "per_class_accuracy": {"0": 0.999, "8": 0.9935}, "fid": 2.0,
               "fid_real_floor": 0.2, "recall": 0.9, "recall_real_reference": 0.95, "coverage": 0.88,
               "coverage_real_reference": 0.96, "memorization": {"share_closer_than_heldout": 0.031}, "wall_seconds": 100}
    return {"classifier": {"test_accuracy": 0.9958, "wall_seconds": 271}, "referee": {"wall_seconds": 68},
            "cgan": {"wall_seconds": cgan_seconds}, "generate": {"wall_seconds": 23, "images_per_second": 2787.6},
            "quality": quality, "augmentation": {"tstr_accuracy": tstr, "wall_seconds": 500}}


def test_gpu_section_puts_the_gpu_run_next_to_the_cpu_run_row_by_row():
    from pipeline.report_sections import render_gpu
    cpu_bench = {"machine": {"cpu": "AMD EPYC", "torch_threads": 2}, "cgan_train_images_per_second": 445.2,
                 "cgan_train_batch_size": 32,
                 "generator_forward_images_per_second": 3027.0,
                 "time_to_target": {"reached": True, "seconds": 238.6, "steps": 1800}}
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
    assert rows["generator forward images/s (batch 1,000)"] == ["3,027", "1,279,194 |"]
    assert rows["cGAN batch size (train_cgan.batch_size of the run's params.yaml)"] == ["32", "not recorded |"]
    assert rows["cGAN training images/s"] == ["445", "2,990 |"]  # 2,990.5 rounds half to even
    assert rows["training time to 99 % class-conditional accuracy (validation)"] == ["239 s (1800 steps)", "not reached |"]
    assert render_gpu(None, {}).startswith("_No GPU run")


def test_per_digit_table_adds_tstr_columns_and_its_confusions_only_when_recorded():
    from pipeline.report_sections import per_digit_table
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
    from pipeline.report_sections import tstr_mean_row
    augmentation = {"tstr_classifier_seeds": [1, 2], "tstr_accuracy_seeds": [0.983, 0.982],
                    "tstr_accuracy_mean": 0.9825, "tstr_val_accuracy_mean": 0.981}
    assert tstr_mean_row(augmentation) == (
        "| TSTR, mean over classifier seeds 1, 2 (98.30 %, 98.20 %; validation mean 98.10 %) | 98.25 % |\n")
    one_seed = {"tstr_classifier_seeds": [1], "tstr_accuracy_seeds": [0.983]}
    without_list = {key: value for key, value in augmentation.items() if key != "tstr_accuracy_seeds"}
    assert tstr_mean_row(one_seed) == tstr_mean_row(without_list) == tstr_mean_row({}) == ""
