"""Corpus job: FineWeb-style documents -> validation -> Chinese relabel -> SaT sentences ->
SONAR embeddings -> committed embedding shards (plus a quarantine of rejected rows with their
reasons).

    python -m jobs.corpus_refresh --config jobs/configs/corpus_refresh.yaml

Incremental, for a nightly schedule: every configured input (file or folder, local or s3://)
is expanded into its Parquet files, and only files the shard manifest does not list yet are
processed (a listed file whose size changed is an error), `inputs_per_commit` files per Ray Data
pipeline. After each group the manifest is committed with the group's shards and counts
(`meta["inputs"]`: URI -> config, size, group; `meta["groups"]`: run, shard paths, counts), so
a run that dies loses at most the group in progress; its orphan shards are never visible and
are deleted by the next commit. Running again resumes where it stopped and ends
with the same set as an uninterrupted run. A lock object with a lease (pipelines/lease.py)
refuses a second concurrent run. Inputs dropped from the config stay in the set.

Ends with a summary of what every stage counted over the whole set; the same counts go into
the shard manifest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pyarrow as pa

from jobs import config as config_io
from jobs.cluster import init_ray
from jobs.stages import EmbedConfig, SegmentConfig, map_document_stages
from pipelines import shards
from pipelines.counts import StageCounts, format_summary
from pipelines.langs import sonar_code_for_config
from pipelines.lease import Lease
from pipelines.ray_stages import CountsSink, collect_counts, map_stage
from pipelines.sources import fineweb_files, read_fineweb
from pipelines.validate import MAX_CHARS

log = logging.getLogger("jobs.corpus_refresh")


@dataclass
class InputConfig:
    uri: str  # local file or folder, s3:// URI, or a Hub dataset id
    config: str  # FineWeb-2 config (fra_Latn, cmn_Hani, ...) or eng_Latn for FineWeb-Edu
    limit: int | None = None  # documents read from each of its files


@dataclass
class CorpusConfig:
    inputs: list[InputConfig] = field(default_factory=list)
    output: str = "build/demo/shards"
    cache_dir: str = "build/cache"
    # Longer documents are quarantined as too_long (bounds the memory of one row).
    max_document_chars: int = MAX_CHARS
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    # New input files processed by one run (None: all); the rest wait for the next run.
    max_inputs_per_run: int | None = None
    # Input files per pipeline and commit: what a crash can lose, against the cost of starting
    # the stages' actors (seconds) for every group.
    inputs_per_commit: int = 8
    # Lease of the lock on `output`; renewed every third of it while the job runs.
    lock_lease_s: float = 600.0


@dataclass
class Pending:
    input: InputConfig
    uri: str  # one Parquet file (or a Hub dataset id)
    size: int | None


def run(cfg: CorpusConfig) -> shards.Manifest:
    if not cfg.inputs:
        raise ValueError("the config names no inputs")
    for inp in cfg.inputs:  # fail on an unknown language before any work is done
        sonar_code_for_config(inp.config)
    init_ray()
    cfg.output = config_io.absolute(cfg.output)
    cfg.cache_dir = config_io.absolute(cfg.cache_dir)
    cfg.segment.model = config_io.absolute(cfg.segment.model)
    cfg.embed.absolute()
    with Lease(cfg.output, cfg.lock_lease_s):
        return refresh(cfg)


def committed(root: str) -> shards.Manifest | None:
    """The set to append to: None when there is none or it was not written incrementally (an
    older replace-mode set, which the first commit then replaces)."""
    try:
        manifest = shards.read_manifest(root)
    except FileNotFoundError:
        return None
    return manifest if "inputs" in manifest.meta else None


def pending(cfg: CorpusConfig, manifest: shards.Manifest | None) -> list[Pending]:
    done = manifest.meta["inputs"] if manifest else {}
    todo = []
    for inp in cfg.inputs:
        for uri, size in fineweb_files(config_io.absolute(inp.uri), inp.config):
            if uri not in done:
                todo.append(Pending(inp, uri, size))
            elif done[uri]["size"] != size:  # its documents are in the set, maybe changed
                raise ValueError(f"input {uri} changed since it was processed (size "
                                 f"{done[uri]['size']} -> {size}): published dumps are "
                                 "immutable; write the set anew to another output")
    return todo[:cfg.max_inputs_per_run] if cfg.max_inputs_per_run is not None else todo


def refresh(cfg: CorpusConfig) -> shards.Manifest:
    """Process the new input files a group at a time, committing after each group (the caller
    holds the lock)."""
    manifest = committed(cfg.output)
    todo = pending(cfg, manifest)
    if not todo:
        log.info("no new input files: %s is up to date", cfg.output)
        return manifest
    log.info("%d new input files to process", len(todo))
    run_id = shards.new_run_id()
    previous = manifest or shards.Manifest(run_id, None, [], meta={"inputs": {}, "groups": []})
    for start in range(0, len(todo), cfg.inputs_per_commit):
        group = todo[start:start + cfg.inputs_per_commit]
        files, counts = process(cfg, group, run_id)
        inputs, groups = dict(previous.meta["inputs"]), list(previous.meta["groups"])
        for item in group:
            inputs[item.uri] = {"config": item.input.config, "size": item.size,
                                "group": len(groups)}
        groups.append({"run_id": run_id, "files": [f.path for f in files],
                       "counts": [c.as_dict() for c in counts]})
        previous = shards.commit(cfg.output, run_id, files, total_counts(groups),
                                 meta={"inputs": inputs, "groups": groups}, previous=previous)
        log.info("committed %d input files (%d of %d)", len(group), start + len(group), len(todo))
    log.info("summary of the set after %s:\n%s", run_id,
             format_summary([StageCounts.from_dict(c) for c in previous.counts]))
    return previous


def total_counts(groups: list[dict]) -> list[StageCounts]:
    """Every stage's counts summed over the set's commit groups, in stage order."""
    total: dict[str, StageCounts] = {}
    for group in groups:
        for d in group["counts"]:
            c = StageCounts.from_dict(d)
            if c.stage in total:
                total[c.stage].merge(c)
            else:
                total[c.stage] = c
    return list(total.values())


def process(cfg: CorpusConfig, group: list[Pending], run_id: str,
            ) -> tuple[list[shards.ShardFile], list[StageCounts]]:
    """A group of input files through every stage into shard files under `run_id` (not
    committed yet), with what each stage counted."""
    import ray

    read = StageCounts("read")
    tables = []
    for item in group:
        table = read_fineweb(item.uri, item.input.config, item.input.limit)
        read.rows_in += table.num_rows
        read.rows_out += table.num_rows
        read.tally[item.input.config] += table.num_rows
        tables.append(table)
    sink = CountsSink.remote()
    ds = ray.data.from_arrow(pa.concat_tables(tables, promote_options="default"))
    ds = map_document_stages(ds, cfg.segment, cfg.embed, sink, cfg.cache_dir,
                             cfg.max_document_chars)
    ds = map_stage(ds, shards.ShardWriter, sink, batch_size=256,
                   kwargs={"root": cfg.output, "run_id": run_id})
    files = [shards.ShardFile(**row) for row in ds.take_all()]
    counts = [read, *collect_counts(sink)]
    ray.kill(sink)
    return files, counts


def main() -> None:
    args = config_io.cli(__doc__.splitlines()[0], "jobs/configs/corpus_refresh.yaml")
    run(config_io.load(CorpusConfig, args.config, args.overrides))


if __name__ == "__main__":
    # Through the importable module, not __main__, so that Ray pickles this module's
    # functions and classes by reference (as they are under `ray job submit`).
    from jobs.corpus_refresh import main as _main

    _main()
