"""The CPU side of the data path, per sentence (a part of bench-gpu, bench/gpu_suite.py).

At 10,000 sentences/s per GPU and about 12 cores per GPU, everything the CPUs do per sentence
must stay under about 1,200 us per core (12 cores x 1 s / 10,000); the goal is under 600. This
measures that cost without the models: each step of the run-time chain runs in this process
on one thread (torch.set_num_threads(1)) over the same documents, timed in CPU seconds of the
process (time.process_time), and the models' forward passes are timed separately and taken
out:

    read          read_fineweb of the input Parquet files (decode, validity of each value)
    validate      ValidateText
    relabel       ChineseRelabel (hanzidentifier)
    sat_cpu       Segmenter minus SaT's forward passes: tokenization, block assembly,
                  wtpsplit's post-processing, re-splitting long sentences, Arrow columns
    sonar_tok     SONAR's SentencePiece tokenization of every sentence (and End of text.)
    sonar_cpu     SonarEmbed minus tokenization and the encoder's forward passes: length
                  sorting, packing, copies, embeddings_to_arrow
    feed          what a Train worker does with a document before the step: Arrow to NumPy,
                  sequences, batches, normalization
    ray_transfer  one object-store round trip (ray.put + ray.get, Ray's own serialization) of
                  each table the chain hands between actors, in the stages' batch sizes: 4 of
                  documents, 1 with sentences, 2 with embeddings (to set_aside, then to the
                  worker); Ray Data's scheduling is not in it (the ray/in-process ratio is)

Figures are microseconds per sentence per core; `total` is their sum.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import torch

from mimir_model.normalizer import RobustNormalizer
from mimir_model.train import sequence_batches, sequences
from pipelines.langs import ChineseRelabel
from pipelines.readers.fineweb import read_fineweb
from pipelines.shards import arrow_to_embeddings
from pipelines.validate import ValidateText
from training.config import PretrainJobConfig

ORDER = ("read", "validate", "relabel", "sat_cpu", "sonar_tok", "sonar_cpu", "feed",
         "ray_transfer")
# How many times the run-time chain hands each kind of table between actors (module docstring).
TRANSFERS = {"documents": 4, "segmented": 1, "embedded": 2}


class _ModelClock:
    """CPU seconds spent inside a model's forward passes (the device synchronized at the end
    of each, so on a GPU the wait is counted as model time too)."""

    def __init__(self) -> None:
        self.cpu = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            t0 = time.process_time()
            out = fn(*args, **kwargs)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.cpu += time.process_time() - t0
            return out
        return timed


def _cpu(fn):
    t0 = time.process_time()
    out = fn()
    return out, time.process_time() - t0


def measure(cfg: PretrainJobConfig, inputs: list[dict], ray_transfer: bool = True,
            ) -> tuple[int, dict[str, float]]:
    """(sentences, CPU seconds per step of ORDER) over the documents of `inputs`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _measure(cfg, inputs, ray_transfer)
    finally:
        torch.set_num_threads(threads)


def _measure(cfg: PretrainJobConfig, inputs: list[dict], ray_transfer: bool,
             ) -> tuple[int, dict[str, float]]:
    seconds: dict[str, float] = {}
    segmenter = cfg.segment.spec(cfg.cache_dir).build()
    embed = cfg.embed.spec(cfg.sonar, cfg.cache_dir).build()
    sat_clock, sonar_clock = _ModelClock(), _ModelClock()
    net = segmenter.sat.model.model  # wtpsplit's PyTorchWrapper holds the torch module
    net.forward = sat_clock.wrap(net.forward)
    embed.encoder.forward = sonar_clock.wrap(embed.encoder.forward)
    # Warm-up (first calls allocate and select kernels), then reset the clocks.
    warm = read_fineweb(inputs[0]["uri"], inputs[0]["config"]).slice(0, 8)
    embed(segmenter(ChineseRelabel()(ValidateText()(warm))))
    sat_clock.cpu = sonar_clock.cpu = 0.0

    docs, seconds["read"] = _cpu(lambda: pa.concat_tables(
        [read_fineweb(i["uri"], i["config"]) for i in inputs]))
    valid, seconds["validate"] = _cpu(lambda: ValidateText(
        max_chars=cfg.runtime.max_document_chars)(docs))
    relabelled, seconds["relabel"] = _cpu(lambda: ChineseRelabel()(valid))
    segmented, segment_s = _cpu(lambda: segmenter(relabelled))
    seconds["sat_cpu"] = segment_s - sat_clock.cpu
    good = [s for s, q in zip(segmented["sentences"].to_pylist(),
                              segmented["quarantine"].to_pylist()) if q is None]
    langs = [lang for lang, q in zip(segmented["lang"].to_pylist(),
                                     segmented["quarantine"].to_pylist()) if q is None]
    sentences = sum(len(s) for s in good)
    tokenizer = embed.encoder.tokenizer
    _, seconds["sonar_tok"] = _cpu(lambda: [tokenizer.encode(t, lang) for sents, lang in
                                            zip(good, langs) for t in sents])
    embedded, embed_s = _cpu(lambda: embed(segmented))
    seconds["sonar_cpu"] = embed_s - sonar_clock.cpu - seconds["sonar_tok"]
    feed_table = embedded.filter(pa.array([q is None for q in
                                           embedded["quarantine"].to_pylist()]))
    feed_table = feed_table.select(["id", "embeddings"])
    dim = embed.dim
    normalizer = RobustNormalizer(torch.zeros(dim), torch.ones(dim))
    tc = cfg.train

    def feed() -> int:
        docs_ = [(i, d, 0) for i, d in zip(feed_table["id"].to_pylist(),
                                           arrow_to_embeddings(feed_table["embeddings"]))]
        return sum(b.num_embeddings for b in sequence_batches(
            sequences(docs_, tc.max_sentences_per_sequence), normalizer,
            tc.max_embeddings_per_batch, tc.max_sequences_per_batch))

    _, seconds["feed"] = _cpu(feed)
    batch = {"documents": cfg.segment.batch_size, "segmented": cfg.embed.batch_size,
             "embedded": cfg.embed.batch_size}
    seconds["ray_transfer"] = (_transfer_seconds({"documents": relabelled,
                                                  "segmented": segmented,
                                                  "embedded": embedded}, batch)
                               if ray_transfer else float("nan"))
    return sentences, seconds


def _transfer_seconds(tables: dict[str, pa.Table], batch: dict[str, int]) -> float:
    """CPU seconds of the object-store round trips the chain makes (TRANSFERS), each table
    in the batches the stages hand on (a round trip has a fixed cost as well as one per
    byte)."""
    import ray
    ray.get(ray.put(tables["documents"].slice(0, 1)))  # the first call connects
    total = 0.0
    for kind, table in tables.items():
        t0 = time.process_time()
        for start in range(0, table.num_rows, batch[kind]):
            part = table.slice(start, batch[kind])
            assert ray.get(ray.put(part)).num_rows == part.num_rows
        total += TRANSFERS[kind] * (time.process_time() - t0)
    return total


def rows(sentences: int, seconds: dict[str, float]) -> list[tuple[str, float, str]]:
    """(metric, us per sentence per core, note) per step, then the total."""
    out = [(f"{step} us/sentence", 1e6 * seconds[step] / sentences, "")
           for step in ORDER if not np.isnan(seconds[step])]
    total = sum(v for _, v, _ in out)
    out.append(("total us/sentence", total,
                f"{sentences} sentences; ceiling about 1,200 (10,000 sentences/s per GPU on 12 "
                "cores), goal < 600"))
    return out
