"""Checkpoints are data, never code: a torch file crafted to run code when unpickled is
refused before anything runs; completeness is judged by file sizes too; rejected folders
are passed over."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mimir_model.checkpoint import (CheckpointRejected, latest_checkpoint, load_checkpoint,
                                    reject, rejection, save_checkpoint, verify_checkpoint)
from mimir_model.train import (TrainConfig, build_engine, build_model, sequence_batches,
                               sequences, train_step)
from mimir_model.diffusion import NoiseSchedule
from tests.test_train import identity_normalizer

DIM = 16


class _RunsCode:
    """Unpickles as a call to os.mkdir: what a crafted checkpoint file does."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def _engine(zero_stage: int = 1):
    torch.manual_seed(0)
    cfg = TrainConfig(model="tiny", model_overrides={"dropout": 0.0}, steps=4, lr=1e-3,
                      warmup_steps=1, zero_stage=zero_stage,
                      max_sentences_per_sequence=8, max_embeddings_per_batch=64)
    return build_engine(build_model(cfg, DIM), cfg, torch.device("cpu")), cfg


def _batch():
    rng = np.random.default_rng(0)
    docs = [(str(n), rng.standard_normal((n, DIM)).astype(np.float32), 0) for n in (6, 7)]
    return next(sequence_batches(sequences(docs, 8), identity_normalizer(DIM), 64))


def _trained_checkpoint(directory: Path, zero_stage: int = 1):
    engine, _ = _engine(zero_stage)
    train_step(engine, NoiseSchedule(), _batch(), torch.Generator().manual_seed(0))
    save_checkpoint(engine, directory, {"step": 1}, [{"step": 1, "loss": 1.0}], {"pos": 1})
    return engine


def _replace(directory: Path, rel: str, payload) -> None:
    """Swap a file for `payload` and fix the manifest as an attacker would: checksums and
    sizes match, so only the content check can catch it."""
    path = directory / rel
    torch.save(payload, path)
    manifest = directory / "files_rank0.json"
    m = json.loads(manifest.read_text())
    m["files"][rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    m["sizes"][rel] = path.stat().st_size
    manifest.write_text(json.dumps(m))


@pytest.mark.parametrize("zero_stage", [0, 1, 2, 3])
def test_every_zero_stage_checkpoint_loads_weights_only_and_resumes_exactly(tmp_path,
                                                                          zero_stage):
    trained = _trained_checkpoint(tmp_path, zero_stage)
    assert verify_checkpoint(tmp_path) == 1
    engine, _ = _engine(zero_stage)
    state, history, worker = load_checkpoint(engine, tmp_path)
    assert state["step"] == 1 and history == [{"step": 1, "loss": 1.0}] and worker == {"pos": 1}
    with torch.no_grad():
        for (name, a), b in zip(trained.module.named_parameters(), engine.module.parameters()):
            if zero_stage == 3:  # partitioned: compare what this single rank holds
                a, b = a.ds_tensor, b.ds_tensor
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    # Optimizer and schedule came back too: the next step is the uninterrupted run's.
    straight = train_step(trained, NoiseSchedule(), _batch(), torch.Generator().manual_seed(1))
    resumed = train_step(engine, NoiseSchedule(), _batch(), torch.Generator().manual_seed(1))
    assert resumed == straight


@pytest.mark.parametrize("rel", ["state/mp_rank_00_model_states.pt",
                                 "state/zero_pp_rank_0_mp_rank_00_optim_states.pt",
                                 "worker_rank0.pt"])
def test_a_crafted_file_is_refused_and_never_run(tmp_path, rel):
    ckpt, marker = tmp_path / "ckpt", tmp_path / "ran"
    ckpt.mkdir()
    _trained_checkpoint(ckpt)
    _replace(ckpt, rel, {"module": _RunsCode(marker)})
    message = rf"refusing to load .*{rel}: it holds objects other than tensors"
    with pytest.raises(CheckpointRejected, match=message):
        verify_checkpoint(ckpt)
    engine, _ = _engine()
    with pytest.raises(CheckpointRejected, match=message):
        load_checkpoint(engine, ckpt)
    assert not marker.exists()
    # The file is what it claims: an ordinary unpickling runs it.
    torch.load(ckpt / rel, weights_only=False)
    assert marker.is_dir()


def _folders(run: Path, n: int) -> list[Path]:
    """n complete one-file checkpoint folders, oldest first."""
    out = []
    for i in range(n):
        folder = run / f"checkpoint_2026-12-01_00-00-0{i}.000000"
        folder.mkdir(parents=True)
        (folder / "a.pt").write_bytes(b"x" * (10 + i))
        (folder / "files_rank0.json").write_text(json.dumps(
            {"world": 1, "files": {"a.pt": "-"}, "sizes": {"a.pt": 10 + i}}))
        out.append(folder)
    return out


def test_the_newest_checkpoint_that_is_whole_and_not_rejected_is_the_latest(tmp_path):
    old, middle, new = _folders(tmp_path / "run", 3)
    assert latest_checkpoint(str(tmp_path), "run") == str(new)
    (new / "a.pt").write_bytes(b"x" * 5)  # cut short: the listing shows the wrong size
    assert latest_checkpoint(str(tmp_path), "run") == str(middle)
    reject(str(middle), "rank 0: a.pt does not match its checksum")
    assert rejection(str(middle)) == "rank 0: a.pt does not match its checksum"
    assert rejection(str(old)) is None
    assert latest_checkpoint(str(tmp_path), "run") == str(old)
