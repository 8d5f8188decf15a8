"""Inputs are named the same however a job is started: from a checkout or from Ray's copy of
`--working-dir` (a `_ray_pkg_<hash>` folder that moves with every change of the sources)."""

import os
import shutil
from pathlib import Path

import pytest

from pipelines import refresh as corpus_refresh
from pipelines.readers.fineweb import FinewebInput
from pipelines import shards
from storage.paths import absolute, absolute_paths, identity, ray_package

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "fineweb-2" / "fra_Latn.parquet"


def _package(tmp_path: Path, name: str) -> Path:
    """A Ray package folder holding the shipped sample, as `ray job submit` unpacks it."""
    root = tmp_path / name / "runtime_resources" / "working_dir_files" / f"_ray_pkg_{name}"
    (root / "samples").mkdir(parents=True)
    shutil.copy(SAMPLE, root / "samples" / "fra_Latn.parquet")
    return root


def test_two_submissions_name_a_shipped_file_alike(tmp_path, monkeypatch):
    first, second = _package(tmp_path, "aaaa"), _package(tmp_path, "bbbb")
    cfg = corpus_refresh.CorpusConfig(inputs=[FinewebInput("samples/fra_Latn.parquet",
                                                           "fra_Latn")])
    monkeypatch.chdir(first)
    todo, _ = corpus_refresh.pending(cfg, None)
    assert [(t.key, t.uri) for t in todo] == [("samples/fra_Latn.parquet",
                                                str(first / "samples" / "fra_Latn.parquet"))]
    manifest = shards.Manifest("run-1", 1024, [], meta={"groups": [], "inputs": {
        todo[0].key: {"config": "fra_Latn", "limit": None, "size": todo[0].size, "group": 0}}})
    monkeypatch.chdir(second)  # the sources changed: another package folder
    assert corpus_refresh.pending(cfg, manifest) == ([], {})
    # A set written before inputs were named this way (absolute paths) is not read anew.
    old = shards.Manifest("run-0", 1024, [], meta={"groups": [], "inputs": {
        str(second / "samples" / "fra_Latn.parquet"): manifest.meta["inputs"][todo[0].key]}})
    assert corpus_refresh.pending(cfg, old) == ([], {})


def test_in_a_ray_package_relative_outputs_and_paths_out_of_it_are_refused(tmp_path,
                                                                           monkeypatch):
    package = _package(tmp_path, "cccc")
    monkeypatch.chdir(package / "samples")  # anywhere inside it
    assert ray_package() == package
    with pytest.raises(ValueError, match=r"output 'build/demo/shards' is a relative path, and "
                                         r"this job runs in Ray's copy of its --working-dir"):
        absolute("build/demo/shards", "output")
    with pytest.raises(ValueError, match=r"input '../../x.parquet' leads out of Ray's copy"):
        absolute("../../x.parquet", "input")
    assert absolute("fra_Latn.parquet", "input") == str(package / "samples" / "fra_Latn.parquet")
    assert absolute("cache", "scratch") == str(package / "samples" / "cache")
    assert absolute("/data/out", "output") == "/data/out"
    assert absolute("s3://b/out", "output") == "s3://b/out"
    assert identity(str(package / "samples" / "fra_Latn.parquet")) == "fra_Latn.parquet"
    assert identity("/data/x.parquet") == "/data/x.parquet"
    # The pass over a config names the key (nested sections by their dotted path).
    from evaluation.next_sentence import EvalPretrainConfig

    cfg = EvalPretrainConfig(checkpoint="s3://b/c", output="s3://b/r.json")
    with pytest.raises(ValueError, match=r"^report_dir: output 'build/eval/pretrain' is a "
                                         r"relative path"):
        absolute_paths(cfg)


def test_outside_a_ray_package_relative_outputs_are_fine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert ray_package() is None
    assert absolute("build/demo/shards", "output") == str(tmp_path / "build/demo/shards")
    assert os.path.isabs(absolute("../x.parquet", "input"))
