"""Training core of the Two-Tower LCM: sequences, batches, DeepSpeed engine, one step.

No Ray here: training/ feeds documents in; the checkpoint format is mimir_model/checkpoint.py.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
import torch

from mimir_model.diffusion import NoiseSchedule, diffusion_loss
from mimir_model.normalizer import RobustNormalizer
from mimir_model.two_tower import TwoTowerLCM, preset

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    model: str = "tiny"
    model_overrides: dict = field(default_factory=dict)
    steps: int = 250_000
    lr: float = 4e-4
    warmup_steps: int = 10_000
    final_lr_scale: float = 0.0
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-5
    grad_clip: float = 25.0
    max_sentences_per_sequence: int = 128
    # Per worker and step, counting padding: the LCM recipe's 7,168 per GPU.
    max_embeddings_per_batch: int = 7168
    # Per worker and step; 0 = no limit. Instruction tuning counts instances (512 per step in
    # the paper: 16 per worker on 32 workers).
    max_sequences_per_batch: int = 0
    precision: str = "fp32"  # fp32 | bf16
    zero_stage: int = 1
    seed: int = 0
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 10

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        if self.max_embeddings_per_batch < self.max_sentences_per_sequence:
            raise ValueError(f"max_embeddings_per_batch ({self.max_embeddings_per_batch}) must "
                             "be at least max_sentences_per_sequence "
                             f"({self.max_sentences_per_sequence})")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, not {self.precision!r}")


@dataclass
class Batch:
    seq: torch.Tensor  # [B, T, D] normalized embeddings, zero padding
    lengths: torch.Tensor  # [B]
    loss_mask: torch.Tensor  # [B, T] True where a position is trained (targets only when
    # instruction tuning)
    ids: list[str]  # one per sequence: "<document id>#<chunk index>"

    @property
    def num_embeddings(self) -> int:
        return int(self.lengths.sum())


def idle_batch(dim: int) -> Batch:
    """A batch that trains nothing (one masked position): a worker whose stream has run dry
    takes part in a step's collectives with it while the others still have data."""
    return Batch(torch.zeros(1, 1, dim), torch.tensor([1]), torch.zeros(1, 1, dtype=torch.bool),
                 [])


def cut_sequences(doc: np.ndarray, max_len: int) -> list[np.ndarray]:
    """A document's [n, D] embeddings cut into consecutive chunks of at most max_len."""
    return [doc[i:i + max_len] for i in range(0, len(doc), max_len)]


def sequences(docs: Iterable[tuple[str, np.ndarray, int]],
              max_len: int) -> Iterator[tuple[str, np.ndarray, int]]:
    """(sequence id, embeddings, context length) from (document id, embeddings, context
    length). Pre-training documents (context length 0) are cut into chunks of max_len, every
    position trained. Instruction instances (context = source, then targets) are not wrapped:
    one longer than max_len keeps its last max_len positions, losing its oldest context."""
    for doc_id, doc, n_context in docs:
        if n_context == 0:
            for k, chunk in enumerate(cut_sequences(doc, max_len)):
                yield f"{doc_id}#{k}", chunk, 0
        else:
            cut = max(0, len(doc) - max_len)
            yield f"{doc_id}#0", doc[cut:], max(0, n_context - cut)


def pack_batch(seqs: list[tuple[str, np.ndarray, int]], normalizer: RobustNormalizer) -> Batch:
    dim = seqs[0][1].shape[1]
    lengths = torch.tensor([len(s) for _, s, _ in seqs])
    n_context = torch.tensor([c for _, _, c in seqs])
    seq = torch.zeros(len(seqs), int(lengths.max()), dim)
    for i, (_, s, _) in enumerate(seqs):
        seq[i, :len(s)] = torch.from_numpy(normalizer.normalize(np.asarray(s, np.float32)))
    pos = torch.arange(seq.shape[1])[None]
    mask = (pos < lengths[:, None]) & (pos >= n_context[:, None])
    return Batch(seq, lengths, mask, [i for i, _, _ in seqs])


def sequence_batches(seqs: Iterable[tuple[str, np.ndarray, int]], normalizer: RobustNormalizer,
                     max_embeddings: int, max_sequences: int = 0) -> Iterator[Batch]:
    """Group consecutive sequences into batches whose padded size (sequences x longest) stays
    within max_embeddings, and of at most max_sequences sequences (0: no limit)."""
    group: list[tuple[str, np.ndarray, int]] = []
    longest = 0
    for item in seqs:
        n = len(item[1])
        if n > max_embeddings:
            raise ValueError(f"sequence {item[0]} has {n} embeddings, more than "
                             f"max_embeddings_per_batch ({max_embeddings})")
        full = max_sequences and len(group) == max_sequences
        if group and (full or (len(group) + 1) * max(longest, n) > max_embeddings):
            yield pack_batch(group, normalizer)
            group, longest = [], 0
        group.append(item)
        longest = max(longest, n)
    if group:
        yield pack_batch(group, normalizer)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to final_lr_scale at cfg.steps."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.final_lr_scale + (1 - cfg.final_lr_scale) * 0.5 * (1 + math.cos(math.pi * progress))


def build_model(cfg: TrainConfig, sonar_dim: int) -> TwoTowerLCM:
    return TwoTowerLCM(preset(cfg.model, **{"sonar_dim": sonar_dim, **cfg.model_overrides}))


def deepspeed_config(cfg: TrainConfig) -> dict:
    return {
        # Batches are built by sequence_batches; DeepSpeed sees one "micro batch" per step.
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": {"stage": cfg.zero_stage},
        "bf16": {"enabled": cfg.precision == "bf16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def build_engine(model: TwoTowerLCM, cfg: TrainConfig, device: torch.device):
    """A DeepSpeed engine around the model with a torch AdamW (no JIT-built ops needed: see
    ENVIRONMENT.md) and the warm-up + cosine schedule. The process group must exist already
    (Ray Train makes it) or the env must name a single-process group."""
    import deepspeed

    # Skips a g++ build of a shared-memory op that gloo on CPU does not need.
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend="nccl" if device.type == "cuda" else "gloo")
    model.to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer,
                                           lr_scheduler=scheduler, config=deepspeed_config(cfg))
    return engine


def train_step(engine, schedule: NoiseSchedule, batch: Batch, generator: torch.Generator,
               loss_scale: float = 1.0) -> tuple[float, int]:
    """One optimizer step; returns (loss, number of trained embeddings). The gradient is that
    of loss x loss_scale: world / workers with data, when some workers take idle steps (data
    parallelism averages the gradients over all of them)."""
    device = engine.device
    seq = batch.seq.to(device)
    if engine.bfloat16_enabled():
        seq = seq.to(torch.bfloat16)
    loss, n = diffusion_loss(engine.module, schedule, seq, batch.lengths.to(device),
                             batch.loss_mask.to(device), generator=generator)
    engine.backward(loss * loss_scale)
    engine.step()
    return float(loss.detach()), int(n)


def single_process_env() -> None:
    """What DeepSpeed needs to start outside a launcher (else it tries MPI)."""
    for k, v in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1",
                 "MASTER_ADDR": "127.0.0.1"}.items():
        os.environ.setdefault(k, v)
    if "MASTER_PORT" not in os.environ:
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])
