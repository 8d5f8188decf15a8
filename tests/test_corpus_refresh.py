"""corpus_refresh as a nightly job on moto's S3: incremental by input file, crash-safe (a run
that dies midway, even SIGKILLed, and is run again ends with the uninterrupted run's set, bit
for bit), locked against a concurrent run by a lease, and not blocked by a changed input."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobkit import config as config_io
from pipelines import refresh as corpus_refresh
from pipelines.readers.fineweb import FinewebInput
from pipelines import shards
from storage.lease import Lease, LeaseHeld

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
CONFIGS = ROOT / "configs"
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


def _overrides(assets: Path, tmp: Path, output: str) -> list[str]:
    """Command-line overrides of the shipped config: the tiny assets, a test cache, `output`."""
    return [f"output={output}", f"cache_dir={tmp / 'cache'}", f"segment.model={assets / 'sat'}",
            f"sonar.encoder={assets / 'sonar' / 'sonar_text_encoder.pt'}",
            f"sonar.tokenizer={assets / 'sonar' / 'sentencepiece.model'}"]


def _config(assets: Path, tmp: Path, inputs: str, output: str) -> corpus_refresh.CorpusConfig:
    cfg = config_io.load(corpus_refresh.CorpusConfig, CONFIGS / "corpus_refresh.yaml",
                         _overrides(assets, tmp, output))
    cfg.inputs = [FinewebInput(uri=inputs, config="fra_Latn"),
                  FinewebInput(uri=inputs, config="cmn_Hani")]
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


def _assert_same_documents(root: str, reference: str, exact: bool) -> None:
    """Same documents, sentences and embeddings: bit for bit when both sets were built in the
    same commit groups (`exact`), else up to float32 rounding (groups of other files batch
    sentences differently, and a padded batch sums in another order; measured: 2.4e-7)."""
    got, want = _documents(root), _documents(reference)
    assert sorted(got) == sorted(want)
    for i, (lang, sents, e) in want.items():
        assert got[i][:2] == (lang, sents)
        if exact:
            np.testing.assert_array_equal(got[i][2], e)
        else:
            np.testing.assert_allclose(got[i][2], e, rtol=0, atol=1e-6)


def _assert_only_committed_files(prefix: str) -> None:
    """Nothing under the set but the manifest and the files it names: no orphan, no lock."""
    manifest = shards.read_manifest(f"s3://{BUCKET}/{prefix}")
    assert _objects(prefix) == {shards.MANIFEST, *(f.path for f in manifest.files)}


@pytest.fixture(scope="module")
def reference(ray_local, tiny_assets, tmp_path_factory):
    """An uninterrupted run over all four input files, two per commit group (as the crash
    tests, whose re-runs start at a group boundary)."""
    _inputs("refresh/in-all")
    cfg = _config(tiny_assets, tmp_path_factory.mktemp("ref"), f"s3://{BUCKET}/refresh/in-all",
                  f"s3://{BUCKET}/refresh/ref")
    cfg.inputs_per_commit = 2
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
        [("fra_Latn", 0), ("fra_Latn", 0), ("fra_Latn", 1), ("cmn_Hani", 1)]
    groups = manifest.meta["groups"]
    assert len(groups) == 2 and {g["run_id"] for g in groups} == {manifest.run_id}
    stages = ["read", "validate", "chinese_relabel", "segment", "embed", "write_shards"]
    for g in groups:  # a stage's busy time lies within the group's, once per actor of its pool
        assert list(g["batches_per_actor"]) == list(g["busy_seconds"]) == stages
        assert all(0 <= g["busy_seconds"][s] <= g["seconds"] * len(g["batches_per_actor"][s])
                   for s in stages), g
    # The groups' shard files are the set, and the set is nothing else.
    assert sorted(f for g in groups for f in g["files"]) == sorted(f.path for f in manifest.files)
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
    assert third.meta["groups"][1]["counts"][0] == {"stage": "read", "rows_in": 1, "rows_out": 2,
                                                    "tally": {"fra_Latn": 2}, "quarantined": {}}
    assert set(third.runs) == {first.run_id, third.run_id} and first.run_id != third.run_id
    assert {f.path for f in third.files} >= {f.path for f in first.files}
    assert {c["stage"]: c["rows_out"] for c in third.counts}["read"] == 6 + 8
    # Not bit for bit: the third dump was embedded alone, in the reference with Chinese.
    _assert_same_documents(root, reference[0], exact=False)
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
    _assert_same_documents(root, reference[0], exact=True)  # the same groups, in order
    _assert_only_committed_files(prefix)  # the orphans were collected


def _read_manifest(root: str) -> shards.Manifest | None:
    try:
        return shards.read_manifest(root)
    except FileNotFoundError:
        return None


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@pytest.mark.slow
def test_killed_run_then_rerun_equals_uninterrupted_run(reference, ray_local, tiny_assets,
                                                        tmp_path, caplog):
    """A real crash: the job runs as `python -m jobs.corpus_refresh` and is SIGKILLed right
    after its first commit, while its second group is in progress. It runs on the session's
    Ray (RAY_ADDRESS), as a job submitted to a cluster would: a second local Ray would take
    most of the test's time on 2 cores."""
    # The lease: renewed every lease_s / 3, so at the kill at least ~2/3 of it is left for
    # the check that a re-run is refused, even on a loaded machine; then waited out.
    root, prefix, lease_s = f"s3://{BUCKET}/refresh/killed", "refresh/killed", 10
    inputs = f"s3://{BUCKET}/refresh/in-all"
    cmd = [sys.executable, "-m", "jobs.corpus_refresh", "--config",
           str(CONFIGS / "corpus_refresh.yaml"), *_overrides(tiny_assets, tmp_path, root),
           f"inputs=[{{uri: {inputs}, config: fra_Latn}}, {{uri: {inputs}, config: cmn_Hani}}]",
           "inputs_per_commit=2", f"lock_lease_s={lease_s}"]
    # os.environ holds moto's endpoint and credentials (s3_server).
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address,
           "DS_BUILD_OPS": "0", "DS_ACCELERATOR": "cpu", "RAY_AUTH_MODE": "disabled",
           "HF_HUB_OFFLINE": "1"}
    log_path = tmp_path / "job.log"
    with open(log_path, "wb") as out:
        job = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)  # its own process group, to kill whole
    try:
        deadline = time.monotonic() + 300
        while (partial := _read_manifest(root)) is None:
            assert job.poll() is None, f"the job ended before its first commit:\n{_tail(log_path)}"
            assert time.monotonic() < deadline, f"no commit in 300 s:\n{_tail(log_path)}"
            time.sleep(0.1)
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=30)
    assert job.returncode == -signal.SIGKILL
    # The kill came between the commits: the set is group 0, and the lock was never released.
    partial = shards.read_manifest(root)
    assert len(partial.meta["groups"]) == 1, _tail(log_path)
    assert list(partial.meta["inputs"]) == [f"{inputs}/fra_Latn/part-{i}.parquet" for i in range(2)]
    assert "_lock.json" in _objects(prefix)

    cfg = _config(tiny_assets, tmp_path, inputs, root)
    cfg.inputs_per_commit, cfg.lock_lease_s = 2, lease_s
    lock = json.loads(boto3.client("s3").get_object(Bucket=BUCKET, Key=f"{prefix}/_lock.json")
                      ["Body"].read())
    assert lock["expires_at"] > time.time()  # its lease is still live, but its process is gone
    final = corpus_refresh.run(cfg)  # at once
    assert f"taking over the lock s3://{BUCKET}/{prefix}/_lock.json" in caplog.text
    assert "its process is gone" in caplog.text
    want = reference[1]
    assert final.meta["inputs"] == want.meta["inputs"]  # same files, sizes, groups [0, 0, 1, 1]
    assert final.meta["groups"][0] == partial.meta["groups"][0]  # committed work not redone
    assert final.meta["groups"][1]["run_id"] == final.run_id != partial.run_id
    assert [g["counts"] for g in final.meta["groups"]] == [g["counts"] for g in want.meta["groups"]]
    assert final.counts == want.counts
    _assert_same_documents(root, reference[0], exact=True)
    _assert_only_committed_files(prefix)  # no orphan, no lock


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


