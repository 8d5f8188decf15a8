"""Pre-training evaluation (jobs.eval_pretrain): next-sentence L2 and round-trip L2 per language.

For each document with at least `min_sentences` sentences (the first `max_documents` of them),
every prefix of 1, 2, ... sentences predicts the next sentence's embedding with the sampler:
  L2            = ||pred - gold||
  round-trip L2 = ||SONAR(decode(pred, doc language)) - gold||

Two sources of documents:
- `inputs` (paper section 5): raw C4 / MultiEURLEX / Wiki40B text, read per language
  (pipelines/readers/eval_sets.py), validated and Chinese script decided per document as in
  training, segmented with SaT and embedded with the SONAR encoder here. One Ray task per
  input; report in `report_dir` (eval_pretrain.json, eval_pretrain.md, one bar chart per
  dataset).
- no `inputs`: the committed embedding shards under `shards` (the demo's quick check), result
  JSON at `output`.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pyarrow.compute as pc
import torch

import storage
from evaluation.models import Models
from jobkit.cli import setup_logging
from jobkit.cluster import init_ray
from jobkit.config import to_dict, write_config
from mimir_model.diffusion import NoiseSchedule, SamplerConfig
from mimir_model.generate import predict_next_embeddings
from mimir_model.sonar.config import SonarFiles
from pipelines import shards
from pipelines.langs import ChineseRelabel
from pipelines.readers.eval_sets import DOCUMENT_SETS, read_documents
from pipelines.stage_configs import SegmentConfig
from pipelines.validate import MAX_CHARS, ValidateText
from reports.charts import pretrain_report
from storage.paths import Input, Output, Scratch, absolute_paths

log = logging.getLogger(__name__)


@dataclass
class DocumentSet:
    dataset: Literal["c4", "multi_eurlex", "wiki40b"]
    uri: Input  # a file or folder of one language (see pipelines/readers/eval_sets.py)
    lang: str  # its SONAR code; cmn_Hani = Chinese, script decided per document


@dataclass
class EvalPretrainConfig:
    checkpoint: Input = ""  # a checkpoint folder written by jobs.pretrain (local or s3://)
    normalizer: Input = "build/demo/normalizer.safetensors"  # the one the model was trained with
    shards: Input = "build/demo/shards"  # evaluated when there are no `inputs`
    sonar: SonarFiles = field(default_factory=SonarFiles)  # encoder, decoder and tokenizer
    min_sentences: int = 9  # documents with fewer sentences are not evaluated
    max_documents: int = 1000  # per input (language)
    prefix_batch: int = 64  # prefixes sampled together
    decode_max_tokens: int = 0  # per decoded sentence; 0 = SONAR's rule (dim + 128)
    seed: int = 0  # of the sampler's noise
    device: Literal["cpu", "cuda"] = "cpu"  # where the models run in each task
    num_gpus: float = 0  # GPU share of each evaluation task
    cache_dir: Scratch = "build/cache"  # where remote files are downloaded
    output: Output = "build/demo/report/eval_pretrain.json"  # the result without `inputs`
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    # Raw-text evaluation (empty: evaluate the shards instead).
    inputs: list[DocumentSet] = field(default_factory=list)
    scan_documents: int = 20000  # documents read per input to find max_documents long ones
    max_document_chars: int = MAX_CHARS  # longer documents are quarantined as too_long
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    report_dir: Output = "build/eval/pretrain"  # the report with `inputs` (local or s3://)


def select_documents(sentences: list[list[str]], min_sentences: int,
                     max_documents: int) -> list[int]:
    """Indices of the first max_documents documents with at least min_sentences sentences."""
    return [i for i, s in enumerate(sentences) if len(s) >= min_sentences][:max_documents]


def prefixes(n_sentences: int) -> list[int]:
    """Prefix lengths evaluated for a document of n sentences: 1 .. n-1 (each predicts the
    sentence after it; the appended "End of text." is not a target)."""
    return list(range(1, n_sentences))


def score_prefixes(m: Models, cfg: EvalPretrainConfig, embeddings: list[np.ndarray],
                   n_sentences: list[int], langs: list[str]
                   ) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray]:
    """(document, prefix length) items and their L2 and round-trip L2, for documents whose
    first n_sentences[d] rows of embeddings[d] are their sentences."""
    items = [(d, k) for d in range(len(embeddings)) for k in prefixes(n_sentences[d])]
    t0 = time.monotonic()
    schedule = NoiseSchedule(m.model.cfg.num_diffusion_steps)
    generator = torch.Generator().manual_seed(cfg.seed)
    l2, rt_l2 = np.zeros(len(items)), np.zeros(len(items))
    for start in range(0, len(items), cfg.prefix_batch):
        part = items[start:start + cfg.prefix_batch]
        contexts = [embeddings[d][:k] for d, k in part]
        gold = np.stack([embeddings[d][k] for d, k in part])
        pred = predict_next_embeddings(m.model, schedule, cfg.sampler, m.normalizer, contexts,
                                       generator)
        l2[start:start + len(part)] = np.linalg.norm(pred - gold, axis=1)
        # Round trip: decode each prediction into its document's language and embed it again.
        by_lang: dict[str, list[int]] = defaultdict(list)
        for j, (d, _) in enumerate(part):
            by_lang[langs[d]].append(j)
        for lang, rows in by_lang.items():
            texts = m.decoder.decode(pred[rows], lang, cfg.decode_max_tokens or None)
            again = m.encoder.encode(texts, lang)
            rt_l2[[start + j for j in rows]] = np.linalg.norm(again - gold[rows], axis=1)
        done = start + len(part)
        log.info("evaluated %d/%d prefixes (%.1f/s)", done, len(items),
                 done / max(time.monotonic() - t0, 1e-9))
    return items, l2, rt_l2


def per_language_sums(items: list[tuple[int, int]], l2: np.ndarray, rt_l2: np.ndarray,
                      langs: list[str]) -> dict[str, dict]:
    """Per language: documents, prefixes and the sums of both distances (mergeable)."""
    out: dict[str, dict] = {}
    for lang in sorted({langs[d] for d, _ in items}):
        idx = [i for i, (d, _) in enumerate(items) if langs[d] == lang]
        out[lang] = {"documents": len({items[i][0] for i in idx}), "prefixes": len(idx),
                     "l2_sum": float(l2[idx].sum()), "round_trip_l2_sum": float(rt_l2[idx].sum())}
    return out


def evaluate(cfg: EvalPretrainConfig) -> dict:
    """Evaluate on the committed shards; writes the result JSON to cfg.output."""
    setup_logging()
    m = Models.load(cfg.checkpoint, cfg.normalizer, cfg.sonar, cfg.device, cfg.cache_dir)
    table = shards.read_table(cfg.shards, columns=["id", "lang", "sentences", "embeddings"])
    sentences = table["sentences"].to_pylist()
    chosen = select_documents(sentences, cfg.min_sentences, cfg.max_documents)
    if not chosen:
        raise ValueError(f"no document in {cfg.shards} has at least {cfg.min_sentences} "
                         "sentences")
    embeddings = shards.arrow_to_embeddings(table["embeddings"])
    langs = table["lang"].to_pylist()
    items, l2, rt_l2 = score_prefixes(m, cfg, [embeddings[d] for d in chosen],
                                      [len(sentences[d]) for d in chosen],
                                      [langs[d] for d in chosen])
    per_lang = {lang: {"documents": s["documents"], "prefixes": s["prefixes"],
                       "l2": s["l2_sum"] / s["prefixes"],
                       "round_trip_l2": s["round_trip_l2_sum"] / s["prefixes"]}
                for lang, s in per_language_sums(items, l2, rt_l2,
                                                 [langs[d] for d in chosen]).items()}
    result = {"checkpoint": cfg.checkpoint, "shards": cfg.shards,
              "min_sentences": cfg.min_sentences, "documents": len(chosen),
              "prefixes": len(items), "l2": float(l2.mean()),
              "round_trip_l2": float(rt_l2.mean()), "per_language": per_lang,
              "sampler": asdict(cfg.sampler), "config": to_dict(cfg)}
    out_fs, out_path = storage.resolve(cfg.output)
    storage.write_bytes(out_fs, out_path, json.dumps(result, indent=2).encode())
    log.info("L2 %.4f, round-trip L2 %.4f over %d prefixes of %d documents -> %s",
             result["l2"], result["round_trip_l2"], len(items), len(chosen), cfg.output)
    return result


def evaluate_input(cfg: EvalPretrainConfig, inp: DocumentSet) -> dict:
    """One dataset file of one language: read, validate, relabel Chinese, segment until
    max_documents documents have min_sentences sentences, embed them, score every prefix."""
    setup_logging()
    m = Models.load(cfg.checkpoint, cfg.normalizer, cfg.sonar, cfg.device, cfg.cache_dir)
    table = read_documents(inp.dataset, inp.uri, inp.lang, cfg.scan_documents)
    validate, relabel = ValidateText(max_chars=cfg.max_document_chars), ChineseRelabel()
    spec = cfg.segment.spec(cfg.cache_dir)
    segmenter = spec.build()
    sentences: list[list[str]] = []
    langs: list[str] = []
    for start in range(0, table.num_rows, spec.batch_size):
        part = segmenter(relabel(validate(table.slice(start, spec.batch_size))))
        good = pc.is_null(part["quarantine"]).to_pylist()
        sentences += [s for s, ok in zip(part["sentences"].to_pylist(), good) if ok]
        langs += [lang for lang, ok in zip(part["lang"].to_pylist(), good) if ok]
        if len(select_documents(sentences, cfg.min_sentences, cfg.max_documents)) \
                >= cfg.max_documents:
            break
    chosen = select_documents(sentences, cfg.min_sentences, cfg.max_documents)
    log.info("%s %s: %d of %d segmented documents have >= %d sentences", inp.dataset,
             inp.lang, len(chosen), len(sentences), cfg.min_sentences)
    flat = [s for d in chosen for s in sentences[d]]
    flat_langs = [langs[d] for d in chosen for _ in sentences[d]]
    vectors = m.encoder.encode(flat, flat_langs) if flat else np.zeros((0, m.encoder.dim))
    bounds = np.cumsum([0] + [len(sentences[d]) for d in chosen])
    embeddings = [vectors[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    items, l2, rt_l2 = score_prefixes(m, cfg, embeddings, [len(sentences[d]) for d in chosen],
                                      [langs[d] for d in chosen])
    return {"dataset": inp.dataset, "input": asdict(inp),
            "per_language": per_language_sums(items, l2, rt_l2, [langs[d] for d in chosen]),
            "counts": [validate.counts.as_dict(), relabel.counts.as_dict(),
                       segmenter.counts.as_dict()]}


def merge_results(cfg: EvalPretrainConfig, parts: list[dict]) -> dict:
    """Per dataset and language: means over prefixes. Per dataset: the mean of its language
    means (every language counts the same, as in the per-language charts)."""
    sums: dict[str, dict[str, dict]] = defaultdict(dict)
    for part in parts:
        for lang, s in part["per_language"].items():
            acc = sums[part["dataset"]].setdefault(lang, dict.fromkeys(s, 0))
            for k, v in s.items():
                acc[k] += v
    datasets = {}
    for name, by_lang in sums.items():
        per_lang = {lang: {"documents": s["documents"], "prefixes": s["prefixes"],
                           "l2": s["l2_sum"] / s["prefixes"],
                           "round_trip_l2": s["round_trip_l2_sum"] / s["prefixes"]}
                    for lang, s in sorted(by_lang.items())}
        datasets[name] = {"per_language": per_lang,
                          "documents": sum(r["documents"] for r in per_lang.values()),
                          "prefixes": sum(r["prefixes"] for r in per_lang.values()),
                          "l2": float(np.mean([r["l2"] for r in per_lang.values()])),
                          "round_trip_l2": float(np.mean([r["round_trip_l2"]
                                                          for r in per_lang.values()]))}
    return {"checkpoint": cfg.checkpoint, "min_sentences": cfg.min_sentences,
            "max_documents": cfg.max_documents, "sampler": asdict(cfg.sampler),
            "datasets": datasets, "inputs": [p["input"] for p in parts],
            "counts": [c for p in parts for c in p["counts"]]}


def run(cfg: EvalPretrainConfig) -> dict:
    """Runs the evaluation as Ray tasks (on GPU nodes when num_gpus > 0)."""
    import ray

    if not cfg.checkpoint:
        raise ValueError("set checkpoint=URI (a checkpoint folder written by jobs.pretrain)")
    absolute_paths(cfg)
    for inp in cfg.inputs:
        if inp.dataset not in DOCUMENT_SETS:
            raise ValueError(f"unknown dataset {inp.dataset!r}; choose from {DOCUMENT_SETS}")
    init_ray()
    if not cfg.inputs:
        task = ray.remote(num_cpus=1, num_gpus=cfg.num_gpus)(evaluate)
        return ray.get(task.remote(cfg))
    task = ray.remote(num_cpus=1, num_gpus=cfg.num_gpus)(evaluate_input)
    result = merge_results(cfg, ray.get([task.remote(cfg, inp) for inp in cfg.inputs]))
    with storage.local_dir(cfg.report_dir) as out:
        (out / "eval_pretrain.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
        write_config(cfg, out)
        pretrain_report(result, out)
    for name, ds in result["datasets"].items():
        log.info("%s: L2 %.4f, round-trip L2 %.4f over %d languages", name, ds["l2"],
                 ds["round_trip_l2"], len(ds["per_language"]))
    return result
