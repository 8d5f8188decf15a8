"""Two-Tower LCM training-step benchmark: embeddings/s and MFU of one optimizer step.

Each step goes through the real training path, `mimir_model.train.train_step`: diffusion_loss,
backward and an AdamW step inside the DeepSpeed engine of `build_engine` (ZeRO-1, gradient
clipping, fused AdamW on CUDA). Where DeepSpeed cannot be imported, a plain-PyTorch stand-in
with the same loss, AdamW parameter groups and clipping takes its place; the config column says
which ("deepspeed" or "torch").

Shapes: on CUDA the 1.6B model, 56 sequences x 128 embeddings, bf16, eager and torch.compile
(DESIGN.md section 3 measured 32,079 and 44,159 embeddings/s on one H100). On CPU the tiny preset
and a small one (model_dim 256, SONAR dim 1024), 8 x 128, fp32; torch.compile is tried on CPU only
in full runs and given up (with a note) when compiling takes over COMPILE_BUDGET_S.

FLOPs are counted by mimir_model/flops.py (`train_flops`; its module docstring says what is
counted).
"""

from __future__ import annotations

import gc
import logging
import os
import statistics
import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from mimir_model.diffusion import NoiseSchedule
from mimir_model.flops import peak_flops, train_flops
from mimir_model.train import Batch, TrainConfig, build_model, train_step
from mimir_model.two_tower import TwoTowerConfig, preset

log = logging.getLogger(__name__)

NAME = "two_tower_train"
COMPILE_BUDGET_S = 60.0  # CPU only: a slower first compiled step skips compiled timing
# DESIGN.md section 3, one H100, plain PyTorch: embeddings/s of the 1.6B shape at 56 x 128.
ANCHORS = {("1.6B", "eager"): 32_079, ("1.6B", "compiled"): 44_159}


@dataclass
class Shape:
    name: str
    model: str  # a two_tower preset
    sonar_dim: int
    batch: int
    seq_len: int
    overrides: dict = field(default_factory=dict)

    def model_config(self) -> TwoTowerConfig:
        return preset(self.model, sonar_dim=self.sonar_dim, **self.overrides)


CUDA_SHAPES = [Shape("1.6B", "1.6B", 1024, 56, 128)]
CPU_SHAPES = [
    Shape("tiny", "tiny", 64, 8, 128),
    Shape("small", "tiny", 1024, 8, 128, {"model_dim": 256}),
]


def random_batch(batch: int, seq_len: int, dim: int, device: torch.device | str = "cpu") -> Batch:
    """Full-length sequences (no padding) of N(0, 1) values, like normalized embeddings. On the
    device already, so the timed step excludes the host-to-device copy of data loading."""
    return Batch(seq=torch.randn(batch, seq_len, dim, device=device),
                 lengths=torch.full((batch,), seq_len, device=device),
                 loss_mask=torch.ones(batch, seq_len, dtype=torch.bool, device=device),
                 ids=[f"bench#{i}" for i in range(batch)])


