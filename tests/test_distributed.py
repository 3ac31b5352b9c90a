"""Generation on a local Ray cluster and to URL destinations (a local folder, file://, fsspec's memory://, and an
S3-compatible moto server on localhost): the same bytes as a run on one machine, retries after a killed worker,
one-line errors that leave nothing behind."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from pipeline.core.utils import PipelineError
from pipeline.generation.destination import Destination
from tests.conftest import REPO, assert_one_line_error, run_module

#: The committed generator: big enough that a shard task runs for seconds (the kill test needs that).
GENERATOR = REPO / "models/generator.pt"


def generate(out, *extra, env=None):
    return run_module("pipeline.generate", "--checkpoint", str(GENERATOR), "--judge", str(REPO / "models/judge.pt"),
                      "--out", str(out), "--precision", "float32", *extra, env=env)


def shard_bytes(files: dict[str, bytes]) -> dict[str, bytes]:
    """Every file of an export but the manifest and the card, which say how the run was made (a Ray run's
    code revision includes the Ray module; its manifest says how it was spread)."""
    return {name: data for name, data in files.items() if name not in ("manifest.json", "README.md")}


def local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def remote_files(destination: Destination) -> dict[str, bytes]:
    infos = destination.filesystem.get_file_info(pafs.FileSelector(destination.path, recursive=True))
    return {i.path[len(destination.path) + 1:]: destination.filesystem.open_input_stream(i.path).read()
            for i in infos if i.type == pafs.FileType.File}


@pytest.fixture(scope="module")
def single_run(tmp_path_factory) -> Path:
    """The reference: three shards, Parquet and image folder, written by one process."""
    out = tmp_path_factory.mktemp("single") / "export"
    result = generate(out, "--per-class", "300", "--num-shards", "3", "--format", "both", "--seed", "7")
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def s3_server():
    """A moto S3 server on localhost with a bucket ``digits``; yields the environment that points clients at it."""
    pytest.importorskip("moto")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    import boto3

    boto3.client("s3").create_bucket(Bucket="digits")
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


def test_ray_run_equals_the_single_process_run_byte_for_byte(tmp_path, single_run):
    pytest.importorskip("ray")
    out = tmp_path / "export"
    result = generate(out, "--per-class", "300", "--num-shards", "3", "--format", "both", "--seed", "7",
                      "--ray", "local")
    assert result.returncode == 0, result.stderr
    assert shard_bytes(local_files(out)) == shard_bytes(local_files(single_run))
    manifest, reference = (json.loads((root / "manifest.json").read_text()) for root in (out, single_run))
    assert manifest["ray"]["tasks"] == 3 and manifest["ray"]["address"] == "local"
    assert manifest["shards"] == reference["shards"] and manifest["quality"] == reference["quality"]
    assert "pipeline.generation.distributed" in manifest["code_revision"]["modules"]
    assert "pipeline.generation.distributed" not in reference["code_revision"]["modules"]  # see pipeline/generate.py
    same = lambda m: {k: v for k, v in m.items() if k not in ("ray", "code_revision")}  # noqa: E731
    assert same(manifest) == same(reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no staging folder left


def test_s3_destination_with_and_without_ray(s3_server, single_run):
    pytest.importorskip("ray")
    common = ["--per-class", "300", "--num-shards", "3", "--format", "parquet", "--seed", "7"]
    parquet = {name: data for name, data in local_files(single_run).items() if name.endswith(".parquet")}
    for url, extra in [("s3://digits/one-machine", []), ("s3://digits/on-ray", ["--ray", "local"])]:
        result = generate(url, *common, *extra, env=s3_server)
        assert result.returncode == 0, result.stderr
        files = remote_files(Destination.parse(url))
        assert sorted(files) == ["README.md", "manifest.json", *sorted(parquet)]
        assert {name: files[name] for name in parquet} == parquet
    bucket = Destination.parse("s3://digits")
    names = {i.base_name for i in bucket.filesystem.get_file_info(pafs.FileSelector("digits"))}
    assert names == {"one-machine", "on-ray"}  # the staging prefixes are gone
    result = generate("s3://digits/one-machine", *common, env=s3_server)
    assert_one_line_error(result, "s3://digits/one-machine already exists", "--overwrite")


def test_killed_worker_is_retried_and_the_export_is_unchanged(tmp_path):
    pytest.importorskip("ray")
    args = ["--per-class", "4000", "--num-shards", "2", "--seed", "5"]
    reference, out = tmp_path / "reference", tmp_path / "ray"
    assert generate(reference, *args).returncode == 0
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    command = [sys.executable, "-m", "pipeline.generate", "--checkpoint", str(GENERATOR), "--out", str(out),
               "--judge", str(REPO / "models/judge.pt"), "--precision", "float32", "--ray", "local", *args]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    victim, deadline = None, time.time() + 120
    while victim is None and process.poll() is None and time.time() < deadline:
        victim = next(iter(_pids_titled("ray::write_shard")), None)
        time.sleep(0.05)
    assert victim is not None, "no shard task was seen running"
    time.sleep(0.5)  # well inside the shard: it samples 20,000 images
    os.kill(victim, signal.SIGKILL)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert local_files(out).keys() == local_files(reference).keys()
    assert shard_bytes(local_files(out)) == shard_bytes(local_files(reference)) != {}


def _pids_titled(title: str) -> list[int]:
    """Processes whose command line starts with ``title`` (Ray names a worker after the task it runs)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(title.encode()):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.parametrize("address, fragment", [("127.0.0.1:{port}", "cannot reach the Ray cluster"),
                                               ("no-port-here", "expected local, auto, HOST:PORT")])
