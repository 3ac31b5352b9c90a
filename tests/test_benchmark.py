import importlib.util
import json
import os
from dataclasses import asdict
from types import SimpleNamespace

import torch

from pipeline.core.params import ClassifierParams, load_params
from pipeline.core.utils import bfloat16_is_native, sha256_file
from pipeline.data.splits import to_tensor, to_uint8
from pipeline.generation.inference import bfloat16_inference_is_native, sample_images
from pipeline.reporting.records import validate_ablation_record
from pipeline.tools import ablation
from pipeline.training.cgan import generator_flops_per_image, sample
from pipeline.training.checkpoints import load_generator, model_checkpoint
from pipeline.training.networks import Classifier, ClassifierConfig
from tests.conftest import assert_one_line_error, run_module


def test_generator_flops_match_the_layer_arithmetic(tiny_checkpoint):
    generator, _ = load_generator(tiny_checkpoint)
    z_dim, w = generator.config.z_dim, generator.config.width
    # 2 FLOPs per multiply-add: linear (2z -> w*49), ConvT w -> w/2 (4x4, 7x7 inputs), ConvT w/2 -> 1 (14x14 inputs).
    expected = 2 * (2 * z_dim * w * 49 + 49 * w * (w // 2) * 16 + 196 * (w // 2) * 16)
    assert generator_flops_per_image(generator) == expected


def test_benchmark_writes_throughputs_and_time_to_target(tiny_project, tiny_checkpoint):
    judge = tiny_project / "judge.pt"
    recipe = ClassifierParams(seed=0, width=4, dropout=0.0, epochs=1, batch_size=8, lr=0.01, weight_decay=0.0,
                              transform_degrees=0.0, transform_translate=0.0, transform_scale=0.0, autocast="")
    torch.save(model_checkpoint("classifier", Classifier(ClassifierConfig(width=4)), recipe, 0), judge)
    out = tiny_project / "benchmark.json"
    result = run_module("pipeline.tools.benchmark", "--params", str(tiny_project / "params.yaml"),
                        "--data", str(tiny_project / "mnist.npz"), "--checkpoint", str(tiny_checkpoint),
                        "--judge", str(judge), "--out", str(out), "--train-steps", "5",
                        "--forward-images", "200", "--batch-size", "100", "--target", "0.0", "--check-every", "3",
                        "--export-per-class", "3", "--samplers-per-class", "2", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    bench = json.loads(out.read_text())
    assert bench["generator_forward_images_per_second"] > 0 and bench["cgan_train_images_per_second"] > 0
    assert bench["generator_flops_per_image"] > 0 and bench["machine"]["device"] == "cpu"
    assert bench["time_to_target"]["reached"] and bench["time_to_target"]["steps"] == 3
    for model in ("cgan", "judge"):
        speeds = bench["autocast_comparison"][f"{model}_train_images_per_second"]
        assert speeds["float32"] > 0
        if bench["machine"]["bfloat16_native"]:
            assert speeds["bfloat16"] > 0 and speeds["ratio"] == round(speeds["bfloat16"] / speeds["float32"], 2)
        else:  # autocast falls back to float32 there, so bfloat16 is not timed
            assert speeds["bfloat16"] is None and speeds["ratio"] is None
    assert bench["machine"]["bfloat16_native"] == bfloat16_is_native(torch.device("cpu"))
    inference = bench["inference"]
    native = bfloat16_inference_is_native(torch.device("cpu"))
    assert inference["default_precision"] == ("bfloat16" if native else "float32")
    forward = inference["forward_images_per_second"]
    assert forward["reference_float32"] > 0 and forward["float32"] > 0 and (forward["bfloat16"] is None) != native
    assert inference["forward_ratio_to_reference"]["float32"] == round(forward["float32"] / forward["reference_float32"], 2)
    assert set(inference["png_encode_us_per_image"]) == {"zlib_level_6", "zlib_ng_level_1"}
    compiled = inference["compile"]
    assert compiled["compile_seconds"] > 0 and set(compiled["seconds"]) == {"10000", "60000", "1000000"}
    assert sorted(compiled["pays_for"]) == sorted(n for n, s in compiled["seconds"].items()
                                                  if s["compiled"] < s["eager"])  # the JSON's keys are sorted
    runs = bench["export"]["runs"]
    assert set(runs) == {"baseline", "default", "float32", "default_samplers_1", "default_writers_1",
                         "default_writers_2"}
    assert all(run["images"] == 30 and run["parquet_bytes"] > 0 for run in runs.values())
    assert all(run["peak_pss_mb_sum_sampled"] > 0 for run in runs.values())
    assert runs["float32"]["precision"] == "float32" and runs["default_writers_2"]["writers"] == 2
    assert "--reference" in runs["baseline"]["command"] and runs["default"]["writers"] == 0
    assert runs["default"]["samplers"] == 1  # 30 images: too few for sampler processes by default
    assert runs["default_samplers_1"]["samplers"] == 1 and runs["default_writers_2"]["samplers"] == 1
    samplers = bench["export"]["samplers"]["20"]
    assert samplers["samplers_1"]["samplers"] == 1
    assert samplers[f"samplers_{os.cpu_count()}"]["samplers"] == os.cpu_count()
    assert bench["export"]["speedup_over_baseline"] == round(
        runs["default"]["images_per_second"] / runs["baseline"]["images_per_second"], 2)
    for run in runs.values():  # G's forward pass on the run's path, timed right before and after it
        assert len(run["forward_around"]) == 2 and min(run["forward_around"]) > 0
        assert run["ratio_to_forward"] == round(run["images_per_second"] / (sum(run["forward_around"]) / 2), 3)
    ray_runs = bench["export"]["ray_runs"]
    if importlib.util.find_spec("ray"):  # the dev install has it
        assert set(ray_runs) == {"ray_1_worker", "ray_2_workers"}
        for run in ray_runs.values():
            assert run["images"] == 30 and run["ray"]["address"] == "local" and run["ray"]["tasks"] == 1
            assert run["ratio_to_default"] == round(run["images_per_second"] / runs["default"]["images_per_second"], 3)
        cores = os.cpu_count()
        assert ray_runs["ray_2_workers"]["ray"]["cpus_per_task"] == max(1, cores // 2)
    else:
        assert ray_runs == {}


def test_benchmark_rejects_bad_counts(tiny_checkpoint):
    assert_one_line_error(run_module("pipeline.tools.benchmark", "--train-steps", "0", "--quick"), "--train-steps")
    assert_one_line_error(run_module("pipeline.tools.benchmark", "--samplers-per-class", "10,x", "--quick"),
                          "--samplers-per-class")


def test_ablation_rejects_unknown_param(tmp_path):
    result = run_module("pipeline.tools.ablation", "--name", "x", "--set", "no_such_param=1", "--out-dir", str(tmp_path))
    assert_one_line_error(result, "no_such_param")
    assert_one_line_error(run_module("pipeline.tools.ablation", "--name", "x", "--set", "oops"), "key=value")
    assert_one_line_error(run_module("pipeline.tools.ablation", "--name", "x", "--set", "epochs=abc"), "epochs", "int")
    (tmp_path / "a_file").write_text("")
    result = run_module("pipeline.tools.ablation", "--name", "x", "--save-generators", str(tmp_path / "a_file"),
                        "--out-dir", str(tmp_path))
    assert_one_line_error(result, "a_file")  # before any training: nothing written
    assert not (tmp_path / "x.json").exists()
    result = run_module("pipeline.tools.ablation", "--name", "x", "--generator", str(tmp_path / "a_file"), "--set", "epochs=1")
    assert_one_line_error(result, "--generator")
    assert_one_line_error(run_module("pipeline.tools.ablation", "--name", "x", "--generator", str(tmp_path / "a_file")),
                          "a_file", "not a readable torch checkpoint")
    assert_one_line_error(run_module("pipeline.tools.ablation", "--name", "x", "--latent-scale", "0"), "--latent-scale")
    if not torch.cuda.is_available():
        assert_one_line_error(run_module("pipeline.tools.ablation", "--name", "x", "--device", "cuda"), "no CUDA GPU")
    assert_one_line_error(run_module("pipeline.tools.ablation", "--name", "x", "--device", "tpu"), "--device")


def test_judge_recipe_tstr_trains_on_exported_samples_of_every_digit(tiny_checkpoint, params, monkeypatch):
    monkeypatch.setattr(ablation, "FULL_TSTR_IMAGES", 40)
    seen = {}

    def fake_train(recipe, images, labels, val_images, val_labels, device, total_steps, desc):
        seen.update(recipe=recipe, images=images, labels=labels, total_steps=total_steps)
        return SimpleNamespace(best_val_accuracy=0.5)

    monkeypatch.setattr(ablation, "train_classifier", fake_train)
    generator, _ = load_generator(tiny_checkpoint)
    val = torch.zeros(3, 1, 28, 28), torch.zeros(3, dtype=torch.int64)
    assert ablation.judge_recipe_tstr(generator, params.train_judge, 7, *val) == 0.5
    assert seen["recipe"] == params.train_judge and seen["total_steps"] == 7
    assert seen["images"].shape == (40, 1, 28, 28) and seen["labels"].tolist() == list(range(10)) * 4
    # the samples are stored as uint8 in an export: 256 grey levels in [-1, 1]
    assert torch.equal(seen["images"], to_tensor(to_uint8(seen["images"])))


def test_ablation_run_writes_its_epochs_the_machine_and_a_usable_generator_per_epoch(tiny_project):
    judge = tiny_project / "judge.pt"
    recipe = ClassifierParams(seed=0, width=4, dropout=0.0, epochs=1, batch_size=8, lr=0.01, weight_decay=0.0,
                              transform_degrees=0.0, transform_translate=0.0, transform_scale=0.0, autocast="")
    torch.save(model_checkpoint("classifier", Classifier(ClassifierConfig(width=4)), recipe, 0), judge)
    result = run_module("pipeline.tools.ablation", "--name", "tiny", "--set", "epochs=1", "--set", "max_train_images=320",
                        "--params", str(tiny_project / "params.yaml"), "--data", str(tiny_project / "mnist.npz"),
                        "--judge", str(judge), "--out-dir", str(tiny_project / "ablation"), "--threads", "1",
                        "--save-generators", str(tiny_project / "generators"))
    assert result.returncode == 0, result.stderr
    run = validate_ablation_record(json.loads((tiny_project / "ablation" / "tiny.json").read_text()))
    generator, checkpoint = load_generator(tiny_project / "generators" / "tiny_epoch1.pt")  # the EMA G, usable
    assert checkpoint["epoch"] == 1 and checkpoint["params"] == run["params"]
    assert sample(generator, torch.zeros(2, generator.config.z_dim), torch.tensor([3, 7])).shape == (2, 1, 28, 28)
    assert run["overrides"] == {"epochs": 1, "max_train_images": 320} and run["params"]["max_train_images"] == 320
    epochs = run["results"]["epochs"]
    assert [e["epoch"] for e in epochs] == [1] and 0.0 <= epochs[0]["tstr_proxy_val"] <= 1.0
    assert run["baseline"]["record"] is None and run["baseline"]["params"]["epochs"] != 1  # params.yaml's recipe
    assert run["judge"] == {"path": str(judge), "sha256": sha256_file(judge)}
    tiny_params = load_params(tiny_project / "params.yaml")
    assert run["tstr_recipe"] == asdict(tiny_params.train_judge)  # the recipe --full-tstr would train
    assert run["train_images"] == 320  # of the tiny project's 1,600: the cap applies as in the train_cgan stage
    assert run["threads"] == 1 and run["machine"]["torch_threads"] == 1 and run["machine"]["device"] == "cpu"
    assert run["machine"]["bfloat16_native"] == bfloat16_is_native(torch.device("cpu"))
    assert run["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    # the saved generator, measured again without training, with the two sampling-time choices
    result = run_module("pipeline.tools.ablation", "--name", "sampled", "--generator", str(tiny_project / "generators" / "tiny_epoch1.pt"),
                        "--latent-scale", "1.5", "--standing-stats", "3", "--params", str(tiny_project / "params.yaml"),
                        "--data", str(tiny_project / "mnist.npz"), "--judge", str(judge),
                        "--out-dir", str(tiny_project / "ablation"), "--threads", "1", "--baseline", "tiny")
    assert result.returncode == 0, result.stderr
    measured = validate_ablation_record(json.loads((tiny_project / "ablation" / "sampled.json").read_text()))
    assert measured["params"] == run["params"] and measured["overrides"] == {}
    assert measured["generator"]["path"].endswith("tiny_epoch1.pt") and len(measured["generator"]["sha256"]) == 64
    assert measured["sampling"] == {"latent_scale": 1.5, "standing_stats_batches": 3,
                                    "standing_stats_batch_size": run["params"]["batch_size"]}
    assert measured["baseline"] == {"record": "tiny", "params": run["params"], "sampling": run["sampling"]}
    m_epochs = measured["results"]["epochs"]
    assert [e["epoch"] for e in m_epochs] == [1] and "train_seconds" not in m_epochs[0]
    assert 0.0 <= m_epochs[0]["class_conditional_accuracy"] <= 1.0
    assert m_epochs[0]["fid_val"] != epochs[0]["fid_val"]  # other samples than the trained run's
    result = run_module("pipeline.tools.ablation", "--name", "y", "--generator", str(tiny_project / "generators" / "tiny_epoch1.pt"),
                        "--out-dir", str(tiny_project / "ablation"), "--baseline", "no_such_run",
                        "--params", str(tiny_project / "params.yaml"))
    assert_one_line_error(result, "--baseline no_such_run: no such record")


def test_standing_statistics_average_the_batch_statistics_of_the_generators_own_samples(tiny_checkpoint):
    generator, _ = load_generator(tiny_checkpoint)
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    first_norm = next(m for m in generator.modules() if isinstance(m, torch.nn.BatchNorm1d))
    inputs = []
    first_norm.register_forward_hook(lambda module, args, out: inputs.append(args[0].detach().clone()))
    calibrated = ablation.standing_statistics(generator, batches=3, batch_size=8, seed=5)
    # the copy's first BatchNorm saw the same three batches; its statistics are their plain averages
    assert len(inputs) == 3 and not calibrated.training
    norm = next(m for m in calibrated.modules() if isinstance(m, torch.nn.BatchNorm1d))
    assert torch.allclose(norm.running_mean, torch.stack([x.mean(0) for x in inputs]).mean(0), atol=1e-6)
    assert torch.allclose(norm.running_var, torch.stack([x.var(0) for x in inputs]).mean(0), atol=1e-5)
    assert norm.momentum == first_norm.momentum and int(norm.num_batches_tracked) == 3
    assert all(torch.equal(v, before[k]) for k, v in generator.state_dict().items())  # the original is untouched
    assert all(torch.equal(v, before[k]) for k, v in calibrated.state_dict().items() if "running" not in k
               and "num_batches" not in k)  # weights unchanged: only the statistics moved
    again = ablation.standing_statistics(generator, batches=3, batch_size=8, seed=5)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in calibrated.state_dict().items())  # seeded


def test_scaled_latent_samples_g_of_scaled_z(tiny_checkpoint):
    generator, _ = load_generator(tiny_checkpoint)
    z, labels = torch.randn(4, generator.config.z_dim), torch.tensor([0, 3, 7, 9])
    scaled = ablation.sampling_variant(generator, latent_scale=1.5, standing_batches=0, batch_size=8)
    assert scaled.config == generator.config
    assert torch.equal(sample_images(scaled, z, labels), sample_images(generator, 1.5 * z, labels))
    assert ablation.sampling_variant(generator, 1.0, 0, 8) is generator  # plain sampling: the generator itself
