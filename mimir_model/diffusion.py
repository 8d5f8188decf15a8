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
        """x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, with t of shape x0.shape[:-1]."""
        ab = self.alpha_bar.to(x0.device)[t].to(x0.dtype)[..., None]
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def cfg_dropout_mask(lengths: Tensor, T: int, prob: float = 0.15, frac: float = 0.15,
                     generator: torch.Generator | None = None) -> Tensor:
    """Classifier-free guidance dropout, BoolTensor[B, T] (True = sees only the zero key).

    With probability `prob` per sequence, floor((len - 1) * frac) distinct random positions among
    1..len-1 are dropped; position 0 already sees nothing but the zero key.
    """
    device = generator.device if generator is not None else lengths.device
    lens = lengths.to(device)
    B = lens.shape[0]
    chosen = torch.rand(B, generator=generator, device=device) < prob
    k = torch.floor((lens - 1).clamp(min=0).double() * frac).long() * chosen
    pos = torch.arange(T, device=device)
    # Random ranks among the eligible positions; the k lowest-ranked are dropped.
    scores = torch.rand(B, T, generator=generator, device=device)
    scores = scores.masked_fill((pos == 0) | (pos[None, :] >= lens[:, None]), float("inf"))
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return (ranks < k[:, None]).to(lengths.device)


def diffusion_loss(model, schedule: NoiseSchedule, seq: Tensor, lengths: Tensor, loss_mask: Tensor,
                   generator: torch.Generator | None = None, cfg_prob: float = 0.15
                   ) -> tuple[Tensor, Tensor]:
    """x0-prediction loss over a normalized batch seq [B, T, D].

    t is uniform per position; the model sees context = seq and x_t = noised seq. Returns (mean
    over positions where loss_mask [B, T] is True of the sum over dims of the squared error,
    number of those positions) so data-parallel callers can weight by the count.
    """
    B, T, _ = seq.shape
    device = generator.device if generator is not None else seq.device
    t = torch.randint(0, schedule.num_steps, (B, T), generator=generator, device=device).to(seq.device)
    eps = torch.randn(seq.shape, generator=generator, device=device, dtype=seq.dtype).to(seq.device)
    cfg_drop = cfg_dropout_mask(lengths, T, cfg_prob, generator=generator) if cfg_prob > 0 else None
    x0_hat = model(seq, schedule.add_noise(seq, t, eps), t, lengths, cfg_drop)
    err = (x0_hat.float() - seq.float()).pow(2).sum(-1)
    n = loss_mask.sum()
    return (err * loss_mask).sum() / n.clamp(min=1), n


@dataclass
class SamplerConfig:
    steps: int = 40  # DDIM steps per generated sentence (trailing spacing)
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
