import json

import numpy as np
import pyarrow as pa
import pytest

from pipelines import shards


def _docs_table(dim=4):
    docs = [np.arange(3 * dim, dtype=np.float32).reshape(3, dim),
            np.zeros((0, dim), np.float32),
            np.ones((2, dim), np.float32)]
    return pa.table({
        "id": ["a", "b", "c"], "source": ["s"] * 3, "lang": ["eng_Latn"] * 3,
        "text": ["x y", " ", "z"],
        "sentences": [["x", "y"], [], ["z"]],
        "quarantine": [None, "empty_text", None],
        "embeddings": shards.embeddings_to_arrow(docs, dim),
        "n_embeddings": pa.array([3, 0, 2], pa.int32()),
    }), docs


def test_embeddings_arrow_round_trip():
    table, docs = _docs_table()
    back = shards.arrow_to_embeddings(table["embeddings"])
    assert [d.shape for d in back] == [(3, 4), (0, 4), (2, 4)]
    for a, b in zip(docs, back):
        np.testing.assert_array_equal(a, b)
    # a sliced table keeps the right rows (offsets need not start at 0)
    sliced = shards.arrow_to_embeddings(table.slice(2)["embeddings"])
    np.testing.assert_array_equal(sliced[0], docs[2])


def _write_and_commit(root):
    table, _ = _docs_table()
    run_id = shards.new_run_id()
    writer = shards.ShardWriter(root, run_id)
    files = [shards.ShardFile(**r) for r in writer(table).to_pylist()]
    assert [f.kind for f in files] == ["data", "quarantine"]
    assert writer.counts.quarantined == {"empty_text": 1}
    assert writer.counts.tally["embeddings"] == 5
    return run_id, shards.commit(root, run_id, files, [writer.counts])


def test_commit_and_read_local(tmp_path):
    root = str(tmp_path / "shards")
    with pytest.raises(FileNotFoundError, match="no shard manifest"):
        shards.read_manifest(root)
    first, manifest = _write_and_commit(root)
    assert manifest.dim == 4 and [f.rows for f in manifest.data_files] == [2]
    table = shards.read_table(root)
    assert table["id"].to_pylist() == ["a", "c"]
    # A second run replaces the first: only its files remain and the manifest names them.
    second, manifest2 = _write_and_commit(root)
    assert not (tmp_path / "shards" / first).exists()
    assert json.loads((tmp_path / "shards" / "manifest.json").read_text())["run_id"] == second
    assert shards.read_table(root).num_rows == 2


def test_uncommitted_run_is_invisible(tmp_path):
    root = str(tmp_path / "shards")
    _, manifest = _write_and_commit(root)
    table, _ = _docs_table()
    shards.ShardWriter(root, shards.new_run_id())(table)  # written, never committed
    assert shards.read_table(root).num_rows == 2
    assert shards.read_manifest(root).run_id == manifest.run_id


def test_commit_and_read_s3(s3_server):
    root = "s3://mimir/test-shards"
    _, manifest = _write_and_commit(root)
    assert shards.read_table(root)["id"].to_pylist() == ["a", "c"]
    assert shards.read_manifest(root).files == manifest.files
