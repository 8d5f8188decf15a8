"""ZeRO-2 and ZeRO-3 end to end on Ray Train with two workers: a run stopped and resumed from
its checkpoint gives the losses of an uninterrupted run, and `init_from` a ZeRO-3 checkpoint
starts from exactly its weights. (Exports under every stage: tests/test_export_zero.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mimir_model.checkpoint import MODEL_FILE, read_history
from mimir_model.train import TrainConfig
from tests.synthetic import write_synthetic_shards
from tests.test_export_zero import PARTITION_ALL
from training import launch
from training.config import PretrainJobConfig

pytestmark = pytest.mark.slow
DIM = 16


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("zero")
    write_synthetic_shards(str(tmp / "shards"), 16, DIM).save(tmp / "n.safetensors")
    return tmp


def _config(tmp: Path, run: str, stage: int, **kw) -> PretrainJobConfig:
    train = {"model": "tiny", "steps": 6, "lr": 1e-3, "warmup_steps": 1, "zero_stage": stage,
             "max_sentences_per_sequence": 8, "max_embeddings_per_batch": 32,
             "checkpoint_every": 3, "deepspeed": PARTITION_ALL if stage == 3 else None,
             **kw.pop("train", {})}
    return PretrainJobConfig(run_name=run, storage_path=str(tmp / "ckpt"),
                             shards=str(tmp / "shards"), normalizer=str(tmp / "n.safetensors"),
                             num_workers=2, cache_dir=str(tmp / "cache"),
                             train=TrainConfig(**train), **kw)


@pytest.mark.parametrize("stage", [2, 3])
def test_a_resumed_run_equals_an_uninterrupted_one(ray_local, data, stage):
    straight = read_history(Path(launch.run(_config(data, f"straight{stage}", stage))))
    stopped = launch.run(_config(data, f"resumed{stage}", stage, stop_at_step=3))
    assert [h["step"] for h in read_history(Path(stopped))] == [1, 2, 3]
    resumed = read_history(Path(launch.run(_config(data, f"resumed{stage}", stage))))
    assert [h["step"] for h in resumed] == list(range(1, 7))
    np.testing.assert_allclose([h["loss"] for h in resumed], [h["loss"] for h in straight],
                               atol=1e-6, rtol=0)


def test_init_from_a_zero3_checkpoint_starts_from_its_weights(ray_local, data):
    start = launch.run(_config(data, "start3", 3))
    # One step at learning rate 0 (AdamW's decay is scaled by it too) leaves the weights as
    # they were loaded: the export equals the start checkpoint's, value by value.
    after = launch.run(_config(data, "from3", 3, init_from=start,
                               train={"steps": 1, "lr": 0.0, "warmup_steps": 0}))
    want = torch.load(Path(start) / MODEL_FILE, weights_only=True)
    have = torch.load(Path(after) / MODEL_FILE, weights_only=True)
    assert sorted(have) == sorted(want)
    assert any(v.abs().sum() > 0 for v in want.values())
    for name, value in want.items():
        assert torch.equal(have[name], value), name
