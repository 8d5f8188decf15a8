"""Launching a pre-training or instruction-tuning run on Ray Train: check everything that can
be checked before any worker (or GPU) starts, build the run-time stream if the run embeds while
training, start the TorchTrainer (training/worker.py) and return the final checkpoint's URI.

Re-running with the same run_name and storage_path resumes from the latest checkpoint.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq

import storage
from jobkit.cluster import init_ray
from jobkit.config import to_dict
from jobkit.provenance import provenance
from mimir_model.checkpoint import (MODEL_FILE, REJECTED, RUN_INFO, TRAINER_STATE,
                                    latest_checkpoint, read_history_at, rejection, trained_keys)
from mimir_model.normalizer import RobustNormalizer
from mimir_model.train import build_model, deepspeed_config
from mimir_model.two_tower import preset
from pipelines import shards
from pipelines.counts import StageCounts, format_summary
from pipelines.ray_stages import (CountsSink, Progress, collect_counts, first_batch_times,
                                  stage_seconds)
from pipelines.streams.runtime_stream import SplitEveryRow, build_dataset, input_files
from storage.cache import fetch, sha256_file
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
        # Readable and finite; its dimension is checked against the first document.
        dim = RobustNormalizer.load(fetch(cfg.normalizer, cfg.cache_dir)).dim
        log.info("training on documents embedded at run time from %d input files", len(files))
    if cfg.init_from:
        # A missing start checkpoint, or one of another shape, fails here, not in every worker.
        _check_start_shapes(cfg, fetch(cfg.init_from, cfg.cache_dir), dim)
    if cfg.storage_path.startswith("s3://"):
        store_fs, store_path = storage.resolve(cfg.storage_path)
        bucket = store_path.split("/", 1)[0]
        if store_fs.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"bucket {bucket!r} of storage_path {cfg.storage_path} "
                                    "does not exist")


def _check_start_shapes(cfg: PretrainJobConfig, start: Path, dim: int) -> None:
    """The weights at init_from fit the model this run builds (train.model, model_overrides,
    the embedding dimension): compared tensor by tensor (the model on the meta device, the
    weights memory-mapped)."""
    import torch

    weights = start / MODEL_FILE
    if not weights.exists():
        raise FileNotFoundError(f"init_from {cfg.init_from} has no {MODEL_FILE}: name a "
                                "checkpoint folder written by jobs.pretrain")
    with torch.device("meta"):
        want = {k: tuple(v.shape) for k, v in build_model(cfg.train, dim).state_dict().items()}
    have = {k: tuple(v.shape) for k, v in torch.load(weights, mmap=True, weights_only=True,
                                                      map_location="cpu").items()}
    wrong = [f"{k} {have.get(k)} != {v}" for k, v in want.items() if have.get(k) != v]
    wrong += [f"{k} {v} not in this model" for k, v in have.items() if k not in want]
    if wrong:
        raise ValueError(f"init_from {cfg.init_from} holds a model of another shape than "
                         f"train.model={cfg.train.model!r} with model_overrides="
                         f"{cfg.train.model_overrides} at dimension {dim} builds "
                         f"({len(wrong)} tensors differ: {'; '.join(wrong[:3])}); start from a "
                         "checkpoint of the same model, or set train.model to its model")


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


def _stream(cfg: PretrainJobConfig, sink, resume_from: str | None) -> "ray.data.Dataset":
    """The run-time stream, without the documents checkpoint `resume_from` has trained."""
    trained = trained_keys(resume_from) if resume_from else np.zeros(0, np.int64)
    if resume_from:
        log.info("%d documents were trained on before %s; the stream leaves them out",
                 len(trained), resume_from)
    # One folder per invocation: a re-run reads the same bad rows again.
    quarantine = storage.join(cfg.storage_path, cfg.run_name, "quarantine", shards.new_run_id())
    return build_dataset(cfg.runtime, cfg.segment, cfg.embed, cfg.sonar, trained, quarantine,
                         sink, cfg.cache_dir)


def run_info(cfg: PretrainJobConfig) -> dict:
    """What every checkpoint of the run records (mimir_model/checkpoint.py RUN_INFO), so that
    generation and evaluation need only the checkpoint: the job's effective config, the model
    config, the normalizer, the models the embeddings were made with (as the shard set recorded
    them, or the run-time stream's), the training data, whether it is instruction-tuned
    (trained on instruction shards, or started from an instruction-tuned checkpoint), the
    start checkpoint's record, the merged DeepSpeed config (built here, so a bad one fails
    before any worker starts), the commit and package versions."""
    normalizer = fetch(cfg.normalizer, cfg.cache_dir)
    dim = RobustNormalizer.load(normalizer).dim
    start = _start_record(cfg)
    if cfg.data == "shards":
        manifest = shards.read_manifest(cfg.shards)
        meta = manifest.meta
        models = meta.get("models") or {
            "sonar": asdict(cfg.sonar), "segment_model": cfg.segment.model,
            "source": "the job config (the shard set does not record its models)"}
        fs, _ = storage.resolve(cfg.shards)
        paths = shards.data_paths(cfg.shards)
        instruct_columns = bool(paths) and "n_context" in pq.read_schema(
            paths[0], filesystem=fs).names
        instruction_tuned = "mixture" in meta or instruct_columns
        data = {"kind": "shards", "uri": cfg.shards, "run_id": manifest.run_id,
                "documents": sum(f.rows for f in manifest.data_files),
                "mixture": meta.get("mixture")}
    else:
        models = {"sonar": asdict(cfg.sonar), "segment_model": cfg.segment.model}
        instruction_tuned = False
        data = {"kind": "runtime", "inputs": [asdict(i) for i in cfg.runtime.inputs]}
    if start and start["run_info"]:
        instruction_tuned = instruction_tuned or start["run_info"].get("instruction_tuned", False)
    return {"job_config": to_dict(cfg),
            "model_config": asdict(preset(cfg.train.model, **{"sonar_dim": dim,
                                                                **cfg.train.model_overrides})),
            "normalizer": {"uri": cfg.normalizer, "sha256": sha256_file(normalizer)},
            "models": models, "data": data, "instruction_tuned": instruction_tuned,
            "init_from": start, "deepspeed_config": deepspeed_config(cfg.train), **provenance()}


def _start_record(cfg: PretrainJobConfig) -> dict | None:
    """The start checkpoint (init_from): its URI, step and record, if it has one."""
    if not cfg.init_from:
        return None
    local = fetch(cfg.init_from, cfg.cache_dir)
    state = local / TRAINER_STATE
    info = local / RUN_INFO
    return {"uri": cfg.init_from,
            "step": json.loads(state.read_text())["step"] if state.exists() else None,
            "run_info": json.loads(info.read_text()) if info.exists() else None}


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
    """Train (or resume): what `run` and jobs.pretrain do, with the whole outcome. A checkpoint
    the workers reject on resuming (training/worker.py) is marked so, and training starts again
    from the newest one left."""
    from ray.train import TrainingFailedError

    absolute_paths(cfg)
    init_ray()
    preflight(cfg)
    info = run_info(cfg)
    while True:
        rejected = _rejected(cfg)
        resume_from = latest_checkpoint(cfg.storage_path, cfg.run_name)
        if resume_from is None and rejected:
            raise RuntimeError(f"every checkpoint of run {cfg.run_name} under "
                               f"{cfg.storage_path} is rejected (see {', '.join(rejected)}); "
                               "move them away to start the run over, or use another run_name")
        try:
            return _fit(cfg, info, resume_from)
        except TrainingFailedError:
            newly = sorted(set(_rejected(cfg)) - set(rejected))
            if not newly:
                raise
            log.warning("rejected on resuming: %s; starting again from the newest checkpoint "
                        "left", "; ".join(f"{p} ({rejection(p.rsplit('/', 1)[0])})"
                                          for p in newly))


def _rejected(cfg: PretrainJobConfig) -> list[str]:
    """The rejection marks of the run's checkpoints (mimir_model.checkpoint.reject)."""
    fs, base = storage.resolve(storage.join(cfg.storage_path, cfg.run_name))
    scheme = "s3://" if cfg.storage_path.startswith("s3://") else ""
    return [scheme + i.path for i in fs.get_file_info(
        pafs.FileSelector(base, recursive=True, allow_not_found=True)) if i.base_name == REJECTED]


