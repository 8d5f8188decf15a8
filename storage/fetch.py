"""Local copies of model and data files named by URI: a local path (or file://), https:// or
s3:// (a single object or a whole prefix, e.g. a checkpoint folder).

Remote objects are downloaded once into a cache folder (one sub-folder per URI) under a
temporary name and renamed when complete, so an interrupted download is never taken as done.
S3 goes through the project's one S3 client policy (storage.s3).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import urllib.request
from pathlib import Path

from storage import s3

log = logging.getLogger(__name__)

REMOTE = ("https://", "http://", "s3://")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("MIMIR_CACHE_DIR", Path.home() / ".cache" / "mimir"))


def fetch(uri: str, cache_dir: str | Path | None = None) -> Path:
    """The local path of `uri`'s file or folder, downloading it first if it is remote."""
    if not uri.startswith(REMOTE):
        path = Path(uri.removeprefix("file://")).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        return path
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    dest = cache / hashlib.sha256(uri.encode()).hexdigest()[:16] / uri.rstrip("/").rsplit("/", 1)[-1]
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    shutil.rmtree(part, ignore_errors=True) if part.is_dir() else part.unlink(missing_ok=True)
    log.info("downloading %s to %s", uri, dest)
    if uri.startswith("s3://"):
        _download_s3(uri, part)
    else:
        with urllib.request.urlopen(uri) as response, open(part, "wb") as f:
            shutil.copyfileobj(response, f, length=1 << 20)
    part.rename(dest)
    return dest


def _download_s3(uri: str, dest: Path) -> None:
    """One object, or every object under the prefix `uri/` (kept relative to it)."""
    from botocore.exceptions import BotoCoreError

    bucket, key = s3.split(uri)
    try:
        _download_objects(s3.client(), uri, bucket, key, dest)
    except BotoCoreError as e:  # connection failures that outlasted the retries
        raise OSError(f"downloading {uri} failed after {s3.attempts()} attempts: {e}") from e


def _download_objects(s3, uri: str, bucket: str, key: str, dest: Path) -> None:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        s3.download_file(bucket, key, str(dest))
        return
    except s3.exceptions.ClientError as e:
        if e.response["Error"]["Code"] not in ("404", "NoSuchKey"):
            raise
    n = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{key}/"):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(key) + 1:]
            if not rel or rel.endswith("/"):
                continue  # a folder marker object, not a file
            if rel.startswith("/") or ".." in Path(rel).parts:
                raise ValueError(f"refusing object key {obj['Key']!r} outside {uri}")
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))
            n += 1
    if n == 0:
        raise FileNotFoundError(f"{uri} does not exist (no object and no objects under it)")