def test_pending_lists_new_files_and_changed_ones(tmp_path):
    """Without Ray: which files a run processes, and which processed ones changed."""
    fra = pq.read_table(SAMPLES / "fineweb-2" / "fra_Latn.parquet")
    folder = tmp_path / "in" / "fra_Latn"
    folder.mkdir(parents=True)
    paths = [str(folder / f"part-{i}.parquet") for i in range(3)]
    for i in range(2):
        pq.write_table(fra.slice(2 * i, 2), paths[i])
    cfg = corpus_refresh.CorpusConfig(
        inputs=[FinewebInput(str(tmp_path / "in"), "fra_Latn")])
    todo, changed = corpus_refresh.pending(cfg, None)
    assert [t.uri for t in todo] == paths[:2] and changed == {}
    sizes = [t.size for t in todo]
    # part-0 and part-1 are in the set; part-1 has been rewritten since; part-2 is new.
    manifest = shards.Manifest("run-1", 1024, [], meta={"groups": [], "inputs": {
        p: {"config": "fra_Latn", "size": n, "group": 0} for p, n in zip(paths, sizes)}})
    pq.write_table(fra.slice(2, 3), paths[1])
    pq.write_table(fra.slice(4, 2), paths[2])
    todo, changed = corpus_refresh.pending(cfg, manifest)
    assert [t.uri for t in todo] == [paths[2]]
    assert changed == {paths[1]: {"size": sizes[1], "now": os.path.getsize(paths[1])}}
    assert sizes[1] != os.path.getsize(paths[1])
    # The record: a change already seen keeps its first run; a new size or file is this run's;
    # a restored file drops out.
    seen = {paths[1]: {"size": 1, "now": 2, "seen": "run-1"},
            paths[0]: {"size": 1, "now": 2, "seen": "run-1"}}
    assert corpus_refresh.changed_record(seen, {paths[1]: {"size": 1, "now": 2},
                                                paths[2]: {"size": 1, "now": 3}}, "run-2") == {
        paths[1]: {"size": 1, "now": 2, "seen": "run-1"},
        paths[2]: {"size": 1, "now": 3, "seen": "run-2"}}
    assert corpus_refresh.changed_record(seen, {paths[1]: {"size": 1, "now": 4}}, "run-2") == {
        paths[1]: {"size": 1, "now": 4, "seen": "run-2"}}
    cfg.changed_inputs = "ignore"
    with pytest.raises(ValueError, match="changed_inputs must be one of"):
        corpus_refresh.run(cfg)  # refused before Ray starts


