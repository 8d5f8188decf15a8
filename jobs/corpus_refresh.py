"""Corpus job: FineWeb-style documents -> validation -> Chinese relabel -> SaT sentences ->
SONAR embeddings -> committed embedding shards (plus a quarantine of rejected rows with their
reasons).

    python -m jobs.corpus_refresh --config jobs/configs/corpus_refresh.yaml

Ends with a summary of what every stage counted; the same counts go into the shard manifest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pyarrow as pa

from jobs import config as config_io
from jobs.cluster import init_ray
from jobs.stages import EmbedConfig, SegmentConfig, map_embed
from pipelines import shards
from pipelines.counts import StageCounts, format_summary
from pipelines.langs import ChineseRelabel, sonar_code_for_config
from pipelines.ray_stages import CountsSink, collect_counts, map_stage
from pipelines.segment import Segmenter
from pipelines.sources import read_fineweb
from pipelines.validate import MAX_CHARS, ValidateText

log = logging.getLogger("jobs.corpus_refresh")


@dataclass
class InputConfig:
    uri: str  # local file or folder, s3:// URI, or a Hub dataset id
    config: str  # FineWeb-2 config (fra_Latn, cmn_Hani, ...) or eng_Latn for FineWeb-Edu
    limit: int | None = None


@dataclass
class CorpusConfig:
    inputs: list[InputConfig] = field(default_factory=list)
    output: str = "build/demo/shards"
    cache_dir: str = "build/cache"
    # Longer documents are quarantined as too_long (bounds the memory of one row).
    max_document_chars: int = MAX_CHARS
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)


def run(cfg: CorpusConfig) -> shards.Manifest:
    import ray

    if not cfg.inputs:
        raise ValueError("the config names no inputs")
    for inp in cfg.inputs:  # fail on an unknown language before any work is done
        sonar_code_for_config(inp.config)
    init_ray()
    cfg.output = config_io.absolute(cfg.output)
    cfg.cache_dir = config_io.absolute(cfg.cache_dir)
    cfg.segment.model = config_io.absolute(cfg.segment.model)
    cfg.embed.absolute()

    read = StageCounts("read")
    tables = []
    for inp in cfg.inputs:
        table = read_fineweb(config_io.absolute(inp.uri), inp.config, inp.limit)
        read.rows_in += table.num_rows
        read.rows_out += table.num_rows
        read.tally[inp.config] += table.num_rows
        tables.append(table)
    log.info("read %d documents from %d inputs", read.rows_out, len(cfg.inputs))

    sink = CountsSink.remote()
    run_id = shards.new_run_id()
    ds = ray.data.from_arrow(pa.concat_tables(tables, promote_options="default"))
    ds = map_stage(ds, ValidateText, sink, batch_size=256,
                   kwargs={"max_chars": cfg.max_document_chars})
    ds = map_stage(ds, ChineseRelabel, sink, batch_size=256)
    ds = map_stage(ds, Segmenter, sink, actors=cfg.segment.actors,
                   batch_size=cfg.segment.batch_size, num_gpus=cfg.segment.num_gpus,
                   kwargs={"model": cfg.segment.model, "threshold": cfg.segment.threshold,
                           "max_chars": cfg.segment.max_chars, "device": cfg.segment.device,
                           "cache_dir": cfg.cache_dir})
    ds = map_embed(ds, cfg.embed, sink, cfg.cache_dir)
    ds = map_stage(ds, shards.ShardWriter, sink, batch_size=256,
                   kwargs={"root": cfg.output, "run_id": run_id})
    files = [shards.ShardFile(**row) for row in ds.take_all()]

    counts = [read, *collect_counts(sink)]
    manifest = shards.commit(cfg.output, run_id, files, counts)
    log.info("summary of %s:\n%s", run_id, format_summary(counts))
    return manifest


def main() -> None:
    args = config_io.cli(__doc__.splitlines()[0], "jobs/configs/corpus_refresh.yaml")
    run(config_io.load(CorpusConfig, args.config, args.overrides))


if __name__ == "__main__":
    # Through the importable module, not __main__, so that Ray pickles this module's
    # functions and classes by reference (as they are under `ray job submit`).
    from jobs.corpus_refresh import main as _main

    _main()
