"""Whole objects on a local disk or S3: read and write them (on S3 retried across outages, see
storage.retry), and a local folder whose files are uploaded whole when a job succeeds."""

from __future__ import annotations

import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pyarrow.fs as pafs

from storage.paths import join, resolve
from storage.retry import with_retries
from storage.stale import remove_stale

log = logging.getLogger(__name__)


def write_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write a whole object; on a local disk through a temporary name and a rename, so a reader
    never sees a half-written file (an S3 PUT or multipart upload is atomic by itself: an
    interrupted one leaves no object, and retrying writes it whole again)."""
    if isinstance(fs, pafs.LocalFileSystem):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        remove_stale(Path(path).parent, f"{Path(path).name}.tmp-")  # of killed writers
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:  # disk full, interrupted: leave no partial file
            Path(tmp).unlink(missing_ok=True)
            raise
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