def test_bad_ray_address_is_one_line_and_leaves_nothing(tmp_path, address, fragment):
    pytest.importorskip("ray")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "out"
    result = generate(out, "--per-class", "10", "--ray", address.format(port=port))
    assert_one_line_error(result, fragment)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra", [["--ray-gpus-per-task", "1"], ["--ray-cpus-per-task", "64"]])
def test_a_task_no_local_node_can_host_is_one_line_not_a_hang(tmp_path, extra):
    pytest.importorskip("ray")
    if extra[0] == "--ray-gpus-per-task" and torch_cuda_available():
        pytest.skip("this machine has a GPU")
    result = generate(tmp_path / "out", "--per-class", "10", "--ray", "local", *extra)
    assert_one_line_error(result, "no node of the Ray cluster has", "lower --ray-cpus-per-task")
    assert list(tmp_path.iterdir()) == []


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def test_file_url_destination_with_new_parent_folders(tmp_path, single_run):
    result = generate(f"file://{tmp_path}/a/b/export", "--per-class", "300", "--num-shards", "3", "--format", "both",
                      "--seed", "7")
    assert result.returncode == 0, result.stderr
    assert local_files(tmp_path / "a/b/export") == local_files(single_run)
    assert sorted(p.name for p in (tmp_path / "a/b").iterdir()) == ["export"]


def test_without_ray_installed_one_machine_works_and_ray_asks_for_the_extra(tmp_path):
    # sys.modules["ray"] = None makes `import ray` fail as it does where Ray is not installed
    script = ("import sys; sys.modules['ray'] = None; sys.argv[0] = 'generate'; "
              "from pipeline.core.cli import run; from pipeline.generate import main; run(main)")
    common = ["--checkpoint", str(GENERATOR), "--per-class", "5", "--precision", "float32"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    plain = subprocess.run([sys.executable, "-c", script, *common, "--out", str(tmp_path / "plain")], cwd=REPO,
                           env=env, capture_output=True, text=True)
    assert plain.returncode == 0, plain.stderr
    on_ray = subprocess.run([sys.executable, "-c", script, *common, "--out", str(tmp_path / "ray"), "--ray", "local"],
                            cwd=REPO, env=env, capture_output=True, text=True)
    assert_one_line_error(on_ray, "--ray needs Ray", ".[ray]")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]


def test_destination_urls(tmp_path):
    local = Destination.parse(tmp_path / "a")
    assert local.is_local and local.path == str(tmp_path / "a") and not local.exists()
    url = Destination.parse(f"file://{tmp_path}/b")
    assert url.is_local and url.path == f"{tmp_path}/b"
    memory = Destination.parse("memory://bucket/digits")
    assert not memory.is_local and memory.path.endswith("bucket/digits")
    with pytest.raises(PipelineError, match="no file system for this URL"):
        Destination.parse("nosuchscheme://x/y")
    with pytest.raises(PipelineError, match="inside the bucket"):
        Destination.parse("memory://bucket").staging()


def test_publish_to_an_object_store_puts_the_manifest_last_and_replaces_only_with_overwrite(tmp_path):
    folder = tmp_path / "export"
    (folder / "3").mkdir(parents=True)
    (folder / "part-00000.parquet").write_bytes(b"shard")
    (folder / "3" / "000000.png").write_bytes(b"png")
    (folder / "manifest.json").write_text("{}")
    final = Destination.parse("memory://bucket/digits")
    copied = []
    staging = final.staging()
    staging.upload(folder)
    assert not final.exists() and staging.exists()
    object.__setattr__(final, "filesystem", _Recorder(final.filesystem, copied))
    staging.publish(final, overwrite=False)
    assert copied[-1].endswith("/manifest.json") and len(copied) == 3
    assert remote_files(Destination.parse("memory://bucket/digits")) == local_files(folder)
    assert not staging.exists()
    final = Destination.parse("memory://bucket/digits")
    again = final.staging()
    again.upload(folder)
    with pytest.raises(PipelineError, match="--overwrite"):
        again.publish(final, overwrite=False)
    (folder / "part-00000.parquet").write_bytes(b"new shard")
    again.upload(folder)
    again.publish(final, overwrite=True)
    assert remote_files(Destination.parse("memory://bucket/digits"))["part-00000.parquet"] == b"new shard"


class _Recorder:
    """A file system that records the targets of ``copy_file`` and forwards everything else."""

    def __init__(self, filesystem, copied):
        self._filesystem, self._copied = filesystem, copied

    def copy_file(self, source, target):
        self._copied.append(target)
        return self._filesystem.copy_file(source, target)

    def __getattr__(self, name):
        return getattr(self._filesystem, name)


def test_a_refused_connection_names_ray_s_root_cause():
    from pipeline.generation.distributed import _root_cause

    inner = RuntimeError("Failed to connect to GCS. Last connection error: Traceback (most recent call last):\n"
                         '  File "worker.py", line 1, in init\n'
                         "ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken: Authentication token is "
                         "missing or incorrect. Note: RAY_AUTH_MODE is currently 'disabled'")
    try:
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from inner
    except ConnectionError as error:
        assert _root_cause(error) == ("ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken: "
                                      "Authentication token is missing or incorrect")
    assert _root_cause(ValueError("plain words. More words")) == "plain words"
