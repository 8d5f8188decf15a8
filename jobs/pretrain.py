"""Pre-training job: embeddings -> Ray Train workers -> DeepSpeed -> checkpoints.

    python -m jobs.pretrain --config jobs/configs/pretrain.yaml [train.steps=40 ...]
    python -m jobs.pretrain --config jobs/configs/pretrain_runtime.yaml
    ray job submit --address http://HEAD:8265 --working-dir . -- python -m jobs.pretrain ...

The embeddings come from a committed shard set (`data: shards`, the embedding cache that
jobs.corpus_refresh writes; resume is exact) or are computed while training (`data: runtime`:
Ray Data reads raw documents, SaT segments and SONAR embeds them on actors, GPU actors at scale,
and streams them into the workers; resume is at least once, see jobs/runtime_data.py).

Re-running with the same run_name and storage_path resumes from the latest checkpoint.
The job ends by logging and printing the final checkpoint's URI.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
import torch.distributed as dist

from jobs import config as config_io
from jobs.cluster import init_ray
from jobs.runtime_data import (RuntimeDataConfig, RuntimeFeed, SplitEveryRow, build_dataset,
                               input_files, latest_checkpoint, trained_keys)
from mimir_model.diffusion import NoiseSchedule
from mimir_model.normalizer import RobustNormalizer
from mimir_model.fetch import fetch
from mimir_model.train import (TrainConfig, build_engine, build_model, export_model, idle_batch,
                               load_checkpoint, load_exported_model, save_checkpoint,
                               sequence_batches, sequences, train_step)
from pipelines import shards, storage
from pipelines.counts import format_summary
from pipelines.ray_stages import CountsSink, collect_counts

log = logging.getLogger("jobs.pretrain")


@dataclass
class PretrainJobConfig:
    run_name: str = "pretrain"
    storage_path: str = "build/demo/checkpoints"  # local directory or s3://bucket/prefix
    # "shards": read the committed embedding set `shards`; "runtime": embed `runtime.inputs`
    # while training.
    data: str = "shards"
    shards: str = "build/demo/shards"
    runtime: RuntimeDataConfig = field(default_factory=RuntimeDataConfig)
    normalizer: str = "build/demo/normalizer.safetensors"
    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1
    # GPU share of a worker (with use_gpu): below 1 lets run-time SaT/SONAR actors share the
    # GPUs with training.
    gpus_per_worker: float = 1
    max_failures: int = 0
    # A worker keeps up to this many MB of its documents in memory after reading them once.
    cache_data_mb: int = 256
    # End this run at this step (with a checkpoint) although train.steps is further, e.g. for
    # a time-boxed allocation; re-running the same run continues. None: run to train.steps.
    stop_at_step: int | None = None
    # Record every consumed sequence id in the checkpoints (for audits and resume tests).
    log_sequence_ids: bool = False
    # A checkpoint folder (written by this job) whose model weights start a new run, e.g.
    # instruction tuning from pre-training; the optimizer and schedule start afresh. Ignored
    # when the run resumes from its own checkpoint.
    init_from: str | None = None
    cache_dir: str = "build/cache"
    train: TrainConfig = field(default_factory=TrainConfig)


def _all_reduce(values: list[float]) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def _rng_state() -> dict:
    state = {"rng_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["rng_cuda"] = torch.cuda.get_rng_state()
    return state


class _Run:
    """The optimizer steps of one worker, whatever feeds them: the step counter, the loss
    history, per-step noise and logging, and checkpoints."""

    def __init__(self, cfg: PretrainJobConfig, engine, rank: int, device: torch.device,
                 step: int, history: list[dict]) -> None:
        self.cfg, self.tc, self.engine, self.rank = cfg, cfg.train, engine, rank
        self.step, self.history = step, history
        self.last = min(self.tc.steps, cfg.stop_at_step or self.tc.steps)
        self.schedule = NoiseSchedule()
        self.generator = torch.Generator(device=device)
        self.checkpointed = step
        self.t0 = time.perf_counter()

    def train(self, batch, loss_scale: float = 1.0) -> None:
        # The noise of step s on rank r is fixed by (seed, r, s): a resumed run draws the
        # same noise as an uninterrupted one.
        tc = self.tc
        self.generator.manual_seed(tc.seed * 1_000_003 + self.rank * 7919 + self.step)
        loss, n = train_step(self.engine, self.schedule, batch, self.generator, loss_scale)
        loss_sum, n_sum = _all_reduce([loss * n, n])
        self.step += 1
        self.history.append({"step": self.step, "loss": loss_sum / n_sum,
                             "embeddings": int(n_sum), "lr": self.engine.get_lr()[0],
                             "seconds": time.perf_counter() - self.t0})
        if self.rank == 0 and (self.step % tc.log_every == 0 or self.step == 1):
            log.info("step %d/%d loss %.4f lr %.2e (%d embeddings)", self.step, tc.steps,
                     self.history[-1]["loss"], self.history[-1]["lr"], n_sum)

    def checkpoint_due(self) -> bool:
        return self.step % self.tc.checkpoint_every == 0 or self.step == self.last

    def checkpoint(self, worker: dict) -> None:
        _report_checkpoint(self.engine, self.step, self.history, self.tc,
                           {**worker, **_rng_state()})
        self.checkpointed = self.step


def train_loop_per_worker(cfg_dict: dict) -> None:
    """Runs on every Ray Train worker: builds the model and engine, resumes from the run's
    latest checkpoint if there is one, then trains on committed shards or on the run-time
    stream (`data`). Every worker takes the same number of optimizer steps: at each step the
    workers agree (one all-reduce) on who still has a batch. On shards, a pass ends for all
    when one worker's part of it ends; on the stream, workers whose share has ended take idle
    steps until every share has ended."""
    import ray.train

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = config_io.from_dict(PretrainJobConfig, cfg_dict)
    tc = cfg.train
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device() if cfg.use_gpu else torch.device("cpu")
    normalizer = RobustNormalizer.load(fetch(cfg.normalizer, cfg.cache_dir))
    torch.manual_seed(tc.seed)
    model = build_model(tc, normalizer.dim)
    checkpoint = ray.train.get_checkpoint()
    if cfg.init_from and not checkpoint:
        start = load_exported_model(fetch(cfg.init_from, cfg.cache_dir))
        model.load_state_dict(start.state_dict())
        log.info("rank %d starts from the weights of %s", rank, cfg.init_from)
    engine = build_engine(model, tc, device)

    step, history, worker = 0, [], {}
    trained = np.zeros(0, np.int64)
    if checkpoint:
        with checkpoint.as_directory() as d:
            state, history, worker = load_checkpoint(engine, Path(d))
            if cfg.data == "runtime":
                trained = trained_keys(d)
        step = state["step"]
        torch.set_rng_state(worker["rng_cpu"])
        if "rng_cuda" in worker and torch.cuda.is_available():
            torch.cuda.set_rng_state(worker["rng_cuda"])
        log.info("rank %d resumed at step %d", rank, step)
    run = _Run(cfg, engine, rank, device, step, history)
    if cfg.data == "runtime":
        _train_on_stream(run, cfg, normalizer, worker, trained, world)
    else:
        _train_on_shards(run, cfg, normalizer, worker, world)


def _train_on_shards(run: _Run, cfg: PretrainJobConfig, normalizer: RobustNormalizer,
                     worker: dict, world: int) -> None:
    """Each worker reads its own part of the shards in an order fixed by (seed, rank, pass)
    and records its position (pass, sequences consumed) in every checkpoint, with its RNG
    states: a resumed run continues exactly where the checkpoint was taken. At a pass end the
    others' remaining sequences are counted as left over."""
    tc, rank = cfg.train, run.rank
    stream = shards.RankStream(cfg.shards, rank, world, tc.seed, cfg.cache_data_mb * 2**20)
    position = dict(worker.get("position", {"pass": 0, "consumed": 0, "left_over": 0}))
    consumed_ids: list[str] = list(worker.get("consumed_ids", []))
    if worker and worker.get("shards_run") != stream.run_id:
        log.warning("rank %d: the shard set was rewritten since this checkpoint (run %s, "
                    "now %s): training continues from the same position in the new set, "
                    "which is not an exact resume", rank, worker.get("shards_run"),
                    stream.run_id)
    if worker:
        log.info("rank %d continues pass %d, %d sequences into it", rank, position["pass"],
                 position["consumed"])

    while run.step < run.last:
        seqs = sequences(stream.documents(position["pass"]), tc.max_sentences_per_sequence)
        batches = sequence_batches(itertools.islice(seqs, position["consumed"], None),
                                   normalizer, tc.max_embeddings_per_batch,
                                   tc.max_sequences_per_batch)
        fresh, pass_start = position["consumed"] == 0, run.step
        while run.step < run.last:
            batch = next(batches, None)
            if _all_reduce([batch is None])[0] > 0:
                position["left_over"] += (len(batch.ids) if batch else 0) + sum(
                    len(b.ids) for b in batches)
                break
            run.train(batch)
            position["consumed"] += len(batch.ids)
            if cfg.log_sequence_ids:
                consumed_ids.extend(batch.ids)
            if run.checkpoint_due():
                run.checkpoint({"position": dict(position), "consumed_ids": list(consumed_ids),
                                "shards_run": stream.run_id})
        else:
            break  # reached the last step inside this pass
        if fresh and run.step == pass_start:
            raise RuntimeError(f"a pass over the data gave no batch on some worker: "
                               f"{cfg.shards} has too few documents for {world} workers")
        position = {"pass": position["pass"] + 1, "consumed": 0,
                    "left_over": position["left_over"]}
    log.info("rank %d stopped at step %d after %d passes; %d sequences left over at pass "
             "ends; %d documents skipped for NaN/Inf embeddings", rank, run.step,
             position["pass"] + 1, position["left_over"], len(stream.skipped_nonfinite))


