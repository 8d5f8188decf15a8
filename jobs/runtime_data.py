"""Run-time training data: raw FineWeb-style documents are read, segmented (SaT) and embedded
(SONAR, on GPU actors at scale) by Ray Data while the Ray Train workers train on the stream,
instead of reading a committed shard set (jobs.pretrain `data: runtime`).

Driver side: `build_dataset` chains read -> skip trained -> validate -> Chinese relabel -> SaT
-> SONAR -> set quarantine aside, and `trained_keys` reads what the run's latest checkpoint has
trained on. Worker side: `RuntimeFeed` turns a worker's shard of the stream into documents and
records the documents it has fully trained.

Every streamed document is trained: the stream is split among the workers without Ray Train's
equal split (which drops rows to even them out), and a worker whose share ends first takes
idle steps until all have ended. Delivery across restarts is at least once, not exact: a re-run
skips every document its latest checkpoint records as trained, before spending GPU time on it;
documents in flight when a run stopped, and the start of a document cut into several sequences
of which only some were trained, are streamed again. Batches are formed in arrival order, so
losses do not repeat bit for bit; cached shards (the default `data: shards`) give exact resume.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pyarrow.fs as pafs
import ray
import torch
from ray.train import DataConfig

from jobs import config as config_io
from jobs.corpus_refresh import InputConfig
from jobs.stages import EmbedConfig, SegmentConfig, map_document_stages
from mimir_model.train import cut_sequences
from pipelines import storage
from pipelines.langs import sonar_code_for_config
from pipelines.ray_stages import map_stage
from pipelines.shards import arrow_to_embeddings
from pipelines.sources import ReadFineweb, fineweb_files
from pipelines.train_feed import SetAsideQuarantine, SkipTrained, doc_key
from pipelines.validate import MAX_CHARS

log = logging.getLogger(__name__)


@dataclass
class RuntimeDataConfig:
    inputs: list[InputConfig] = field(default_factory=list)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    max_document_chars: int = MAX_CHARS
    # CPUs each stage actor reserves: Train workers hold theirs for the whole run, and the
    # stages must still be scheduled next to them.
    stage_cpus: float = 0.25
    documents_per_batch: int = 16  # what a worker takes from the stream at a time
    # Largest block of the stream; each goes to one worker whole (a SONAR document of 30
    # sentences is about 120 kB).
    block_mb: float = 4.0

    def absolute(self) -> None:
        for inp in self.inputs:
            inp.uri = config_io.absolute(inp.uri)
        self.segment.model = config_io.absolute(self.segment.model)
        self.embed.absolute()


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


def build_dataset(cfg: RuntimeDataConfig, trained: np.ndarray, quarantine_root: str, sink,
                  cache_dir: str) -> ray.data.Dataset:
    """The stream of trainable documents (`id`, `embeddings`), leaving out `trained` keys."""
    files = ray.data.from_items(input_files(cfg))
    ds = map_stage(files, ReadFineweb, sink, batch_size=1, num_cpus=cfg.stage_cpus)
    ds = map_stage(ds, SkipTrained, sink, batch_size=256, num_cpus=cfg.stage_cpus,
                   kwargs={"trained": trained})
    ds = map_document_stages(ds, cfg.segment, cfg.embed, sink, cache_dir,
                             cfg.max_document_chars, cfg.stage_cpus)
    ds = map_stage(ds, SetAsideQuarantine, sink, batch_size=256, num_cpus=cfg.stage_cpus,
                   kwargs={"root": quarantine_root})
    # The split deals whole blocks to the workers: blocks far smaller than Ray's default
    # (128 MB) keep the workers' shares even.
    ds.context.target_max_block_size = int(cfg.block_mb * 2**20)
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


def latest_checkpoint(storage_path: str, run_name: str) -> str | None:
    """URI of the run's newest complete checkpoint folder (every rank's file manifest there
    and every file it lists present), or None. Ray Train names the folders by time."""
    fs, base = storage.resolve(storage_path)
    selector = pafs.FileSelector(storage.join(base, run_name), allow_not_found=True)
    folders = sorted((i.path for i in fs.get_file_info(selector)
                      if i.type == pafs.FileType.Directory
                      and i.base_name.startswith("checkpoint_")), reverse=True)
    scheme = "s3://" if storage_path.startswith("s3://") else ""
    for folder in folders:
        present = {i.path[len(folder) + 1:] for i in fs.get_file_info(
            pafs.FileSelector(folder, recursive=True)) if i.type == pafs.FileType.File}
        manifests = sorted(p for p in present if p.startswith("files_rank"))
        if not manifests:
            continue
        listed = [json.loads(storage.read_bytes(fs, f"{folder}/{m}")) for m in manifests]
        if len(manifests) == listed[0]["world"] and all(
                set(m["files"]) <= present for m in listed):
            return scheme + folder
    return None


def trained_keys(checkpoint_uri: str) -> np.ndarray:
    """Union over ranks of the document keys a runtime-mode checkpoint (folder or URI)
    records as trained."""
    fs, base = storage.resolve(checkpoint_uri)
    names = [i.path for i in fs.get_file_info(pafs.FileSelector(base))
             if i.base_name.startswith("worker_rank")]
    keys = [torch.load(io.BytesIO(storage.read_bytes(fs, p)), weights_only=True).get("trained_keys")
            for p in names]
    return np.unique(np.concatenate([k.numpy() for k in keys if k is not None] +
                                    [np.zeros(0, np.int64)]))


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
