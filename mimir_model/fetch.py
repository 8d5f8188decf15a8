"""Local copies of model and data files named by URI: a local path (or file://), https:// or
s3:// (a single object or a whole prefix, e.g. a checkpoint folder).

Remote objects are downloaded once into a cache folder (one sub-folder per URI) under a
temporary name and renamed when complete, so an interrupted download is never taken as done.
S3 uses boto3's standard credential chain and AWS_ENDPOINT_URL, and retries each request with
boto3's standard backoff, `MIMIR_S3_RETRIES` attempts (the same policy as pipelines' storage).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

REMOTE = ("https://", "http://", "s3://")
S3_ATTEMPTS = 5  # per S3 request, with backoff between them; MIMIR_S3_RETRIES overrides it


def s3_attempts() -> int:
    """How many times an S3 request is tried, here and in pipelines.storage."""
    return max(1, int(os.environ.get("MIMIR_S3_RETRIES", S3_ATTEMPTS)))


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
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    bucket, _, key = uri.removeprefix("s3://").rstrip("/").partition("/")
    attempts = s3_attempts()
    config = Config(retries={"max_attempts": attempts, "mode": "standard"},
                    connect_timeout=10, read_timeout=60)
    s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
                      config=config)
    try:
        _download_objects(s3, uri, bucket, key, dest)
    except BotoCoreError as e:  # connection failures that outlasted the retries
        raise OSError(f"downloading {uri} failed after {attempts} attempts: {e}") from e


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
