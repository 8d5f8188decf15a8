"""The real run-time pipeline, timed (a part of bench-gpu, bench/gpu_suite.py), and the same
stages in one process for comparison.

`runtime`: `jobs.pretrain`'s own code (training.launch.train, what `run` returns the checkpoint
of) with `data: runtime`, configured by configs/bench_gpu_runtime.yaml (GPU: the 1.6B model, SaT
and SONAR as Ray Data GPU actors sharing the GPU with one Train worker) or
configs/bench_cpu_runtime.yaml (CPU: tiny), over the shipped FineWeb samples repeated to a fixed
volume, without checkpoints (`checkpoints: false`: a 1.6B checkpoint is over 20 GB). Figures:

    sentences/s end to end   sentences embedded and trained / seconds from when the whole
                             chain was up (the latest of every stage's first batch and the
                             Train worker's first request for data) to the last step; the
                             in-process figure likewise leaves model loading out
    sentences/s with start-up  the same from the worker's first request for data, while the
                             actors still load their models
    embeddings/s steady      embeddings trained from the second step to the last / their seconds
    <stage> share %          each stage's busy seconds (all its actors together) and the
                             training steps' seconds, as shares of their sum
    ray/busy sum             the end-to-end rate over sentences / that sum: the Ray pipeline
                             against the same stages' own time in the same run, one after the
                             other (the in-process comparison without the load changing between
                             two runs)

`in_process`: validate, relabel, segment, embed and train built from the same config, run one
after the other in this process over the same documents (each warmed up on a slice first):
the in-process sum that the run-time pipeline is compared with (Ray overhead).
"""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

import samples
from jobkit.config import from_dict, merge, read_yaml
from mimir_model.normalizer import RobustNormalizer
from mimir_model.train import (build_engine, build_model, sequence_batches, sequences,
                               train_step)
from mimir_model.diffusion import NoiseSchedule
from pipelines.langs import ChineseRelabel
from pipelines.shards import arrow_to_embeddings
from pipelines.readers.fineweb import read_fineweb
from pipelines.validate import ValidateText
from training.config import PretrainJobConfig

log = logging.getLogger(__name__)

CONFIGS = {"cuda": "configs/bench_gpu_runtime.yaml", "cpu": "configs/bench_cpu_runtime.yaml"}
DOCS_PER_FILE = 256


def write_inputs(out: Path, repeats: int) -> list[dict]:
    """The shipped FineWeb-schema samples, each document `repeats` times with fresh ids, as
    Parquet folders named after their configs; returns `runtime.inputs`."""
    inputs = []
    for sample in samples.FINEWEB:
        table = pq.read_table(sample.path)
        ids = table["id"].to_pylist()
        copies = pa.concat_tables([
            table.set_column(table.column_names.index("id"), "id",
                             pa.array([f"{i}/{r}" for i in ids])) for r in range(repeats)])
        folder = out / sample.config
        folder.mkdir(parents=True, exist_ok=True)
        for k, start in enumerate(range(0, copies.num_rows, DOCS_PER_FILE)):
            pq.write_table(copies.slice(start, DOCS_PER_FILE), folder / f"part-{k:04d}.parquet")
        inputs.append({"uri": str(folder), "config": sample.config})
    return inputs


def documents(inputs: list[dict]) -> pa.Table:
    return pa.concat_tables([read_fineweb(i["uri"], i["config"]) for i in inputs])


def job_config(device: str, assets: Path, work: Path, inputs: list[dict],
               normalizer: Path) -> PretrainJobConfig:
    data = read_yaml(CONFIGS[device])
    data = merge(data, {
        "storage_path": str(work / "runs"), "normalizer": str(normalizer),
        "cache_dir": str(work / "cache"), "runtime": {"inputs": inputs},
        "segment": {"model": str(assets / "sat")},
        "sonar": {"encoder": str(assets / "sonar" / "sonar_text_encoder.pt"),
                  "decoder": str(assets / "sonar" / "sonar_text_decoder.pt"),
                  "tokenizer": str(assets / "sonar" / "sentencepiece.model")}})
    return from_dict(PretrainJobConfig, data, CONFIGS[device])


