"""The storage layer: local paths, s3:// and https:// URIs and Hub ids (paths), the S3 client
and retry policy (s3, retry), whole-object reads and writes (objects), a download cache
(cache: `fetch`) and a lease lock (lease). It imports nothing else of the project."""

from storage.cache import fetch
from storage.objects import local_dir, read_bytes, write_bytes
from storage.paths import Input, Output, absolute, exists, is_remote, join, resolve

__all__ = ["Input", "Output", "absolute", "exists", "fetch", "is_remote", "join", "local_dir",
           "read_bytes", "resolve", "write_bytes"]
