"""Bad training input is refused before any worker starts, or skipped and counted."""

import json

import numpy as np
import pyarrow as pa
import pytest

from training import launch
from training.config import PretrainJobConfig
from mimir_model.normalizer import RobustNormalizer
import samples
from pipelines import shards
from pipelines.streams.shard_stream import RankStream
from tests.synthetic import write_synthetic_shards


def _cfg(tmp_path, **kw) -> PretrainJobConfig:
    base = dict(shards=str(tmp_path / "shards"), normalizer=str(tmp_path / "n.safetensors"),
                storage_path=str(tmp_path / "ckpt"), cache_dir=str(tmp_path / "cache"))
    return PretrainJobConfig(**{**base, **kw})


def test_good_input_passes(tmp_path):
    write_synthetic_shards(str(tmp_path / "shards"), 6, 8).save(tmp_path / "n.safetensors")
    launch.preflight(_cfg(tmp_path))


def test_missing_shards_name_the_job_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="no shard manifest.*corpus_refresh"):
        launch.preflight(_cfg(tmp_path))


def test_normalizer_of_another_dimension(tmp_path):
    write_synthetic_shards(str(tmp_path / "shards"), 6, 8)
    RobustNormalizer().fit([np.ones((4, 16), np.float32)]).save(tmp_path / "n.safetensors")
    with pytest.raises(ValueError, match="dimension 16, the shards .* have dimension 8"):
        launch.preflight(_cfg(tmp_path))


def test_shard_of_the_wrong_dimension(tmp_path):
    root = tmp_path / "shards"
    write_synthetic_shards(str(root), 6, 8).save(tmp_path / "n.safetensors")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["dim"] = 4
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="dimension 8, the manifest says 4"):
        launch.preflight(_cfg(tmp_path))


def test_missing_normalizer(tmp_path):
    write_synthetic_shards(str(tmp_path / "shards"), 6, 8)
    with pytest.raises(FileNotFoundError, match="n.safetensors"):
        launch.preflight(_cfg(tmp_path))


def test_missing_bucket(tmp_path, s3_server):
    write_synthetic_shards(str(tmp_path / "shards"), 6, 8).save(tmp_path / "n.safetensors")
    with pytest.raises(FileNotFoundError, match="bucket 'no-such-bucket'"):
        launch.preflight(_cfg(tmp_path, storage_path="s3://no-such-bucket/ckpt"))


def test_nan_documents_are_skipped_and_counted(tmp_path):
    root = str(tmp_path / "shards")
    docs = [np.ones((3, 4), np.float32), np.full((2, 4), np.nan, np.float32),
            np.zeros((4, 4), np.float32)]
    table = pa.table({
        "id": ["a", "b", "c"], "source": ["s"] * 3, "lang": ["eng_Latn"] * 3,
        "text": ["-"] * 3, "sentences": [["-"] * len(d) for d in docs],
        "quarantine": [None] * 3, "embeddings": shards.embeddings_to_arrow(docs, 4),
        "n_embeddings": pa.array([3, 2, 4], pa.int32())})
    run_id = shards.new_run_id()
    writer = shards.ShardWriter(root, run_id)
    shards.commit(root, run_id, [shards.ShardFile(**r) for r in writer(table).to_pylist()],
                  [writer.counts])
    stream = RankStream(root, rank=0, world=1, seed=0)
    assert sorted(i for i, _, _ in stream.documents(0)) == ["a", "c"]
    assert stream.skipped_nonfinite == {"b"}


def test_rank_streams_split_and_repeat_exactly(tmp_path):
    root = str(tmp_path / "shards")
    write_synthetic_shards(root, 10, 4, files=1)
    a = [i for i, _, _ in RankStream(root, 0, 2, seed=3).documents(0)]
    b = [i for i, _, _ in RankStream(root, 1, 2, seed=3).documents(0)]
    assert sorted(a + b) == sorted(f"doc{i}" for i in range(10)) and not set(a) & set(b)
    again = RankStream(root, 0, 2, seed=3)
    assert [i for i, _, _ in again.documents(0)] == a  # same pass, same order
    assert [i for i, _, _ in again.documents(1)] != a  # the next pass is reshuffled
    assert sorted(i for i, _, _ in again.documents(1)) == sorted(a)


def _runtime(tmp_path, uri: str, config: str) -> PretrainJobConfig:
    from pipelines.readers.fineweb import FinewebInput
    from pipelines.streams.runtime_stream import RuntimeDataConfig

    RobustNormalizer().fit([np.ones((4, 8), np.float32)]).save(tmp_path / "n.safetensors")
    return _cfg(tmp_path, data="runtime",
                runtime=RuntimeDataConfig(inputs=[FinewebInput(uri=uri, config=config)]))


def test_runtime_inputs_are_checked_before_any_worker(tmp_path):
    sample = str(samples.fineweb("fra_Latn"))
    launch.preflight(_runtime(tmp_path, sample, "fra_Latn"))
    with pytest.raises(ValueError, match="xxx_Latn"):
        launch.preflight(_runtime(tmp_path, sample, "xxx_Latn"))
    with pytest.raises(FileNotFoundError, match="no such file or directory: .*missing"):
        launch.preflight(_runtime(tmp_path, str(tmp_path / "missing"), "fra_Latn"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no Parquet files for fra_Latn under .*empty"):
        launch.preflight(_runtime(tmp_path, str(tmp_path / "empty"), "fra_Latn"))
    with pytest.raises(ValueError, match="data must be shards or runtime"):
        launch.preflight(_cfg(tmp_path, data="stream"))