class TorchEngine:
    """The part of DeepSpeed's engine that train_step uses, in plain PyTorch, for hosts without
    DeepSpeed: build_engine's AdamW groups and gradient clipping. bf16 here means bf16 weights
    and optimizer state (DeepSpeed keeps fp32 master weights)."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, device: torch.device):
        self.bf16 = cfg.precision == "bf16"
        self.module = model.to(device, torch.bfloat16 if self.bf16 else torch.float32)
        self.device = device
        self.grad_clip = cfg.grad_clip
        params = list(model.parameters())
        self.optimizer = torch.optim.AdamW(
            [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
            lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=device.type == "cuda")

    def bfloat16_enabled(self) -> bool:
        return self.bf16

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def deepspeed_available(device: torch.device) -> bool:
    # The Makefile exports DS_ACCELERATOR=cpu for CPU machines; on a GPU it must be cuda.
    if device.type == "cuda" and os.environ.get("DS_ACCELERATOR") == "cpu":
        log.warning("DS_ACCELERATOR=cpu on a CUDA device: using cuda")
        os.environ["DS_ACCELERATOR"] = "cuda"
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        log.warning("DeepSpeed is not installed: timing the plain-PyTorch step")
        return False
    return True


def make_engine(shape: Shape, precision: str, compile: bool, use_deepspeed: bool,
                device: torch.device):
    cfg = TrainConfig(model=shape.model, model_overrides=shape.overrides, precision=precision)
    model = build_model(cfg, shape.sonar_dim)
    if compile:
        model.compile()  # in place: train_step calls engine.module(...), which then runs compiled
    if not use_deepspeed:
        return TorchEngine(model, cfg, device)
    from mimir_model.train import build_engine
    return build_engine(model, cfg, device)


def time_steps(engine, batch: Batch, warmup: int, steps: int, label: str,
               first_step_budget_s: float | None) -> tuple[float, list[float]]:
    """Returns (seconds of the first step, which includes any compilation; timed step seconds).
    Timed steps are empty when the first step exceeded first_step_budget_s."""
    schedule = NoiseSchedule()
    generator = torch.Generator(device=engine.device)
    generator.manual_seed(0)
    first = 0.0
    times = []
    # train_step returns float(loss): the host waits for the device, so wall time is step time.
    for i in tqdm(range(warmup + steps), desc=label, leave=False):
        t0 = time.perf_counter()
        train_step(engine, schedule, batch, generator)
        dt = time.perf_counter() - t0
        if i == 0:
            first = dt
            if first_step_budget_s is not None and dt > first_step_budget_s:
                return first, []
        if i >= warmup:
            times.append(dt)
    return first, times


def bench_shape(shape: Shape, device: torch.device, precision: str, quick: bool,
                use_deepspeed: bool, try_compile: bool, rows: list | None = None,
                ) -> tuple[list[dict], bool]:
    """Rows for one shape (eager, and compiled when try_compile) and whether compiling stayed
    within budget (so the caller can skip compiling larger shapes)."""
    cfg = shape.model_config()
    flops = train_flops(cfg, shape.batch, shape.seq_len)
    n_emb = shape.batch * shape.seq_len
    peak = peak_flops(device, precision)
    # CPU rates are small: GFLOP/s there, TFLOP/s on accelerators.
    flop_unit, flop_scale = ("TFLOP/s", 1e12) if device.type == "cuda" else ("GFLOP/s", 1e9)
    warmup, steps = (2, 3) if quick else (3, 10)
    if device.type == "cuda":
        warmup, steps = (3, 5) if quick else (5, 20)
    batch = random_batch(shape.batch, shape.seq_len, shape.sonar_dim, device)
    path = "deepspeed" if use_deepspeed else "torch"
    rows = [] if rows is None else rows
    rates: dict[str, float] = {}
    compile_ok = True

    def row(config: str, metric: str, value: float | None, note: str = "") -> None:
        rows.append({"benchmark": NAME, "config": config, "device": device.type,
                     "metric": metric, "value": value, "note": note})

    shape_config = f"{shape.name} b{shape.batch}x{shape.seq_len} {precision} {path}"
    row(shape_config, "GFLOP/embedding", flops / n_emb / 1e9, "6 x matmul weights + attention")

    for mode in ("eager", "compiled") if try_compile else ("eager",):
        config = f"{shape.name} b{shape.batch}x{shape.seq_len} {precision} {mode} {path}"
        log.info("%s: %.4g GFLOP per step, %d embeddings", config, flops / 1e9, n_emb)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        engine = make_engine(shape, precision, mode == "compiled", use_deepspeed, device)
        budget = COMPILE_BUDGET_S if mode == "compiled" and device.type == "cpu" else None
        try:
            first, times = time_steps(engine, batch, warmup, steps, config, budget)
        except Exception as e:  # torch.compile can fail on a platform; eager must not
            if mode == "eager":
                raise
            log.exception("torch.compile failed")
            row(config, "compile", None, f"failed: {type(e).__name__}: {e}"[:200])
            return rows, False
        if mode == "compiled":
            row(config, "first_step_s", first, "includes compilation")
        if not times:
            compile_ok = False
            row(config, "compile", None, f"skipped: the first compiled step took {first:.0f} s "
                                         f"> {COMPILE_BUDGET_S:.0f} s")
        else:
            # Median step time: robust to other jobs sharing the machine.
            step_s = statistics.median(times)
            rates[mode] = n_emb / step_s
            row(config, "step_ms", 1e3 * step_s)
            anchor = ANCHORS.get((shape.name, mode)) if device.type == "cuda" else None
            row(config, "embeddings/s", rates[mode],
                f"DESIGN.md H100 anchor {anchor:,}" if anchor else "")
            row(config, flop_unit, flops / step_s / flop_scale)
            if peak is not None:
                row(config, "MFU %", 100 * flops / step_s / peak, f"of {peak / 1e12:.0f} TFLOP/s")
        if device.type == "cuda":
            row(config, "peak_mem_GB", torch.cuda.max_memory_allocated() / 2**30)
        if use_deepspeed:
            engine.destroy()
        del engine
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if len(rates) == 2:
        row(shape_config, "compiled/eager", rates["compiled"] / rates["eager"])
    return rows, compile_ok


def run(quick: bool, rows: list | None = None, cpu_shapes: list[Shape] | None = None,
        ) -> list[dict]:
    """CUDA: the 1.6B shape, bf16, eager + compiled. CPU: tiny and small (or cpu_shapes),
    fp32, eager, plus compiled in full runs while compiling works within COMPILE_BUDGET_S.
    rows: where to append result rows as they come."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    use_deepspeed = deepspeed_available(device)
    torch.manual_seed(0)
    shapes, precision = ((CUDA_SHAPES, "bf16") if device.type == "cuda"
                         else (cpu_shapes or CPU_SHAPES, "fp32"))
    skip = "--quick" if device.type == "cpu" and quick else None  # why compiling is skipped
    rows = [] if rows is None else rows
    for shape in shapes:
        _, compile_ok = bench_shape(shape, device, precision, quick, use_deepspeed,
                                    try_compile=skip is None, rows=rows)
        if skip is not None:
            rows.append({"benchmark": NAME, "config": shape.name, "device": device.type,
                         "metric": "compile", "value": None, "note": f"skipped: {skip}"})
        elif device.type == "cpu" and not compile_ok:
            skip = f"compiling {shape.name} failed or took over {COMPILE_BUDGET_S:.0f} s"
    return rows
