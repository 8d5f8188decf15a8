"""Pre-training on Ray Train + DeepSpeed against a real S3 endpoint (moto): exact resume,
recovery from a corrupted checkpoint and a lost Ray snapshot, and from a killed worker."""

import numpy as np
import pyarrow.fs as pafs
import pytest

from training import launch
from training.config import PretrainJobConfig
from mimir_model.checkpoint import latest_checkpoint, rejection
from mimir_model.train import TrainConfig
import storage
from pipelines import shards
from tests.synthetic import write_synthetic_shards
from tests.train_runs import outcome, run_killing_a_worker

DIM = 16
STORE = "s3://mimir/resume-test/checkpoints"


@pytest.fixture(scope="module")
def s3_data(s3_server, tmp_path_factory):
    root = "s3://mimir/resume-test/shards"
    norm = write_synthetic_shards(root, 24, DIM)
    local = tmp_path_factory.mktemp("norm") / "normalizer.safetensors"
    norm.save(local)
    fs, path = storage.resolve("s3://mimir/resume-test/normalizer.safetensors")
    storage.write_bytes(fs, path, local.read_bytes())
    return root, "s3://mimir/resume-test/normalizer.safetensors"


def _config(s3_data, tmp_path, run_name: str, **kw) -> PretrainJobConfig:
    root, norm = s3_data
    train = TrainConfig(model="tiny", steps=8, lr=1e-3, warmup_steps=2,
                        max_sentences_per_sequence=8, max_embeddings_per_batch=32,
                        checkpoint_every=2, keep_checkpoints=2, log_every=1)
    return PretrainJobConfig(
        run_name=run_name, storage_path=STORE, shards=root,
        normalizer=norm, num_workers=2, cache_dir=str(tmp_path / "cache"),
        log_sequence_ids=True, train=train, **kw)


@pytest.fixture(scope="module")
def straight(ray_local, s3_data, tmp_path_factory):
    """An uninterrupted 8-step run: (history, sequence ids per rank)."""
    tmp_path = tmp_path_factory.mktemp("straight")
    uri = launch.run(_config(s3_data, tmp_path, "straight"))
    assert uri.startswith(f"{STORE}/straight/")
    return outcome(uri, tmp_path / "a")


def test_resume_is_exact(ray_local, s3_data, straight, tmp_path):
    first = launch.run(_config(s3_data, tmp_path, "resumed", stop_at_step=4))
    resumed_uri = launch.run(_config(s3_data, tmp_path, "resumed"))
    assert first != resumed_uri

    straight, straight_ids = straight
    resumed, resumed_ids = outcome(resumed_uri, tmp_path / "b")
    assert [h["step"] for h in resumed] == list(range(1, 9))
    np.testing.assert_allclose([h["loss"] for h in resumed], [h["loss"] for h in straight],
                               atol=1e-6, rtol=0)
    assert resumed_ids == straight_ids
    # Ranks read disjoint documents, and every id names a real sequence of the shard set.
    table = shards.read_table(s3_data[0])
    real = {f"{d}#{k}" for d, n in zip(table["id"].to_pylist(), table["n_embeddings"].to_pylist())
            for k in range((n + 7) // 8)}
    assert set(resumed_ids[0]) | set(resumed_ids[1]) <= real
    assert not {i.split("#")[0] for i in resumed_ids[0]} & {i.split("#")[0] for i in resumed_ids[1]}


def test_a_corrupted_checkpoint_is_rejected_and_the_run_resumes_from_the_one_before(
        ray_local, s3_data, straight, tmp_path):
    launch.run(_config(s3_data, tmp_path, "fallback", stop_at_step=4))  # checkpoints at 2, 4
    newest = latest_checkpoint(STORE, "fallback")
    # One flipped byte in rank 1's optimizer state: sizes agree, only the checksum tells.
    fs, base = storage.resolve(newest)
    rel = "state/zero_pp_rank_1_mp_rank_00_optim_states.pt"
    data = bytearray(storage.read_bytes(fs, f"{base}/{rel}"))
    data[len(data) // 2] ^= 0xFF
    storage.write_bytes(fs, f"{base}/{rel}", bytes(data))
    # And Ray Train's own record of the run is lost: the checkpoints are found by listing.
    fs.delete_file(storage.resolve(f"{STORE}/fallback/checkpoint_manager_snapshot.json")[1])

    final, ids = outcome(launch.run(_config(s3_data, tmp_path, "fallback")), tmp_path / "f")
    assert rejection(newest) == (f"checkpoint {newest}: {rel} is missing or does not match "
                                 "its checksum (truncated or corrupted)")
    # Resumed at step 2, exactly: the same losses and sequences as the uninterrupted run.
    history, straight_ids = straight
    assert [h["step"] for h in final] == list(range(1, 9))
    np.testing.assert_allclose([h["loss"] for h in final], [h["loss"] for h in history],
                               atol=1e-6, rtol=0)
    assert ids == straight_ids
    assert latest_checkpoint(STORE, "fallback") != newest


@pytest.mark.slow
def test_killed_worker_is_restarted_from_the_last_checkpoint(ray_local, s3_data, tmp_path):
    cfg = _config(s3_data, tmp_path, "killed", max_failures=1)
    cfg.train.steps, cfg.train.checkpoint_every = 40, 5
    fs, base = storage.resolve("s3://mimir/resume-test/checkpoints/killed")

    def have_checkpoint() -> bool:
        # Two checkpoints in storage: the older one is surely registered with Ray Train, so
        # the restart has a checkpoint to resume from.
        return sum(i.base_name.startswith("checkpoint_") for i in fs.get_file_info(
            pafs.FileSelector(base, allow_not_found=True))) >= 2

    uri = run_killing_a_worker(lambda: launch.run(cfg), have_checkpoint)
    history, ids = outcome(uri, tmp_path / "k")
    assert [h["step"] for h in history] == list(range(1, 41))
    # The restarted workers resumed from a checkpoint rather than from step 0: "seconds"
    # counts from each worker's start, so it falls back exactly once, right after the
    # checkpoint the restart loaded (a multiple of 5, not 0).
    seconds = [h["seconds"] for h in history]
    falls = [i for i in range(1, 40) if seconds[i] < seconds[i - 1]]
    assert len(falls) == 1 and falls[0] % 5 == 0 and falls[0] >= 5, seconds
    # And it resumed exactly: the same losses and sequences as an uninterrupted run.
    straight = _config(s3_data, tmp_path, "killed-straight")
    straight.train.steps, straight.train.checkpoint_every = 40, 5
    straight_history, straight_ids = outcome(launch.run(straight), tmp_path / "s")
    np.testing.assert_allclose([h["loss"] for h in history],
                               [h["loss"] for h in straight_history], atol=1e-6, rtol=0)
    assert ids == straight_ids