def fit_normalizer(cfg: PretrainJobConfig, docs: pa.Table, path: Path) -> Path:
    """A normalizer fitted on the embeddings of the first documents' lines (random-weight
    encoder: any fit serves a speed benchmark)."""
    from mimir_model.sonar.pipeline import TextEncoder
    encoder = TextEncoder.from_uris(cfg.sonar.encoder, cfg.sonar.tokenizer,
                                    device=cfg.embed.device)
    lines, langs = [], []
    for text, lang in zip(docs["text"].to_pylist()[:64], docs["lang"].to_pylist()[:64]):
        for line in (text or "").splitlines():
            if line.strip():
                lines.append(line[:256])
                langs.append(lang)
    RobustNormalizer().fit([encoder.encode(lines, langs)]).save(path)
    del encoder
    _free()
    return path


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_runtime(cfg: PretrainJobConfig, row) -> None:
    """The Ray run (module docstring); `row(metric, value, note="")` records a result."""
    from training.launch import train
    t0 = time.perf_counter()
    outcome = train(cfg)
    wall = time.perf_counter() - t0
    history = outcome.metrics["history"]
    counts = {c.stage: c for c in outcome.counts}
    sentences = counts["embed"].tally["sentences"]
    trained = counts["set_aside"].rows_out
    last = history[-1]
    worker_ready = last["wall"] - last["seconds"]
    ready = max([worker_ready, *outcome.stage_started.values()])
    row("sentences", sentences, f"{trained} documents trained in {len(history)} steps")
    row("trainer wall s", wall, "training.launch.train: Ray Train start, model build, stream")
    window = last["wall"] - ready
    row("sentences/s end to end", sentences / window,
        "from when every stage actor and the worker had its model up (the last first batch) "
        "to the last step")
    row("sentences/s with start-up", sentences / last["seconds"],
        "from the worker's first request for data (actors still loading) to its last step")
    if len(history) > 2:
        steady = sum(h["embeddings"] for h in history[1:])
        row("embeddings/s steady", steady / (history[-1]["seconds"] - history[0]["seconds"]),
            "steps 2..n")
    busy = {stage: s for stage, s in outcome.stage_seconds.items()}
    busy["train"] = sum(h["step_s"] for h in history)
    total = sum(busy.values())
    for stage, seconds in busy.items():
        row(f"{stage} share %", 100 * seconds / total, f"{seconds:.1f} busy s")
    row("ray/busy sum", total / window,
        "the rate over sentences / (every stage's busy seconds + the steps' seconds), both "
        "of this run: 1 = no Ray overhead over running its work in turn; goal >= 0.7")


def run_in_process(cfg: PretrainJobConfig, docs: pa.Table, row) -> None:
    """The same stages one after the other in this process (module docstring)."""
    stages = [("validate", ValidateText(max_chars=cfg.runtime.max_document_chars)),
              ("relabel", ChineseRelabel()), ("segment", cfg.segment.spec(cfg.cache_dir).build()),
              ("embed", cfg.embed.spec(cfg.sonar, cfg.cache_dir).build())]
    warm = docs.slice(0, 16)
    for _, stage in stages:
        warm = stage(warm)
    seconds, table = {}, docs
    for name, stage in stages:
        _sync()
        t0 = time.perf_counter()
        table = stage(table)
        _sync()
        seconds[name] = time.perf_counter() - t0
    sentences = sum(len(s) for s in table["sentences"].to_pylist() if s)
    good = [(i, d, 0) for i, d, q in zip(table["id"].to_pylist(),
                                         arrow_to_embeddings(table["embeddings"]),
                                         table["quarantine"].to_pylist()) if q is None]
    del stages
    _free()
    tc = cfg.train
    device = torch.device("cuda" if cfg.use_gpu and torch.cuda.is_available() else "cpu")
    normalizer = RobustNormalizer.load(cfg.normalizer)
    torch.manual_seed(tc.seed)
    engine = build_engine(build_model(tc, normalizer.dim), tc, device)
    schedule, generator = NoiseSchedule(), torch.Generator(device=device)

    def batches(docs):
        return sequence_batches(sequences(docs, tc.max_sentences_per_sequence), normalizer,
                                tc.max_embeddings_per_batch, tc.max_sequences_per_batch)

    train_step(engine, schedule, next(batches(good[:8])), generator)  # warm-up
    t0 = time.perf_counter()
    steps = 0
    for steps, batch in enumerate(batches(good), 1):
        generator.manual_seed(steps)
        train_step(engine, schedule, batch, generator)  # returns a float: the device is done
    seconds["train"] = time.perf_counter() - t0
    total = sum(seconds.values())
    row("sentences", sentences, f"{len(good)} documents in {steps} steps")
    for name, s in seconds.items():
        row(f"{name} sentences/s", sentences / s)
    row("sentences/s in-process sum", sentences / total,
        "sentences / (validate + relabel + segment + embed + train seconds)")
    engine.destroy()
