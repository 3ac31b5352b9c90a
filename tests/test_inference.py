"""The generator's inference path: BatchNorm folding, channels-last, bfloat16, the precision choice, and the
bytes it promises (pipeline.generation.inference, pipeline.generate --precision / --writers)."""

import json

import numpy as np
import pytest
import torch

from pipeline.core.utils import PipelineError
from pipeline.data.splits import to_uint8
from pipeline.generation import inference
from pipeline.generation.inference import InferenceGenerator, fold_batchnorm, resolve_precision, sample_images
from pipeline.training.networks import Generator, GeneratorConfig
from tests.conftest import REPO, run_module

COMMITTED_GENERATOR = REPO / "models" / "generator.pt"


def trained_like(config: GeneratorConfig) -> Generator:
    """A random generator whose BatchNorm layers hold non-trivial running statistics and affine parameters."""
    torch.manual_seed(0)
    generator = Generator(config)
    with torch.no_grad():
        for _ in range(3):
            generator(torch.randn(64, config.z_dim) * 2 + 0.5, torch.arange(64) % 10)
        for module in generator.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.affine:
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return generator.eval()


def latents(n: int = 400, z_dim: int = 64):
    torch.manual_seed(1)
    return torch.randn(n, z_dim), torch.arange(n) % 10


@pytest.mark.parametrize("refine", [False, True])
def test_folding_removes_batchnorm_and_keeps_the_function(refine):
    generator = trained_like(GeneratorConfig(width=32, refine=refine))
    folded = fold_batchnorm(generator)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in generator.modules())  # not modified
    z, labels = latents()
    with torch.no_grad():
        torch.testing.assert_close(folded(z, labels), generator(z, labels), atol=1e-5, rtol=0)


def test_class_conditional_batchnorm_is_left_alone():
    generator = trained_like(GeneratorConfig(width=32, conditional_bn=True))
    folded = fold_batchnorm(generator)
    z, labels = latents()
    with torch.no_grad():
        torch.testing.assert_close(folded(z, labels), generator(z, labels), atol=1e-6, rtol=0)


def test_fast_paths_match_the_reference_path_in_stored_pixels():
    generator = trained_like(GeneratorConfig(width=32, refine=True))
    z, labels = latents(1200)  # more than one CPU chunk
    reference = to_uint8(sample_images(InferenceGenerator(generator, reference=True), z, labels))
    fast32 = to_uint8(sample_images(InferenceGenerator(generator, "float32"), z, labels))
    bf16 = to_uint8(sample_images(InferenceGenerator(generator, "bfloat16"), z, labels))
    for images in (fast32, bf16):
        assert images.shape == (1200, 28, 28) and images.dtype == np.uint8
    float_change = np.abs(fast32.astype(int) - reference.astype(int))
    assert float_change.max() <= 1 and (float_change > 0).mean() < 1e-3  # folding rounds differently, rarely
    bf16_change = np.abs(bf16.astype(int) - reference.astype(int))
    assert bf16_change.mean() < 1.0 and bf16_change.max() < 64  # 8-bit mantissa: small, not zero


def test_output_is_float32_on_the_cpu_and_the_chunking_does_not_change_it():
    generator = trained_like(GeneratorConfig(width=32, refine=True))
    model = InferenceGenerator(generator, "float32")
    z, labels = latents(1100)
    whole = model(z, labels)
    assert whole.dtype == torch.float32 and whole.shape == (1100, 1, 28, 28) and whole.is_contiguous()
    parts = torch.cat([model(z[:300], labels[:300]), model(z[300:], labels[300:])])
    assert torch.equal(to_uint8_tensor(whole), to_uint8_tensor(parts))
    assert model.record == {"precision": "float32", "path": "folded, channels-last"}


def to_uint8_tensor(images: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(to_uint8(images))


def test_auto_takes_bfloat16_only_where_the_cpu_has_it(monkeypatch):
    cpu = torch.device("cpu")
    for avx512_bf16, amx, expected in [(False, False, "float32"), (True, False, "bfloat16"), (False, True, "bfloat16")]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert resolve_precision("auto", cpu) == expected
        assert resolve_precision("float32", cpu) == "float32"
    with pytest.raises(PipelineError, match="precision must be one of float32, bfloat16, auto"):
        resolve_precision("float16", cpu)


def test_reuse_freed_memory_applies_once_on_glibc():
    assert inference.reuse_freed_memory() in (True, False)
    assert inference.reuse_freed_memory.cache_info().currsize == 1


def _export(tmp_path, name, *args, env=None):
    out = tmp_path / name
    result = run_module("pipeline.generate", "--checkpoint", str(COMMITTED_GENERATOR), "--per-class", "60",
                        "--out", str(out), *args, env=env)
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.skipif(not COMMITTED_GENERATOR.is_file(), reason="needs the committed generator")
def test_float32_bytes_do_not_depend_on_cpu_kernels_threads_or_writers(tmp_path):
    """The DVC stage's promise: float32 exports are byte-identical across CPU types. Here: the default kernels
    with two threads against oneDNN's AVX2 kernels with one thread (ONEDNN_MAX_CPU_ISA), and writing in the
    sampling process against two encoder processes."""
    base = _export(tmp_path, "base", "--precision", "float32", "--threads", "2", "--metrics",
                   str(tmp_path / "metrics.json"))
    avx2 = _export(tmp_path, "avx2", "--precision", "float32", "--threads", "1", "--writers", "2",
                   env={"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert (base / "part-00000.parquet").read_bytes() == (avx2 / "part-00000.parquet").read_bytes()
    manifest = json.loads((base / "manifest.json").read_text())
    assert manifest["inference"]["precision"] == "float32"
    assert manifest["inference"]["path"] == "folded, channels-last"
    assert manifest["inference"]["reproducible"] == "same bytes on any CPU"
    assert "G ran in float32" in (base / "README.md").read_text()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["images"] == 600 and metrics["precision"] == "float32" and metrics["writers"] == 0
    assert isinstance(metrics["page_faults_sampler"], int) and metrics["page_faults_sampler"] >= 0


@pytest.mark.skipif(not COMMITTED_GENERATOR.is_file(), reason="needs the committed generator")
def test_same_precision_same_machine_same_bytes_whatever_the_writers(tmp_path):
    runs = [_export(tmp_path, f"w{writers}", "--precision", "bfloat16", "--writers", str(writers), "--format", "both")
            for writers in (0, 1, 2)]
    shards = {(run / "part-00000.parquet").read_bytes() for run in runs}
    assert len(shards) == 1
    pngs = [sorted((p.relative_to(run).as_posix(), p.read_bytes()) for p in run.rglob("*.png")) for run in runs]
    assert len(pngs[0]) == 600 and pngs[0] == pngs[1] == pngs[2]
    manifest = json.loads((runs[0] / "manifest.json").read_text())
    assert manifest["inference"]["precision"] == "bfloat16"
    assert manifest["inference"]["reproducible"] == "same bytes on this machine"
