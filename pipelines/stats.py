"""Per-language statistics of the pre-training and instruction data: the layout of the paper's
Tables 4-5 (language, documents, sentences, share of sentences) and its Figures 1-2 (pie charts
of the sentence distribution), written as CSV, Markdown and PNG.

Counted as the model sees the data: a pre-training document's sentences are its segmented
sentences (the appended "End of text." not included); an instruction instance's are its source
plus target sentences, turn markers and "End of text." included.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipelines.counts import StageCounts

log = logging.getLogger(__name__)

COUNT_SCHEMA = pa.schema([("lang", pa.string()), ("documents", pa.int64()),
                          ("sentences", pa.int64())])
# Languages under this share of sentences are drawn as one "other" slice of the pie.
PIE_MIN_SHARE = 0.01


class LanguageCounter:
    """Per-language documents and sentences of one batch (COUNT_SCHEMA, one row a language).
    Quarantined rows, if the table still has them, are not counted."""

    name = "language_counts"

    def __init__(self, sentence_columns: list[str]) -> None:
        self.sentence_columns = sentence_columns
        self.counts = StageCounts(self.name)

    def __call__(self, table: pa.Table) -> pa.Table:
        self.counts.rows_in += table.num_rows
        if "quarantine" in table.column_names:
            table = table.filter(pc.is_null(table["quarantine"]))
        n = pa.array([0] * table.num_rows, pa.int64())
        for column in self.sentence_columns:
            n = pc.add(n, pc.fill_null(pc.list_value_length(table[column]), 0).cast(pa.int64()))
        grouped = pa.table({"lang": table["lang"], "n": n}).group_by("lang").aggregate(
            [("n", "count"), ("n", "sum")])
        out = pa.table([grouped["lang"], grouped["n_count"].cast(pa.int64()),
                        grouped["n_sum"].cast(pa.int64())], schema=COUNT_SCHEMA)
        self.counts.rows_out += table.num_rows
        self.counts.tally["sentences"] += int(pc.sum(n).as_py() or 0)
        return out


def merge_counts(tables: list[pa.Table]) -> dict[str, tuple[int, int]]:
    """lang -> (documents, sentences), summed over LanguageCounter outputs."""
    totals: dict[str, list[int]] = {}
    for t in tables:
        for lang, docs, sents in zip(*(t.column(c).to_pylist() for c in COUNT_SCHEMA.names)):
            row = totals.setdefault(lang, [0, 0])
            row[0] += docs
            row[1] += sents
    return {lang: (d, s) for lang, (d, s) in totals.items()}


def stats_rows(counts: dict[str, tuple[int, int]]) -> list[dict]:
    """Table 4/5 rows, most sentences first (ties by code), each with its share of sentences
    in percent (rounded to 2 decimals)."""
    total = sum(s for _, s in counts.values())
    rows = []
    for lang, (docs, sents) in sorted(counts.items(), key=lambda kv: (-kv[1][1], kv[0])):
        share = round(100 * sents / total, 2) if total else 0.0
        rows.append({"language": lang, "documents": docs, "sentences": sents, "share": share})
    return rows


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
