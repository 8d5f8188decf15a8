"""Synthetic embedding shards for training tests (no SONAR needed)."""

import numpy as np
import pyarrow as pa

from mimir_model.normalizer import RobustNormalizer
from pipelines import shards


def write_synthetic_shards(root: str, n_docs: int, dim: int, seed: int = 0,
                           files: int = 3, dtype: str = "float32") -> RobustNormalizer:
    """Commit a shard set of `n_docs` random documents of 2-11 sentences in `files` files,
    through ShardWriter like the corpus job; return a normalizer fitted on it."""
    rng = np.random.default_rng(seed)
    run_id = shards.new_run_id()
    writer = shards.ShardWriter(root, run_id)
    written, everything = [], []
    for part in np.array_split(np.arange(n_docs), files):
        docs = [rng.standard_normal((int(rng.integers(2, 12)), dim)).astype(np.float32)
                for _ in part]
        everything += docs
        table = pa.table({
            "id": [f"doc{i}" for i in part], "source": ["synthetic"] * len(part),
            "lang": ["eng_Latn"] * len(part), "text": ["-"] * len(part),
            "sentences": [["-"] * len(d) for d in docs], "quarantine": [None] * len(part),
            "embeddings": shards.embeddings_to_arrow(docs, dim, dtype),
            "n_embeddings": pa.array([len(d) for d in docs], pa.int32())})
        written += [shards.ShardFile(**r) for r in writer(table).to_pylist()]
    shards.commit(root, run_id, written, [writer.counts])
    return RobustNormalizer().fit([np.concatenate(everything)])
