"""Generation on a Ray cluster (``pipeline.generate --ray ADDRESS``): one Ray task per shard.

Each task loads G from the checkpoint bytes the driver put in Ray's object store, writes its shard with the
single-machine path (:func:`pipeline.generation.staging.export_shards`) into a local temporary folder, and
uploads it to the export's staging location (:class:`pipeline.generation.destination.Destination`); the
driver (``pipeline.generate``) writes manifest.json and the dataset card once every shard has landed, then
publishes. A shard is a pure function of (checkpoint, seed, layout, precision) (:mod:`.sampling`), so a task
that Ray retries after its worker died rewrites the same bytes under the same names.

Ray tasks, resources and retries: https://docs.ray.io/en/latest/ray-core/tasks.html and
https://docs.ray.io/en/latest/ray-core/fault_tolerance/tasks.html. Ray is an optional dependency
(``pip install -e ".[ray]"``), imported only in this module's functions.
"""

from __future__ import annotations

import logging
import re
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import torch
from tqdm import tqdm

from pipeline.core.utils import PipelineError, get_device
from pipeline.generation.destination import Destination
from pipeline.generation.inference import InferenceGenerator
from pipeline.generation.manifest import inference_record
from pipeline.generation.sampling import LatentStreams, ShardLayout
from pipeline.generation.staging import default_writers, export_shards, keep_first_rows, open_writer
from pipeline.training.checkpoints import load_classifier, load_generator
from pipeline.training.networks import NUM_CLASSES

log = logging.getLogger(__name__)

#: How long to wait for a TCP connection to the cluster's address before calling it unreachable (seconds).
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class ShardJob:
    """What every shard task of one export shares (the ``pipeline.generate`` options, resolved)."""

    layout: ShardLayout
    seed: int
    fmt: str
    latent_scale: float
    batch_size: int
    precision: str
    reference: bool
    device: str
    writers: int | None
    min_confidence: float
    threads: int


@dataclass(frozen=True)
class RayOptions:
    """Where and how the tasks run: ``address`` (``local``, ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``),
    logical CPUs and GPUs per task (Ray's ``num_cpus``/``num_gpus``), and ``max_retries`` after a worker died
    or an I/O error (``OSError``)."""

    address: str
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    max_retries: int = 3

    def record(self) -> dict:
        """The manifest's and the metrics' ``ray`` entry (without the nodes, which only the tasks know)."""
        import ray

        return {"address": self.address, "ray_version": ray.__version__, "cpus_per_task": self.cpus_per_task,
                "gpus_per_task": self.gpus_per_task, "max_retries": self.max_retries}


