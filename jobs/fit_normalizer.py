"""Fit the robust embedding normalizer (median / IQR) on pre-training shards.

    python -m jobs.fit_normalizer --config jobs/configs/fit_normalizer.yaml
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobs import config as config_io
from jobs.cluster import init_ray
from mimir_model.normalizer import RobustNormalizer
from pipelines import shards, storage

log = logging.getLogger("jobs.fit_normalizer")


@dataclass
class FitNormalizerConfig:
    shards: str = "build/demo/shards"
    output: str = "build/demo/normalizer.safetensors"
    batch_docs: int = 256


def run(cfg: FitNormalizerConfig) -> RobustNormalizer:
    import ray

    init_ray()
    fs, _ = storage.resolve(cfg.shards)
    dataset = ray.data.read_parquet(shards.data_paths(cfg.shards),
                                    filesystem=fs).select_columns(["embeddings"])
    stream = (np.concatenate(shards.arrow_to_embeddings(t["embeddings"]))
              for t in dataset.iter_batches(batch_size=cfg.batch_docs, batch_format="pyarrow"))
    normalizer = RobustNormalizer()
    normalizer.fit(stream)
    with tempfile.TemporaryDirectory() as d:
        local = Path(d) / "normalizer.safetensors"
        normalizer.save(local)
        out_fs, out_path = storage.resolve(cfg.output)
        storage.write_bytes(out_fs, out_path, local.read_bytes())
    log.info("normalizer fitted on %d embeddings of dim %d -> %s", normalizer.fit_rows,
             normalizer.dim, cfg.output)
    return normalizer


def main() -> None:
    args = config_io.cli(__doc__.splitlines()[0], "jobs/configs/fit_normalizer.yaml")
    run(config_io.load(FitNormalizerConfig, args.config, args.overrides))


if __name__ == "__main__":
    # Through the importable module, not __main__, so that Ray pickles this module's
    # functions and classes by reference (as they are under `ray job submit`).
    from jobs.fit_normalizer import main as _main

    _main()
