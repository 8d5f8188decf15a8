"""corpus_refresh as a nightly job on moto's S3: incremental by input file, crash-safe (a run
that dies midway and is run again ends with the uninterrupted run's set), and locked against a
concurrent run by a lease."""

import io
import time
from pathlib import Path

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import config as config_io
from jobs import corpus_refresh
from pipelines import shards
from pipelines.lease import Lease, LeaseHeld

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "data" / "samples"
CONFIGS = ROOT / "jobs" / "configs"
BUCKET = "mimir"


def _put(key: str, table: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=buf.getvalue())


def _inputs(prefix: str, with_third_dump: bool = True) -> None:
    """French in dumps of 2 documents each (part-0, part-1 and, later, part-2), Chinese whole."""
    fra = pq.read_table(SAMPLES / "fineweb-2" / "fra_Latn.parquet")
    for i in range(3 if with_third_dump else 2):
        _put(f"{prefix}/fra_Latn/part-{i}.parquet", fra.slice(2 * i, 2))
    _put(f"{prefix}/cmn_Hani/part-0.parquet", pq.read_table(SAMPLES / "fineweb-2" / "cmn_Hani.parquet"))


def _config(assets: Path, tmp: Path, inputs: str, output: str) -> corpus_refresh.CorpusConfig:
    cfg = config_io.load(corpus_refresh.CorpusConfig, CONFIGS / "corpus_refresh.yaml", [
        f"output={output}", f"cache_dir={tmp / 'cache'}", f"segment.model={assets / 'sat'}",
        f"embed.encoder={assets / 'sonar' / 'sonar_text_encoder.pt'}",
        f"embed.tokenizer={assets / 'sonar' / 'sentencepiece.model'}"])
    cfg.inputs = [corpus_refresh.InputConfig(uri=inputs, config="fra_Latn"),
                  corpus_refresh.InputConfig(uri=inputs, config="cmn_Hani")]
    return cfg


def _objects(prefix: str) -> set[str]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET,
                                                                          Prefix=prefix + "/")
    return {o["Key"][len(prefix) + 1:] for page in pages for o in page.get("Contents", [])
            if not o["Key"].endswith("/")}  # pyarrow's directory markers are not files


def _documents(root: str) -> dict[str, tuple]:
    table = shards.read_table(root)
    ids = table["id"].to_pylist()
    assert len(ids) == len(set(ids))  # no document twice
    embeddings = shards.arrow_to_embeddings(table["embeddings"])
    return {i: (lang, sents, e) for i, lang, sents, e in
            zip(ids, table["lang"].to_pylist(), table["sentences"].to_pylist(), embeddings)}


def _assert_same_documents(root: str, reference: str) -> None:
    got, want = _documents(root), _documents(reference)
    assert sorted(got) == sorted(want)
    for i, (lang, sents, e) in want.items():
        assert got[i][:2] == (lang, sents)
        # Equal up to float32 rounding: a run batches sentences differently when its commit
        # groups differ, and a padded batch sums in another order (measured: 2.4e-7).
        np.testing.assert_allclose(got[i][2], e, rtol=0, atol=1e-6)


def _assert_only_committed_files(prefix: str) -> None:
    """Nothing under the set but the manifest and the files it names: no orphan, no lock."""
    manifest = shards.read_manifest(f"s3://{BUCKET}/{prefix}")
    assert _objects(prefix) == {shards.MANIFEST, *(f.path for f in manifest.files)}


@pytest.fixture(scope="module")
def reference(ray_local, tiny_assets, tmp_path_factory):
    """An uninterrupted run over all four input files."""
    _inputs("refresh/in-all")
    cfg = _config(tiny_assets, tmp_path_factory.mktemp("ref"), f"s3://{BUCKET}/refresh/in-all",
                  f"s3://{BUCKET}/refresh/ref")
    manifest = corpus_refresh.run(cfg)
    return cfg.output, manifest


@pytest.mark.slow
def test_uninterrupted_run_records_every_input(reference):
    root, manifest = reference
    inputs = manifest.meta["inputs"]
    base = f"s3://{BUCKET}/refresh/in-all"
    assert list(inputs) == [f"{base}/fra_Latn/part-{i}.parquet" for i in range(3)] + \
        [f"{base}/cmn_Hani/part-0.parquet"]
    assert [(e["config"], e["group"]) for e in inputs.values()] == \
        [("fra_Latn", 0)] * 3 + [("cmn_Hani", 0)]
    # The group's shard files are the set, and the set is nothing else.
    assert sorted(manifest.meta["groups"][0]["files"]) == sorted(f.path for f in manifest.files)
    counts = {c["stage"]: c for c in manifest.counts}
    assert counts["read"]["rows_out"] == 6 + 8
    assert counts["read"]["tally"] == {"fra_Latn": 6, "cmn_Hani": 8}
    quarantined = sum(f.rows for f in manifest.files if f.kind == "quarantine")
    assert counts["read"]["rows_out"] == len(_documents(root)) + quarantined
    _assert_only_committed_files("refresh/ref")


