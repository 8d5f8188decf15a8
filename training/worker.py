"""What every Ray Train worker runs (`train_loop_per_worker`): build the model and DeepSpeed
engine, resume from the run's latest checkpoint if there is one, then train on committed shards
or on the run-time stream, checkpointing as it goes.

Every worker takes the same number of optimizer steps: at each step the workers agree (one
all-reduce) on who still has a batch. On shards, a pass ends for all when one worker's part of
it ends; on the stream, workers whose share has ended take idle steps until every share has
ended.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow.fs as pafs
import torch
import torch.distributed as dist

import storage
from jobkit.cli import setup_logging
from jobkit.config import from_dict, to_dict
from mimir_model.checkpoint import (CheckpointRejected, export_model, load_checkpoint,
                                    load_exported_model, reject, rejection, save_checkpoint,
                                    trained_keys, verify_checkpoint)
from mimir_model.diffusion import NoiseSchedule
from mimir_model.flops import peak_flops, train_flops
from mimir_model.normalizer import RobustNormalizer
from mimir_model.train import (TrainConfig, build_engine, build_model, count_weight,
                               idle_batch, noise_seed, sequence_batches, sequences, train_step)
from pipelines.streams.runtime_stream import RuntimeFeed
from pipelines.streams.shard_stream import RankStream
from storage.cache import fetch
from training.config import PretrainJobConfig
from storage.stale import remove_stale, stale_name
from training.metrics import TENSORBOARD_TMP, MetricsWriter

log = logging.getLogger(__name__)

# Local folders a checkpoint is written into before the upload, and read from on resume:
# named by pid, so a worker killed meanwhile has its folder removed by the next one.
CHECKPOINT_TMP, RESUME_TMP = "mimir-ckpt-", "mimir-resume-"


def _all_reduce(values: list[float]) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def _rng_state() -> dict:
    state = {"rng_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["rng_cuda"] = torch.cuda.get_rng_state()
    return state


def _gather(values: list[float], rank: int, world: int) -> list[list[float]]:
    """Each rank's `values`, on every rank (one all-reduce of a world x n tensor)."""
    t = torch.zeros(world, len(values), dtype=torch.float64)
    t[rank] = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


class NonFiniteLoss(RuntimeError):
    """Training produced NaN/Inf losses: the run stops before checkpointing their effect."""


