"""Sampler processes (pipeline.generation.samplers, pipeline.generate --samplers): the same bytes as one process,
the judge and both formats in them, and their errors."""

import json
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

import pytest
import torch

from pipeline.core.utils import PipelineError
from pipeline.generation.inference import InferenceGenerator
from pipeline.generation.samplers import MIN_IMAGES_FOR_SAMPLERS, BatchSampler, SamplerPool, default_samplers
from pipeline.generation.sampling import LatentStreams, ShardLayout
from pipeline.generation.staging import InlineWriter, export_shards
from pipeline.training.checkpoints import load_classifier, load_generator
from tests.conftest import REPO, assert_one_line_error, run_module

GENERATOR, JUDGE = REPO / "models/generator.pt", REPO / "models/judge.pt"
needs_models = pytest.mark.skipif(not (GENERATOR.is_file() and JUDGE.is_file()),
                                  reason="needs the committed generator and judge")


def _export(root, generator, judge, layout, pool_processes):
    root.mkdir()
    latents = LatentStreams(5, generator.config.z_dim, scale=1.15)
    writer = InlineWriter(root, "both", True, 5)
    sampler = BatchSampler(generator, latents, judge, 0.99, 5, root, "both")
    if not pool_processes:
        return export_shards(generator, latents, layout, [0, 1], 70, writer, root, judge, 0.99, keep_first=100,
                             progress=False), 0
    with SamplerPool(sampler, pool_processes, threads=1) as pool:
        deadline = time.monotonic() + 120
        while not pool.ready():  # so that every batch is sampled in the pool, none here
            assert time.monotonic() < deadline, "the sampler processes did not start"
            time.sleep(0.1)
        done = export_shards(generator, latents, layout, [0, 1], 70, writer, root, judge, 0.99, keep_first=100,
                             progress=False, samplers=(sampler, pool))
        return done, pool.batches


@needs_models
def test_sampler_processes_write_the_bytes_of_one_process(tmp_path):
    """A curated export in both formats, two shards: sampled in two processes with one thread each, it has the
    bytes of the export sampled in this process with all its threads, and the same counts and first rows."""
    trained, _ = load_generator(GENERATOR)
    generator, judge = InferenceGenerator(trained, "float32"), load_classifier(JUDGE)
    layout = ShardLayout(tuple(range(10)), per_class=30, num_shards=2)
    here, batches_here = _export(tmp_path / "here", generator, judge, layout, 0)
    pooled, batches_pooled = _export(tmp_path / "pooled", generator, judge, layout, 2)
    assert batches_here == 0 and batches_pooled == 6  # 2 shards of 150 rows in batches of 70
    for name in ("part-00000.parquet", "part-00001.parquet"):
        assert (tmp_path / "here" / name).read_bytes() == (tmp_path / "pooled" / name).read_bytes()
    pngs = [sorted((p.relative_to(root).as_posix(), p.read_bytes()) for p in root.rglob("*.png"))
            for root in (tmp_path / "here", tmp_path / "pooled")]
    assert len(pngs[0]) == 300 and pngs[0] == pngs[1]
    assert here["shards"] == pooled["shards"]
    assert (here["draws"] == pooled["draws"]).all() and here["draws"].sum() > 300  # the judge rejected some
    assert (here["kept"] == pooled["kept"]).all()
    assert len(here["first"]) == len(pooled["first"]) == 2  # whole batches until 100 rows
    for (images_a, labels_a), (images_b, labels_b) in zip(here["first"], pooled["first"]):
        assert (images_a == images_b).all() and (labels_a == labels_b).all()


def test_a_sampler_process_that_died_is_a_pipeline_error():
    future = Future()
    future.set_exception(BrokenProcessPool("a child process terminated abruptly"))
    with pytest.raises(PipelineError, match="a sampler process stopped.*--samplers 1"):
        SamplerPool.result(future)


def test_default_samplers_one_per_thread_for_large_cpu_exports_only():
    cpu = torch.device("cpu")
    assert default_samplers(cpu, MIN_IMAGES_FOR_SAMPLERS, threads=2) == 2
    assert default_samplers(cpu, MIN_IMAGES_FOR_SAMPLERS, threads=64) == 8
    assert default_samplers(cpu, MIN_IMAGES_FOR_SAMPLERS - 1, threads=2) == 1
    assert default_samplers(torch.device("cuda"), 10**6, threads=16) == 1


@needs_models
def test_generate_with_samplers_records_them_and_refuses_writers(tmp_path):
    out, metrics = tmp_path / "out", tmp_path / "metrics.json"
    result = run_module("pipeline.generate", "--per-class", "20", "--out", str(out), "--samplers", "2",
                        "--metrics", str(metrics))
    assert result.returncode == 0, result.stderr
    assert json.loads(metrics.read_text())["samplers"] == 2
    refused = run_module("pipeline.generate", "--per-class", "20", "--out", str(tmp_path / "no"), "--samplers", "2",
                         "--writers", "1")
    assert_one_line_error(refused, "--samplers > 1", "--writers")
    assert not (tmp_path / "no").exists()
