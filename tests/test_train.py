"""Training core without Ray: sequences, batches, schedule, a DeepSpeed engine in one process."""

import math

import numpy as np
import pytest
import torch

from mimir_model.normalizer import RobustNormalizer
from mimir_model.checkpoint import (export_model, load_checkpoint, load_exported_model,
                                    save_checkpoint, verify_checkpoint)
from mimir_model.train import (Batch, TrainConfig, build_engine, build_model, cut_sequences,
                               idle_batch, lr_factor, sequence_batches, sequences,
                               single_process_env, train_step)
from mimir_model.diffusion import NoiseSchedule


def identity_normalizer(dim: int) -> RobustNormalizer:
    return RobustNormalizer(torch.zeros(dim), torch.ones(dim), fit_rows=0)


def test_cut_sequences_keeps_every_embedding_in_order():
    doc = np.arange(300, dtype=np.float32)[:, None]
    parts = cut_sequences(doc, 128)
    assert [len(p) for p in parts] == [128, 128, 44]
    np.testing.assert_array_equal(np.concatenate(parts), doc)


def test_sequence_ids_name_document_and_chunk():
    docs = [("d1", np.zeros((3, 2), np.float32), 0), ("d2", np.zeros((5, 2), np.float32), 0)]
    assert [(i, len(s), c) for i, s, c in sequences(docs, 2)] == \
        [("d1#0", 2, 0), ("d1#1", 1, 0), ("d2#0", 2, 0), ("d2#1", 2, 0), ("d2#2", 1, 0)]


def test_instruction_instances_are_not_wrapped_and_train_targets_only():
    doc = np.arange(6, dtype=np.float32)[:, None]  # 4 context sentences, 2 targets
    [(i, s, c)] = sequences([("q", doc, 4)], 128)
    assert i == "q#0" and c == 4 and len(s) == 6
    # Too long: the oldest context goes, the targets stay.
    [(_, s, c)] = sequences([("q", doc, 4)], 5)
    assert s[:, 0].tolist() == [1, 2, 3, 4, 5] and c == 3
    [batch] = sequence_batches([("q#0", doc, 4), ("p#0", doc[:3], 0)],
                               identity_normalizer(1), 64)
    assert batch.loss_mask.tolist() == [[False] * 4 + [True] * 2, [True] * 3 + [False] * 3]


def test_batches_respect_the_padded_budget():
    dim = 2
    docs = [(f"d{n}", np.full((n, dim), n, np.float32), 0) for n in (3, 5, 2, 130, 1)]
    batches = list(sequence_batches(sequences(docs, 128), identity_normalizer(dim), 128))
    # 3,5 -> 2x5=10 ok; +2 -> 3x5=15 ok; +128 -> 4x128 > 128: new batch; [128]; +2 -> 2x128 >128;
    # [2, 1] -> 2x2 = 4.
    assert [b.lengths.tolist() for b in batches] == [[3, 5, 2], [128], [2, 1]]
    assert [b.ids for b in batches] == [["d3#0", "d5#0", "d2#0"], ["d130#0"], ["d130#1", "d1#0"]]
    for b in batches:
        assert b.seq.shape[0] * b.seq.shape[1] <= 128
        assert b.loss_mask.sum() == b.lengths.sum()
    assert sum(b.num_embeddings for b in batches) == 3 + 5 + 2 + 130 + 1
    # padding is zero and the values are the documents' (identity normalizer)
    assert batches[0].seq[0, 3:].abs().sum() == 0 and batches[0].seq[1, 4, 0] == 5


def test_batches_respect_a_sequence_count_limit():
    docs = [(f"d{i}", np.zeros((2, 1), np.float32), 0) for i in range(5)]
    batches = sequence_batches(sequences(docs, 8), identity_normalizer(1), 64, max_sequences=2)
    assert [b.ids for b in batches] == [["d0#0", "d1#0"], ["d2#0", "d3#0"], ["d4#0"]]