class TrainRun:
    """The optimizer steps of one worker, whatever feeds them: the step counter, the loss
    history, per-step noise, metrics (Ray Train reports every log_every steps, TensorBoard,
    MLflow / W&B through training/metrics.py) and checkpoints."""

    def __init__(self, cfg: PretrainJobConfig, engine, rank: int, world: int,
                 device: torch.device, step: int, history: list[dict], run_info: dict,
                 metrics: MetricsWriter) -> None:
        self.cfg, self.tc, self.engine, self.rank, self.world = cfg, cfg.train, engine, rank, world
        self.step, self.history, self.run_info, self.metrics = step, history, run_info, metrics
        self.last = min(self.tc.steps, cfg.stop_at_step or self.tc.steps)
        self.schedule = NoiseSchedule(engine.module.cfg.num_diffusion_steps)
        self.generator = torch.Generator(device=device)
        self.checkpointed = step
        self.t0 = time.perf_counter()
        self.peak = peak_flops(device, self.tc.precision)  # None off GPU: no MFU
        self.nonfinite, self.nonfinite_since_checkpoint = 0, False
        self._window = self._new_window()

    def _new_window(self) -> dict:
        return {"embeddings": 0, "documents": 0, "flops": 0.0, "start": time.perf_counter()}

    def train(self, batch) -> None:
        # The noise of step s on rank r is fixed by (seed, r, s): a resumed run draws the
        # same noise as an uninterrupted one.
        tc = self.tc
        self.generator.manual_seed(noise_seed(tc.seed, self.rank, self.step))
        # The loss is weighted by this rank's share of the step's targets (count_weight);
        # an idle batch has none.
        n_local = int(batch.loss_mask.sum())
        n_global = int(_all_reduce([n_local])[0])
        t0 = time.perf_counter()
        loss, n = train_step(self.engine, self.schedule, batch, self.generator,
                             count_weight(n_local, n_global, self.world))
        documents = sum(i.endswith("#0") for i in batch.ids)  # documents started in this batch
        flops = (train_flops(self.engine.module.cfg, *batch.seq.shape[:2])
                 if self.peak and batch.ids else 0.0)
        step_s = time.perf_counter() - t0  # train_step returns a float: the device is done
        loss_sum, n_sum, docs_sum, flops_sum = _all_reduce([loss * n, n, documents, flops])
        grad_norm = self.engine.get_global_grad_norm()
        self.step += 1
        self.history.append({"step": self.step, "loss": loss_sum / n_sum,
                             "embeddings": int(n_sum), "lr": self.engine.get_lr()[0],
                             "grad_norm": float("nan") if grad_norm is None else float(grad_norm),
                             "seconds": time.perf_counter() - self.t0, "step_s": step_s,
                             "wall": time.time()})
        self.metrics.step(self.step, {k: self.history[-1][k] for k in ("loss", "lr", "grad_norm")})
        w = self._window
        w["embeddings"] += int(n_sum)
        w["documents"] += int(docs_sum)
        w["flops"] += flops_sum
        self._last_local = (loss, n)
        self._check_finite()

    def _check_finite(self) -> None:
        """Count consecutive NaN/Inf losses (the same on every rank: the loss is all-reduced)
        and stop the run after train.max_nonfinite_losses of them."""
        loss = self.history[-1]["loss"]
        if math.isfinite(loss):
            self.nonfinite = 0
            return
        self.nonfinite += 1
        self.nonfinite_since_checkpoint = True
        log.warning("step %d: the loss is %s (%d in a row)", self.step, loss, self.nonfinite)
        if self.nonfinite >= self.tc.max_nonfinite_losses:
            raise NonFiniteLoss(
                f"{self.nonfinite} consecutive steps up to {self.step} had a non-finite loss "
                f"({loss}): the run stops before a checkpoint keeps what they did to the model. "
                "Resume from the last checkpoint (it predates them) after finding the cause: "
                "extreme embeddings in the data (check the normalizer and the shards), or a "
                "learning rate too high (train.lr)")

    def _report_metrics(self) -> dict:
        """The metrics of a report: this step's, the rates since the last report, and each
        rank's loss (a collective: every rank calls it at the same steps)."""
        h, w = self.history[-1], self._window
        seconds = max(time.perf_counter() - w["start"], 1e-9)
        per_rank = _gather(list(self._last_local), self.rank, self.world)
        metrics = {"step": self.step, "loss": h["loss"], "lr": h["lr"],
                   "grad_norm": h["grad_norm"], "embeddings_per_s": w["embeddings"] / seconds,
                   "documents_per_s": w["documents"] / seconds,
                   **{f"loss_rank{r}": loss for r, (loss, _) in enumerate(per_rank)}}
        if self.peak:
            metrics["mfu"] = w["flops"] / seconds / (self.peak * self.world)
        if self.rank == 0:
            log.info("step %d/%d loss %.4f lr %.2e grad norm %.3g, %.0f embeddings/s, "
                     "%.1f documents/s", self.step, self.tc.steps, h["loss"], h["lr"],
                     h["grad_norm"], metrics["embeddings_per_s"], metrics["documents_per_s"])
        self._window = self._new_window()
        return metrics

    def after_step(self, state: Callable[[], dict]) -> None:
        """Report metrics every log_every steps (and at the first step), and checkpoint every
        checkpoint_every steps and at the last one, with `state()`: this worker's data
        position."""
        checkpoint = self.step == self.last or (self.cfg.checkpoints and
                                                self.step % self.tc.checkpoint_every == 0)
        if checkpoint:
            self.checkpoint(state())
        elif self.step % self.tc.log_every == 0 or self.step == 1:
            import ray.train

            metrics = self._report_metrics()
            self.metrics.report(self.step, metrics)
            ray.train.report(metrics)

    def checkpoint(self, worker: dict) -> None:
        if self.nonfinite_since_checkpoint:
            raise NonFiniteLoss(f"not checkpointing at step {self.step}: a loss since the last "
                                f"checkpoint (step {self.checkpointed}) was NaN/Inf, so the "
                                "weights may be too; resume from that checkpoint")
        metrics = self._report_metrics()
        self.metrics.report(self.step, metrics)
        self.metrics.flush()
        if self.cfg.checkpoints:
            _report_checkpoint(self.engine, self.step, self.history, self.tc,
                               {**worker, **_rng_state()}, metrics, self.run_info)
        else:  # a benchmark: no checkpoint, the history goes where launch.train reads it
            fs, path = storage.resolve(history_uri(self.cfg, self.rank))
            storage.write_bytes(fs, path, json.dumps(self.history).encode())
        self.checkpointed = self.step


