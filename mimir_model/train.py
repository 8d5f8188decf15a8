"""Training core of the Two-Tower LCM: sequences, batches, DeepSpeed engine, one step.

No Ray here: training/ feeds documents in; the checkpoint format is mimir_model/checkpoint.py.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

import numpy as np
import torch
import yaml

from mimir_model.diffusion import NoiseSchedule, diffusion_loss
from mimir_model.normalizer import RobustNormalizer
from mimir_model.two_tower import TwoTowerLCM, preset
from storage.cache import fetch
from storage.paths import Input

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    model: str = "tiny"  # a Two-Tower preset of mimir_model/two_tower.py: tiny | 1.6B
    model_overrides: dict = field(default_factory=dict)  # TwoTowerConfig fields to change
    steps: int = 250_000  # optimizer steps of the whole run
    lr: float = 4e-4  # peak learning rate
    warmup_steps: int = 10_000  # linear warm-up to lr
    # "mimir": linear warm-up reaching lr at step warmup_steps - 1, then cosine to
    # final_lr_scale * lr at `steps`. "lcm_reference": the LCM trainer's schedule (fairseq2
    # CosineAnnealingLR): linear from start_lr at step 0 to lr at warmup_steps, then cosine to
    # final_lr over steps - warmup_steps + 1 steps.
    lr_schedule: Literal["mimir", "lcm_reference"] = "mimir"
    final_lr_scale: float = 0.0  # "mimir" schedule's end, a fraction of lr (we decay to 0)
    start_lr: float = 1e-7  # "lcm_reference" schedule's lr at step 0 (the LCM trainer's default)
    final_lr: float = 1e-5  # "lcm_reference" schedule's end (the LCM trainer's default)
    weight_decay: float = 0.1  # AdamW, on the weight matrices
    # Decay 1-D parameters too (biases, RMSNorm gains), as the LCM reference's AdamW does (it
    # decays every parameter). Ours (false): only matrices are decayed.
    weight_decay_1d: bool = False
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW
    eps: float = 1e-5  # AdamW
    grad_clip: float = 25.0  # gradient norm clipping (DeepSpeed gradient_clipping)
    max_sentences_per_sequence: int = 128  # documents are cut into chunks of at most this
    # Per worker and step, counting padding: the LCM recipe's 7,168 per GPU.
    max_embeddings_per_batch: int = 7168
    # Per worker and step; 0 = no limit. Instruction tuning counts instances (512 per step in
    # the paper: 16 per worker on 32 workers).
    max_sequences_per_batch: int = 0
    precision: Literal["fp32", "bf16"] = "fp32"
    zero_stage: Literal[0, 1, 2, 3] = 1  # DeepSpeed ZeRO stage
    seed: int = 0  # of the model init, the data order and the diffusion noise
    checkpoint_every: int = 1000  # steps between checkpoints (and at the last step)
    keep_checkpoints: int = 3  # Ray Train keeps this many newest checkpoints
    log_every: int = 10  # steps between metric reports (Ray Train, TensorBoard, MLflow, W&B)
    # Consecutive NaN/Inf losses that stop the run; a checkpoint is never taken after one.
    max_nonfinite_losses: int = 3
    # A DeepSpeed config of your own (a JSON/YAML file, local, s3:// or https://, or a mapping):
    # offload, bucket sizes, DeepSpeed's monitors, ... It is merged with the fields the job sets
    # from this section (batch sizes, gradient_clipping, zero_optimization.stage, bf16); setting
    # one of those to another value, or an optimizer / scheduler, is an error.
    deepspeed: Input | dict | None = None

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
    """The learning rate of `step` as a fraction of cfg.lr: linear warm-up, then cosine decay
    (cfg.lr_schedule says which variant)."""
    if cfg.lr_schedule == "lcm_reference":
        start, final = cfg.start_lr / cfg.lr, cfg.final_lr / cfg.lr
        if step < cfg.warmup_steps:
            return start + (1 - start) * step / cfg.warmup_steps
        # fairseq2 CosineAnnealingLR with cycle_len = steps - warmup + 1 (one cycle).
        progress = min(1.0, (step - cfg.warmup_steps) / (cfg.steps - cfg.warmup_steps + 1))
    else:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        final = cfg.final_lr_scale
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))


def build_model(cfg: TrainConfig, sonar_dim: int) -> TwoTowerLCM:
    return TwoTowerLCM(preset(cfg.model, **{"sonar_dim": sonar_dim, **cfg.model_overrides}))


def _owned_fields(cfg: TrainConfig) -> dict[str, tuple[Any, str]]:
    """DeepSpeed config fields the job sets (dotted path -> (value, where it comes from))."""
    return {
        # Batches are built by sequence_batches; DeepSpeed sees one "micro batch" per step.
        "train_micro_batch_size_per_gpu": (1, "sequence_batches: one batch per step"),
        "gradient_accumulation_steps": (1, "sequence_batches: one batch per step"),
        "gradient_clipping": (cfg.grad_clip, "train.grad_clip"),
        "zero_optimization.stage": (cfg.zero_stage, "train.zero_stage"),
        "bf16.enabled": (cfg.precision == "bf16", "train.precision"),
        "fp16.enabled": (False, "train.precision (fp32 or bf16)"),
    }


def param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """AdamW parameter groups: matrices decayed by cfg.weight_decay, 1-D parameters only with
    cfg.weight_decay_1d (empty groups left out)."""
    decay = [p for p in model.parameters() if p.dim() >= 2 or cfg.weight_decay_1d]
    no_decay = [p for p in model.parameters() if p.dim() < 2 and not cfg.weight_decay_1d]
    return [g for g in ({"params": decay, "weight_decay": cfg.weight_decay},
                        {"params": no_decay, "weight_decay": 0.0}) if g["params"]]


def _user_deepspeed(value: str | dict | None) -> dict:
    if value is None:
        return {}
    if isinstance(value, dict):
        return copy.deepcopy(value)
    path = fetch(value)
    try:
        data = yaml.safe_load(Path(path).read_text())  # JSON is YAML
    except yaml.YAMLError as e:
        raise ValueError(f"train.deepspeed {value}: not a JSON or YAML file ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"train.deepspeed {value}: expected a mapping, got {type(data).__name__}")
    return data


def deepspeed_config(cfg: TrainConfig) -> dict:
    """The DeepSpeed config of a run: `cfg.deepspeed` (the user's, if any) with the fields the
    job owns set from `cfg` (a user value that differs is an error naming both)."""
    merged = _user_deepspeed(cfg.deepspeed)
    for section in ("optimizer", "scheduler"):
        if section in merged:
            raise ValueError(f"train.deepspeed has an {section!r} section, but the job passes "
                             f"its own torch AdamW and LR schedule (train.lr, train.betas, "
                             f"train.warmup_steps, ...): remove {section!r} from it")
    for dotted, (ours, source) in _owned_fields(cfg).items():
        *parents, leaf = dotted.split(".")
        node = merged
        for part in parents:
            node = node.setdefault(part, {})
        if leaf in node and node[leaf] != ours:
            raise ValueError(f"train.deepspeed sets {dotted} = {node[leaf]!r}, but the job sets "
                             f"it to {ours!r} ({source}): remove it from the DeepSpeed config "
                             "or change the job's setting")
        node[leaf] = ours
    # Quiet by default; a user config may ask for DeepSpeed's own prints and monitors.
    merged.setdefault("steps_per_print", 10**9)
    merged.setdefault("wall_clock_breakdown", False)
    return merged


def build_engine(model: TwoTowerLCM, cfg: TrainConfig, device: torch.device,
                 ds_config: dict | None = None):
    """A DeepSpeed engine around the model with a torch AdamW (no JIT-built ops needed: see
    ENVIRONMENT.md) and the warm-up + cosine schedule, configured by `ds_config` (default:
    deepspeed_config(cfg)). The process group is the one that exists (Ray Train makes
    it), or the one a launcher's env names, or else a group of one rank made here."""
    import deepspeed
    import torch.distributed as dist

    # Skips a g++ build of a shared-memory op that gloo on CPU does not need.
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized() and os.environ.get("WORLD_SIZE", "1") == "1":
        # One rank needs no rendezvous, so its store lives in memory: a TCP store on a port
        # picked free can lose it before binding, or reuse a MASTER_PORT inherited from a
        # parent whose own group still listens there (seen in CI: EADDRINUSE in a bench child).
        for k in ("RANK", "LOCAL_RANK"):
            os.environ.setdefault(k, "0")
        os.environ["WORLD_SIZE"] = "1"
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    deepspeed.init_distributed(dist_backend=backend)
    model.to(device)
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, betas=cfg.betas,
                                  eps=cfg.eps, fused=device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer,
                                           lr_scheduler=scheduler,
                                           config=ds_config or deepspeed_config(cfg))
    return engine


