"""The run-time training stream's stages and bookkeeping, without Ray: reading input files,
leaving out trained documents, setting quarantine aside, a worker's record of what it trained,
and finding the newest complete checkpoint."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from mimir_model.checkpoint import latest_checkpoint, trained_keys
from pipelines.streams.runtime_stream import RuntimeFeed
from pipelines.shards import embeddings_to_arrow
from pipelines.readers.fineweb import ReadFineweb
from mimir_model.checkpoint import doc_key, doc_keys
from pipelines.streams.runtime_stream import SetAsideQuarantine, SkipTrained

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def test_doc_key_is_stable():
    # Checkpoints store these keys: they must never change between versions.
    assert doc_key("<urn:uuid:0001>") == 846901204671083200
    assert doc_key("") == -5426141060434712860
    assert doc_keys(["", "<urn:uuid:0001>"]).tolist() == [-5426141060434712860, 846901204671083200]


def test_read_fineweb_stage_reads_each_file_and_counts():
    files = pa.table({"uri": [str(SAMPLES / "fineweb-2" / "fra_Latn.parquet"),
                              str(SAMPLES / "fineweb-edu" / "eng_Latn.parquet")],
                      "config": ["fra_Latn", "eng_Latn"], "limit": [None, 5]})
    stage = ReadFineweb()
    out = stage(files)
    assert out.num_rows == 6 + 5
    assert out["lang"].to_pylist() == ["fra_Latn"] * 6 + ["eng_Latn"] * 5
    assert (stage.counts.rows_in, stage.counts.rows_out) == (2, 11)
    assert dict(stage.counts.tally) == {"fra_Latn": 6, "eng_Latn": 5}


def test_skip_trained_drops_exactly_the_trained_documents():
    table = pa.table({"id": ["a", "b", "c", "d"], "text": ["1", "2", "3", "4"]})
    stage = SkipTrained(doc_keys(["d", "b", "zzz"]))
    out = stage(table)
    assert out["id"].to_pylist() == ["a", "c"]
    assert (stage.counts.rows_in, stage.counts.rows_out) == (4, 2)
    assert stage.counts.tally["already_trained"] == 2


def test_set_aside_writes_quarantined_rows_with_their_reason(tmp_path):
    emb = embeddings_to_arrow([np.ones((2, 3), np.float32), np.zeros((0, 3), np.float32),
                               np.full((1, 3), 2, np.float32)], 3)
    table = pa.table({"id": ["a", "b", "c"], "source": ["s"] * 3, "lang": ["eng_Latn"] * 3,
                      "text": ["x", "", "y"], "quarantine": [None, "empty_text", None],
                      "sentences": [["x"], [], ["y"]], "embeddings": emb})
    stage = SetAsideQuarantine(str(tmp_path / "q"))
    out = stage(table)
    assert out.column_names == ["id", "embeddings"] and out["id"].to_pylist() == ["a", "c"]
    [written] = list((tmp_path / "q").glob("part-*.parquet"))
    rejected = pq.read_table(written)
    assert rejected["id"].to_pylist() == ["b"]
    assert rejected["quarantine"].to_pylist() == ["empty_text"]
    assert dict(stage.counts.quarantined) == {"empty_text": 1}
    assert (stage.counts.rows_in, stage.counts.rows_out) == (3, 2)


class _Shard:
    """What Ray Train's get_dataset_shard gives a worker: batches of the stream."""

    def __init__(self, tables: list[pa.Table]) -> None:
        self.tables = tables

    def iter_batches(self, batch_size: int, batch_format: str):
        assert batch_format == "pyarrow"
        yield from self.tables


def _docs(ids: list[str], lengths: list[int], dim: int = 4, bad: str | None = None) -> pa.Table:
    arrays = [np.full((n, dim), i + 1, np.float32) for i, n in enumerate(lengths)]
    if bad is not None:
        arrays[ids.index(bad)][0, 0] = np.nan
    return pa.table({"id": ids, "embeddings": embeddings_to_arrow(arrays, dim)})


def test_feed_counts_a_document_trained_once_its_last_sequence_is():
    shard = _Shard([_docs(["long", "old", "nan"], [300, 5, 2], bad="nan"),
                    _docs(["short"], [7])])
    feed = RuntimeFeed(shard, 16, max_len=128, trained_before=doc_keys(["old"]), dim=4)
    docs = list(feed.documents())
    assert [(d, len(e)) for d, e, _ in docs] == [("long", 300), ("short", 7)]
    assert feed.skipped_trained == 1 and feed.skipped_nonfinite == ["nan"]
    feed.mark_trained(["long#0", "long#1"])  # 300 embeddings = 3 sequences of at most 128
    assert feed.new_keys == []
    feed.mark_trained(["short#0", "long#2"])
    assert feed.new_keys == [doc_key("short"), doc_key("long")]
    assert feed.keys_to_save(inherit=False).tolist() == [doc_key("short"), doc_key("long")]
    assert sorted(feed.keys_to_save(inherit=True).tolist()) == sorted(
        [doc_key("short"), doc_key("long"), doc_key("old")])


def test_feed_refuses_embeddings_of_another_dimension():
    feed = RuntimeFeed(_Shard([_docs(["a"], [3], dim=4)]), 16, 128, np.zeros(0, np.int64), dim=8)
    with pytest.raises(ValueError, match="dimension 4, the normalizer is for dimension 8"):
        list(feed.documents())


def _checkpoint(folder: Path, keys: dict[int, list[str]], complete: bool = True) -> None:
    folder.mkdir(parents=True)
    for rank, ids in keys.items():
        torch.save({"trained_keys": torch.tensor(doc_keys(ids))}, folder / f"worker_rank{rank}.pt")
        listed = {f"worker_rank{rank}.pt": "sha", **({} if complete else {"state/missing": "x"})}
        (folder / f"files_rank{rank}.json").write_text(
            json.dumps({"world": len(keys), "files": listed}))


def test_latest_complete_checkpoint_and_its_trained_documents(tmp_path):
    run = tmp_path / "store" / "run"
    assert latest_checkpoint(str(tmp_path / "store"), "run") is None
    _checkpoint(run / "checkpoint_2026-01-01_10-00-00.000000", {0: ["a"], 1: ["b"]})
    _checkpoint(run / "checkpoint_2026-01-01_11-00-00.000000", {0: ["a", "c"], 1: ["b", "d"]})
    _checkpoint(run / "checkpoint_2026-01-01_12-00-00.000000", {0: ["x"], 1: ["y"]},
                complete=False)  # an upload cut short
    (run / "checkpoint_2026-01-01_13-00-00.000000").mkdir()  # nothing written yet
    latest = latest_checkpoint(str(tmp_path / "store"), "run")
    assert latest == str(run / "checkpoint_2026-01-01_11-00-00.000000")
    assert trained_keys(latest).tolist() == sorted(doc_keys(["a", "b", "c", "d"]).tolist())
