"""Training core without Ray: sequences, batches, schedule, a DeepSpeed engine in one process."""

import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mimir_model.normalizer import RobustNormalizer
from mimir_model.checkpoint import (export_model, load_checkpoint, load_exported_model,
                                    save_checkpoint, verify_checkpoint)
from mimir_model.train import (Batch, TrainConfig, build_engine, build_model, cut_sequences,
                               idle_batch, lr_factor, noise_seed, pack_batch, param_groups,
                               sequence_batches, sequences, train_step)
from mimir_model.diffusion import NoiseSchedule
from mimir_model.two_tower import TwoTowerConfig


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


def test_lr_schedule_of_the_lcm_reference():
    """fairseq2's CosineAnnealingLR as the LCM trainer builds it: start_lr at step 0, linear to
    lr at warmup_steps, cosine to final_lr over steps - warmup_steps + 1 steps."""
    cfg = TrainConfig(steps=110, warmup_steps=10, lr=1e-3, lr_schedule="lcm_reference",
                      start_lr=1e-7, final_lr=1e-5)
    lr = lambda step: lr_factor(step, cfg) * cfg.lr
    assert lr(0) == pytest.approx(1e-7)
    assert lr(5) == pytest.approx(1e-7 + (1e-3 - 1e-7) * 0.5)
    assert lr(10) == pytest.approx(1e-3)
    assert lr(60) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 50 / 101)))
    assert lr(110) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 100 / 101)))


def test_weight_decay_groups():
    """Ours: no decay on 1-D parameters (biases, norm gains); the LCM reference decays all."""
    model = build_model(TrainConfig(model="tiny"), 16)
    params = list(model.parameters())
    [decay, no_decay] = param_groups(model, TrainConfig(weight_decay=0.1))
    assert decay["weight_decay"] == 0.1 and {p.dim() for p in decay["params"]} == {2}
    assert no_decay["weight_decay"] == 0.0 and {p.dim() for p in no_decay["params"]} == {1}
    assert len(decay["params"]) + len(no_decay["params"]) == len(params)
    [everything] = param_groups(model, TrainConfig(weight_decay=0.1, weight_decay_1d=True))
    assert everything["weight_decay"] == 0.1 and len(everything["params"]) == len(params)


def test_noise_streams_are_distinct_for_every_rank_and_step():
    """Every (rank, step) pair of a run within 10^6 steps gets its own noise stream. torch's
    CPU generator uses only the low 32 bits of a seed, so those must differ. The former seed
    seed * 1_000_003 + rank * 7919 + step gave rank 0 at step 7919 rank 1's noise of step 0
    (992,081 repeated pairs over 2 ranks x 10^6 steps)."""
    steps = 10**6
    for seed in (0, 7):
        low = {noise_seed(seed, rank, step) & 0xFFFFFFFF for rank in (0, 1) for step in range(steps)}
        assert len(low) == 2 * steps
    assert len({noise_seed(0, rank, 249_999) & 0xFFFFFFFF for rank in range(2048)}) == 2048
    draw = lambda rank, step: torch.rand(4, generator=torch.Generator().manual_seed(
        noise_seed(0, rank, step)))
    assert not torch.equal(draw(0, 7919), draw(1, 0))
    assert torch.equal(draw(1, 5), draw(1, 5))  # a resumed run draws the same noise
    with pytest.raises(ValueError, match="steps below 2097152"):
        noise_seed(0, 0, 2**21)


class _BiasModel(torch.nn.Module):
    """Predicts one learned vector whatever its input, so the loss does not depend on the noise
    and a step split over two ranks can be compared exactly with one process."""

    def __init__(self, dim: int):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.linspace(-1.0, 1.0, dim))
        self.cfg = TwoTowerConfig(sonar_dim=dim)  # TrainRun reads cfg.num_diffusion_steps

    def forward(self, context, x_t, t, lengths, cfg_drop):
        return self.bias.expand_as(x_t)


class _GradientEngine:
    """What train_step uses of a DeepSpeed engine: backward keeps the gradient, step does
    nothing (DeepSpeed then averages the ranks' gradients)."""

    def __init__(self, module: torch.nn.Module):
        self.module, self.device = module, torch.device("cpu")

    def bfloat16_enabled(self) -> bool:
        return False

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        pass

    def get_lr(self) -> list[float]:
        return [0.0]

    def get_global_grad_norm(self) -> None:
        return None


