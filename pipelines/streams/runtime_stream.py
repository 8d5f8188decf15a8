"""The run-time stream: raw FineWeb-style documents are read, validated, relabelled, segmented
(SaT) and embedded (SONAR, on GPU actors at scale) by Ray Data while the Ray Train workers train
on the stream, instead of reading a committed shard set (jobs.pretrain `data: runtime`). Here
live the whole of it: the Ray Data chain (`build_dataset`), the split among workers
(`SplitEveryRow`) and a worker's side (`RuntimeFeed`).

The chain: read -> skip trained -> validate -> Chinese relabel -> SaT -> SONAR -> set
quarantine aside. Documents a run has already trained on (recorded in its checkpoints as
mimir_model.checkpoint.doc_key keys, 8 bytes a document) are dropped before any GPU time is
spent on them; quarantined rows are written aside with their reasons, so only trainable
documents reach the workers.

Every streamed document is trained: the stream is split among the workers without Ray Train's
equal split (which drops rows to even them out), and a worker whose share ends first takes
idle steps until all have ended. Delivery across restarts is at least once, not exact: a re-run
skips every document its latest checkpoint records as trained, before spending GPU time on it;
documents in flight when a run stopped, and the start of a document cut into several sequences
of which only some were trained, are streamed again. Batches are formed in arrival order, so
losses do not repeat bit for bit; cached shards (the default `data: shards`) give exact resume.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import torch
from ray.train import DataConfig

import storage
from mimir_model.checkpoint import doc_key, doc_keys
from mimir_model.sonar.config import SonarFiles
from mimir_model.train import cut_sequences
from pipelines.langs import sonar_code_for_config
from pipelines.ray_stages import map_document_stages, map_stage, set_block_size
from pipelines.readers.fineweb import FinewebInput, fineweb_files, read_spec
from pipelines.shards import arrow_to_embeddings, parquet_bytes, quarantine_columns
from pipelines.stage import Stage, StageSpec
from pipelines.stage_configs import EmbedConfig, SegmentConfig
from pipelines.validate import MAX_CHARS

log = logging.getLogger(__name__)

FEED_COLUMNS = ["id", "embeddings"]


@dataclass
class RuntimeDataConfig:
    inputs: list[FinewebInput] = field(default_factory=list)  # raw documents to embed and train
    max_document_chars: int = MAX_CHARS  # longer documents are quarantined as too_long
    # CPUs each stage actor reserves: Train workers hold theirs for the whole run, and the
    # stages must still be scheduled next to them.
    stage_cpus: float = 0.25
    read_actors: int = 2  # input files read at once, each by a Ray actor
    documents_per_batch: int = 16  # what a worker takes from the stream at a time
    # Largest block of the stream; each goes to one worker whole (a SONAR document of 30
    # sentences is about 120 kB).
    block_mb: float = 4.0


def input_files(cfg: RuntimeDataConfig) -> list[dict]:
    """One row per input Parquet file; fails on an unknown language or an input without
    files, before anything runs."""
    rows = []
    for inp in cfg.inputs:
        sonar_code_for_config(inp.config)
        rows += [{"uri": uri, "config": inp.config, "limit": inp.limit}
                 for uri, _ in fineweb_files(inp.uri, inp.config)]
    if not rows:
        raise ValueError("data: runtime needs runtime.inputs")
    return rows


class SkipTrained(Stage):
    """Drops documents whose key is in `trained` (what a resumed run has already trained on)."""

    name = "skip_trained"

    def __init__(self, trained: np.ndarray) -> None:
        self.trained = np.unique(np.asarray(trained, dtype=np.int64))
        super().__init__()

    def process(self, table: pa.Table) -> pa.Table:
        keep = ~np.isin(doc_keys(table["id"].to_pylist()), self.trained)
        self.counts.tally["already_trained"] += int((~keep).sum())
        return table.filter(pa.array(keep))


class SetAsideQuarantine(Stage):
    """Writes the batch's quarantined rows (reason in `quarantine`) as one Parquet file under
    `root` and passes on the trainable rows, reduced to FEED_COLUMNS."""

    name = "set_aside"

    def __init__(self, root: str) -> None:
        self.fs, self.base = storage.resolve(root)
        super().__init__()

    def process(self, table: pa.Table) -> pa.Table:
        bad = pc.is_valid(table["quarantine"])
        rejected = table.filter(bad)
        if rejected.num_rows:
            rel = f"part-{uuid.uuid4().hex}.parquet"
            storage.write_bytes(self.fs, storage.join(self.base, rel),
                                parquet_bytes(rejected.select(quarantine_columns(rejected))))
            for reason in rejected["quarantine"].to_pylist():
                self.counts.quarantine(reason)
        good = table.filter(pc.invert(bad)).select(FEED_COLUMNS)
        return good


def build_dataset(cfg: RuntimeDataConfig, segment: SegmentConfig, embed: EmbedConfig,
                  sonar: SonarFiles, trained: np.ndarray, quarantine_root: str, sink,
                  cache_dir: str) -> ray.data.Dataset:
    """The stream of trainable documents (`id`, `embeddings`), leaving out `trained` keys."""
    files = ray.data.from_items(input_files(cfg))
    ds = map_stage(files, read_spec(cfg.read_actors), sink, cfg.stage_cpus)
    ds = map_stage(ds, StageSpec(SkipTrained, {"trained": trained}), sink, cfg.stage_cpus)
    ds = map_document_stages(ds, segment, embed, sonar, sink, cache_dir,
                             cfg.max_document_chars, cfg.stage_cpus)
    ds = map_stage(ds, StageSpec(SetAsideQuarantine, {"root": quarantine_root}), sink,
                   cfg.stage_cpus)
    # The split deals whole blocks to the workers too: small blocks keep their shares even.
    set_block_size(ds, cfg.block_mb)
    return ds


class SplitEveryRow(DataConfig):
    """Ray Train's dataset split with every row kept: its default (`equal=True`) drops rows
    to give the workers equal counts, and a dropped document would wait for a later run."""

    def configure(self, datasets: dict, world_size: int, worker_handles, worker_node_ids,
                  **kwargs) -> list[dict]:
        [(name, ds)] = datasets.items()
        ds = ds.copy(ds)
        ds.context.execution_options = self._resolve_execution_options(name)
        return [{name: it} for it in ds.streaming_split(world_size, equal=False,
                                                        locality_hints=worker_node_ids)]


class RuntimeFeed:
    """One worker's documents from its shard of the stream, and which of them it has trained.

    A document counts as trained once the batch holding its last sequence has been trained;
    `trained_before` (from the checkpoint) is skipped again here, because a restarted attempt
    re-reads a stream built before the checkpoint it resumes from.
    """

    def __init__(self, shard, documents_per_batch: int, max_len: int,
                 trained_before: np.ndarray, dim: int) -> None:
        self.shard, self.documents_per_batch, self.max_len = shard, documents_per_batch, max_len
        self.trained_before = set(trained_before.tolist())
        self.dim = dim
        self.new_keys: list[int] = []
        self.skipped_trained = 0
        self.skipped_nonfinite: list[str] = []
        self._last_chunk: dict[str, int] = {}  # document id -> index of its last sequence

    def documents(self) -> Iterator[tuple[str, np.ndarray, int]]:
        for batch in self.shard.iter_batches(batch_size=self.documents_per_batch,
                                             batch_format="pyarrow"):
            for doc_id, doc in zip(batch["id"].to_pylist(),
                                   arrow_to_embeddings(batch["embeddings"])):
                if doc.shape[1] != self.dim:
                    raise ValueError(f"the encoder gives embeddings of dimension {doc.shape[1]}"
                                     f", the normalizer is for dimension {self.dim}")
                if doc_key(doc_id) in self.trained_before:
                    self.skipped_trained += 1
                    continue
                if not np.isfinite(doc).all():
                    self.skipped_nonfinite.append(doc_id)
                    log.warning("skipping document %s: NaN/Inf embeddings", doc_id)
                    continue
                self._last_chunk[doc_id] = len(cut_sequences(doc, self.max_len)) - 1
                yield doc_id, doc, 0

    def mark_trained(self, sequence_ids: list[str]) -> None:
        for sid in sequence_ids:
            doc_id, chunk = sid.rsplit("#", 1)
            if int(chunk) == self._last_chunk.get(doc_id):
                del self._last_chunk[doc_id]
                self.new_keys.append(doc_key(doc_id))

    def keys_to_save(self, inherit: bool) -> torch.Tensor:
        """This worker's trained keys, plus (on one rank) those of earlier checkpoints."""
        keys = self.new_keys + (sorted(self.trained_before) if inherit else [])
        return torch.tensor(keys, dtype=torch.int64)
