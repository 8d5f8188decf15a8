"""Per-language statistics of the pre-training and instruction data: the counts behind the
paper's Tables 4-5 (language, documents, sentences, share of sentences); reports/corpus_stats.py
writes them with its Figures 1-2.

Counted as the model sees the data: a pre-training document's sentences are its segmented
sentences (the appended "End of text." not included); an instruction instance's are its source
plus target sentences, turn markers and "End of text." included.
"""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.stage import Stage

log = logging.getLogger(__name__)

COUNT_SCHEMA = pa.schema([("lang", pa.string()), ("documents", pa.int64()),
                          ("sentences", pa.int64())])


class LanguageCounter(Stage):
    """Per-language documents and sentences of one batch (COUNT_SCHEMA, one row a language).
    Quarantined rows, if the table still has them, are not counted."""

    name = "language_counts"

    def __init__(self, sentence_columns: list[str]) -> None:
        self.sentence_columns = sentence_columns
        super().__init__()

    def process(self, table: pa.Table) -> pa.Table:
        if "quarantine" in table.column_names:
            table = table.filter(pc.is_null(table["quarantine"]))
        n = pa.array([0] * table.num_rows, pa.int64())
        for column in self.sentence_columns:
            n = pc.add(n, pc.fill_null(pc.list_value_length(table[column]), 0).cast(pa.int64()))
        grouped = pa.table({"lang": table["lang"], "n": n}).group_by("lang").aggregate(
            [("n", "count"), ("n", "sum")])
        out = pa.table([grouped["lang"], grouped["n_count"].cast(pa.int64()),
                        grouped["n_sum"].cast(pa.int64())], schema=COUNT_SCHEMA)
        self.counts.tally["sentences"] += int(pc.sum(n).as_py() or 0)
        return out

    def rows_out(self, out: pa.Table) -> int:
        return int(pc.sum(out["documents"]).as_py() or 0)  # the documents counted


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
