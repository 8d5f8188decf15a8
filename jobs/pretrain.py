"""Pre-training job: embedding shards -> Ray Train workers -> DeepSpeed -> checkpoints.

    python -m jobs.pretrain --config jobs/configs/pretrain.yaml [train.steps=40 ...]
    ray job submit --address http://HEAD:8265 --working-dir . -- python -m jobs.pretrain ...

Re-running with the same run_name and storage_path resumes from the latest checkpoint.
The job ends by logging and printing the final checkpoint's URI.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from jobs import config as config_io
from jobs.cluster import init_ray
from mimir_model.diffusion import NoiseSchedule
from mimir_model.normalizer import RobustNormalizer
from mimir_model.sonar.checkpoint import resolve_uri
from mimir_model.train import (TrainConfig, build_engine, build_model, export_model,
                               load_checkpoint, save_checkpoint, sequence_batches, train_step)
from pipelines import shards, storage

log = logging.getLogger("jobs.pretrain")


@dataclass
class PretrainJobConfig:
    run_name: str = "pretrain"
    storage_path: str = "build/demo/checkpoints"  # local directory or s3://bucket/prefix
    shards: str = "build/demo/shards"
    normalizer: str = "build/demo/normalizer.safetensors"
    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1
    max_failures: int = 0
    docs_per_read: int = 64
    # A worker whose data shard fits in this many MB keeps it in memory after the first pass.
    cache_data_mb: int = 256
    cache_dir: str = "build/cache"
    train: TrainConfig = field(default_factory=TrainConfig)


def _all_reduce(values: list[float]) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


class ShardPass:
    """One pass over a worker's data shard. It keeps the documents while they fit in
    `budget` bytes, so that a small shard is read through Ray Data once and later passes
    (epochs) come from memory; `kept` is the full list after a complete pass, else None."""

    def __init__(self, data, docs_per_read: int, budget: int) -> None:
        self.data, self.docs_per_read, self.budget = data, docs_per_read, budget
        self.kept: list | None = None

    def __iter__(self):
        kept, size = [], 0
        for table in self.data.iter_batches(batch_size=self.docs_per_read,
                                            batch_format="pyarrow"):
            for doc in shards.arrow_to_embeddings(table["embeddings"]):
                if kept is not None:
                    size += doc.nbytes
                    if size <= self.budget:
                        kept.append(doc)
                    else:
                        kept = None
                yield doc
        self.kept = kept


def train_loop_per_worker(cfg_dict: dict) -> None:
    """Runs on every Ray Train worker. Every worker takes exactly the same number of optimizer
    steps: at each step the workers agree (one all-reduce) whether all of them still have a
    batch in this pass over the data; if one has run out, the pass ends for all."""
    import ray.train

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = config_io.from_dict(PretrainJobConfig, cfg_dict)
    tc = cfg.train
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    device = ray.train.torch.get_device() if cfg.use_gpu else torch.device("cpu")
    normalizer = RobustNormalizer.load(resolve_uri(cfg.normalizer, Path(cfg.cache_dir)))
    torch.manual_seed(tc.seed)
    engine = build_engine(build_model(tc, normalizer.dim), tc, device)
    schedule = NoiseSchedule()

    step, history = 0, []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state, history = load_checkpoint(engine, Path(d))
        step = state["step"]
        log.info("rank %d resumed at step %d", rank, step)

    data = ray.train.get_dataset_shard("train")
    generator = torch.Generator(device=device)
    dropped = 0
    t0 = time.perf_counter()
    in_memory: list | None = None
    passes = 0
    while step < tc.steps:
        stream = None if in_memory is not None else ShardPass(data, cfg.docs_per_read,
                                                                cfg.cache_data_mb * 2**20)
        if stream is None:
            # Passes from memory are shuffled (seeded by pass), so the batches left over when
            # another worker runs out are not the same documents every time.
            order = np.random.default_rng([tc.seed, rank, passes]).permutation(len(in_memory))
            docs = (in_memory[i] for i in order)
        else:
            docs = iter(stream)
        passes += 1
        batches = sequence_batches(docs, normalizer, tc.max_sentences_per_sequence,
                                   tc.max_embeddings_per_batch)
        pass_start = step
        while step < tc.steps:
            batch = next(batches, None)
            if _all_reduce([batch is None])[0] > 0:
                dropped += (batch is not None) + sum(1 for _ in batches)
                break
            # The noise of step s on rank r is fixed by (seed, r, s): a resumed run draws the
            # same noise as an uninterrupted one.
            generator.manual_seed(tc.seed * 1_000_003 + rank * 7919 + step)
            loss, n = train_step(engine, schedule, batch, generator)
            loss_sum, n_sum = _all_reduce([loss * n, n])
            step += 1
            history.append({"step": step, "loss": loss_sum / n_sum, "embeddings": int(n_sum),
                            "lr": engine.get_lr()[0], "seconds": time.perf_counter() - t0})
            if rank == 0 and (step % tc.log_every == 0 or step == 1):
                log.info("step %d/%d loss %.4f lr %.2e (%d embeddings)", step, tc.steps,
                         history[-1]["loss"], history[-1]["lr"], n_sum)
            if step % tc.checkpoint_every == 0 or step == tc.steps:
                _report_checkpoint(engine, step, history, tc, dropped)
        if step == pass_start:
            raise RuntimeError(f"a pass over the data gave no batch on some worker: "
                               f"{cfg.shards} has too few documents for {cfg.num_workers} "
                               "workers")
        if stream is not None and stream.kept is not None:
            in_memory = stream.kept
    if dropped and rank == 0:
        log.info("batches left over at the end of data passes (other workers had run out): %d",
                 dropped)


def _report_checkpoint(engine, step: int, history: list[dict], tc: TrainConfig,
                       dropped: int) -> None:
    import ray.train

    directory = Path(tempfile.mkdtemp(prefix="mimir-ckpt-"))
    try:
        save_checkpoint(engine, directory, {"step": step}, history)
        if engine.global_rank == 0:
            export_model(engine, directory, tc)
        metrics = {"step": step, "loss": history[-1]["loss"], "leftover_batches": dropped}
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(directory)))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run(cfg: PretrainJobConfig) -> str:
    """Train (or resume) and return the URI of the final checkpoint."""
    import pyarrow.fs as pafs
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    init_ray()
    for name in ("shards", "normalizer", "cache_dir", "storage_path"):
        setattr(cfg, name, config_io.absolute(getattr(cfg, name)))
    manifest = shards.read_manifest(cfg.shards)
    fs, _ = storage.resolve(cfg.shards)
    dataset = ray.data.read_parquet(shards.data_paths(cfg.shards),
                                    filesystem=fs).select_columns(["embeddings"])
    log.info("training on %d documents from %s (run %s)",
             sum(f.rows for f in manifest.data_files), cfg.shards, manifest.run_id)

    store_fs, store_path = storage.resolve(cfg.storage_path)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=asdict(cfg),
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={"CPU": cfg.cpus_per_worker}),
        run_config=RunConfig(
            name=cfg.run_name,
            storage_path=store_path,
            storage_filesystem=store_fs if isinstance(store_fs, pafs.S3FileSystem) else None,
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints),
            failure_config=FailureConfig(max_failures=cfg.max_failures)),
        datasets={"train": dataset},
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training run {cfg.run_name} ended without a checkpoint")
    path = result.checkpoint.path
    uri = f"s3://{path}" if cfg.storage_path.startswith("s3://") else path
    log.info("final checkpoint: %s (step %s, loss %.4f)", uri, result.metrics.get("step"),
             result.metrics.get("loss", float("nan")))
    return uri


def main() -> None:
    args = config_io.cli(__doc__.splitlines()[0], "jobs/configs/pretrain.yaml")
    uri = run(config_io.load(PretrainJobConfig, args.config, args.overrides))
    print(f"final checkpoint: {uri}")


if __name__ == "__main__":
    main()