def test_a_set_is_only_extended_with_the_settings_it_was_read_with(tmp_path):
    """Without Ray: a trial run's limit, another size cap or another model is refused."""
    fra = pq.read_table(SAMPLES / "fineweb-2" / "fra_Latn.parquet")
    (tmp_path / "in").mkdir()
    path = str(tmp_path / "in" / "part-0.parquet")
    pq.write_table(fra, path)
    trial = corpus_refresh.CorpusConfig(inputs=[FinewebInput(path, "fra_Latn", limit=2)],
                                        output=str(tmp_path / "set"))
    size = os.path.getsize(path)
    manifest = shards.Manifest("run-1", 1024, [], meta={
        "groups": [], "reading": corpus_refresh.reading(trial),
        "inputs": {path: {"config": "fra_Latn", "limit": 2, "size": size, "group": 0}}})
    corpus_refresh.check_reading(trial, manifest)
    assert corpus_refresh.pending(trial, manifest) == ([], {})  # the same run again: nothing

    whole = corpus_refresh.CorpusConfig(inputs=[FinewebInput(path, "fra_Latn")],
                                        output=trial.output)
    with pytest.raises(corpus_refresh.ReadingMismatch,
                       match=rf"{path}: limit 2 -> None\. Build the set anew"):
        corpus_refresh.pending(whole, manifest)
    other = corpus_refresh.CorpusConfig(inputs=trial.inputs, output=trial.output,
                                        max_document_chars=1000)
    other.sonar.encoder = "s3://models/sonar_text_encoder.pt"
    with pytest.raises(corpus_refresh.ReadingMismatch, match=(
            r"max_document_chars 1000000 -> 1000; sonar_encoder "
            r"'build/assets/tiny/sonar/sonar_text_encoder.pt' -> "
            r"'s3://models/sonar_text_encoder.pt'\.")):
        corpus_refresh.check_reading(other, manifest)
    # A set from before settings were recorded is extended (and records them from then on).
    del manifest.meta["reading"], manifest.meta["inputs"][path]["limit"]
    corpus_refresh.check_reading(other, manifest)
    assert corpus_refresh.pending(whole, manifest) == ([], {})


