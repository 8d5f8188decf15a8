"""The weights a checkpoint exports (model.pt) are the training engine's, whole, for every ZeRO
stage: compared value by value with the engine's own parameters, and a ZeRO-3 run's export
with the same run under ZeRO-1."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mimir_model.checkpoint import MODEL_FILE, export_model, load_exported_model
from mimir_model.diffusion import NoiseSchedule
from mimir_model.train import (Batch, TrainConfig, build_engine, build_model,
                               train_step)
from tests.synthetic import write_synthetic_shards
from training import launch
from training.config import PretrainJobConfig

# Partition every parameter under ZeRO-3 (by default DeepSpeed keeps parameters below 1e5
# elements whole, which is every parameter of the tiny model).
PARTITION_ALL = {"zero_optimization": {"stage3_param_persistence_threshold": 0}}


def _engine_weights(engine) -> dict[str, torch.Tensor]:
    """The engine's parameters and buffers, whole, read by DeepSpeed's own routes: the module
    as it is (stages 0-2) or DeepSpeed's consolidated state dict (ZeRO-3)."""
    if engine.zero_optimization_stage() == 3:
        return {k: v.float() for k, v in engine._zero3_consolidated_16bit_state_dict().items()}
    return {k: v.detach().float() for k, v in engine.module.state_dict().items()}


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_export_equals_the_engines_weights(stage, tmp_path):
    cfg = TrainConfig(model="tiny", zero_stage=stage, lr=1e-2, warmup_steps=0, steps=4,
                      deepspeed=PARTITION_ALL if stage == 3 else None)
    torch.manual_seed(0)
    engine = build_engine(build_model(cfg, 16), cfg, torch.device("cpu"))
    if stage == 3:  # the parameters really are partitioned: the module alone holds nothing
        assert all(p.numel() == 0 for p in engine.module.parameters())
    gen = torch.Generator().manual_seed(0)
    batch = Batch(torch.randn(2, 5, 16, generator=gen), torch.tensor([5, 3]),
                  torch.ones(2, 5, dtype=torch.bool), ["a#0", "b#0"])
    for _ in range(2):  # trained weights, not the initial ones
        train_step(engine, NoiseSchedule(), batch, gen)
    export_model(engine, tmp_path, cfg)
    exported = torch.load(tmp_path / MODEL_FILE, weights_only=True)
    expected = _engine_weights(engine)
    assert sorted(exported) == sorted(expected)
    for name, value in expected.items():
        assert exported[name].dtype == torch.float32
        assert torch.equal(exported[name], value), name
    assert any(v.abs().sum() > 0 for v in exported.values())
    # And the exported folder loads into a model whose weights are those.
    loaded = load_exported_model(tmp_path).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())


def _run(tmp: Path, stage: int) -> dict[str, torch.Tensor]:
    cfg = PretrainJobConfig(
        run_name=f"zero{stage}", storage_path=str(tmp / "ckpt"), shards=str(tmp / "shards"),
        normalizer=str(tmp / "n.safetensors"), num_workers=2, cache_dir=str(tmp / "cache"),
        train=TrainConfig(model="tiny", steps=3, lr=1e-3, warmup_steps=1, zero_stage=stage,
                          max_sentences_per_sequence=8, max_embeddings_per_batch=32,
                          checkpoint_every=3, deepspeed=PARTITION_ALL if stage == 3 else None))
    uri = launch.run(cfg)
    return torch.load(Path(uri) / MODEL_FILE, weights_only=True)


@pytest.mark.slow  # two Ray Train runs (90 s); the engine-level export test above stays
def test_a_zero3_run_exports_what_the_same_zero1_run_does(ray_local, tmp_path):
    write_synthetic_shards(str(tmp_path / "shards"), 16, 16).save(tmp_path / "n.safetensors")
    one, three = _run(tmp_path, 1), _run(tmp_path, 3)
    assert sorted(one) == sorted(three)
    for name in one:
        assert one[name].shape == three[name].shape, name
        torch.testing.assert_close(three[name], one[name], rtol=0, atol=1e-6, msg=name)