def _train_on_stream(run: _Run, cfg: PretrainJobConfig, normalizer: RobustNormalizer,
                     worker: dict, trained: np.ndarray, world: int) -> None:
    """One pass over the run-time stream (jobs/runtime_data.py says what resume guarantees).
    Workers whose share of the stream ends first take idle steps until every worker's has
    ended, so every streamed document is trained. Each checkpoint records the documents this
    worker has fully trained."""
    import ray.train

    tc, rank = cfg.train, run.rank
    feed = RuntimeFeed(ray.train.get_dataset_shard("train"), cfg.runtime.documents_per_batch,
                       tc.max_sentences_per_sequence, trained, normalizer.dim)
    consumed_ids: list[str] = list(worker.get("consumed_ids", []))
    batches = sequence_batches(sequences(feed.documents(), tc.max_sentences_per_sequence),
                               normalizer, tc.max_embeddings_per_batch,
                               tc.max_sequences_per_batch)

    def state() -> dict:
        return {"trained_keys": feed.keys_to_save(inherit=rank == 0),
                "consumed_ids": list(consumed_ids)}

    idle_steps = 0
    while run.step < run.last:
        batch = next(batches, None)
        active = int(_all_reduce([batch is not None])[0])
        if active == 0:
            log.info("rank %d: the stream ended at step %d", rank, run.step)
            break
        if batch is None:
            batch, idle_steps = idle_batch(normalizer.dim), idle_steps + 1
        run.train(batch, loss_scale=world / active)  # an idle batch's loss is exactly 0
        feed.mark_trained(batch.ids)
        if cfg.log_sequence_ids:
            consumed_ids.extend(batch.ids)
        if run.checkpoint_due():
            run.checkpoint(state())
    if run.step > run.checkpointed:  # the stream ended between checkpoints
        run.checkpoint(state())
    log.info("rank %d stopped at step %d: %d documents trained in this run (%d idle steps), "
             "%d skipped as trained before, %d skipped for NaN/Inf embeddings", rank, run.step,
             len(feed.new_keys), idle_steps, feed.skipped_trained, len(feed.skipped_nonfinite))


