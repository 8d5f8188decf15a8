"""Local paths and s3:// URIs behind one pyarrow filesystem interface.

S3 endpoints and credentials come from the standard AWS environment (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, ...), so the same code talks to AWS, MinIO or a local moto server.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs as pafs


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


def write_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write a whole object; on a local disk through a temporary name and a rename, so a reader
    never sees a half-written file (an S3 PUT is atomic by itself)."""
    if isinstance(fs, pafs.LocalFileSystem):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    else:
        with fs.open_output_stream(path) as f:
            f.write(data)


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.read()


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound

