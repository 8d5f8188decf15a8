"""The alignment pilot (jobs.alignment_pilot, paper Table 9): how close SONAR puts English and
its translation.

For each WikiMatrix language config (english, non_english), the first `max_pairs` pairs are
embedded, English as eng_Latn and the other side in its language; the figure is the mean
cosine similarity over pairs (quarantined pairs left out and counted). Report in `report_dir`:
alignment_pilot.json, .md and a chart.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow.compute as pc

import storage
from jobkit.cli import setup_logging
from jobkit.cluster import init_ray
from jobkit.config import write_config
from mimir_model.sonar.config import SonarFiles
from mimir_model.sonar.pipeline import TextEncoder
from pipelines.readers.eval_sets import read_pairs
from reports.charts import alignment_report
from storage.paths import Input, Output, Scratch, absolute_paths

log = logging.getLogger(__name__)


@dataclass
class PairSet:
    uri: Input  # one WikiMatrix config (en-xx): a file or folder
    lang: str  # the SONAR code of non_english


@dataclass
class AlignmentConfig:
    sonar: SonarFiles = field(default_factory=SonarFiles)  # the encoder and tokenizer are used
    inputs: list[PairSet] = field(default_factory=list)  # WikiMatrix configs, one language each
    max_pairs: int = 1000  # per language: the first pairs of the file
    device: Literal["cpu", "cuda"] = "cpu"  # where the encoder runs
    num_gpus: float = 0  # GPU share of the evaluation task
    cache_dir: Scratch = "build/cache"  # where remote files are downloaded
    report_dir: Output = "build/eval/alignment"  # the report folder (local or s3://)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over rows of cos(a[i], b[i])."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cos.mean())


def evaluate(cfg: AlignmentConfig) -> dict:
    setup_logging()
    encoder = TextEncoder.from_uris(cfg.sonar.encoder, cfg.sonar.tokenizer, device=cfg.device,
                                    cache_dir=cfg.cache_dir, shape=cfg.sonar.shape)
    per_lang = {}
    for inp in cfg.inputs:
        table = read_pairs(inp.uri, inp.lang, cfg.max_pairs)
        good = table.filter(pc.is_null(table["quarantine"]))
        english = encoder.encode(good["english"].to_pylist(), "eng_Latn")
        other = encoder.encode(good["non_english"].to_pylist(), inp.lang)
        per_lang[inp.lang] = {"pairs": good.num_rows, "cosine": mean_cosine(english, other),
                              "quarantined": table.num_rows - good.num_rows}
        log.info("%s: mean cosine %.4f over %d pairs", inp.lang, per_lang[inp.lang]["cosine"],
                 good.num_rows)
    return {"sonar_encoder": cfg.sonar.encoder, "max_pairs": cfg.max_pairs,
            "per_language": per_lang,
            "cosine": float(np.mean([r["cosine"] for r in per_lang.values()]))}


def run(cfg: AlignmentConfig) -> dict:
    import ray

    if not cfg.inputs:
        raise ValueError("no inputs to evaluate")
    absolute_paths(cfg)
    init_ray()
    result = ray.get(ray.remote(num_cpus=1, num_gpus=cfg.num_gpus)(evaluate).remote(cfg))
    with storage.local_dir(cfg.report_dir) as out:
        (out / "alignment_pilot.json").write_text(json.dumps(result, indent=2))
        write_config(cfg, out)
        alignment_report(result, out)
    return result
