"""Statistics job: per-language documents and sentences of the committed pre-training shards
and instruction set (paper Tables 4-5) and pie charts of the sentence shares (Figures 1-2),
written as CSV, Markdown and PNG.

    python -m jobs.corpus_stats --config jobs/configs/corpus_stats.yaml
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from jobs import config as config_io
from jobs.cluster import init_ray
from pipelines import shards, storage
from pipelines.counts import format_summary
from pipelines.ray_stages import CountsSink, collect_counts, map_stage
from pipelines.stats import LanguageCounter, merge_counts, stats_rows, write_stats

log = logging.getLogger("jobs.corpus_stats")


@dataclass
class StatsConfig:
    pretrain: str | None = "build/demo/shards"  # a committed shard set, or null to skip
    instruct: str | None = "build/demo/instruct"  # a committed instruction set, or null
    output: str = "build/demo/stats"  # local directory or s3:// prefix


def _count(paths: list[str], root: str, columns: list[str], sink) -> dict[str, tuple[int, int]]:
    import ray

    fs, _ = storage.resolve(root)
    ds = ray.data.read_parquet(paths, filesystem=fs, columns=["lang", *columns])
    ds = map_stage(ds, LanguageCounter, sink, batch_size=4096,
                   kwargs={"sentence_columns": columns})
    return merge_counts([pa.Table.from_pylist(ds.take_all())] if paths else [])


def run(cfg: StatsConfig) -> list[str]:
    """Writes the statistics under cfg.output and returns the written files' URIs."""
    init_ray()
    sink = CountsSink.remote()
    output = config_io.absolute(cfg.output)
    with storage.local_dir(output) as out:
        written = [storage.join(output, p.name) for p in _write(cfg, out, sink)]
    log.info("summary:\n%s", format_summary(collect_counts(sink)))
    return written


def _write(cfg: StatsConfig, out: Path, sink) -> list[Path]:
    written: list[Path] = []
    if cfg.pretrain:
        root = config_io.absolute(cfg.pretrain)
        counts = _count(shards.data_paths(root), root, ["sentences"], sink)
        written += write_stats(stats_rows(counts), out, "pretraining",
                               "Pre-training data: sentences per language")
    if cfg.instruct:
        root = config_io.absolute(cfg.instruct)
        mixture = shards.read_manifest(root).meta.get("mixture", "?")
        counts = _count(shards.data_paths(root), root, ["source_sentences", "target_sentences"],
                        sink)
        written += write_stats(stats_rows(counts), out, "instruction",
                               f"Instruction data ({mixture}): sentences per language")
    return written


def main() -> None:
    args = config_io.cli(__doc__.splitlines()[0], "jobs/configs/corpus_stats.yaml")
    run(config_io.load(StatsConfig, args.config, args.overrides))


if __name__ == "__main__":
    # Through the importable module, not __main__, so that Ray pickles this module's
    # functions and classes by reference (as they are under `ray job submit`).
    from jobs.corpus_stats import main as _main

    _main()