# noise_seed packs (rank, step) into the 32 bits that seed a generator: rank < 2^11 and
# step < 2^21 (2,097,152 steps; the recipe has 250,000).
_RANK_BITS, _STEP_BITS = 11, 21


@functools.lru_cache(maxsize=None)
def _run_offset(seed: int) -> int:
    """A 32-bit value fixed by the run's seed (a hash: numpy's SeedSequence)."""
    return int(np.random.SeedSequence(seed).generate_state(1, np.uint32)[0])


def noise_seed(seed: int, rank: int, step: int) -> int:
    """The seed of the diffusion noise (timesteps, eps, guidance dropout) of `step` on `rank`.

    Injective in (rank, step) for a given run seed, so every rank and step has a noise stream
    of its own, and a resumed run draws the same noise as an uninterrupted one. The pair is
    packed into 32 bits, because torch's CPU generator (mt19937) uses only the low 32 bits of
    a seed: a 64-bit hash would collide there (about 465 times among 2 x 10^6 pairs), and a
    linear mix such as seed * 1_000_003 + rank * 7919 + step repeats itself (rank r at step s
    would draw rank r + 1's noise of step s - 7919). The run seed enters as a 32-bit XOR mask.
    """
    if not (0 <= rank < 2**_RANK_BITS and 0 <= step < 2**_STEP_BITS):
        raise ValueError(f"noise_seed takes ranks below {2**_RANK_BITS} and steps below "
                         f"{2**_STEP_BITS}, got rank {rank}, step {step}: more would reuse "
                         "noise streams (widen _RANK_BITS / _STEP_BITS in mimir_model/train.py)")
    return _run_offset(seed) ^ (rank << _STEP_BITS | step)


def count_weight(n_local: int, n_global: int, world: int) -> float:
    """The loss scale of a rank with n_local of the step's n_global trained positions.

    Data parallelism averages the ranks' gradients, so a rank's mean loss times
    world * n_local / n_global makes the step's gradient that of the error summed over all
    ranks divided by the global number of targets, as in the LCM reference; a plain mean of
    the ranks' means would weight a rank with few targets as much as one with many. A rank
    with no targets (an idle step) contributes exactly 0.
    """
    return world * n_local / max(n_global, 1)


def train_step(engine, schedule: NoiseSchedule, batch: Batch, generator: torch.Generator,
               loss_scale: float = 1.0) -> tuple[float, int]:
    """One optimizer step; returns (loss, number of trained embeddings). The gradient is that
    of loss x loss_scale (count_weight for data-parallel ranks)."""
    device = engine.device
    seq = batch.seq.to(device)
    if engine.bfloat16_enabled():
        seq = seq.to(torch.bfloat16)
    loss, n = diffusion_loss(engine.module, schedule, seq, batch.lengths.to(device),
                             batch.loss_mask.to(device), generator=generator)
    engine.backward(loss * loss_scale)
    engine.step()
    return float(loss.detach()), int(n)
