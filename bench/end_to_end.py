"""End-to-end throughput: sentences/s through segmentation (SaT), embedding (SONAR) and
Two-Tower training on one device, with each stage's share of the time.

The stages are the pipeline's own (ValidateText, ChineseRelabel, Segmenter, SonarEmbed, then
sequence_batches and train_step on a DeepSpeed engine), run one after the other in this process
over the shipped FineWeb-schema samples, repeated to a fixed volume. Each stage is warmed up on
a slice first (model loading, kernel selection), then timed over the whole volume.

    one device          sentences / (segment + embed + train seconds): one GPU runs all three
    bottleneck stage    sentences / max(stage seconds): the bound when each stage has its own
                        device share and Ray Data overlaps them (data: runtime)

Models: SaT and SONAR from MIMIR_BENCH_SAT / MIMIR_BENCH_SONAR_ENCODER /
MIMIR_BENCH_SONAR_TOKENIZER (Hub name, path or s3://; Meta's and segment-any-text's real
weights on a GPU host that has them), else the tiny assets (build/assets/tiny, built if
missing). Training: the tiny Two-Tower on CPU, the 1.6B shape in bf16 on CUDA. Issue 5's goal
is >= 10,000 sentences/s per H100 end to end; the paper's rate was about 1,400 per A100. On
CPU, with tiny models, only the shares and ratios mean anything.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

import samples
from bench.two_tower import Shape, deepspeed_available, make_engine
from mimir_model.diffusion import NoiseSchedule
from mimir_model.normalizer import RobustNormalizer
from mimir_model.train import TrainConfig, sequence_batches, sequences, train_step
from pipelines.embed import SonarEmbed
from pipelines.langs import ChineseRelabel
from pipelines.segment import Segmenter
from pipelines.shards import arrow_to_embeddings
from offline_assets.tiny import build_tiny
from pipelines.readers.fineweb import read_fineweb
from pipelines.validate import ValidateText

log = logging.getLogger(__name__)

NAME = "end_to_end"
TINY = Path("build/assets/tiny")
GOAL = 10_000  # sentences/s per H100 (issue 5)


def sample_documents(repeats: int) -> pa.Table:
    """Every shipped FineWeb-Edu / FineWeb-2 sample document, `repeats` times (fresh ids)."""
    files = [(samples.ROOT / "fineweb-edu" / "eng_Latn.parquet", "eng_Latn")] + [
        (p, p.stem) for p in sorted((samples.ROOT / "fineweb-2").glob("*.parquet"))]
    one = pa.concat_tables([read_fineweb(p, config) for p, config in files])
    copies = [one.set_column(0, "id", pa.array([f"{i}/{r}" for i in one["id"].to_pylist()]))
              for r in range(repeats)]
    return pa.concat_tables(copies)


def _timed(fn, device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def run(quick: bool) -> list[dict]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tiny = build_tiny(TINY)
    sat = os.environ.get("MIMIR_BENCH_SAT", str(tiny / "sat"))
    encoder = os.environ.get("MIMIR_BENCH_SONAR_ENCODER",
                             str(tiny / "sonar" / "sonar_text_encoder.pt"))
    tokenizer = os.environ.get("MIMIR_BENCH_SONAR_TOKENIZER",
                               str(tiny / "sonar" / "sentencepiece.model"))
    docs = sample_documents(2 if quick else (64 if device.type == "cuda" else 8))

    validate, relabel = ValidateText(), ChineseRelabel()
    segmenter = Segmenter(sat, device=device.type, cache_dir="build/cache")
    embed = SonarEmbed(encoder, tokenizer, device=device.type, cache_dir="build/cache",
                       max_tokens_per_batch=131_072 if device.type == "cuda" else 8192)
    warm = docs.slice(0, 16)
    embed(segmenter(relabel(validate(warm))))

    segmented, t_segment = _timed(lambda: segmenter(relabel(validate(docs))), device)
    embedded, t_embed = _timed(lambda: embed(segmented), device)
    sentences = sum(len(s) for s in embedded["sentences"].to_pylist() if s)
    good = [(i, d, 0) for i, d, q in zip(embedded["id"].to_pylist(),
                                         arrow_to_embeddings(embedded["embeddings"]),
                                         embedded["quarantine"].to_pylist()) if q is None]

    cuda = device.type == "cuda"
    shape = (Shape("1.6B", "1.6B", embed.dim, 56, 128) if cuda
             else Shape("tiny", "tiny", embed.dim, 8, 128))
    precision = "bf16" if cuda else "fp32"
    engine = make_engine(shape, precision, False, deepspeed_available(device), device)
    normalizer = RobustNormalizer().fit([np.concatenate([d for _, d, _ in good])])
    tc = TrainConfig(model=shape.model, precision=precision)
    schedule, generator = NoiseSchedule(), torch.Generator(device=device)

    def train() -> int:
        steps = 0
        for batch in sequence_batches(sequences(good, tc.max_sentences_per_sequence), normalizer,
                                      shape.batch * shape.seq_len):
            generator.manual_seed(steps)
            train_step(engine, schedule, batch, generator)  # returns a float: waits for the device
            steps += 1
        return steps

    train_step(engine, schedule, next(sequence_batches(
        sequences(good[:8], tc.max_sentences_per_sequence), normalizer, 1024)), generator)
    steps, t_train = _timed(train, device)

    total = t_segment + t_embed + t_train
    config = f"{docs.num_rows} docs, {sentences} sentences"
    models = (f"SaT {sat}, SONAR {encoder} (dim {embed.dim}), Two-Tower {shape.name} "
              f"{precision}: {len(good)} documents in {steps} steps")
    device_name = torch.cuda.get_device_name() if cuda else "cpu"

    def row(metric: str, value: float, note: str = "") -> dict:
        return {"benchmark": NAME, "config": config, "device": device_name, "metric": metric,
                "value": value, "note": note}

    rows = [row(f"{stage} share %", 100 * t / total)
            for stage, t in (("segment", t_segment), ("embed", t_embed), ("train", t_train))]
    rows += [row(f"{stage} sentences/s", sentences / t)
             for stage, t in (("segment", t_segment), ("embed", t_embed), ("train", t_train))]
    rows.append(row("one device sentences/s", sentences / total,
                    f"{models}. " + (f"Goal >= {GOAL:,} per H100; paper about 1,400 per A100"
                                     if cuda else "CPU: compare shares and ratios only")))
    rows.append(row("bottleneck stage sentences/s", sentences / max(t_segment, t_embed, t_train)))
    log.info("end to end: %.1f s segment, %.1f s embed, %.1f s train for %d sentences",
             t_segment, t_embed, t_train, sentences)
    return rows