@pytest.mark.slow
def test_changed_input_is_kept_and_recorded_while_new_files_are_committed(ray_local, tiny_assets,
                                                                          tmp_path, caplog):
    root, prefix = f"s3://{BUCKET}/refresh/changed", "refresh/changed"
    inputs = f"s3://{BUCKET}/refresh/in-changed"
    part = [f"{inputs}/fra_Latn/part-{i}.parquet" for i in range(2)]
    fra = pq.read_table(SAMPLES / "fineweb-2" / "fra_Latn.parquet")
    _put("refresh/in-changed/fra_Latn/part-0.parquet", fra.slice(0, 2))

    def config(changed_inputs: str = "fail") -> corpus_refresh.CorpusConfig:
        cfg = _config(tiny_assets, tmp_path, inputs, root)
        cfg.inputs = cfg.inputs[:1]  # French only
        cfg.changed_inputs = changed_inputs
        return cfg

    def manifest_bytes() -> bytes:
        return boto3.client("s3").get_object(Bucket=BUCKET, Key=f"{prefix}/{shards.MANIFEST}")[
            "Body"].read()

    first = corpus_refresh.run(config())
    first_ids = set(_documents(root))
    size = first.meta["inputs"][part[0]]["size"]
    # Upstream rewrites the processed part-0. warn: logged and recorded, nothing reprocessed.
    _put("refresh/in-changed/fra_Latn/part-0.parquet", fra.slice(0, 3))
    now = boto3.client("s3").head_object(Bucket=BUCKET,
                                         Key="refresh/in-changed/fra_Latn/part-0.parquet")[
        "ContentLength"]
    warned = corpus_refresh.run(config("warn"))
    assert f"input {part[0]} changed since run" in caplog.text
    seen = warned.meta["changed_inputs"][part[0]]["seen"]
    assert warned.meta["changed_inputs"] == {part[0]: {"size": size, "now": now, "seen": seen}}
    assert seen != first.run_id and warned.run_id == first.run_id
    assert {k: warned.meta[k] for k in ("inputs", "groups")} == \
        {k: first.meta[k] for k in ("inputs", "groups")}
    assert warned.files == first.files and set(_documents(root)) == first_ids

    # part-1 is published. fail (the default): part-1 is processed and committed, then the run
    # ends with an error naming part-0 (a non-zero exit for the scheduler).
    _put("refresh/in-changed/fra_Latn/part-1.parquet", fra.slice(3, 2))
    with pytest.raises(corpus_refresh.ChangedInputs,
                       match=rf"{part[0]} \(size {size} -> {now}\).*restore the file, or build "
                             "the set anew into another output"):
        corpus_refresh.run(config())
    failed = shards.read_manifest(root)
    assert list(failed.meta["inputs"]) == part
    assert failed.meta["inputs"][part[0]] == first.meta["inputs"][part[0]]  # not reprocessed
    assert failed.meta["groups"][0] == first.meta["groups"][0]
    assert failed.meta["changed_inputs"] == warned.meta["changed_inputs"]  # first seen kept
    documents = _documents(root)
    assert first_ids < set(documents)
    assert {c["stage"]: c["rows_out"] for c in failed.counts}["read"] == 2 + 2
    _assert_only_committed_files(prefix)

    # Nothing new: every run fails again (the alert goes on) and leaves the set as it is.
    before = manifest_bytes()
    with pytest.raises(corpus_refresh.ChangedInputs):
        corpus_refresh.run(config())
    assert manifest_bytes() == before
    # part-0 restored: the record is dropped, the run ends normally.
    _put("refresh/in-changed/fra_Latn/part-0.parquet", fra.slice(0, 2))
    restored = corpus_refresh.run(config())
    assert "changed_inputs" not in restored.meta and restored.files == failed.files
    assert "changed_inputs" not in shards.read_manifest(root).meta
