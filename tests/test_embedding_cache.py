"""Embedding cache mode: float16 shards train like float32 ones, within float16 tolerance."""

import itertools

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from mimir_model.diffusion import NoiseSchedule
from mimir_model.train import (TrainConfig, build_engine, build_model, sequence_batches,
                               sequences, train_step)
from pipelines import shards
from pipelines.streams.shard_stream import RankStream
from tests.synthetic import write_synthetic_shards


def _losses(root: str, normalizer, cfg: TrainConfig, steps: int) -> list[float]:
    torch.manual_seed(0)
    engine = build_engine(build_model(cfg, normalizer.dim), cfg, torch.device("cpu"))
    stream = RankStream(root, rank=0, world=1, seed=0)
    batches = sequence_batches(sequences(stream.documents(0), cfg.max_sentences_per_sequence),
                               normalizer, cfg.max_embeddings_per_batch)
    g = torch.Generator()
    out = []
    for step, batch in enumerate(itertools.islice(batches, steps)):
        g.manual_seed(step)
        out.append(train_step(engine, NoiseSchedule(), batch, g)[0])
    return out


def test_float16_shards_match_float32_training(tmp_path):
    norm = write_synthetic_shards(str(tmp_path / "f32"), 12, 16, files=1)
    write_synthetic_shards(str(tmp_path / "f16"), 12, 16, files=1, dtype="float16")
    [f16_file] = shards.data_paths(str(tmp_path / "f16"))
    assert pq.read_schema(f16_file).field("embeddings").type.value_type.value_type == "halffloat"
    cfg = TrainConfig(model="tiny", model_overrides={"dropout": 0.0}, steps=10, lr=1e-3,
                      warmup_steps=1, max_sentences_per_sequence=8, max_embeddings_per_batch=32)
    full = _losses(str(tmp_path / "f32"), norm, cfg, 4)
    half = _losses(str(tmp_path / "f16"), norm, cfg, 4)
    assert len(full) == len(half) == 4
    np.testing.assert_allclose(half, full, rtol=2e-3)


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="float16"):
        shards.embeddings_to_arrow([np.zeros((1, 2), np.float32)], 2, "int8")
