"""Live training metrics and what a checkpoint records: reports every log_every steps, TensorBoard
events under the run folder that repeat the loss history, MLflow through Ray's integration (its
local file store), and the run's record (config, normalizer, models, DeepSpeed config) in every
checkpoint."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from jobkit.config import to_dict
from mimir_model.checkpoint import RUN_INFO, read_history
from mimir_model.train import TrainConfig
from storage.fetch import sha256_file
from tests.synthetic import write_synthetic_shards
from training import launch
from training.config import PretrainJobConfig
from training.metrics import TrackingConfig


def tensorboard_scalars(logdir: Path) -> dict[str, dict[int, float]]:
    """tag -> {step: value} of every event file under `logdir` (TFRecord framing: length,
    CRC, event proto, CRC), the later files winning."""
    from tensorboardX.proto import event_pb2

    out: dict[str, dict[int, float]] = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                out.setdefault(value.tag, {})[event.step] = value.simple_value
    return out


@pytest.fixture(scope="module")
def run(ray_local, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    write_synthetic_shards(str(tmp / "shards"), 24, 16).save(tmp / "n.safetensors")
    cfg = PretrainJobConfig(
        run_name="metrics", storage_path=str(tmp / "ckpt"), shards=str(tmp / "shards"),
        normalizer=str(tmp / "n.safetensors"), num_workers=2, cache_dir=str(tmp / "cache"),
        train=TrainConfig(model="tiny", steps=6, lr=1e-3, warmup_steps=2,
                          max_sentences_per_sequence=8, max_embeddings_per_batch=32,
                          checkpoint_every=3, log_every=2,
                          deepspeed={"zero_optimization": {"reduce_bucket_size": 12345}}),
        tracking=TrackingConfig(mlflow_tracking_uri=f"file://{tmp / 'mlruns'}",
                                mlflow_experiment="test"))
    uri = launch.run(cfg)
    return cfg, Path(uri), tmp


def test_tensorboard_repeats_the_loss_history(run):
    cfg, ckpt, tmp = run
    history = read_history(ckpt)
    scalars = tensorboard_scalars(tmp / "ckpt" / "metrics" / "tensorboard")
    assert sorted(scalars["train/loss"]) == [1, 2, 3, 4, 5, 6]
    np.testing.assert_array_equal(
        [scalars["train/loss"][h["step"]] for h in history],
        np.array([h["loss"] for h in history], np.float32))
    np.testing.assert_array_equal([scalars["train/lr"][h["step"]] for h in history],
                                  np.array([h["lr"] for h in history], np.float32))
    # Reports: at step 1, every log_every (2) steps and at the checkpoints (3, 6).
    assert sorted(scalars["report/embeddings_per_s"]) == [1, 2, 3, 4, 6]
    assert all(h["grad_norm"] > 0 for h in history)


def test_mlflow_gets_each_report(run, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3's file store, opted in
    cfg, ckpt, tmp = run
    client = MlflowClient(tracking_uri=f"file://{tmp / 'mlruns'}")
    experiment = client.get_experiment_by_name("test")
    (mlrun,) = client.search_runs([experiment.experiment_id])
    assert mlrun.info.run_name == "metrics"
    assert mlrun.data.params["train.steps"] == "6"
    history = {h["step"]: h for h in read_history(ckpt)}
    losses = client.get_metric_history(mlrun.info.run_id, "loss")
    assert [m.step for m in losses] == [1, 2, 3, 4, 6]
    assert [m.value for m in losses] == pytest.approx([history[m.step]["loss"] for m in losses])
    for key in ("lr", "grad_norm", "embeddings_per_s", "documents_per_s", "loss_rank0",
                "loss_rank1"):
        assert len(client.get_metric_history(mlrun.info.run_id, key)) == 5, key
    # The two ranks' losses, weighted by their embeddings, are the reported loss.
    step6 = {k: client.get_metric_history(mlrun.info.run_id, k)[-1].value
             for k in ("loss_rank0", "loss_rank1")}
    assert min(step6.values()) <= history[6]["loss"] <= max(step6.values())


def test_checkpoint_records_what_the_run_needs(run):
    cfg, ckpt, tmp = run
    info = json.loads((ckpt / RUN_INFO).read_text())
    assert info["job_config"] == to_dict(cfg)
    assert info["normalizer"] == {"uri": cfg.normalizer,
                                  "sha256": sha256_file(tmp / "n.safetensors")}
    assert info["instruction_tuned"] is False
    assert info["models"]["sonar"] == to_dict(cfg.sonar)
    assert "does not record" in info["models"]["source"]  # synthetic shards name no models
    ds = info["deepspeed_config"]
    assert ds["zero_optimization"] == {"reduce_bucket_size": 12345, "stage": 1}
    assert ds["gradient_clipping"] == cfg.train.grad_clip
    assert len(info["git_commit"]) == 40 and info["versions"]["torch"].startswith("2.")
