"""Training core of the Two-Tower LCM: sequences, batches, DeepSpeed engine, one step, checkpoints.

No Ray here: jobs/pretrain.py feeds documents in and decides where checkpoints go.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from mimir_model.diffusion import NoiseSchedule, diffusion_loss
from mimir_model.normalizer import RobustNormalizer
from mimir_model.two_tower import TwoTowerConfig, TwoTowerLCM, preset

log = logging.getLogger(__name__)

TRAIN_LOG = "train_log.jsonl"


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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(engine, directory: Path, state: dict, history: list[dict],
                    worker: dict) -> None:
    """Every rank writes its part into its own `directory` (DeepSpeed's model and optimizer
    files, and `worker`: this rank's data position and RNG states), then, last, a manifest
    of those files with their checksums. Rank 0 adds the training state and loss history."""
    rank, world = engine.global_rank, engine.world_size
    engine.save_checkpoint(str(directory), tag="state", client_state=state)
    torch.save(worker, directory / f"worker_rank{rank}.pt")
    if rank == 0:
        with open(directory / TRAIN_LOG, "w") as f:
            f.writelines(json.dumps(h) + "\n" for h in history)
        (directory / "trainer_state.json").write_text(json.dumps(state, indent=2))
    # Each rank writes into a folder of its own (Ray Train merges them on upload), so
    # everything here but other manifests is this rank's.
    files = {str(p.relative_to(directory)): _sha256(p) for p in sorted(directory.rglob("*"))
             if p.is_file() and not p.name.startswith("files_rank")}
    (directory / f"files_rank{rank}.json").write_text(
        json.dumps({"world": world, "files": files}, indent=2))


def verify_checkpoint(directory: Path) -> int:
    """Check a checkpoint folder is complete: every rank's manifest is there and every file
    they list has its checksum. Returns the world size it was written with."""
    manifests = sorted(directory.glob("files_rank*.json"))
    if not manifests:
        raise ValueError(f"checkpoint {directory} has no file manifest: incomplete or not "
                         "written by jobs.pretrain")
    world = json.loads(manifests[0].read_text())["world"]
    if len(manifests) != world:
        raise ValueError(f"checkpoint {directory} has {len(manifests)} of {world} rank "
                         "manifests: it is incomplete")
    for m in manifests:
        for rel, digest in json.loads(m.read_text())["files"].items():
            path = (directory / rel).resolve()
            if directory.resolve() not in path.parents:
                raise ValueError(f"checkpoint manifest {m.name} names {rel!r}, outside the "
                                 "checkpoint")
            if not path.is_file() or _sha256(path) != digest:
                raise ValueError(f"checkpoint {directory}: {rel} is missing or does not match "
                                 "its checksum (truncated or corrupted)")
    return world


def load_checkpoint(engine, directory: Path) -> tuple[dict, list[dict], dict]:
    """(training state, loss history, this rank's worker state) after verifying the folder
    and loading model, optimizer and LR schedule into the engine."""
    world = verify_checkpoint(directory)
    if world != engine.world_size:
        raise ValueError(f"checkpoint {directory} was written by {world} workers; resuming "
                         f"with {engine.world_size} is not supported (the data positions "
                         "are per worker)")
    _, state = engine.load_checkpoint(str(directory), tag="state")
    if state is None:
        raise FileNotFoundError(f"no DeepSpeed checkpoint under {directory}")
    history = [json.loads(line) for line in (directory / TRAIN_LOG).read_text().splitlines()]
    worker = torch.load(directory / f"worker_rank{engine.global_rank}.pt", weights_only=True)
    return state, history, worker


def export_model(engine, directory: Path, cfg: TrainConfig) -> None:
    """Plain weights plus the model config: what generation and evaluation load, without
    DeepSpeed (rank 0 only)."""
    model: TwoTowerLCM = engine.module
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    torch.save(sd, directory / "model.pt")
    (directory / "model_config.json").write_text(json.dumps(asdict(model.cfg), indent=2))
    (directory / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))


def load_exported_model(directory: Path, device: str = "cpu") -> TwoTowerLCM:
    model_path = Path(directory) / "model.pt"
    if not model_path.exists():
        raise FileNotFoundError(f"no exported model at {model_path} (is this a checkpoint "
                                "folder written by jobs.pretrain?)")
    cfg = TwoTowerConfig(**json.loads((Path(directory) / "model_config.json").read_text()))
    model = TwoTowerLCM(cfg)
    model.load_state_dict(torch.load(model_path, map_location=device, weights_only=True))
    return model.to(device).eval()


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
