"""Diffusion for the Two-Tower LCM: noise schedule, noising, training loss and the DDIM sampler.

Everything works in normalized SONAR space and the model predicts x0 (DESIGN.md section 2,
"Diffusion"). The model is duck-typed: training calls `model(context, x_t, t, lengths,
cfg_drop)`; sampling calls `model.encode_context(context)` once per generated sentence and
`model.predict_next(ctx_out, lengths, x_t, t, drop)` once per diffusion step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor


class NoiseSchedule:
    """DDIM schedule: squaredcos_cap_v2 betas (clipped at 0.999), rescaled to zero terminal SNR.

    alpha_bar[t] is float64; alpha_bar[0] ~ 0.99937, alpha_bar[50] ~ 0.478, alpha_bar[-1] = 0.
    """

    def __init__(self, num_steps: int = 100):
        self.num_steps = num_steps

        def cos_bar(s: float) -> float:
            return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = torch.tensor([min(1 - cos_bar((i + 1) / num_steps) / cos_bar(i / num_steps), 0.999)
                              for i in range(num_steps)], dtype=torch.float64)
        # Zero terminal SNR (Lin et al. 2023): shift and scale sqrt(alpha_bar) so the last step is
        # pure noise while the first keeps its value.
        sqrt_ab = torch.cumprod(1 - betas, dim=0).sqrt()
        first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
        sqrt_ab = (sqrt_ab - last) * first / (first - last)
        self.alpha_bar = sqrt_ab**2

    def add_noise(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, with t of shape x0.shape[:-1].

        Computed in float32 whatever the dtype of x0 (DESIGN.md, "Diffusion"): bf16 rounds
        alpha_bar(0) = 0.99937 and alpha_bar(1) to 1, which would make x_t = x0 exactly at
        t = 0 and 1 (noise RMS 0 instead of 0.025 and 0.042), while the sampler's last step
        runs at t = 1 on a noisy input. Only the result is cast back to x0's dtype.
        """
        ab = self.alpha_bar.to(x0.device, torch.float32)[t][..., None]
        x_t = ab.sqrt() * x0.float() + (1 - ab).sqrt() * eps.float()
        return x_t.to(x0.dtype)


def cfg_dropout_mask(lengths: Tensor, loss_mask: Tensor, frac: float = 0.15,
                     generator: torch.Generator | None = None) -> Tensor:
    """Classifier-free guidance dropout, BoolTensor[B, T] (True = sees only the zero key).

    The LCM reference's rule (its attention_masks.py), with no per-sequence coin flip: every
    batch drops floor((T - 1) * frac) rows, never the first.
    - Pre-training (no context positions): T is the padded length of the batch and one set of
      rows 1..T-1 serves every sequence of it (rows past a sequence's end are padding).
    - Instruction tuning (some real position is context, i.e. outside loss_mask): T is the
      longest target part of the batch and each instance draws its own rows among its target
      rows 1..T-1, counted from its first target (again possibly padding).
    On full 128-sentence chunks that is 19 of 128 positions (14.8%).
    """
    device = generator.device if generator is not None else lengths.device
    B, T = loss_mask.shape
    pos = torch.arange(T, device=lengths.device)
    real = pos[None, :] < lengths[:, None]
    mask = torch.zeros(B, T, dtype=torch.bool, device=lengths.device)
    if not (real & ~loss_mask).any():
        k = math.floor((T - 1) * frac)
        if k > 0:
            rows = 1 + torch.randperm(T - 1, generator=generator, device=device)[:k]
            mask[:, rows.to(lengths.device)] = True
        return mask
    # First target position of each instance (its context length); 0 for an empty one.
    start = torch.where(loss_mask.any(1), loss_mask.int().argmax(1), 0)
    targets = int((lengths - start).clamp(min=0).max())
    k = math.floor((targets - 1) * frac)
    if k <= 0:
        return mask
    for b in range(B):
        rows = 1 + torch.randperm(targets - 1, generator=generator, device=device)[:k]
        rows = rows.to(lengths.device) + start[b]
        mask[b, rows[rows < T]] = True
    return mask


def diffusion_loss(model, schedule: NoiseSchedule, seq: Tensor, lengths: Tensor, loss_mask: Tensor,
                   generator: torch.Generator | None = None, cfg_frac: float = 0.15
                   ) -> tuple[Tensor, Tensor]:
    """x0-prediction loss over a normalized batch seq [B, T, D].

    t is uniform per position; the model sees context = seq and x_t = noised seq; cfg_frac is
    the guidance-dropout fraction of cfg_dropout_mask (0: none). Returns (mean
    over positions where loss_mask [B, T] is True of the sum over dims of the squared error,
    number of those positions) so data-parallel callers can weight by the count.
    """
    B, T, _ = seq.shape
    device = generator.device if generator is not None else seq.device
    t = torch.randint(0, schedule.num_steps, (B, T), generator=generator, device=device).to(seq.device)
    eps = torch.randn(seq.shape, generator=generator, device=device, dtype=seq.dtype).to(seq.device)
    cfg_drop = cfg_dropout_mask(lengths, loss_mask, cfg_frac, generator) if cfg_frac > 0 else None
    x0_hat = model(seq, schedule.add_noise(seq, t, eps), t, lengths, cfg_drop)
    err = (x0_hat.float() - seq.float()).pow(2).sum(-1)
    n = loss_mask.sum()
    return (err * loss_mask).sum() / n.clamp(min=1), n


