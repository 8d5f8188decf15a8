"""The end of a run-time training stream (raw documents embedded while training): documents a
run has already trained on are dropped before any GPU time is spent on them, and quarantined
rows are written aside with their reasons, so only trainable documents reach the workers.

A run remembers what it trained on as 64-bit keys of document ids (8 bytes a document, kept in
its checkpoints); `doc_key` is the one definition of that key.
"""

from __future__ import annotations

import hashlib
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import storage
from pipelines.counts import StageCounts
from pipelines.shards import QUARANTINE_COLUMNS, parquet_bytes

FEED_COLUMNS = ["id", "embeddings"]


def doc_key(doc_id: str) -> int:
    """A document id's 64-bit key (signed, to live in an int64 tensor). Collisions are
    negligible below billions of documents (birthday bound: about n^2 / 2^65)."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "little",
                          signed=True)


def doc_keys(ids: list[str]) -> np.ndarray:
    return np.fromiter((doc_key(i) for i in ids), dtype=np.int64, count=len(ids))


class SkipTrained:
    """Drops documents whose key is in `trained` (what a resumed run has already trained on)."""

    name = "skip_trained"

    def __init__(self, trained: np.ndarray) -> None:
        self.trained = np.unique(np.asarray(trained, dtype=np.int64))
        self.counts = StageCounts(self.name)

    def __call__(self, table: pa.Table) -> pa.Table:
        self.counts.rows_in += table.num_rows
        keep = ~np.isin(doc_keys(table["id"].to_pylist()), self.trained)
        self.counts.tally["already_trained"] += int((~keep).sum())
        self.counts.rows_out += int(keep.sum())
        return table.filter(pa.array(keep))


class SetAsideQuarantine:
    """Writes the batch's quarantined rows (reason in `quarantine`) as one Parquet file under
    `root` and passes on the trainable rows, reduced to FEED_COLUMNS."""

    name = "set_aside"

    def __init__(self, root: str) -> None:
        self.fs, self.base = storage.resolve(root)
        self.counts = StageCounts(self.name)

    def __call__(self, table: pa.Table) -> pa.Table:
        self.counts.rows_in += table.num_rows
        bad = pc.is_valid(table["quarantine"])
        rejected = table.filter(bad)
        if rejected.num_rows:
            rel = f"part-{uuid.uuid4().hex}.parquet"
            storage.write_bytes(self.fs, storage.join(self.base, rel),
                                parquet_bytes(rejected.select(QUARANTINE_COLUMNS)))
            for reason in rejected["quarantine"].to_pylist():
                self.counts.quarantine(reason)
        good = table.filter(pc.invert(bad)).select(FEED_COLUMNS)
        self.counts.rows_out += good.num_rows
        return good