def _fit(cfg: PretrainJobConfig, info: dict, resume_from: str | None) -> Outcome:
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    start_step = len(read_history_at(resume_from)) if resume_from else 0
    t0 = time.perf_counter()

    sink = CountsSink.remote() if cfg.data == "runtime" else None
    store_fs, store_path = storage.resolve(cfg.storage_path)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"job": to_dict(cfg), "run_info": info, "resume_from": resume_from},
        datasets={"train": _stream(cfg, sink, resume_from)} if sink else None,
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
    counts, seconds, started = [], {}, {}
    try:
        if sink:
            with Progress(sink, f"run-time stream of {cfg.run_name}"):
                result = trainer.fit()
        else:
            result = trainer.fit()
    finally:
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
    history = read_history_at(uri)
    elapsed = time.perf_counter() - t0
    embeddings = sum(h["embeddings"] for h in history[start_step:])
    log.info("run %s: steps %d -> %d (%d this run), %d embeddings in %.1f s (%.0f "
             "embeddings/s), final loss %.4f; final checkpoint: %s", cfg.run_name, start_step,
             len(history), len(history) - start_step, embeddings, elapsed,
             embeddings / max(elapsed, 1e-9), history[-1]["loss"] if history else float("nan"),
             uri)
    return Outcome(uri, metrics, counts, seconds, started)