def history_uri(cfg: PretrainJobConfig, rank: int) -> str:
    """Where a worker of a run without checkpoints (`checkpoints: false`) leaves its history."""
    return storage.join(cfg.storage_path, cfg.run_name, "history", f"rank-{rank}.json")


def train_loop_per_worker(config: dict) -> None:
    """Runs on every Ray Train worker (see the module docstring). `config`: {"job": the job's
    config as a dict, "run_info": what every checkpoint records}."""
    import ray.train

    setup_logging()
    for prefix in (CHECKPOINT_TMP, RESUME_TMP, TENSORBOARD_TMP):
        remove_stale(tempfile.gettempdir(), prefix)
    cfg = from_dict(PretrainJobConfig, config["job"])
    tc = cfg.train
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device() if cfg.use_gpu else torch.device("cpu")
    normalizer = RobustNormalizer.load(fetch(cfg.normalizer, cfg.cache_dir))
    torch.manual_seed(tc.seed)
    model = build_model(tc, normalizer.dim)
    resume = _resume_point(config.get("resume_from"))
    if cfg.init_from and not resume:
        start = load_exported_model(fetch(cfg.init_from, cfg.cache_dir))
        model.load_state_dict(start.state_dict())
        log.info("rank %d starts from the weights of %s", rank, cfg.init_from)
    engine = build_engine(model, tc, device, config["run_info"]["deepspeed_config"])

    step, history, worker = 0, [], {}
    trained = np.zeros(0, np.int64)
    if resume:
        state, history, worker, trained = _resume(engine, resume, rank, cfg.data == "runtime")
        step = state["step"]
        torch.set_rng_state(worker["rng_cpu"])
        if "rng_cuda" in worker and torch.cuda.is_available():
            torch.cuda.set_rng_state(worker["rng_cuda"])
        log.info("rank %d resumed at step %d from %s", rank, step, resume)
    metrics = MetricsWriter(cfg.tracking, storage.join(cfg.storage_path, cfg.run_name),
                            cfg.run_name, _tracked_params(cfg), rank, resume_step=step)
    run = TrainRun(cfg, engine, rank, world, device, step, history, config["run_info"], metrics)
    try:
        if cfg.data == "runtime":
            _train_on_stream(run, cfg, normalizer, worker, trained, world)
        else:
            _train_on_shards(run, cfg, normalizer, worker, world)
    finally:
        metrics.close()


def _resume_point(chosen_at_launch: str | None) -> str | None:
    """The checkpoint to resume from: the one Ray Train reports as the run's latest (after a
    worker failure, one this job wrote), unless it was marked rejected; else the one the job
    chose from storage at launch (which also covers a run whose Ray snapshot is gone)."""
    import ray.train

    reported = ray.train.get_checkpoint()
    if reported is not None:
        scheme = "s3://" if isinstance(reported.filesystem, pafs.S3FileSystem) else ""
        uri = scheme + reported.path
        if rejection(uri) is None:
            return uri
    if chosen_at_launch and rejection(chosen_at_launch) is not None:
        raise CheckpointRejected(f"checkpoint {chosen_at_launch} is marked rejected "
                                 f"({rejection(chosen_at_launch)}); the job starts again from "
                                 "the one before")
    return chosen_at_launch


