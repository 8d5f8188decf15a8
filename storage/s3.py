"""The one S3 client policy: endpoint and credentials from the standard AWS environment
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ... or instance roles), so the same code talks to AWS,
MinIO or a local moto server, and one retry policy for every S3 request.

Each request is retried by the libraries' own standard strategies, `attempts()` times:
botocore's `standard` mode, and the AWS SDK's standard strategy inside pyarrow (which also
carries Ray Train's checkpoint uploads; a longer outage there restarts the workers from the
last checkpoint, `max_failures`). An endpoint that restarts or drops out for longer is bridged by
`storage.retry.with_retries` around whole-object operations, `attempts()` times with backoff.
"""

from __future__ import annotations

import os

import pyarrow.fs as pafs

S3_ATTEMPTS = 5  # per request; MIMIR_S3_RETRIES overrides it
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 60


def attempts() -> int:
    """How many times an S3 request (and a whole-object operation) is tried."""
    return max(1, int(os.environ.get("MIMIR_S3_RETRIES", S3_ATTEMPTS)))


def split(uri: str) -> tuple[str, str]:
    """(bucket, key) of s3://bucket/key (key without a trailing slash; may be empty)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key.rstrip("/")


def error(e: Exception, action: str, uri: str) -> OSError:
    """A botocore error as an OSError that names the URI, and the bucket when it is missing
    (botocore's own message names neither)."""
    code = getattr(e, "response", {}).get("Error", {}).get("Code")
    if code == "NoSuchBucket":
        return FileNotFoundError(f"{action} {uri}: bucket {split(uri)[0]!r} does not exist "
                                 "(create it, or check the URI and AWS_ENDPOINT_URL)")
    return OSError(f"{action} {uri} failed: {e}")


def filesystem() -> pafs.S3FileSystem:
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    kwargs = {"region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
              "connect_timeout": CONNECT_TIMEOUT_S, "request_timeout": READ_TIMEOUT_S,
              "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=attempts())}
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
    return pafs.S3FileSystem(**kwargs)


def client():
    """A boto3 S3 client (for what pyarrow lacks: conditional writes, downloads with ETags)."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": attempts(), "mode": "standard"},
                    connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S)
    return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
                        config=config)
