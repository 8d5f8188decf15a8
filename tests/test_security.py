"""Security: credentials only from the AWS environment and never logged, tensors loaded without
pickle code execution, and paths read from manifests kept inside their folder."""

import ast
import hashlib
import json
import logging
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from storage.cache import fetch
from mimir_model.checkpoint import verify_checkpoint
import storage
from pipelines import shards

ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILES = sorted(p for d in ("pipelines", "mimir_model", "jobs")
                       for p in (ROOT / d).rglob("*.py"))
SECRET = "MimirFakeSecret/9f3c1e7aZ+NeverLogMe"


def _table(dim: int = 4) -> pa.Table:
    docs = [np.ones((2, dim), np.float32), np.zeros((1, dim), np.float32)]
    return pa.table({
        "id": ["a", "b"], "source": ["s"] * 2, "lang": ["eng_Latn"] * 2,
        "sentences": [["x", "y"], ["z"]], "quarantine": [None, "empty_text"],
        "text": ["x y", "z"], "embeddings": shards.embeddings_to_arrow(docs, dim),
        "n_embeddings": pa.array([2, 1], pa.int32())})


def _commit(root: str) -> shards.Manifest:
    run_id = shards.new_run_id()
    writer = shards.ShardWriter(root, run_id)
    files = [shards.ShardFile(**r) for r in writer(_table()).to_pylist()]
    return shards.commit(root, run_id, files, [writer.counts])


def test_secret_key_never_appears_in_logs(s3_server, monkeypatch, caplog, capfd, tmp_path):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("MIMIR_S3_RETRIES", "1")
    caplog.set_level(logging.DEBUG)  # botocore and urllib3 log requests at DEBUG
    root = "s3://mimir/security/shards"
    manifest = _commit(root)
    assert shards.read_table(root)["id"].to_pylist() == ["a"]
    local = fetch(f"{root}/{manifest.data_files[0].path}", tmp_path / "cache")
    assert local.stat().st_size > 0
    with pytest.raises(FileNotFoundError):  # an error path logs and raises too
        fetch("s3://mimir/security/no-such-object", tmp_path / "cache")
    out, err = capfd.readouterr()
    assert "committed 1 shard files" in caplog.text  # the capture did see the job's logging
    assert len(caplog.records) > 3
    for text in (caplog.text, out, err, *(str(r.args) for r in caplog.records)):
        assert SECRET not in text


def test_credentials_are_never_passed_explicitly():
    """No code hands keys to a client: boto3 and pyarrow take them from the standard AWS chain
    (environment, config files, instance roles)."""
    explicit = re.compile(r"(aws_secret_access_key|secret_key|aws_access_key_id|access_key"
                          r"|session_token)\s*=", re.IGNORECASE)
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in PROJECT_FILES
                 for i, line in enumerate(p.read_text().splitlines(), 1) if explicit.search(line)]
    assert offenders == []


def _torch_load_calls(path: Path) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "load" and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "torch"]


def test_every_torch_load_is_weights_only():
    calls = {p: _torch_load_calls(p) for p in PROJECT_FILES}
    assert sum(map(len, calls.values())) >= 3  # SONAR checkpoints, worker state, exported model
    unsafe = [f"{p.relative_to(ROOT)}:{c.lineno}" for p, cs in calls.items() for c in cs
              if not any(k.arg == "weights_only" and isinstance(k.value, ast.Constant)
                         and k.value.value is True for k in c.keywords)]
    assert unsafe == []


def _rewrite_first_path(root: Path, path: str) -> None:
    manifest = json.loads((root / shards.MANIFEST).read_text())
    manifest["files"][0]["path"] = path
    (root / shards.MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("path", ["/etc/passwd", "{run}/data/../../../secret.parquet",
                                  "../elsewhere/data/part.parquet", "run-other/data/p.parquet",
                                  "{run}"],
                         ids=["absolute", "dotdot_inside_run", "dotdot", "other_run", "run_dir"])
def test_manifest_paths_must_stay_in_their_run_folder(tmp_path, path):
    root = tmp_path / "shards"
    manifest = _commit(str(root))
    bad = path.format(run=manifest.run_id)
    _rewrite_first_path(root, bad)
    message = rf"shard manifest {re.escape(str(root))}/manifest.json names '{re.escape(bad)}', " \
              rf"outside its run folder {manifest.run_id}/"
    for read in (shards.read_manifest, shards.data_paths, shards.read_table):
        with pytest.raises(ValueError, match=message):
            read(str(root))


def test_good_manifest_paths_are_accepted(tmp_path):
    root = tmp_path / "shards"
    manifest = _commit(str(root))
    assert [Path(p) for p in shards.data_paths(str(root))] == \
        [root / f.path for f in manifest.data_files]
    assert all(Path(p).parent == root / manifest.run_id / "quarantine"
               for p in shards.data_paths(str(root), "quarantine"))
    assert storage.exists(*storage.resolve(str(root / shards.MANIFEST)))


@pytest.mark.parametrize("rel", ["../outside", "/etc/hostname", "state/../../outside"])
def test_checkpoint_manifest_paths_must_stay_in_the_checkpoint(tmp_path, rel):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (tmp_path / "outside").write_bytes(b"x")
    digest = hashlib.sha256(b"x").hexdigest()
    (ckpt / "files_rank0.json").write_text(json.dumps({"world": 1, "files": {rel: digest}}))
    with pytest.raises(ValueError, match=rf"files_rank0.json names '{re.escape(rel)}', outside "
                                         "the checkpoint"):
        verify_checkpoint(ckpt)
