"""Fitting the robust embedding normalizer (median / IQR) on pre-training shards
(jobs.fit_normalizer)."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import storage
from jobkit.cluster import init_ray
from mimir_model.normalizer import Method, RobustNormalizer
from pipelines import shards
from storage.paths import Input, Output, absolute_paths

log = logging.getLogger(__name__)


@dataclass
class FitNormalizerConfig:
    shards: Input = "build/demo/shards"  # the committed pre-training shard set
    output: Output = "build/demo/normalizer.safetensors"  # local path or s3:// URI
    batch_docs: int = 256  # documents per batch read
    # "iqr": scale = IQR / 1.349, the paper's intent; "lcm_reference": what the LCM code
    # computes, (P0.75% - P0.25%) / (z(.0075) - z(.0025)) (mimir_model/normalizer.py).
    method: Method = "iqr"


def run(cfg: FitNormalizerConfig) -> RobustNormalizer:
    import ray

    absolute_paths(cfg)
    init_ray()
    fs, _ = storage.resolve(cfg.shards)
    dataset = ray.data.read_parquet(shards.data_paths(cfg.shards),
                                    filesystem=fs).select_columns(["embeddings"])
    stream = (np.concatenate(shards.arrow_to_embeddings(t["embeddings"]))
              for t in dataset.iter_batches(batch_size=cfg.batch_docs, batch_format="pyarrow"))
    normalizer = RobustNormalizer()
    normalizer.fit(stream, method=cfg.method)
    with tempfile.TemporaryDirectory() as d:
        local = Path(d) / "normalizer.safetensors"
        normalizer.save(local)
        out_fs, out_path = storage.resolve(cfg.output)
        storage.write_bytes(out_fs, out_path, local.read_bytes())
    log.info("normalizer fitted on %d embeddings of dim %d (%d with NaN or Inf values left "
             "out) -> %s", normalizer.fit_rows, normalizer.dim, normalizer.skipped_rows,
             cfg.output)
    return normalizer
