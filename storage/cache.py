"""Local copies of model and data files named by URI: a local path (or file://), https:// or
s3:// (a single object or a whole prefix, e.g. a checkpoint folder).

A remote object is cached under `cache_dir/<hash of the URI>/<version>/`, where the version is
what the server says about the object now (on S3 the ETag and size of the object, or of every
object under the prefix; over https the ETag or Last-Modified and the length), so an object
re-published under the same URI is fetched again. Each entry holds the download and a record
of it (`RECORD.json`: every file's size and SHA-256), and is used only while its files match the
record: a truncated or corrupted entry is fetched again.

Many processes of a node (Ray actors) fetch the same model at once: a file lock per URI lets one
download while the others wait; the download goes into a temporary folder that is renamed into
place whole once its size is checked against the server's and its record is written, so no
process ever sees a partial entry. https downloads have a timeout and bounded retries with
backoff (storage.retry); S3 uses the project's one S3 client policy (storage.s3). When the
server cannot be reached after the retries, the newest cached entry that verifies is used, with
a warning (a node that lost its network keeps running on what it has).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from storage import s3
from storage.retry import with_retries

log = logging.getLogger(__name__)

REMOTE = ("https://", "http://", "s3://")
RECORD = "RECORD.json"
HTTP_TIMEOUT_S = 60  # per request (connect and each read)
_verified: set[Path] = set()  # entries this process has checked against their record


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("MIMIR_CACHE_DIR", Path.home() / ".cache" / "mimir"))


def fetch(uri: str, cache_dir: str | Path | None = None) -> Path:
    """The local path of `uri`'s file or folder, downloading it first if it is remote (or if
    the cached copy is not the current version, or does not verify)."""
    if not uri.startswith(REMOTE):
        path = Path(uri.removeprefix("file://")).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        return path
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    root = cache / hashlib.sha256(uri.encode()).hexdigest()[:16]
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    root.mkdir(parents=True, exist_ok=True)
    try:
        version, size = _version(uri)
    except FileNotFoundError:  # the server answered: there is no such object (or bucket)
        raise
    except OSError as e:  # the server is unreachable: the newest verified entry, if any
        cached = [p for p in sorted(root.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
                  if p.is_dir() and not p.name.startswith(".") and _verifies(p)]
        if not cached:
            raise
        log.warning("cannot reach %s (%s): using the cached copy %s", uri, e, cached[0])
        return cached[0] / name
    entry = root / version
    with _locked(root):
        if entry.is_dir() and _verifies(entry):
            return entry / name
        if entry.exists():
            log.warning("the cached copy of %s at %s does not match its record (truncated or "
                        "corrupted): fetching it again", uri, entry)
            shutil.rmtree(entry)
        _download(uri, root, entry, name, size)
        for old in root.iterdir():  # earlier versions of the object
            if old.is_dir() and old != entry and not old.name.startswith("."):
                shutil.rmtree(old, ignore_errors=True)
    return entry / name


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One process at a time per cached URI (on this node)."""
    with open(root / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _verifies(entry: Path) -> bool:
    """Whether every file of the entry has the size and checksum its record says (checked
    once per process; a missing record means an unfinished entry)."""
    if entry in _verified:
        return True
    try:
        record = json.loads((entry / RECORD).read_text())
    except (OSError, ValueError):
        return False
    for rel, (size, digest) in record.items():
        path = entry / rel
        if not path.is_file() or path.stat().st_size != size or sha256_file(path) != digest:
            return False
    _verified.add(entry)
    return True


def _download(uri: str, root: Path, entry: Path, name: str, size: int | None) -> None:
    for part in root.glob(".part-*"):  # a killed download's (we hold the URI's lock)
        shutil.rmtree(part, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=".part-", dir=root))
    try:
        target = tmp / name
        log.info("downloading %s to %s", uri, entry)
        if uri.startswith("s3://"):
            _download_s3(uri, target)
        else:
            with_retries("downloading", uri, lambda: _download_http(uri, target, size))
        files = [target] if target.is_file() else sorted(p for p in target.rglob("*")
                                                          if p.is_file())
        if size is not None and target.is_file() and target.stat().st_size != size:
            raise OSError(f"downloading {uri}: got {target.stat().st_size} bytes, the server "
                          f"says {size}")
        record = {str(p.relative_to(tmp)): (p.stat().st_size, sha256_file(p)) for p in files}
        (tmp / RECORD).write_text(json.dumps(record, indent=1))
        tmp.rename(entry)
        _verified.add(entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- versions -------------------------------------------------------------------------------

def _version(uri: str) -> tuple[str, int | None]:
    """(a folder-safe name of the object's current version, its size in bytes if one object)."""
    if uri.startswith("s3://"):
        return _s3_version(uri)
    return with_retries("downloading", uri, lambda: _http_version(uri),
                        permanent=(FileNotFoundError, PermissionError))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _http_version(uri: str) -> tuple[str, int | None]:
    request = urllib.request.Request(uri, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            headers = response.headers
    except urllib.error.HTTPError as e:
        if e.code in (404, 410):
            raise FileNotFoundError(f"{uri} does not exist (HTTP {e.code})") from e
        if e.code in (405, 501):  # a server without HEAD: nothing to version by
            return "unversioned", None
        raise
    length = headers.get("Content-Length")
    tag = headers.get("ETag") or headers.get("Last-Modified") or "unversioned"
    return _digest(f"{tag}|{length}"), int(length) if length else None


def _download_http(uri: str, dest: Path, size: int | None) -> None:
    try:
        with urllib.request.urlopen(uri, timeout=HTTP_TIMEOUT_S) as response, \
                open(dest, "wb") as f:
            shutil.copyfileobj(response, f, length=1 << 20)
    except urllib.error.HTTPError as e:
        if e.code in (404, 410):
            raise FileNotFoundError(f"{uri} does not exist (HTTP {e.code})") from e
        raise
    if size is not None and dest.stat().st_size != size:  # the connection ended early
        raise OSError(f"downloading {uri}: got {dest.stat().st_size} of {size} bytes")


def _s3_version(uri: str) -> tuple[str, int | None]:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = s3.split(uri)
    client = s3.client()
    try:
        head = client.head_object(Bucket=bucket, Key=key)
        return _digest(f"{head['ETag']}|{head['ContentLength']}"), head["ContentLength"]
    except ClientError as e:
        if e.response["Error"]["Code"] not in ("404", "NoSuchKey"):
            raise s3.error(e, "downloading", uri) from e
    except BotoCoreError as e:  # connection failures that outlasted the retries
        raise OSError(f"downloading {uri} failed after {s3.attempts()} attempts: {e}") from e
    listing = [f"{o['Key']}|{o['ETag']}|{o['Size']}" for o in _objects(client, uri, bucket, key)]
    if not listing:
        raise FileNotFoundError(f"{uri} does not exist (no object and no objects under it)")
    return _digest("\n".join(listing)), None


def _objects(client, uri: str, bucket: str, key: str) -> Iterator[dict]:
    """The objects under the prefix `key/` (folder markers left out)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                     Prefix=f"{key}/"):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(key) + 1:]
                if rel and not rel.endswith("/"):
                    yield obj
    except ClientError as e:
        raise s3.error(e, "listing", uri) from e
    except BotoCoreError as e:
        raise OSError(f"listing {uri} failed after {s3.attempts()} attempts: {e}") from e


def _download_s3(uri: str, dest: Path) -> None:
    """One object, or every object under the prefix `uri/` (kept relative to it)."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = s3.split(uri)
    client = s3.client()
    try:
        try:
            client.head_object(Bucket=bucket, Key=key)
            client.download_file(bucket, key, str(dest))
            return
        except ClientError as e:
            if e.response["Error"]["Code"] not in ("404", "NoSuchKey"):
                raise s3.error(e, "downloading", uri) from e
        for obj in _objects(client, uri, bucket, key):
            rel = obj["Key"][len(key) + 1:]
            if rel.startswith("/") or ".." in Path(rel).parts:
                raise ValueError(f"refusing object key {obj['Key']!r} outside {uri}")
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, obj["Key"], str(target))
    except BotoCoreError as e:  # connection failures that outlasted the retries
        raise OSError(f"downloading {uri} failed after {s3.attempts()} attempts: {e}") from e
