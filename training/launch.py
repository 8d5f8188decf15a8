"""Launching a pre-training or instruction-tuning run on Ray Train: check everything that can
be checked before any worker (or GPU) starts, build the run-time stream if the run embeds while
training, start the TorchTrainer (training/worker.py) and return the final checkpoint's URI.

Re-running with the same run_name and storage_path resumes from the latest checkpoint.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq

import storage
from jobkit.cluster import init_ray
from jobkit.config import to_dict
from mimir_model.checkpoint import latest_checkpoint, trained_keys
from mimir_model.normalizer import RobustNormalizer
from pipelines import shards
from pipelines.counts import format_summary
from pipelines.counts import StageCounts
from pipelines.ray_stages import CountsSink, collect_counts, first_batch_times, stage_seconds
from pipelines.streams.runtime_stream import SplitEveryRow, build_dataset, input_files
from storage.fetch import fetch
from storage.paths import absolute_paths
from training.config import PretrainJobConfig
from training.worker import history_uri, train_loop_per_worker

if TYPE_CHECKING:
    import ray

log = logging.getLogger(__name__)


def check_finetune(cfg: PretrainJobConfig) -> None:
    """Instruction tuning starts from a pre-training checkpoint and reads instruction shards."""
    if not cfg.init_from:
        raise ValueError("instruction tuning starts from a pre-training checkpoint: set "
                         "init_from=URI (printed at the end of jobs.pretrain)")
    if cfg.data != "shards":
        raise ValueError("instruction tuning reads instruction shards (jobs.embed_instruct), "
                         f"which mark each instance's context; data={cfg.data!r} streams "
                         "pre-training documents only")


def preflight(cfg: PretrainJobConfig) -> None:
    """Fail with a clear message before any worker (or GPU) starts: missing shards, inputs or
    normalizer, embedding dimensions that disagree, no documents, a missing bucket."""
    if cfg.data not in ("shards", "runtime"):
        raise ValueError(f"data must be shards or runtime, not {cfg.data!r}")
    if cfg.data == "shards":
        dim = _check_shards(cfg)
        normalizer = RobustNormalizer.load(fetch(cfg.normalizer, cfg.cache_dir))
        if normalizer.dim != dim:
            raise ValueError(f"normalizer {cfg.normalizer} is for dimension {normalizer.dim}, "
                             f"the shards at {cfg.shards} have dimension {dim}")
    else:
        files = input_files(cfg.runtime)
        fetch(cfg.normalizer, cfg.cache_dir)  # its dimension is checked on the first document
        log.info("training on documents embedded at run time from %d input files", len(files))
    if cfg.init_from:
        fetch(cfg.init_from, cfg.cache_dir)  # a missing start checkpoint fails here, not later
    if cfg.storage_path.startswith("s3://"):
        store_fs, store_path = storage.resolve(cfg.storage_path)
        bucket = store_path.split("/", 1)[0]
        if store_fs.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"bucket {bucket!r} of storage_path {cfg.storage_path} "
                                    "does not exist")


def _check_shards(cfg: PretrainJobConfig) -> int:
    """The shard set's embedding dimension, after checking every file has it and the set has
    documents."""
    manifest = shards.read_manifest(cfg.shards)
    fs, _ = storage.resolve(cfg.shards)
    for path in shards.data_paths(cfg.shards):
        dim = pq.read_schema(path, filesystem=fs).field("embeddings").type.value_type.list_size
        if dim != manifest.dim:
            raise ValueError(f"shard {path} has embeddings of dimension {dim}, the manifest "
                             f"says {manifest.dim}")
    documents = sum(f.rows for f in manifest.data_files)
    if documents == 0:
        raise ValueError(f"the shard set at {cfg.shards} has no documents")
    log.info("training on %d documents of dimension %d from %s (run %s)", documents,
             manifest.dim, cfg.shards, manifest.run_id)
    return manifest.dim


def _stream(cfg: PretrainJobConfig, sink) -> "ray.data.Dataset":
    """The run-time stream, without the documents the run's latest checkpoint has trained."""
    checkpoint = latest_checkpoint(cfg.storage_path, cfg.run_name)
    trained = trained_keys(checkpoint) if checkpoint else np.zeros(0, np.int64)
    if checkpoint:
        log.info("%d documents were trained on before %s; the stream leaves them out",
                 len(trained), checkpoint)
    # One folder per invocation: a re-run reads the same bad rows again.
    quarantine = storage.join(cfg.storage_path, cfg.run_name, "quarantine", shards.new_run_id())
    return build_dataset(cfg.runtime, cfg.segment, cfg.embed, cfg.sonar, trained, quarantine,
                         sink, cfg.cache_dir)


@dataclass
class Outcome:
    """What a training run ended with: the final checkpoint (None with `checkpoints: false`),
    the last reported metrics (with rank 0's loss history when there is no checkpoint), and for
    the run-time stream what each stage counted and its busy seconds."""

    uri: str | None
    metrics: dict
    counts: list[StageCounts] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_started: dict[str, float] = field(default_factory=dict)  # first batch, wall time


def run(cfg: PretrainJobConfig) -> str:
    """Train (or resume) and return the URI of the final checkpoint."""
    return train(cfg).uri


def train(cfg: PretrainJobConfig) -> Outcome:
    """Train (or resume): what `run` and jobs.pretrain do, with the whole outcome."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    absolute_paths(cfg)
    init_ray()
    preflight(cfg)

    sink = CountsSink.remote() if cfg.data == "runtime" else None
    store_fs, store_path = storage.resolve(cfg.storage_path)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=to_dict(cfg),
        datasets={"train": _stream(cfg, sink)} if sink else None,
        dataset_config=SplitEveryRow() if sink else None,
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={
                                         "CPU": cfg.cpus_per_worker,
                                         **({"GPU": cfg.gpus_per_worker} if cfg.use_gpu else {})}),
        run_config=RunConfig(
            name=cfg.run_name,
            storage_path=store_path,
            storage_filesystem=store_fs if isinstance(store_fs, pafs.S3FileSystem) else None,
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints),
            failure_config=FailureConfig(max_failures=cfg.max_failures)),
    )
    result = trainer.fit()
    counts, seconds, started = [], {}, {}
    if sink:
        counts = collect_counts(sink)
        seconds, started = stage_seconds(sink), first_batch_times(sink)
        log.info("what the run-time stages did:\n%s", format_summary(counts))
        ray.kill(sink)
    metrics = dict(result.metrics or {})
    if not cfg.checkpoints:
        fs, path = storage.resolve(history_uri(cfg, 0))
        history = json.loads(storage.read_bytes(fs, path))
        metrics.update(history=history, step=history[-1]["step"] if history else 0)
        log.info("run ended at step %s without checkpoints (checkpoints: false)",
                 metrics.get("step"))
        return Outcome(None, metrics, counts, seconds, started)
    if result.checkpoint is None:
        raise RuntimeError(f"training run {cfg.run_name} ended without a checkpoint")
    path = result.checkpoint.path
    uri = f"s3://{path}" if cfg.storage_path.startswith("s3://") else path
    log.info("final checkpoint: %s (step %s, loss %.4f)", uri, metrics.get("step"),
             metrics.get("loss", float("nan")))
    return Outcome(uri, metrics, counts, seconds, started)
