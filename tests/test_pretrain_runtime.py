"""Run-time embedding mode: raw documents are segmented and embedded by Ray Data actors while
Ray Train workers train on the stream. A stopped run, re-run, leaves out what it trained on
(before embedding it again) and trains every document once; quarantined documents are written
aside; and the stream trains like its float16 embedding cache."""

import itertools
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import torch

from jobkit import config as config_io
from training import launch
from training.config import PretrainJobConfig
from mimir_model.checkpoint import latest_checkpoint, trained_keys
from pipelines.streams.runtime_stream import build_dataset
from mimir_model.diffusion import NoiseSchedule
from mimir_model.normalizer import RobustNormalizer
from mimir_model.train import (TrainConfig, build_engine, build_model,
                               sequence_batches, sequences, train_step)
import storage
from pipelines import shards
from pipelines.ray_stages import CountsSink, collect_counts
from mimir_model.checkpoint import doc_keys
from tests.train_runs import outcome, run_killing_a_worker

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
STORE = "s3://mimir/runtime-test/checkpoints"


def _config(assets: Path, tmp: Path, run_name: str, **kw) -> PretrainJobConfig:
    cfg = config_io.load(PretrainJobConfig, ROOT / "configs" /
                         "pretrain_runtime.yaml", [
        f"run_name={run_name}", f"storage_path={STORE}", f"normalizer={tmp / 'norm.safetensors'}",
        f"cache_dir={tmp / 'cache'}", f"segment.model={assets / 'sat'}",
        f"sonar.encoder={assets / 'sonar' / 'sonar_text_encoder.pt'}",
        f"sonar.tokenizer={assets / 'sonar' / 'sentencepiece.model'}",
        "train.steps=100", "train.checkpoint_every=1", "train.max_sequences_per_batch=2",
        "runtime.documents_per_batch=4", "runtime.block_mb=0.01", "log_sequence_ids=true"])
    # 12 English documents (2 of them empty) and 6 French ones: 16 to train on.
    cfg.runtime.inputs = cfg.runtime.inputs[:2]
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


@pytest.fixture(scope="module")
def normalizer(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("runtime")
    RobustNormalizer().fit([np.random.default_rng(0).normal(size=(256, 64))]).save(
        tmp / "norm.safetensors")
    return tmp


def _valid_ids() -> list[str]:
    ids = []
    for f in (SAMPLES / "fineweb-edu" / "eng_Latn.parquet",
              SAMPLES / "fineweb-2" / "fra_Latn.parquet"):
        t = pq.read_table(f)
        ids += [i for i, x in zip(t["id"].to_pylist(), t["text"].to_pylist()) if x.strip()]
    return ids


def test_stopped_run_resumes_without_training_a_document_twice(ray_local, tiny_assets,
                                                              normalizer, tmp_path):
    first = launch.run(_config(tiny_assets, normalizer, "rt", stop_at_step=2))
    history, ids = outcome(first, tmp_path / "a")
    assert [h["step"] for h in history] == [1, 2]
    # Two steps of at most 2 one-sequence documents on each of 2 workers.
    first_docs = [i.split("#")[0] for r in ids for i in r]
    assert 2 * 2 <= len(first_docs) <= 2 * 2 * 2 and len(set(first_docs)) == len(first_docs)
    assert latest_checkpoint(STORE, "rt") == first
    assert sorted(trained_keys(first).tolist()) == sorted(doc_keys(first_docs).tolist())

    final = launch.run(_config(tiny_assets, normalizer, "rt"))
    history, ids = outcome(final, tmp_path / "b")
    steps = [h["step"] for h in history]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) > 2
    docs = [i.split("#")[0] for r in ids for i in r]
    # Every trainable document exactly once over both runs; the ranks never overlap, and
    # both had a share of the stream.
    assert sorted(docs) == sorted(_valid_ids())
    assert ids[0] and ids[1]
    assert not {i.split("#")[0] for i in ids[0]} & {i.split("#")[0] for i in ids[1]}
    assert sorted(trained_keys(final).tolist()) == sorted(doc_keys(_valid_ids()).tolist())
    # Each run set the two empty English documents aside, with their reason.
    fs, base = storage.resolve(f"{STORE}/rt/quarantine")
    runs = fs.get_file_info(pafs.FileSelector(base))
    assert len(runs) == 2
    for folder in runs:
        rejected = pq.read_table(folder.path, filesystem=fs)
        assert rejected["quarantine"].to_pylist() == ["empty_text"] * 2


