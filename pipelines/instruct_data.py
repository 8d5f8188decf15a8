"""The instruction data jobs: prepare an instruction set from conversations of every source
(jobs.prepare_instruct) and embed it into training shards (jobs.embed_instruct).

An instruction set is a committed Parquet set of instances (paper Table 6, pipelines/instruct.py):
validated, Chinese relabelled, filtered by the mixture (`mixture`: one of the paper's four,
pipelines.instruct.MIXTURES), every turn segmented with SaT. Its shards add the embeddings of
every source and target sentence plus "End of text." and the number of context embeddings.
Both end with a summary of what every stage counted; the same counts go into the manifests.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import pyarrow as pa

import storage
from jobkit.cluster import init_ray
from jobkit.config import to_dict
from mimir_model.sonar.config import SonarFiles
from pipelines import shards
from pipelines.counts import StageCounts, format_summary
from pipelines.instruct import (EVAL_TRAIN_SOURCES, FormatInstances, InstanceSentences,
                                MixtureFilter, SegmentTurns, mixture)
from pipelines.langs import ChineseRelabel
from pipelines.ray_stages import CountsSink, Progress, collect_counts, map_stage
from pipelines.readers.conversations import CONVERSATION_READERS, read_conversations
from pipelines.stage import StageSpec
from pipelines.stage_configs import EmbedConfig, SegmentConfig
from pipelines.validate import MAX_CHARS, ValidateText
from storage.paths import Input, Output, Scratch, absolute_paths

log = logging.getLogger(__name__)


@dataclass
class ConversationSource:
    source: Literal["oasst2", "bactrian-x", "aya", "mlqa", "xlsum", "synthetic"]
    uri: Input  # local file or folder, s3:// URI, or the source's Hub dataset id
    config: str | None = None  # language config of bactrian-x ("fr"), mlqa ("de"), xlsum ("french")
    limit: int | None = None


@dataclass
class PrepareConfig:
    # One of the paper's four instruction-tuning settings (pipelines.instruct.MIXTURES).
    mixture: Literal["multilingual_mlqa_xlsum", "multilingual", "english_mlqa_xlsum",
                     "english"] = "multilingual_mlqa_xlsum"
    inputs: list[ConversationSource] = field(default_factory=list)  # one source (and language) each
    output: Output = "build/demo/instruct"  # the committed instruction set
    cache_dir: Scratch = "build/cache"  # where remote files are downloaded
    max_chars: int = MAX_CHARS  # longer turns are quarantined as too_long
    segment: SegmentConfig = field(default_factory=SegmentConfig)


def prepare(cfg: PrepareConfig) -> shards.Manifest:
    """Conversations of every source -> validation -> Chinese relabel -> mixture -> SaT
    sentences per turn -> instances (paper Table 6) -> a committed Parquet set (plus a
    quarantine of rejected rows with their reasons)."""
    import ray

    mix = mixture(cfg.mixture)  # fail on a bad name or source before any work is done
    if not cfg.inputs:
        raise ValueError("the config names no inputs")
    for inp in cfg.inputs:
        if inp.source not in CONVERSATION_READERS:
            raise ValueError(f"unknown instruction source {inp.source!r}")
    absolute_paths(cfg)
    init_ray()

    read = StageCounts("read")
    tables = []
    for inp in cfg.inputs:
        name = f"{inp.source}/{inp.config}" if inp.config else inp.source
        if inp.source in EVAL_TRAIN_SOURCES and not mix.eval_train:
            read.tally[f"skipped_{inp.source}"] += 1  # the mixture leaves this source out
            continue
        table = read_conversations(inp.source, inp.uri, inp.config, inp.limit)
        read.rows_in += table.num_rows
        read.rows_out += table.num_rows
        read.tally[name] += table.num_rows
        for reason in table.column("quarantine").drop_null().to_pylist():
            read.quarantine(reason)
        tables.append(table)
    log.info("read %d conversations from %d inputs", read.rows_out, len(tables))

    sink = CountsSink.remote()
    run_id = shards.new_run_id()
    ds = ray.data.from_arrow(pa.concat_tables(tables))
    ds = map_stage(ds, StageSpec(ValidateText, {"column": "turns", "max_chars": cfg.max_chars}),
                   sink)
    ds = map_stage(ds, StageSpec(ChineseRelabel, {"column": "turns"}), sink)
    ds = map_stage(ds, StageSpec(MixtureFilter, {"mixture_name": mix.name}), sink)
    ds = map_stage(ds, replace(cfg.segment.spec(cfg.cache_dir), factory=SegmentTurns), sink)
    ds = map_stage(ds, StageSpec(FormatInstances), sink)
    ds = map_stage(ds, StageSpec(shards.ShardWriter, {"root": cfg.output, "run_id": run_id,
                                                      "columns": None,
                                                      "quarantine_columns": None},
                                 batch_size=1024), sink)
    with Progress(sink, "instruction set"):
        files = [shards.ShardFile(**row) for row in ds.take_all()]

    counts = [read, *collect_counts(sink)]
    manifest = shards.commit(cfg.output, run_id, files, counts, meta={
        "mixture": mix.name, "models": {"segment_model": cfg.segment.model},
        "config": to_dict(cfg)})
    log.info("summary of %s (%s):\n%s", run_id, mix.name, format_summary(counts))
    return manifest


@dataclass
class EmbedInstructConfig:
    instructions: Input = "build/demo/instruct"  # a committed instruction set
    output: Output = "build/demo/instruct_shards"  # the instruction shards fine-tuning reads
    cache_dir: Scratch = "build/cache"  # where remote files are downloaded
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    sonar: SonarFiles = field(default_factory=SonarFiles)


def embed(cfg: EmbedInstructConfig) -> shards.Manifest:
    """Every instance's source and target sentences, plus "End of text.", embedded into
    training shards with the number of context embeddings (instruction tuning trains on the
    targets only)."""
    import ray

    absolute_paths(cfg)
    init_ray()
    source = shards.read_manifest(cfg.instructions)
    fs, _ = storage.resolve(cfg.instructions)
    ds = ray.data.read_parquet(shards.data_paths(cfg.instructions), filesystem=fs)

    sink = CountsSink.remote()
    run_id = shards.new_run_id()
    ds = map_stage(ds, StageSpec(InstanceSentences), sink)
    ds = map_stage(ds, cfg.embed.spec(cfg.sonar, cfg.cache_dir), sink)
    ds = map_stage(ds, StageSpec(shards.ShardWriter, {
        "root": cfg.output, "run_id": run_id, "columns": shards.INSTRUCT_SHARD_COLUMNS,
        "quarantine_columns": ["id", "source", "lang", "quarantine"]}), sink)
    with Progress(sink, "instruction shards"):
        files = [shards.ShardFile(**row) for row in ds.take_all()]
    counts = collect_counts(sink)
    manifest = shards.commit(cfg.output, run_id, files, counts,
                             meta={**source.meta, "instructions": cfg.instructions,
                                   "models": {**source.meta.get("models", {}),
                                              "sonar": asdict(cfg.sonar)},
                                   "config": to_dict(cfg),
                                   "source_config": source.meta.get("config")})
    log.info("summary of %s:\n%s", run_id, format_summary(counts))
    return manifest