def test_budget_below_one_sequence_is_a_config_error():
    with pytest.raises(ValueError, match="at least"):
        TrainConfig(max_sentences_per_sequence=128, max_embeddings_per_batch=64)


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(steps=110, warmup_steps=10, final_lr_scale=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(60, cfg) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert lr_factor(110, cfg) == pytest.approx(0.1)


def test_deepspeed_steps_checkpoint_and_resume(tmp_path):
    """One process, gloo: training lowers the loss on a fixed batch; a checkpoint restores the
    exact parameters, optimizer and schedule, so the next step matches an uninterrupted run."""
    single_process_env()
    torch.manual_seed(0)
    cfg = TrainConfig(model="tiny", model_overrides={"dropout": 0.0}, steps=30, lr=3e-3,
                      warmup_steps=2, max_sentences_per_sequence=8, max_embeddings_per_batch=64)
    dim = 16
    rng = np.random.default_rng(0)
    docs = [(str(n), rng.standard_normal((n, dim)).astype(np.float32), 0) for n in (6, 7, 5)]
    batch: Batch = next(sequence_batches(sequences(docs, 8), identity_normalizer(dim), 64))
    engine = build_engine(build_model(cfg, dim), cfg, torch.device("cpu"))
    schedule = NoiseSchedule()
    g = torch.Generator()

    losses = []
    for step in range(12):
        g.manual_seed(step)
        losses.append(train_step(engine, schedule, batch, g)[0])
    export_model(engine, tmp_path, cfg)
    save_checkpoint(engine, tmp_path, {"step": 12}, [{"step": 12, "loss": losses[-1]}],
                    {"position": {"pass": 0, "consumed": 3}})
    assert verify_checkpoint(tmp_path) == 1
    g.manual_seed(12)
    straight = train_step(engine, schedule, batch, g)[0]

    torch.manual_seed(123)  # a different init, overwritten by the checkpoint
    engine2 = build_engine(build_model(cfg, dim), cfg, torch.device("cpu"))
    state, history, worker = load_checkpoint(engine2, tmp_path)
    assert state["step"] == 12 and history == [{"step": 12, "loss": losses[-1]}]
    assert worker == {"position": {"pass": 0, "consumed": 3}}
    g.manual_seed(12)
    resumed = train_step(engine2, schedule, batch, g)[0]
    assert resumed == pytest.approx(straight, abs=1e-6)
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])

    exported = load_exported_model(tmp_path)
    for (k, v), (k2, v2) in zip(exported.state_dict().items(),
                                engine.module.state_dict().items()):
        assert k == k2
    assert not exported.training


def test_truncated_checkpoint_is_refused(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "model.pt").write_bytes(b"0123456789")
    import hashlib
    import json
    digest = hashlib.sha256(b"0123456789").hexdigest()
    (tmp_path / "files_rank0.json").write_text(
        json.dumps({"world": 2, "files": {"state/model.pt": digest}}))
    with pytest.raises(ValueError, match="1 of 2 rank manifests"):
        verify_checkpoint(tmp_path)
    (tmp_path / "files_rank1.json").write_text(json.dumps({"world": 2, "files": {}}))
    assert verify_checkpoint(tmp_path) == 2
    (tmp_path / "state" / "model.pt").write_bytes(b"01234")  # truncated
    with pytest.raises(ValueError, match="state/model.pt is missing or does not match"):
        verify_checkpoint(tmp_path)
    (tmp_path / "state" / "model.pt").write_bytes(b"0123456789")
    (tmp_path / "files_rank1.json").write_text(
        json.dumps({"world": 2, "files": {"../outside": digest}}))
    with pytest.raises(ValueError, match="outside the checkpoint"):
        verify_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="no file manifest"):
        verify_checkpoint(tmp_path / "state")


def test_idle_batch_trains_nothing():
    """A worker whose stream ran dry joins the step with a batch whose loss and gradient are
    exactly zero, so only the workers with data move the averaged gradient."""
    from mimir_model.diffusion import diffusion_loss

    torch.manual_seed(0)
    model = build_model(TrainConfig(model="tiny"), 16)
    batch = idle_batch(16)
    loss, n = diffusion_loss(model, NoiseSchedule(), batch.seq, batch.lengths, batch.loss_mask,
                             generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert float(loss) == 0.0 and int(n) == 0 and batch.ids == []
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
