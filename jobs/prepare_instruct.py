"""Instruction-data job: conversations of every source -> validation -> Chinese relabel ->
mixture -> SaT sentences per turn -> instances (paper Table 6) -> committed Parquet set (plus a
quarantine of rejected rows with their reasons).

    python -m jobs.prepare_instruct --config jobs/configs/prepare_instruct.yaml mixture=english

`mixture` picks one of the paper's four settings (pipelines.instruct.MIXTURES). Ends with a
summary of what every stage counted; the same counts go into the output's manifest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pyarrow as pa

from jobs import config as config_io
from jobs.cluster import init_ray
from jobs.stages import SegmentConfig
from pipelines.counts import StageCounts, format_summary
from pipelines.instruct import (
    EVAL_TRAIN_SOURCES,
    FormatInstances,
    MixtureFilter,
    SegmentTurns,
    mixture,
)
from pipelines.langs import ChineseRelabel
from pipelines.ray_stages import CountsSink, collect_counts, map_stage
from pipelines import shards
from pipelines.sources import INSTRUCT_READERS, read_instruct
from pipelines.validate import MAX_CHARS, ValidateText

log = logging.getLogger("jobs.prepare_instruct")


@dataclass
class InstructInput:
    source: str  # oasst2, bactrian-x, aya, mlqa, xlsum or synthetic
    uri: str  # local file or folder, s3:// URI, or the source's Hub dataset id
    config: str | None = None  # language config of bactrian-x ("fr"), mlqa ("de"), xlsum ("french")
    limit: int | None = None


@dataclass
class PrepareConfig:
    mixture: str = "multilingual_mlqa_xlsum"
    inputs: list[InstructInput] = field(default_factory=list)
    output: str = "build/demo/instruct"
    cache_dir: str = "build/cache"
    max_chars: int = MAX_CHARS  # longer turns are quarantined as too_long
    segment: SegmentConfig = field(default_factory=SegmentConfig)


def run(cfg: PrepareConfig) -> shards.Manifest:
    import ray

    mix = mixture(cfg.mixture)  # fail on a bad name or source before any work is done
    if not cfg.inputs:
        raise ValueError("the config names no inputs")
    for inp in cfg.inputs:
        if inp.source not in INSTRUCT_READERS:
            raise ValueError(f"unknown instruction source {inp.source!r}")
    init_ray()
    cfg.output = config_io.absolute(cfg.output)
    cfg.cache_dir = config_io.absolute(cfg.cache_dir)
    cfg.segment.model = config_io.absolute(cfg.segment.model)

    read = StageCounts("read")
    tables = []
    for inp in cfg.inputs:
        name = f"{inp.source}/{inp.config}" if inp.config else inp.source
        if inp.source in EVAL_TRAIN_SOURCES and not mix.eval_train:
            read.tally[f"skipped_{inp.source}"] += 1  # the mixture leaves this source out
            continue
        table = read_instruct(inp.source, config_io.absolute(inp.uri), inp.config, inp.limit)
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
    ds = map_stage(ds, ValidateText, sink, batch_size=256,
                   kwargs={"column": "turns", "max_chars": cfg.max_chars})
    ds = map_stage(ds, ChineseRelabel, sink, batch_size=256, kwargs={"column": "turns"})
    ds = map_stage(ds, MixtureFilter, sink, batch_size=256, kwargs={"mixture_name": mix.name})
    ds = map_stage(ds, SegmentTurns, sink, actors=cfg.segment.actors,
                   batch_size=cfg.segment.batch_size, num_gpus=cfg.segment.num_gpus,
                   kwargs={"model": cfg.segment.model, "threshold": cfg.segment.threshold,
                           "max_chars": cfg.segment.max_chars, "device": cfg.segment.device,
                           "cache_dir": cfg.cache_dir})
    ds = map_stage(ds, FormatInstances, sink, batch_size=256)
    ds = map_stage(ds, shards.ShardWriter, sink, batch_size=1024,
                   kwargs={"root": cfg.output, "run_id": run_id, "columns": None,
                           "quarantine_columns": None})
    files = [shards.ShardFile(**row) for row in ds.take_all()]

    counts = [read, *collect_counts(sink)]
    manifest = shards.commit(cfg.output, run_id, files, counts, meta={"mixture": mix.name})
    log.info("summary of %s (%s):\n%s", run_id, mix.name, format_summary(counts))
    return manifest


def main() -> None:
    args = config_io.cli(__doc__.splitlines()[0], "jobs/configs/prepare_instruct.yaml")
    run(config_io.load(PrepareConfig, args.config, args.overrides))


if __name__ == "__main__":
    # Through the importable module, not __main__, so that Ray pickles this module's
    # functions and classes by reference (as they are under `ray job submit`).
    from jobs.prepare_instruct import main as _main

    _main()
