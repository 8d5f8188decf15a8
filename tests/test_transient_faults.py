"""Transient is not bad input: a storage fault while reading an input is retried, and if it
persists the job fails naming the URI; nothing is quarantined or recorded as processed
(against a real S3 endpoint that drops connections: tests/flaky_s3.py in front of moto)."""

from __future__ import annotations

import boto3
import pyarrow.parquet as pq
import pytest

import samples
from pipelines.readers.fineweb import read_fineweb
from tests.flaky_s3 import FlakyS3

PREFIX = "transient"


@pytest.fixture
def flaky(s3_server, monkeypatch):
    s3 = boto3.client("s3", endpoint_url=s3_server)
    for config in ("eng_Latn", "fra_Latn"):
        s3.upload_file(str(samples.fineweb(config)), "mimir", f"{PREFIX}/{config}.parquet")
    with FlakyS3(s3_server) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        monkeypatch.setenv("MIMIR_S3_RETRIES", "4")
        monkeypatch.setattr("storage.retry.S3_BACKOFF_S", 0.05)
        yield proxy


def test_dropped_connections_are_retried_not_quarantined(flaky):
    # More drops than pyarrow's own request retries (3): the whole-file retry bridges them.
    flaky.fail("fra_Latn", times=5)
    table = read_fineweb(f"s3://mimir/{PREFIX}/fra_Latn.parquet", "fra_Latn")
    assert flaky.dropped == 5
    assert table.num_rows == pq.read_table(samples.fineweb("fra_Latn")).num_rows
    assert table["quarantine"].null_count == table.num_rows


def test_an_outage_fails_the_read_naming_the_uri(flaky):
    flaky.fail("fra_Latn")
    with pytest.raises(OSError, match=rf"s3://mimir/{PREFIX}/fra_Latn.parquet failed after "
                                      r"4 attempts"):
        read_fineweb(f"s3://mimir/{PREFIX}/fra_Latn.parquet", "fra_Latn")
