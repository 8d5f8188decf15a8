"""The shard stream: the documents one training worker reads from a committed embedding (or
instruction) set, in an order fixed by (seed, rank, pass), so a resumed run continues exactly.
Its counterpart for embeddings computed while training is runtime_stream.py."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow.parquet as pq

import storage
from pipelines.shards import arrow_to_embeddings, read_manifest

log = logging.getLogger(__name__)


class RankStream:
    """The documents one training worker reads, in an order fixed by (seed, rank, pass).

    Files are dealt to ranks (file i goes to rank i % world); with fewer files than ranks,
    every rank takes rows rank, rank + world, ... of every file instead. Each pass visits this
    rank's files in a seeded order and each file's rows in a seeded order, so a resumed run
    can rebuild any pass exactly and skip what it had consumed. Documents stay in memory after
    the first read while they fit in `cache_bytes`; later passes then read nothing.
    Documents with NaN or Inf embeddings are skipped and their ids kept in
    `skipped_nonfinite` (one bad vector must not poison a month of training).
    """

    def __init__(self, root: str, rank: int, world: int, seed: int,
                 cache_bytes: int = 256 * 2**20) -> None:
        self.fs, base = storage.resolve(root)
        manifest = read_manifest(root)
        self.run_id = manifest.run_id  # which version of the set this stream reads
        files = [storage.join(base, f.path) for f in manifest.data_files]
        self.row_slice = slice(None) if len(files) >= world else slice(rank, None, world)
        self.files = files[rank::world] if len(files) >= world else files
        self.rank, self.seed = rank, seed
        self.cache_bytes = cache_bytes
        self._cache: dict[str, list[tuple[str, np.ndarray, int]]] = {}
        self._cached_bytes = 0
        self.skipped_nonfinite: set[str] = set()  # ids of documents left out

    def _read(self, path: str) -> list[tuple[str, np.ndarray, int]]:
        if path in self._cache:
            return self._cache[path]
        table = pq.read_table(path, filesystem=self.fs)
        ids = table["id"].to_pylist()[self.row_slice]
        docs = arrow_to_embeddings(table["embeddings"])[self.row_slice]
        # Instruction shards say how many leading embeddings are context (not trained on).
        contexts = (table["n_context"].to_pylist() if "n_context" in table.column_names
                    else [0] * table.num_rows)[self.row_slice]
        finite = [bool(np.isfinite(d).all()) for d in docs]
        if not all(finite):
            bad = [i for i, ok in zip(ids, finite) if not ok]
            self.skipped_nonfinite.update(bad)
            log.warning("%s: skipping %d documents with NaN/Inf embeddings (e.g. %s)", path,
                        len(bad), bad[0])
        rows = [(i, d, c) for i, d, c, ok in zip(ids, docs, contexts, finite) if ok]
        size = sum(d.nbytes for _, d, _ in rows)
        if self._cached_bytes + size <= self.cache_bytes:
            self._cache[path] = rows
            self._cached_bytes += size
        return rows

    def documents(self, pass_index: int):
        """(document id, [n, dim] embeddings, context length) of one pass, in this pass's
        order."""
        rng = np.random.default_rng([self.seed, self.rank, pass_index])
        for f in rng.permutation(len(self.files)):
            rows = self._read(self.files[f])
            for i in rng.permutation(len(rows)):
                yield rows[i]