def _resume(engine, uri: str, rank: int, runtime: bool):
    """Load checkpoint `uri` into the engine: (state, history, worker, trained keys). Every
    rank downloads and verifies it first (verify_checkpoint), and all load it or none does:
    if any rank rejects it, rank 0 marks it rejected in storage and every rank raises, so the
    job can start again from the checkpoint before it (training/launch.py)."""
    import ray.train

    # A folder of this rank's own: Checkpoint.as_directory shares one per node, and a rank
    # arriving after another's download has finished downloads it again in place,
    # truncating the files the first rank is reading (seen as EOFError on resume).
    with tempfile.TemporaryDirectory(prefix=stale_name(RESUME_TMP)) as d:
        fs, path = storage.resolve(uri)
        reason = ""
        try:
            ray.train.Checkpoint(path, filesystem=fs).to_directory(d)
            verify_checkpoint(Path(d))
        except CheckpointRejected as e:
            reason = str(e).replace(d, uri)
            log.error("rank %d rejects checkpoint %s: %s", rank, uri, reason)
        if _all_reduce([1.0 if reason else 0.0])[0]:
            reason = reason or "another rank rejected it (see the workers' logs)"
            if rank == 0:
                reject(uri, reason)
            raise CheckpointRejected(f"checkpoint {uri} was rejected ({reason}); it is marked "
                                     "so, and the job resumes from the one before")
        state, history, worker = load_checkpoint(engine, Path(d), verified=True)
        trained = trained_keys(d) if runtime else np.zeros(0, np.int64)
    return state, history, worker, trained


def _tracked_params(cfg: PretrainJobConfig) -> dict:
    """The run's parameters for MLflow / W&B: the train section, flat."""
    return {f"train.{k}": v for k, v in to_dict(cfg.train).items() if k != "deepspeed"}


def _train_on_shards(run: TrainRun, cfg: PretrainJobConfig, normalizer: RobustNormalizer,
                     worker: dict, world: int) -> None:
    """Each worker reads its own part of the shards in an order fixed by (seed, rank, pass)
    and records its position (pass, sequences consumed) in every checkpoint, with its RNG
    states: a resumed run continues exactly where the checkpoint was taken. At a pass end the
    others' remaining sequences are counted as left over."""
    tc, rank = cfg.train, run.rank
    stream = RankStream(cfg.shards, rank, world, tc.seed, cfg.cache_data_mb * 2**20)
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
            run.after_step(lambda: {"position": dict(position),
                                    "consumed_ids": list(consumed_ids),
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


def _train_on_stream(run: TrainRun, cfg: PretrainJobConfig, normalizer: RobustNormalizer,
                     worker: dict, trained: np.ndarray, world: int) -> None:
    """One pass over the run-time stream (pipelines/streams/runtime_stream.py says what
    resume guarantees).
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
        run.train(batch)  # an idle batch's loss is exactly 0
        feed.mark_trained(batch.ids)
        if cfg.log_sequence_ids:
            consumed_ids.extend(batch.ids)
        run.after_step(state)
    if run.step > run.checkpointed:  # the stream ended between checkpoints
        run.checkpoint(state())
    log.info("rank %d stopped at step %d: %d documents trained in this run (%d idle steps), "
             "%d skipped as trained before, %d skipped for NaN/Inf embeddings", rank, run.step,
             len(feed.new_keys), idle_steps, feed.skipped_trained, len(feed.skipped_nonfinite))


def _report_checkpoint(engine, step: int, history: list[dict], tc: TrainConfig,
                       worker: dict, metrics: dict, run_info: dict) -> None:
    import ray.train

    directory = Path(tempfile.mkdtemp(prefix=stale_name(CHECKPOINT_TMP)))
    try:
        export_model(engine, directory, tc, run_info)  # every rank (ZeRO-3 gathers); rank 0 writes
        save_checkpoint(engine, directory, {"step": step}, history, worker)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(directory)))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