def _losses(docs, norm: RobustNormalizer, cfg: TrainConfig, steps: int) -> list[float]:
    torch.manual_seed(0)
    engine = build_engine(build_model(cfg, norm.dim), cfg, torch.device("cpu"))
    batches = sequence_batches(sequences(docs, cfg.max_sentences_per_sequence), norm,
                               cfg.max_embeddings_per_batch, 2)
    g, out = torch.Generator(), []
    for step, batch in enumerate(itertools.islice(batches, steps)):
        g.manual_seed(step)
        out.append(train_step(engine, NoiseSchedule(), batch, g)[0])
    return out


def test_stream_trains_like_its_float16_cache(ray_local, tiny_assets, normalizer, tmp_path):
    cfg = _config(tiny_assets, normalizer, "unused")
    sink = CountsSink.remote()
    rows = build_dataset(cfg.runtime, cfg.segment, cfg.embed, cfg.sonar, np.zeros(0, np.int64),
                         str(tmp_path / "q"), sink, str(tmp_path / "cache")).take_all()
    counts = {c.stage: c for c in collect_counts(sink)}
    assert counts["read"].rows_out == 18 and counts["set_aside"].rows_out == 16
    assert dict(counts["set_aside"].quarantined) == {"empty_text": 2}
    ids = [r["id"] for r in rows]
    stream = [np.asarray(r["embeddings"], np.float32) for r in rows]
    cache = shards.arrow_to_embeddings(shards.embeddings_to_arrow(stream, 64, "float16"))
    assert sorted(ids) == sorted(_valid_ids())
    np.testing.assert_allclose(np.concatenate(cache), np.concatenate(stream), rtol=1e-3, atol=1e-3)

    norm = RobustNormalizer.load(normalizer / "norm.safetensors")
    tc = TrainConfig(model="tiny", model_overrides={"dropout": 0.0}, steps=10, lr=1e-3,
                     warmup_steps=1, max_embeddings_per_batch=256)
    full = _losses([(i, e, 0) for i, e in zip(ids, stream)], norm, tc, 6)
    half = _losses([(i, e, 0) for i, e in zip(ids, cache)], norm, tc, 6)
    assert len(full) == 6
    np.testing.assert_allclose(half, full, rtol=2e-3)


@pytest.mark.slow
def test_killed_worker_skips_what_its_checkpoint_trained(ray_local, tiny_assets, normalizer,
                                                         tmp_path):
    """A worker killed mid-run is restarted from the last checkpoint; the restarted stream
    starts over, the workers skip what the checkpoint records as trained, and the run ends with
    every document trained once in the final checkpoint's lineage."""
    cfg = _config(tiny_assets, normalizer, "rt-killed", max_failures=1)
    cfg.runtime.inputs = config_io.load(PretrainJobConfig, ROOT / "configs" /
                                        "pretrain_runtime.yaml").runtime.inputs
    cfg.train.max_sequences_per_batch = 1  # 45 documents: about 22 steps a worker
    uri = run_killing_a_worker(lambda: launch.run(cfg),
                               lambda: latest_checkpoint(STORE, "rt-killed") is not None, 0.2)
    history, ids = outcome(uri, tmp_path / "k")
    assert [h["step"] for h in history] == list(range(1, len(history) + 1))
    docs = [i.split("#")[0] for r in ids for i in r]
    assert len(docs) == len(set(docs)) == 45
    assert len(trained_keys(uri)) == 45
