"""Corpus statistics (jobs.corpus_stats): per-language documents and sentences of the committed
pre-training shards and instruction set (paper Tables 4-5) and pie charts of the sentence
shares (Figures 1-2), written as CSV, Markdown and PNG.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

import storage
from jobkit.cluster import init_ray
from jobkit.config import write_config
from pipelines import shards
from pipelines.counts import format_summary
from pipelines.ray_stages import CountsSink, collect_counts, map_stage
from pipelines.stage import StageSpec
from pipelines.stats import LanguageCounter, merge_counts, stats_rows
from storage.paths import Input, Output, absolute_paths

log = logging.getLogger(__name__)

# Languages under this share of sentences are drawn as one "other" slice of the pie.
PIE_MIN_SHARE = 0.01


@dataclass
class StatsConfig:
    pretrain: Input | None = "build/demo/shards"  # a committed shard set, or null to skip
    instruct: Input | None = "build/demo/instruct"  # a committed instruction set, or null
    output: Output = "build/demo/stats"  # local directory or s3:// prefix


def _count(paths: list[str], root: str, columns: list[str], sink) -> dict[str, tuple[int, int]]:
    import ray

    fs, _ = storage.resolve(root)
    ds = ray.data.read_parquet(paths, filesystem=fs, columns=["lang", *columns])
    ds = map_stage(ds, StageSpec(LanguageCounter, {"sentence_columns": columns},
                                 batch_size=4096), sink)
    return merge_counts([pa.Table.from_pylist(ds.take_all())] if paths else [])


def run(cfg: StatsConfig) -> list[str]:
    """Writes the statistics under cfg.output and returns the written files' URIs."""
    absolute_paths(cfg)
    init_ray()
    sink = CountsSink.remote()
    with storage.local_dir(cfg.output) as out:
        written = [storage.join(cfg.output, p.name) for p in _write(cfg, out, sink)]
        write_config(cfg, out)
    log.info("summary:\n%s", format_summary(collect_counts(sink)))
    return written


def _write(cfg: StatsConfig, out: Path, sink) -> list[Path]:
    written: list[Path] = []
    if cfg.pretrain:
        root = cfg.pretrain
        counts = _count(shards.data_paths(root), root, ["sentences"], sink)
        written += write_stats(stats_rows(counts), out, "pretraining",
                               "Pre-training data: sentences per language")
    if cfg.instruct:
        root = cfg.instruct
        mixture = shards.read_manifest(root).meta.get("mixture", "?")
        counts = _count(shards.data_paths(root), root, ["source_sentences", "target_sentences"],
                        sink)
        written += write_stats(stats_rows(counts), out, "instruction",
                               f"Instruction data ({mixture}): sentences per language")
    return written


def to_markdown(rows: list[dict], title: str) -> str:
    lines = [f"### {title}", "", "| Language | Documents | Sentences | Share (%) |",
             "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['language']} | {r['documents']:,} | {r['sentences']:,} | "
                     f"{r['share']:.2f} |")
    docs = sum(r["documents"] for r in rows)
    sents = sum(r["sentences"] for r in rows)
    lines.append(f"| **Total** | **{docs:,}** | **{sents:,}** | **100.00** |")
    return "\n".join(lines) + "\n"


def pie_slices(rows: list[dict]) -> list[tuple[str, int]]:
    """(label, sentences) per slice: languages under PIE_MIN_SHARE merged into "other"."""
    total = sum(r["sentences"] for r in rows)
    slices, other = [], 0
    for r in rows:
        if total and r["sentences"] / total >= PIE_MIN_SHARE:
            slices.append((r["language"], r["sentences"]))
        else:
            other += r["sentences"]
    if other:
        slices.append(("other", other))
    return slices


def write_stats(rows: list[dict], out_dir: str | Path, name: str, title: str) -> list[Path]:
    """{name}.csv, {name}.md and {name}.png (pie chart) under out_dir (a local directory)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path, png_path = (out / f"{name}.{ext}" for ext in ("csv", "md", "png"))
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ("language", pa.string()), ("documents", pa.int64()), ("sentences", pa.int64()),
        ("share", pa.float64())]))
    pacsv.write_csv(table, csv_path)
    md_path.write_text(to_markdown(rows, title), encoding="utf-8")
    slices = pie_slices(rows)
    fig, ax = plt.subplots(figsize=(8, 8))
    if slices:
        ax.pie([n for _, n in slices], labels=[label for label, _ in slices],
               autopct="%1.1f%%", startangle=90, counterclock=False)
    ax.set_title(title)
    fig.savefig(png_path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    log.info("wrote %s, %s, %s", csv_path, md_path, png_path)
    return [csv_path, md_path, png_path]
