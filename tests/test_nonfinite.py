"""Non-finite values never spread: the normalizer fit leaves NaN/Inf rows out, a non-finite or
unreadable normalizer is refused by path, and training stops on NaN/Inf losses before any
checkpoint keeps them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from safetensors.torch import save_file

from mimir_model.checkpoint import latest_checkpoint
from mimir_model.normalizer import RobustNormalizer
from mimir_model.train import TrainConfig
from pipelines import shards
from tests.synthetic import write_synthetic_shards
from training import launch
from training.config import PretrainJobConfig


def test_the_fit_leaves_nan_rows_out():
    rng = np.random.default_rng(0)
    clean = rng.standard_normal((40, 8)).astype(np.float32)
    poisoned = clean.copy()
    poisoned[[3, 17], 5] = np.nan
    poisoned[9, 0] = np.inf
    kept = np.delete(clean, [3, 9, 17], axis=0)
    fit = RobustNormalizer().fit([poisoned[:20], poisoned[20:]])
    assert fit.skipped_rows == 3 and fit.fit_rows == 37
    reference = RobustNormalizer().fit([kept])
    assert torch.equal(fit.center, reference.center) and torch.equal(fit.scale, reference.scale)
    with pytest.raises(ValueError, match="all 2 rows have NaN or Inf values"):
        RobustNormalizer().fit([np.full((2, 8), np.nan, np.float32)])


def test_a_bad_normalizer_is_refused_by_path(tmp_path):
    bad = tmp_path / "nan.safetensors"
    center = torch.zeros(8)
    center[2] = float("nan")
    save_file({"center": center, "scale": torch.ones(8)}, str(bad),
              metadata={"dim": "8", "fit_rows": "10"})
    with pytest.raises(ValueError, match=rf"{bad}: 1 dimensions have a NaN or Inf centre or "
                                         r"scale \(e.g. dimension 2\); refit it"):
        RobustNormalizer.load(bad)
    good = tmp_path / "good.safetensors"
    RobustNormalizer().fit([np.ones((4, 8), np.float32)]).save(good)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ValueError, match=rf"{truncated}: not a readable normalizer"):
        RobustNormalizer.load(truncated)


def test_training_stops_on_nonfinite_losses_before_checkpointing(ray_local, tmp_path):
    write_synthetic_shards(str(tmp_path / "fine"), 12, 16).save(tmp_path / "n.safetensors")
    # The same documents scaled to 1e30: finite, so not skipped, but their losses overflow.
    table = shards.read_table(str(tmp_path / "fine"))
    huge = [d * np.float32(1e30) for d in shards.arrow_to_embeddings(table["embeddings"])]
    run_id = shards.new_run_id()
    writer = shards.ShardWriter(str(tmp_path / "huge"), run_id)
    table = table.set_column(table.column_names.index("embeddings"), "embeddings",
                             shards.embeddings_to_arrow(huge, 16))
    files = writer(table.append_column("quarantine", pa.nulls(table.num_rows, pa.string())))
    shards.commit(str(tmp_path / "huge"), run_id,
                  [shards.ShardFile(**r) for r in files.to_pylist()], [writer.counts])
    cfg = PretrainJobConfig(
        run_name="nonfinite", storage_path=str(tmp_path / "ckpt"), shards=str(tmp_path / "huge"),
        normalizer=str(tmp_path / "n.safetensors"), num_workers=2,
        cache_dir=str(tmp_path / "cache"), max_failures=0,
        train=TrainConfig(model="tiny", steps=6, warmup_steps=1, max_sentences_per_sequence=8,
                          max_embeddings_per_batch=32, checkpoint_every=2, log_every=1,
                          max_nonfinite_losses=2))
    with pytest.raises(Exception, match="2 consecutive steps up to 2 had a non-finite loss"):
        launch.run(cfg)
    assert latest_checkpoint(cfg.storage_path, "nonfinite") is None  # none keeps the damage
