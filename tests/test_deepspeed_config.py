"""train.deepspeed: a user's DeepSpeed config merged with the fields the job owns."""

from __future__ import annotations

import json

import pytest
import torch

from mimir_model.train import TrainConfig, build_engine, build_model, deepspeed_config


def test_the_job_sets_its_fields_and_keeps_the_users():
    cfg = TrainConfig(grad_clip=5.0, zero_stage=2, precision="bf16",
                      deepspeed={"zero_optimization": {"reduce_bucket_size": 7},
                                 "steps_per_print": 10, "gradient_clipping": 5.0})
    assert deepspeed_config(cfg) == {
        "zero_optimization": {"reduce_bucket_size": 7, "stage": 2}, "steps_per_print": 10,
        "gradient_clipping": 5.0, "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1, "bf16": {"enabled": True}, "fp16": {"enabled": False},
        "wall_clock_breakdown": False}
    assert cfg.deepspeed == {"zero_optimization": {"reduce_bucket_size": 7},
                             "steps_per_print": 10, "gradient_clipping": 5.0}  # not mutated


@pytest.mark.parametrize("user,message", [
    ({"gradient_clipping": 1.0},
     r"sets gradient_clipping = 1.0, but the job sets it to 25.0 \(train.grad_clip\)"),
    ({"zero_optimization": {"stage": 3}},
     r"sets zero_optimization.stage = 3, but the job sets it to 1 \(train.zero_stage\)"),
    ({"fp16": {"enabled": True}}, r"fp16.enabled = True, but the job sets it to False"),
    ({"optimizer": {"type": "Adam"}}, r"has an 'optimizer' section"),
    ({"scheduler": {"type": "WarmupLR"}}, r"has an 'scheduler' section"),
])
def test_a_conflict_names_both_values(user, message):
    with pytest.raises(ValueError, match=message):
        deepspeed_config(TrainConfig(deepspeed=user))


def test_a_file_of_the_users(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"allgather_bucket_size": 99}}))
    merged = deepspeed_config(TrainConfig(deepspeed=str(path)))
    assert merged["zero_optimization"] == {"allgather_bucket_size": 99, "stage": 1}
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="bad.json: expected a mapping"):
        deepspeed_config(TrainConfig(deepspeed=str(tmp_path / "bad.json")))


def test_offload_settings_reach_the_engine():
    cfg = TrainConfig(model="tiny", zero_stage=2, deepspeed={
        "zero_optimization": {"offload_optimizer": {"device": "cpu", "buffer_count": 5}},
        "zero_force_ds_cpu_optimizer": False})  # our torch AdamW, not DeepSpeedCPUAdam
    engine = build_engine(build_model(cfg, 16), cfg, torch.device("cpu"), deepspeed_config(cfg))
    offload = engine._config.zero_config.offload_optimizer
    assert engine.zero_offload_optimizer() and (offload.device, offload.buffer_count) == ("cpu", 5)
    assert engine.zero_optimization_stage() == 2