def _report_checkpoint(engine, step: int, history: list[dict], tc: TrainConfig,
                       worker: dict) -> None:
    import ray.train

    directory = Path(tempfile.mkdtemp(prefix="mimir-ckpt-"))
    try:
        if engine.global_rank == 0:
            export_model(engine, directory, tc)
        save_checkpoint(engine, directory, {"step": step}, history, worker)
        metrics = {"step": step, "loss": history[-1]["loss"]}
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(directory)))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


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
    return build_dataset(cfg.runtime, trained, quarantine, sink, cfg.cache_dir)


def run(cfg: PretrainJobConfig) -> str:
    """Train (or resume) and return the URI of the final checkpoint."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    init_ray()
    for name in ("shards", "normalizer", "cache_dir", "storage_path", "init_from"):
        if getattr(cfg, name):
            setattr(cfg, name, config_io.absolute(getattr(cfg, name)))
    if cfg.data == "runtime":
        cfg.runtime.absolute()
    preflight(cfg)

    sink = CountsSink.remote() if cfg.data == "runtime" else None
    store_fs, store_path = storage.resolve(cfg.storage_path)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=asdict(cfg),
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
    if sink:
        counts = collect_counts(sink)
        log.info("what the run-time stages did:\n%s", format_summary(counts))
        ray.kill(sink)
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
    # Through the importable module, not __main__, so that Ray pickles this module's
    # functions and classes by reference (as they are under `ray job submit`).
    from jobs.pretrain import main as _main

    _main()
