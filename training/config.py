"""The config of a pre-training or instruction-tuning job (jobs.pretrain, jobs.finetune)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mimir_model.sonar.config import SonarFiles
from mimir_model.train import TrainConfig
from pipelines.stage_configs import EmbedConfig, SegmentConfig
from pipelines.streams.runtime_stream import RuntimeDataConfig
from storage.paths import Input, Output, Scratch
from training.metrics import TrackingConfig


@dataclass
class PretrainJobConfig:
    run_name: str = "pretrain"  # the run's folder under storage_path; the same name resumes it
    storage_path: Output = "build/demo/checkpoints"  # local directory or s3://bucket/prefix
    # "shards": read the committed embedding set `shards`; "runtime": embed `runtime.inputs`
    # while training.
    data: Literal["shards", "runtime"] = "shards"
    shards: Input = "build/demo/shards"  # the committed embedding set (data: shards)
    runtime: RuntimeDataConfig = field(default_factory=RuntimeDataConfig)
    # The models of the run-time stream (data: runtime).
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    sonar: SonarFiles = field(default_factory=SonarFiles)
    normalizer: Input = "build/demo/normalizer.safetensors"  # fitted by jobs.fit_normalizer
    num_workers: int = 2  # Ray Train workers (one per GPU at scale)
    use_gpu: bool = False  # one GPU (share) per worker, NCCL
    cpus_per_worker: float = 1  # CPUs each Train worker reserves
    # GPU share of a worker (with use_gpu): below 1 lets run-time SaT/SONAR actors share the
    # GPUs with training.
    gpus_per_worker: float = 1
    # Worker-group restarts from the last checkpoint before the run fails: resuming is exact,
    # so a lost node or an object store down during a checkpoint costs minutes, not the run.
    max_failures: int = 3
    # A worker keeps up to this many MB of its documents in memory after reading them once.
    cache_data_mb: int = 256
    # End this run at this step (with a checkpoint) although train.steps is further, e.g. for
    # a time-boxed allocation; re-running the same run continues. None: run to train.steps.
    stop_at_step: int | None = None
    # False: write no checkpoint at all; each worker writes its loss history (with each
    # step's seconds) to <storage_path>/<run_name>/history/rank-N.json at the end instead:
    # benchmarks of the 1.6B model, whose checkpoint (optimizer included) is over 20 GB.
    checkpoints: bool = True
    # Record every consumed sequence id in the checkpoints (for audits and resume tests).
    log_sequence_ids: bool = False
    # A checkpoint folder (written by this job) whose model weights start a new run, e.g.
    # instruction tuning from pre-training; the optimizer and schedule start afresh. Ignored
    # when the run resumes from its own checkpoint.
    init_from: Input | None = None
    cache_dir: Scratch = "build/cache"  # where remote files are downloaded
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
