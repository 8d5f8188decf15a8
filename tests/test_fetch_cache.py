"""The download cache (storage/cache.py) as the actors of a node use it: many processes fetching
one asset at once, a throttled server, a connection cut short, a corrupted entry, an object
re-published under the same URI, a server that went away."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import get_context
from pathlib import Path

import boto3
import pytest

import storage.cache as fetch_module
from storage.cache import fetch

SIZE = 20 * 2**20
BODY = hashlib.sha256(b"seed").digest() * (SIZE // 32)


class Asset(BaseHTTPRequestHandler):
    """Serves BODY at /model.pt slowly (1 MiB chunks, 20 ms apart); `cut_first` GETs end after
    half of it (the connection closes, as a dropped download does)."""

    gets = 0
    cut_first = 0
    lock = threading.Lock()

    def _headers(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.send_header("ETag", '"v1"')
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        self._headers()

    def do_GET(self) -> None:  # noqa: N802
        with Asset.lock:
            Asset.gets += 1
            cut = Asset.gets <= Asset.cut_first
        self._headers()
        end = len(BODY) // 2 if cut else len(BODY)
        for start in range(0, end, 2**20):
            self.wfile.write(BODY[start:min(start + 2**20, end)])
            time.sleep(0.02)
        if cut:
            self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    Asset.gets, Asset.cut_first = 0, 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Asset)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/model.pt", httpd
    httpd.shutdown()
    httpd.server_close()


def _fetch_and_hash(uri: str, cache: str) -> tuple[str, int, str]:
    path = fetch(uri, cache)
    return str(path), path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()


def test_six_processes_fetch_one_asset_once(server, tmp_path):
    uri, _ = server
    with ProcessPoolExecutor(6, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(_fetch_and_hash, [uri] * 6, [str(tmp_path)] * 6))
    assert {r for r in results} == {(results[0][0], SIZE, hashlib.sha256(BODY).hexdigest())}
    assert Asset.gets == 1  # one download; the others waited for it
    assert not [p for p in Path(results[0][0]).parent.parent.iterdir() if p.name.startswith(".part")]


def test_a_download_cut_short_is_fetched_again(server, tmp_path, monkeypatch):
    uri, _ = server
    Asset.cut_first = 1
    monkeypatch.setattr("storage.retry.S3_BACKOFF_S", 0.05)
    path = fetch(uri, tmp_path)
    assert path.read_bytes() == BODY and Asset.gets == 2


def test_a_corrupted_entry_is_fetched_again(server, tmp_path):
    uri, _ = server
    path = fetch(uri, tmp_path)
    with open(path, "r+b") as f:  # same size, one byte changed
        f.seek(123)
        f.write(b"\x00" if BODY[123] else b"\x01")
    fetch_module._verified.clear()  # as a new process sees it
    assert fetch(uri, tmp_path).read_bytes() == BODY and Asset.gets == 2


def test_the_cached_copy_serves_when_the_server_is_gone(server, tmp_path, monkeypatch, caplog):
    uri, httpd = server
    path = fetch(uri, tmp_path)
    httpd.shutdown()
    httpd.server_close()
    monkeypatch.setattr("storage.retry.S3_BACKOFF_S", 0.01)
    fetch_module._verified.clear()
    assert fetch(uri, tmp_path) == path
    assert "cannot reach" in caplog.text


def test_an_object_republished_under_its_uri_is_fetched_again(s3_server, tmp_path):
    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.put_object(Bucket="mimir", Key="cache-test/normalizer.bin", Body=b"first fit")
    uri = "s3://mimir/cache-test/normalizer.bin"
    assert fetch(uri, tmp_path).read_bytes() == b"first fit"
    s3.put_object(Bucket="mimir", Key="cache-test/normalizer.bin", Body=b"the refit")
    assert fetch(uri, tmp_path).read_bytes() == b"the refit"
    # A folder (checkpoint) is versioned by all its objects.
    s3.put_object(Bucket="mimir", Key="cache-test/ckpt/a.txt", Body=b"1")
    first = fetch("s3://mimir/cache-test/ckpt", tmp_path)
    assert (first / "a.txt").read_bytes() == b"1"
    s3.put_object(Bucket="mimir", Key="cache-test/ckpt/b.txt", Body=b"2")
    second = fetch("s3://mimir/cache-test/ckpt", tmp_path)
    assert sorted(p.name for p in second.iterdir()) == ["a.txt", "b.txt"] and not first.exists()


def test_processes_fetching_one_s3_object(s3_server, tmp_path):
    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.put_object(Bucket="mimir", Key="cache-test/big.bin", Body=BODY[:4 * 2**20])
    uri = "s3://mimir/cache-test/big.bin"
    env = {k: os.environ[k] for k in os.environ if k.startswith("AWS_")}
    assert env["AWS_ENDPOINT_URL"] == s3_server  # the spawned processes inherit it
    with ProcessPoolExecutor(4, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(_fetch_and_hash, [uri] * 4, [str(tmp_path)] * 4))
    assert len({r for r in results}) == 1
    assert results[0][1:] == (4 * 2**20, hashlib.sha256(BODY[:4 * 2**20]).hexdigest())
