"""Local paths and s3:// URIs behind one pyarrow filesystem interface.

S3 endpoints and credentials come from the standard AWS environment (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, ...), so the same code talks to AWS, MinIO or a local moto server.

Whole-object reads and writes on S3 are retried with exponential backoff (an endpoint that
restarts or drops out for a moment must not kill a long job), within a bounded number of
attempts and total time, then fail with an error naming the URI and the attempts made.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pyarrow.fs as pafs

from mimir_model.fetch import s3_attempts

log = logging.getLogger(__name__)

T = TypeVar("T")

# Retry policy of S3 reads and writes; the number of attempts is mimir_model.fetch's
# s3_attempts() (MIMIR_S3_RETRIES overrides it).
S3_BACKOFF_S = 0.5  # wait before the 2nd attempt; doubles each time, capped at S3_MAX_BACKOFF_S
S3_MAX_BACKOFF_S = 8.0
S3_MAX_TOTAL_S = 120.0  # no new attempt starts after this long


def s3_filesystem() -> pafs.S3FileSystem:
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    kwargs = {"region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
    return pafs.S3FileSystem(**kwargs)


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or an s3://bucket/key URI."""
    if uri.startswith("s3://"):
        return s3_filesystem(), uri[len("s3://"):].rstrip("/")
    return pafs.LocalFileSystem(), str(Path(uri).absolute())


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def with_retries(action: str, uri: str, fn: Callable[[], T]) -> T:
    """fn(), retried on network errors (OSError; a missing object is an answer, not a fault)
    with exponential backoff, at most `s3_attempts()` times and `S3_MAX_TOTAL_S` seconds."""
    attempts, start, attempt = s3_attempts(), time.monotonic(), 1
    while True:
        try:
            return fn()
        except FileNotFoundError:
            raise
        except OSError as e:
            wait = min(S3_BACKOFF_S * 2 ** (attempt - 1), S3_MAX_BACKOFF_S)
            elapsed = time.monotonic() - start
            if attempt >= attempts or elapsed + wait > S3_MAX_TOTAL_S:
                raise OSError(f"{action} {uri} failed after {attempt} attempts in "
                              f"{elapsed:.1f} s: {e}") from e
            log.warning("%s %s failed (attempt %d of %d), retrying in %.1f s: %s", action, uri,
                        attempt, attempts, wait, e)
            time.sleep(wait)
            attempt += 1


def write_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write a whole object; on a local disk through a temporary name and a rename, so a reader
    never sees a half-written file (an S3 PUT or multipart upload is atomic by itself: an
    interrupted one leaves no object, and retrying writes it whole again)."""
    if isinstance(fs, pafs.LocalFileSystem):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return

    def put() -> None:
        with fs.open_output_stream(path) as f:
            f.write(data)

    with_retries("writing", f"s3://{path}", put)


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    def get() -> bytes:
        with fs.open_input_stream(path) as f:
            return f.read()

    if isinstance(fs, pafs.LocalFileSystem):
        return get()
    return with_retries("reading", f"s3://{path}", get)


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound



@contextmanager
def local_dir(uri: str) -> Iterator[Path]:
    """A local folder to write a report into: `uri` itself when it is local; for s3://, a
    temporary folder whose files are uploaded under `uri` (same relative paths, each object
    whole and retried) when the block ends without an error."""
    if not uri.startswith("s3://"):
        Path(uri).mkdir(parents=True, exist_ok=True)
        yield Path(uri)
        return
    fs, base = resolve(uri)
    with tempfile.TemporaryDirectory(prefix="mimir-report-") as tmp:
        yield Path(tmp)
        for path in sorted(p for p in Path(tmp).rglob("*") if p.is_file()):
            write_bytes(fs, join(base, path.relative_to(tmp).as_posix()), path.read_bytes())
        log.info("uploaded the report to %s", uri)
