"""Object-store faults: an S3 endpoint that is down or restarts mid-write gives bounded retries
with backoff and a clear final error, and never a half-committed shard set.

Each test runs its own moto server on a free 127.0.0.1 port (the session one stays up) and
points the AWS environment at it.
"""

import socket
import threading
import time
import uuid

import boto3
import numpy as np
import pyarrow as pa
import pytest
from moto.server import ThreadedMotoServer

from storage.cache import fetch
import storage
from pipelines import shards

BUCKET = "faults"


def _start(port: int) -> ThreadedMotoServer:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    # Creating an existing bucket is fine in us-east-1 (moto's state outlives its server).
    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}").create_bucket(Bucket=BUCKET)
    return server


@pytest.fixture
def flaky_s3(monkeypatch):
    """(port, server) of a private moto server; short backoffs keep the tests fast."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                       "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1", "MIMIR_S3_RETRIES": "3"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(storage.retry, "S3_BACKOFF_S", 0.2)
    servers = [_start(port)]
    yield port, servers
    servers[-1].stop()


def _table(n: int = 3, dim: int = 4) -> pa.Table:
    docs = [np.full((2, dim), i, np.float32) for i in range(n)]
    return pa.table({
        "id": [f"d{i}" for i in range(n)], "source": ["s"] * n, "lang": ["eng_Latn"] * n,
        "sentences": [["x", "y"]] * n, "quarantine": [None] * n,
        "embeddings": shards.embeddings_to_arrow(docs, dim),
        "n_embeddings": pa.array([2] * n, pa.int32())})


def _write_and_commit(root: str) -> shards.Manifest:
    run_id = shards.new_run_id()
    writer = shards.ShardWriter(root, run_id)
    files = [shards.ShardFile(**r) for r in writer(_table()).to_pylist()]
    return shards.commit(root, run_id, files, [writer.counts])


def test_write_to_a_stopped_server_fails_after_bounded_attempts(flaky_s3):
    _, servers = flaky_s3
    fs, path = storage.resolve(f"s3://{BUCKET}/obj.bin")
    storage.write_bytes(fs, path, b"first")
    servers[0].stop()
    start = time.monotonic()
    with pytest.raises(OSError, match=rf"writing s3://{BUCKET}/obj.bin failed after 3 attempts"):
        storage.write_bytes(fs, path, b"second")
    # 3 attempts (each with pyarrow's own short retries) and waits of 0.2 + 0.4 s
    assert 0.6 <= time.monotonic() - start < 20
    with pytest.raises(OSError, match=rf"reading s3://{BUCKET}/obj.bin failed after 3 attempts"):
        storage.read_bytes(fs, path)
    servers.append(_start(flaky_s3[0]))  # the fixture stops the last one


def test_missing_object_is_not_retried(flaky_s3):
    fs, path = storage.resolve(f"s3://{BUCKET}/nothing-here")
    start = time.monotonic()
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(fs, path)
    assert time.monotonic() - start < 0.2 * 0.9  # no backoff wait happened


def test_write_succeeds_when_the_server_comes_back_while_retrying(flaky_s3, monkeypatch):
    port, servers = flaky_s3
    monkeypatch.setenv("MIMIR_S3_RETRIES", "8")
    monkeypatch.setattr(storage.retry, "S3_BACKOFF_S", 0.5)
    servers[0].stop()

    def restart() -> None:  # while the write retries (pyarrow's own retries, then ours)
        time.sleep(3)
        servers.append(_start(port))

    thread = threading.Thread(target=restart)
    thread.start()
    fs, path = storage.resolve(f"s3://{BUCKET}/late.bin")
    t0 = time.monotonic()
    storage.write_bytes(fs, path, b"made it")  # the first attempts hit the stopped server
    thread.join()
    assert len(servers) == 2 and time.monotonic() - t0 >= 3
    assert storage.read_bytes(fs, path) == b"made it"


def test_fetch_from_a_stopped_server_names_the_uri(flaky_s3, tmp_path, monkeypatch):
    _, servers = flaky_s3
    monkeypatch.setenv("MIMIR_S3_RETRIES", "2")
    boto3.client("s3").put_object(Bucket=BUCKET, Key="assets/model.pt", Body=b"weights")
    assert fetch(f"s3://{BUCKET}/assets/model.pt", tmp_path / "a").read_bytes() == b"weights"
    servers[0].stop()
    with pytest.raises(OSError, match=rf"downloading s3://{BUCKET}/assets/model.pt failed "
                                      "after 2 attempts"):
        fetch(f"s3://{BUCKET}/assets/model.pt", tmp_path / "b")
    # nothing half-downloaded is left to be taken as complete next time
    assert not [p for p in (tmp_path / "b").rglob("*") if p.is_file()]
    servers.append(_start(flaky_s3[0]))


def test_crash_before_commit_leaves_no_visible_set(flaky_s3):
    root = f"s3://{BUCKET}/never-committed-{uuid.uuid4().hex[:8]}"
    writer = shards.ShardWriter(root, shards.new_run_id())
    writer(_table())  # data files written, then the job dies before commit
    with pytest.raises(FileNotFoundError, match="no shard manifest"):
        shards.read_manifest(root)


def test_failed_run_leaves_the_committed_set_intact(flaky_s3):
    port, servers = flaky_s3
    root = f"s3://{BUCKET}/shards-{uuid.uuid4().hex[:8]}"
    committed = _write_and_commit(root)
    before = shards.read_table(root)
    # A later run writes part of its files, then the store goes away and the run dies.
    run_id = shards.new_run_id()
    writer = shards.ShardWriter(root, run_id)
    written = [shards.ShardFile(**r) for r in writer(_table(5)).to_pylist()]
    servers[0].stop()
    with pytest.raises(OSError, match="failed after 3 attempts"):
        writer(_table(5))
    servers.append(_start(port))  # the store comes back (moto's server keeps its objects)
    fs, base = storage.resolve(root)
    assert storage.exists(fs, storage.join(base, written[0].path))  # the orphan is there ...
    assert shards.read_manifest(root).run_id == committed.run_id  # ... but not part of the set
    assert shards.read_table(root).equals(before)