def connect(address: str) -> None:
    """Start a Ray cluster on this machine (``local``: all its cores) or join an existing one.

    Raises:
        PipelineError: Ray is not installed, the address is malformed or unreachable (checked with a TCP
            connection first, so a wrong address fails within :data:`CONNECT_TIMEOUT` s), or Ray refuses it.
    """
    try:
        import ray
    except ImportError:
        raise PipelineError("--ray needs Ray: pip install -e '.[ray]'") from None
    if address != "local" and address != "auto":
        host, _, port = address.removeprefix("ray://").rpartition(":")
        if not host or not port.isdigit():
            raise PipelineError(f"--ray {address}: expected local, auto, HOST:PORT or ray://HOST:PORT")
        try:
            socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
        except OSError as error:
            raise PipelineError(f"cannot reach the Ray cluster at {address}: {error.strerror or error}") from None
    try:  # "local" always starts a new cluster, even where RAY_ADDRESS names one
        ray.init(address=address, include_dashboard=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise PipelineError(f"cannot join the Ray cluster at {address}: {_root_cause(error)}") from None


def _root_cause(error: BaseException) -> str:
    """The first sentence of the innermost error behind ``error``; Ray quotes it as text in its own message
    ("Last connection error: Traceback ... AuthenticationError: ..."), so the last such line wins."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = [line for line in str(error).splitlines() if line.strip()]
    quoted = [line for line in lines if not line[0].isspace() and re.match(r"^[\w.]*Error: ", line)]
    text = (quoted or lines or [type(error).__name__])[-1 if quoted else 0]
    return " ".join(text.split()).split(". ")[0]


def disconnect() -> None:
    """Leave the cluster (and stop it if :func:`connect` started it)."""
    import ray

    ray.shutdown()


def run_on_ray(options: RayOptions, job: ShardJob, shards: list[int], checkpoint: str | Path, judge: str | Path | None,
               staging: Destination) -> tuple[dict, dict]:
    """Join (or start) the cluster, run :func:`export_on_ray` with the checkpoint files' bytes, and leave.

    Returns:
        ``(export_on_ray's result, the manifest's "ray" record: RayOptions.record() + "tasks", "nodes")``.
    Raises:
        PipelineError: as :func:`connect` and :func:`export_on_ray`.
    """
    connect(options.address)
    try:
        done = export_on_ray(job, shards, Path(checkpoint).read_bytes(),
                             None if judge is None else Path(judge).read_bytes(), staging, options)
        return done, {**options.record(), "tasks": len(shards), "nodes": done["nodes"]}
    finally:
        disconnect()


def write_shard(job: ShardJob, shard: int, generator_bytes: bytes, judge_bytes: bytes | None,
                staging: Destination, keep_first: int = 2000) -> dict:
    """One Ray task: sample shard ``shard`` of ``job.layout``, write it to a local temporary folder and upload
    it to ``staging``.

    Returns:
        :func:`export_shards`' result for this shard plus ``"inference"`` (:func:`inference_record`) and
        ``"node"`` (the host name it ran on).
    """
    torch.set_num_threads(job.threads)
    device = get_device(job.device)
    with tempfile.TemporaryDirectory(prefix="generate-shard-") as tmp:
        (Path(tmp) / "generator.pt").write_bytes(generator_bytes)
        generator = InferenceGenerator(load_generator(Path(tmp) / "generator.pt", device)[0], job.precision,
                                       reference=job.reference)
        curator = None
        if judge_bytes is not None:
            (Path(tmp) / "judge.pt").write_bytes(judge_bytes)
            curator = load_classifier(Path(tmp) / "judge.pt", device)
        root = Path(tmp) / "export"
        root.mkdir()
        latents = LatentStreams(job.seed, generator.config.z_dim, scale=job.latent_scale)
        writers = default_writers(device) if job.writers is None else job.writers
        writer = open_writer(root, job.fmt, curator is not None, job.seed, writers)
        try:
            done = export_shards(generator, latents, job.layout, [shard], job.batch_size, writer, root, curator,
                                 job.min_confidence, keep_first=keep_first, progress=False)
        finally:
            writer.close()
        staging.upload(root)
    return {**done, "inference": inference_record(generator, device), "node": socket.gethostname()}


def export_on_ray(job: ShardJob, shards: list[int], generator_bytes: bytes, judge_bytes: bytes | None,
                  staging: Destination, options: RayOptions, keep_first: int = 2000) -> dict:
    """Run :func:`write_shard` for every shard on the connected cluster and gather the results in shard order.

    Returns:
        the shape of :func:`export_shards`' result (``shards``, ``draws``, ``kept``, ``first``) plus
        ``"inference"`` (the tasks' distinct :func:`inference_record` s) and ``"nodes"`` (host names).
    Raises:
        PipelineError: a task failed for good (its error, one line), or a shard is not at ``staging`` after its
            task returned (a local destination on a cluster of several machines without a shared file system).
    """
    import ray

    _check_feasible(options)
    task = ray.remote(num_cpus=options.cpus_per_task, num_gpus=options.gpus_per_task,
                      max_retries=options.max_retries, retry_exceptions=[OSError])(write_shard)
    generator_ref = ray.put(generator_bytes)
    judge_ref = None if judge_bytes is None else ray.put(judge_bytes)
    pending = {task.remote(job, shard, generator_ref, judge_ref, staging, keep_first): shard for shard in shards}
    results = {}
    total = sum(len(job.layout.shard_rows(s)) for s in shards)
    try:
        with tqdm(total=total, desc=f"generate on Ray ({len(shards)} tasks)", unit="img", mininterval=1.0) as bar:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                shard = pending.pop(ready[0])
                results[shard] = _task_result(ready[0], shard)
                bar.update(results[shard]["shards"][0]["rows"])
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    merged = {"shards": [], "draws": np.zeros(NUM_CLASSES, np.int64), "kept": np.zeros(NUM_CLASSES, np.int64),
              "first": [], "inference": [], "nodes": sorted({r["node"] for r in results.values()})}
    for shard in shards:
        result = results[shard]
        merged["shards"] += result["shards"]
        merged["draws"] += result["draws"]
        merged["kept"] += result["kept"]
        for batch in result["first"]:
            keep_first_rows(merged["first"], batch, keep_first)
        if result["inference"] not in merged["inference"]:
            merged["inference"].append(result["inference"])
    _check_landed(staging, merged["shards"])
    return merged


def _check_feasible(options: RayOptions) -> None:
    """Ray leaves a task no node can host waiting for one to join: on a cluster this process started
    (``local``) none ever will, so say so now; elsewhere an autoscaler may add one, so only warn."""
    import ray

    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    if any(r.get("CPU", 0) >= options.cpus_per_task and r.get("GPU", 0) >= options.gpus_per_task for r in nodes):
        return
    largest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
    text = (f"no node of the Ray cluster has {options.cpus_per_task:g} CPUs and {options.gpus_per_task:g} GPUs for "
            f"a shard task (largest: {largest.get('CPU', 0):g} CPUs, {largest.get('GPU', 0):g} GPUs)")
    if options.address == "local":
        raise PipelineError(f"{text}; lower --ray-cpus-per-task or --ray-gpus-per-task")
    log.warning("%s: the tasks wait until such a node joins", text)


def _task_result(ref, shard: int) -> dict:
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, (PipelineError, OSError)):
            raise cause from None
        raise PipelineError(f"shard {shard} failed on Ray: {_first_line(cause or error)}") from None
    except ray.exceptions.RayError as error:  # the worker or its node died more often than max_retries
        raise PipelineError(f"shard {shard} failed on Ray: {_first_line(error)}") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _check_landed(staging: Destination, shards: list[dict]) -> None:
    for shard in shards:
        if shard["file"] is None:
            continue
        info = staging.filesystem.get_file_info(f"{staging.path}/{shard['file']}")
        if info.type != pafs.FileType.File or info.size != shard["bytes"]:
            raise PipelineError(f"shard {shard['index']} was written but is not at {staging.url}: on a cluster of "
                                "several machines, write to object storage (s3://...) or a shared file system")