@pytest.mark.slow
def test_incremental_runs(reference, tiny_assets, tmp_path):
    root, prefix = f"s3://{BUCKET}/refresh/inc", "refresh/inc"
    _inputs("refresh/in-inc", with_third_dump=False)
    cfg = _config(tiny_assets, tmp_path, f"s3://{BUCKET}/refresh/in-inc", root)
    first = corpus_refresh.run(cfg)
    assert len(first.meta["inputs"]) == 3
    # Nothing new: nothing processed, the manifest is byte for byte the same.
    before = boto3.client("s3").get_object(Bucket=BUCKET, Key=f"{prefix}/manifest.json")["Body"].read()
    again = corpus_refresh.run(_config(tiny_assets, tmp_path, cfg.inputs[0].uri, root))
    after = boto3.client("s3").get_object(Bucket=BUCKET, Key=f"{prefix}/manifest.json")["Body"].read()
    assert after == before and again.to_json() == first.to_json()
    # A new dump appears: only it is processed; the earlier entries and files stay as they were.
    _inputs("refresh/in-inc")
    third = corpus_refresh.run(_config(tiny_assets, tmp_path, cfg.inputs[0].uri, root))
    new = f"s3://{BUCKET}/refresh/in-inc/fra_Latn/part-2.parquet"
    assert list(third.meta["inputs"]) == [*first.meta["inputs"], new]
    assert {k: v for k, v in third.meta["inputs"].items() if k != new} == first.meta["inputs"]
    assert third.meta["inputs"][new]["group"] == 1
    assert third.meta["groups"][0] == first.meta["groups"][0]
    assert third.meta["groups"][1]["counts"][0] == {"stage": "read", "rows_in": 2, "rows_out": 2,
                                                    "tally": {"fra_Latn": 2}, "quarantined": {}}
    assert set(third.runs) == {first.run_id, third.run_id} and first.run_id != third.run_id
    assert {f.path for f in third.files} >= {f.path for f in first.files}
    assert {c["stage"]: c["rows_out"] for c in third.counts}["read"] == 6 + 8
    _assert_same_documents(root, reference[0])
    _assert_only_committed_files(prefix)


@pytest.mark.slow
def test_crash_midway_then_rerun_equals_uninterrupted_run(reference, tiny_assets, tmp_path,
                                                          monkeypatch):
    root, prefix = f"s3://{BUCKET}/refresh/crash", "refresh/crash"
    cfg = _config(tiny_assets, tmp_path, f"s3://{BUCKET}/refresh/in-all", root)
    cfg.inputs_per_commit = 2
    commit = shards.commit
    calls = []

    def crash_on_second_commit(*args, **kwargs):
        # The process "dies" after the second group's shards are written, before its commit.
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return commit(*args, **kwargs)

    monkeypatch.setattr(shards, "commit", crash_on_second_commit)
    with pytest.raises(RuntimeError, match="simulated crash"):
        corpus_refresh.run(cfg)
    monkeypatch.setattr(shards, "commit", commit)
    partial = shards.read_manifest(root)
    assert list(partial.meta["inputs"]) == [f"s3://{BUCKET}/refresh/in-all/fra_Latn/part-{i}.parquet"
                                            for i in range(2)]
    named = {f.path for f in partial.files}
    orphans = _objects(prefix) - named - {shards.MANIFEST}
    assert orphans and all(o.startswith(partial.run_id + "/") for o in orphans)
    # Readers see only the committed input; the lock was released on the error.
    assert len(_documents(root)) == sum(f.rows for f in partial.data_files)

    cfg = _config(tiny_assets, tmp_path, cfg.inputs[0].uri, root)
    cfg.inputs_per_commit = 2
    final = corpus_refresh.run(cfg)
    assert list(final.meta["inputs"]) == list(reference[1].meta["inputs"])
    assert [e["group"] for e in final.meta["inputs"].values()] == [0, 0, 1, 1]
    assert final.meta["groups"][0] == partial.meta["groups"][0]  # committed work not redone
    assert final.counts == reference[1].counts
    _assert_same_documents(root, reference[0])
    _assert_only_committed_files(prefix)  # the orphans were collected


@pytest.mark.parametrize("where", ["local", "s3"])
def test_lease_refuses_a_second_run_until_it_expires(s3_server, tmp_path, where):
    root = str(tmp_path / "set") if where == "local" else f"s3://{BUCKET}/refresh/lease"
    first = Lease(root, lease_s=0.6, owner="nightly-1")
    first.acquire()
    second = Lease(root, lease_s=0.6, owner="nightly-2")
    with pytest.raises(LeaseHeld, match=r"_lock.json is held by nightly-1 until"):
        second.acquire()
    time.sleep(1.0)  # longer than the lease: the heartbeat keeps it live
    with pytest.raises(LeaseHeld, match="held by nightly-1"):
        second.acquire()
    first._stop.set()  # the holder dies without releasing: its lease runs out
    first._thread.join()
    time.sleep(0.7)
    second.acquire()
    assert second._read()[0]["owner"] == "nightly-2"
    first.release()  # a late release of a lost lease leaves the new holder's lock alone
    assert second._read()[0]["owner"] == "nightly-2"
    second.release()
    assert second._read() is None
    with Lease(root, lease_s=0.6, owner="nightly-3"):  # free again
        pass


def test_job_refused_while_another_run_holds_the_lock(ray_local, tiny_assets, tmp_path):
    root = f"s3://{BUCKET}/refresh/locked"
    cfg = _config(tiny_assets, tmp_path, f"s3://{BUCKET}/refresh/in-all", root)
    _inputs("refresh/in-all")
    with Lease(root, lease_s=30, owner="other-run"):
        with pytest.raises(LeaseHeld, match="held by other-run"):
            corpus_refresh.run(cfg)
    assert _objects("refresh/locked") == set()  # nothing was written
