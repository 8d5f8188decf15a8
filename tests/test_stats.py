import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from pipelines.stats import LanguageCounter, merge_counts, stats_rows
from reports.corpus_stats import pie_slices, to_markdown, write_stats


def test_counter_counts_documents_and_sentences_per_language():
    table = pa.table({
        "lang": ["fra_Latn", "eng_Latn", "fra_Latn", "eng_Latn", "deu_Latn"],
        "sentences": [["a", "b"], ["c"], ["d", "e", "f"], None, ["g"]],
        "quarantine": [None, None, None, None, "empty_text"],
    })
    stage = LanguageCounter(["sentences"])
    out = merge_counts([stage(table), stage(table.slice(0, 1))])
    assert out == {"fra_Latn": (3, 7), "eng_Latn": (2, 1)}
    assert stage.counts.tally["sentences"] == 6 + 2


def test_instruction_counts_add_source_and_target():
    table = pa.table({"lang": ["eng_Latn"], "source_sentences": [["U", "q", "A"]],
                      "target_sentences": [["r", "End of text."]]})
    assert merge_counts([LanguageCounter(["source_sentences", "target_sentences"])(table)]) == {
        "eng_Latn": (1, 5)}


def test_rows_markdown_and_pie():
    counts = {"eng_Latn": (10, 600), "fra_Latn": (5, 395), "deu_Latn": (1, 5)}
    rows = stats_rows(counts)
    assert rows == [
        {"language": "eng_Latn", "documents": 10, "sentences": 600, "share": 60.0},
        {"language": "fra_Latn", "documents": 5, "sentences": 395, "share": 39.5},
        {"language": "deu_Latn", "documents": 1, "sentences": 5, "share": 0.5},
    ]
    md = to_markdown(rows, "T")
    assert "| eng_Latn | 10 | 600 | 60.00 |" in md
    assert md.strip().endswith("| **Total** | **16** | **1,000** | **100.00** |")
    assert pie_slices(rows) == [("eng_Latn", 600), ("fra_Latn", 395), ("other", 5)]


def test_write_stats_files(tmp_path):
    paths = write_stats(stats_rows({"eng_Latn": (2, 3)}), tmp_path, "pretraining", "T")
    assert [p.name for p in paths] == ["pretraining.csv", "pretraining.md", "pretraining.png"]
    assert pacsv.read_csv(paths[0]).to_pylist() == [
        {"language": "eng_Latn", "documents": 2, "sentences": 3, "share": 100.0}]
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_stats_job_reads_committed_sets(tmp_path, ray_local):
    from reports.corpus_stats import StatsConfig, run
    from pipelines import shards

    docs = pa.table({
        "id": ["a", "b", "c"], "source": ["fineweb-2"] * 3, "lang": ["fra_Latn", "fra_Latn",
                                                                    "eng_Latn"],
        "sentences": [["x", "y"], ["z"], ["w", "v", "u"]], "n_embeddings": [3, 2, 4],
        "embeddings": shards.embeddings_to_arrow(
            [np.zeros((n, 4), np.float32) for n in (3, 2, 4)], 4),
        "text": ["x y", "z", "w v u"], "quarantine": pa.nulls(3, pa.string()),
    })
    writer = shards.ShardWriter(str(tmp_path / "shards"), "run-1")
    files = [shards.ShardFile(**f) for f in writer(docs).to_pylist()]
    shards.commit(str(tmp_path / "shards"), "run-1", files, [])
    inst = pa.table({"id": ["i#0"], "source": ["aya"], "lang": ["eng_Latn"],
                     "source_sentences": [["U", "q", "A"]],
                     "target_sentences": [["r", "End of text."]],
                     "quarantine": pa.nulls(1, pa.string())})
    iw = shards.ShardWriter(str(tmp_path / "inst"), "run-1", columns=None,
                            quarantine_columns=None)
    shards.commit(str(tmp_path / "inst"), "run-1",
                  [shards.ShardFile(**f) for f in iw(inst).to_pylist()], [],
                  meta={"mixture": "english"})
    paths = run(StatsConfig(pretrain=str(tmp_path / "shards"), instruct=str(tmp_path / "inst"),
                            output=str(tmp_path / "stats")))
    assert len(paths) == 6
    pre = pacsv.read_csv(tmp_path / "stats/pretraining.csv").to_pylist()
    # A tie in sentences is broken by the code.
    assert pre == [{"language": "eng_Latn", "documents": 1, "sentences": 3, "share": 50.0},
                   {"language": "fra_Latn", "documents": 2, "sentences": 3, "share": 50.0}]
    ins = pacsv.read_csv(tmp_path / "stats/instruction.csv").to_pylist()
    assert ins == [{"language": "eng_Latn", "documents": 1, "sentences": 5, "share": 100.0}]
