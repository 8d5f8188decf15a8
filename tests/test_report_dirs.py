"""Report folders (evaluation, statistics) may be local or s3:// prefixes: a job writes into a
local folder and, for s3://, the files are uploaded whole when the job's block ends."""

import boto3
import pytest

import storage


def _keys(prefix: str) -> dict[str, bytes]:
    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket="mimir", Prefix=prefix + "/").get("Contents", [])
    return {o["Key"][len(prefix) + 1:]: s3.get_object(Bucket="mimir", Key=o["Key"])["Body"].read()
            for o in listed}


def test_local_report_dir_is_the_folder_itself(tmp_path):
    with storage.local_dir(str(tmp_path / "r" / "eval")) as out:
        (out / "x.json").write_text("{}")
    assert (tmp_path / "r" / "eval" / "x.json").read_text() == "{}"


def test_s3_report_dir_uploads_every_file(s3_server):
    with storage.local_dir("s3://mimir/reports/run-1") as out:
        (out / "eval.json").write_text('{"l2": 1.5}')
        (out / "charts").mkdir()
        (out / "charts" / "l2.png").write_bytes(b"\x89PNG fake")
        local = out
    assert _keys("reports/run-1") == {"eval.json": b'{"l2": 1.5}', "charts/l2.png": b"\x89PNG fake"}
    assert not local.exists()  # the temporary folder is gone


def test_s3_report_dir_uploads_nothing_when_the_job_fails(s3_server):
    with pytest.raises(RuntimeError, match="evaluation failed"):
        with storage.local_dir("s3://mimir/reports/run-2") as out:
            (out / "partial.json").write_text("{")
            raise RuntimeError("evaluation failed")
    assert _keys("reports/run-2") == {}