@dataclass
class SamplerConfig:
    # DDIM steps per generated sentence (trailing spacing). 40 as the paper states; the LCM
    # reference's timesteps come from torch.arange(100, 0, -2.5, dtype=long), which gives 50 on
    # current torch.
    steps: int = 40
    initial_noise_scale: float = 0.6  # x starts as this times N(0, I)
    guidance_scale: float = 3.0  # classifier-free guidance
    guidance_rescale: float = 0.7  # mix of the rescaled and the plain guided epsilon
    epsilon_scaling: float = 1.00045  # epsilon is divided by this at every step
    # "schedule": step to the next timestep of the trailing schedule. "reference": diffusers/LCM
    # DDIM rule t - num_train // steps, which misses the schedule where its spacing is 3.
    prev_timestep: Literal["schedule", "reference"] = "schedule"


def trailing_timesteps(num_train: int = 100, steps: int = 40) -> list[int]:
    """round(arange(num_train, 0, -num_train / steps)) - 1 with round-half-to-even: 99, 97, 94, ... 1.

    Computed from the step index, so it always has `steps` entries (the LCM reference's integer
    arange with step -2.5 yields 50 on current torch).
    """
    return [round(num_train - k * num_train / steps) - 1 for k in range(steps)]


def guided_step(x: Tensor, x0_cond: Tensor, x0_uncond: Tensor, ab_t: float, ab_prev: float,
                cfg: SamplerConfig) -> tuple[Tensor, Tensor]:
    """One DDIM step with rescaled classifier-free guidance. Returns (x_prev, x0) over [B, D].

    At ab_t = 0 (t = 99 after zero-terminal-SNR rescaling) x0 cannot be recovered from eps, so
    the conditional x0 is used directly; eps there is x for both branches.
    """
    eps_c = (x - math.sqrt(ab_t) * x0_cond) / math.sqrt(1 - ab_t)
    eps_u = (x - math.sqrt(ab_t) * x0_uncond) / math.sqrt(1 - ab_t)
    eps = eps_u + cfg.guidance_scale * (eps_c - eps_u)
    r = eps_c.std(dim=-1, keepdim=True) / eps.std(dim=-1, keepdim=True)
    eps = (cfg.guidance_rescale * r + (1 - cfg.guidance_rescale)) * eps
    x0 = x0_cond if ab_t == 0 else (x - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
    eps = eps / cfg.epsilon_scaling
    return math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * eps, x0


@torch.no_grad()
def sample_next(model, schedule: NoiseSchedule, cfg: SamplerConfig, context: Tensor, lengths: Tensor,
                generator: torch.Generator | None = None, noise: Tensor | None = None) -> Tensor:
    """Sample the next sentence embedding after each normalized context [B, T, D] (`lengths`
    real rows each). Returns the normalized x0 of the last step, [B, D]. Model in eval mode.
    The start is initial_noise_scale x `noise` (standard normal [B, D]; default: drawn from
    `generator`)."""
    if getattr(model, "training", False):
        raise ValueError("sample_next needs the model in eval mode (dropout off)")
    B, _, D = context.shape
    ctx_out = model.encode_context(context)
    ctx2, len2 = torch.cat((ctx_out, ctx_out)), torch.cat((lengths, lengths))
    drop = torch.arange(2 * B, device=context.device) >= B  # second half: unconditional
    device = generator.device if generator is not None else context.device
    if noise is None:
        noise = torch.randn(B, D, generator=generator, device=device)
    x = cfg.initial_noise_scale * noise.to(context)
    ts = trailing_timesteps(schedule.num_steps, cfg.steps)
    ab = schedule.alpha_bar.tolist()
    for i, t in enumerate(ts):
        tt = torch.full((2 * B,), t, dtype=torch.long, device=context.device)
        x0_c, x0_u = model.predict_next(ctx2, len2, torch.cat((x, x)), tt, drop).float().chunk(2)
        if i == len(ts) - 1:
            ab_prev = 1.0  # the last step's x0 is the output; its x_prev is not used
        elif cfg.prev_timestep == "schedule":
            ab_prev = ab[ts[i + 1]]
        else:
            ab_prev = ab[t - schedule.num_steps // cfg.steps]
        x_prev, x0 = guided_step(x.float(), x0_c, x0_u, ab[t], ab_prev, cfg)
        x = x_prev.to(context.dtype)
    return x0.to(context.dtype)