def test_loss_is_weighted_by_target_counts_across_ranks(monkeypatch):
    """Two ranks with 3 and 9 target positions: the averaged gradient of their weighted losses
    equals the single-process gradient of the loss over the union (summed error / 12), as in
    the LCM reference; a mean of the two ranks' means would weight 3 targets like 9."""
    import training.worker as worker
    from training.config import PretrainJobConfig
    from training.metrics import MetricsWriter, TrackingConfig

    dim = 4
    rng = np.random.default_rng(0)
    docs = {n: rng.standard_normal((n, dim)).astype(np.float32) for n in (3, 5, 4)}
    ranks = [[("a#0", docs[3], 0)], [("b#0", docs[5], 0), ("c#0", docs[4], 0)]]
    norm = identity_normalizer(dim)

    def gradient(seqs, rank: int, world: int, other_targets: int) -> torch.Tensor:
        model = _BiasModel(dim)
        # The count all-reduce adds the other rank's targets; the logged loss is not checked.
        monkeypatch.setattr(worker, "_all_reduce", lambda v: [v[0] + other_targets]
                            if len(v) == 1 else v)
        metrics = MetricsWriter(TrackingConfig(), "unused", "test", {}, rank=1)  # a no-op
        run = worker.TrainRun(PretrainJobConfig(), _GradientEngine(model), rank, world,
                              torch.device("cpu"), 0, [], {}, metrics)
        run.train(pack_batch(seqs, norm))
        assert run.generator.initial_seed() == noise_seed(0, rank, 0)
        return model.bias.grad

    two = (gradient(ranks[0], 0, 2, 9) + gradient(ranks[1], 1, 2, 3)) / 2
    union = gradient(ranks[0] + ranks[1], 0, 1, 0)
    x0 = np.concatenate([docs[3], docs[5], docs[4]])
    expected = 2 * (np.linspace(-1, 1, dim)[None] - x0).sum(0) / 12
    np.testing.assert_allclose(union.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(two.numpy(), union.numpy(), rtol=1e-5, atol=1e-6)
    mean_of_means = ((np.linspace(-1, 1, dim)[None] - docs[3]).sum(0) / 3 + (np.linspace(
        -1, 1, dim)[None] - np.concatenate([docs[5], docs[4]])).sum(0) / 9)  # 2 * (.. + ..) / 2
    assert not np.allclose(mean_of_means, expected, atol=1e-2)


def test_one_rank_engine_ignores_a_master_port_in_use():
    """A child that inherits MASTER_PORT from a parent whose group listens there (a bench part
    after an in-process engine; seen in CI as EADDRINUSE) still builds its one-rank engine."""
    code = ("import torch; from mimir_model.train import TrainConfig, build_engine, build_model;"
            "cfg = TrainConfig(model='tiny');"
            "e = build_engine(build_model(cfg, 16), cfg, torch.device('cpu'));"
            "print('world', torch.distributed.get_world_size())")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(taken.getsockname()[1]),
               "RANK": "0", "WORLD_SIZE": "1", "DS_ACCELERATOR": "cpu", "CUDA_VISIBLE_DEVICES": ""}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=300, cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("world 1")


def test_deepspeed_steps_checkpoint_and_resume(tmp_path):
    """One process, gloo: training lowers the loss on a fixed batch; a checkpoint restores the
    exact parameters, optimizer and schedule, so the next step matches an uninterrupted run."""
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
    torch.save({"w": torch.arange(3.0)}, tmp_path / "state" / "model.pt")
    data = (tmp_path / "state" / "model.pt").read_bytes()
    import hashlib
    import json
    digest = hashlib.sha256(data).hexdigest()
    (tmp_path / "files_rank0.json").write_text(
        json.dumps({"world": 2, "files": {"state/model.pt": digest}}))
    with pytest.raises(ValueError, match="1 of 2 rank manifests"):
        verify_checkpoint(tmp_path)
    (tmp_path / "files_rank1.json").write_text(json.dumps({"world": 2, "files": {}}))
    assert verify_checkpoint(tmp_path) == 2
    (tmp_path / "state" / "model.pt").write_bytes(data[:-5])  # truncated
    with pytest.raises(ValueError, match="state/model.pt is missing or does not match"):
        verify_checkpoint(tmp_path)
    (tmp_path / "state" / "model.pt").write_bytes(data)
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
