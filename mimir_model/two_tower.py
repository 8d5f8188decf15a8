"""Two-Tower diffusion LCM: a causal context encoder and an AdaLN denoiser that cross-attends to it.

Shapes follow the LCM reference (`two_tower_diffusion_lcm_1_6B` / `_7B`); see DESIGN.md section 2.
All embeddings here live in normalized SONAR space; the model predicts x0.

Cross-attention keys are [zero vector, context outputs 0..T-1]. Denoiser position i (the
prediction of sentence i) sees key 0 and context positions 0..i-1, i.e. key j is visible iff
j <= i. At inference the new position is `lengths`, so it sees the whole context. Positions
dropped for classifier-free guidance see key 0 only.

Parameter counts as built here: 1.6B preset 1,645,538,304; 7B preset 6,930,781,696, exactly
the 7B reference docstring figure, which confirms the layout. The 1.6B reference docstring says
1,635,101,696; its 10,436,608 gap matches no component or model/FFN/layer-count variant of this
layout, so it was presumably counted on an earlier configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def swiglu_inner_dim(model_dim: int, multiple_of: int = 256) -> int:
    """SwiGLU hidden size: 4 * model_dim * 2/3 rounded up to a multiple of 256 (2048 -> 5632)."""
    inner = int(4 * model_dim * 2 / 3)
    return multiple_of * math.ceil(inner / multiple_of)


@dataclass
class TwoTowerConfig:
    sonar_dim: int = 1024
    model_dim: int = 2048
    num_heads: int = 16
    context_layers: int = 5
    denoiser_layers: int = 13
    ffn_inner_dim: int = 0  # 0 = swiglu_inner_dim(model_dim)
    max_positions: int = 4096
    rope_theta: float = 1e4
    dropout: float = 0.1
    timestep_dim: int = 256
    num_diffusion_steps: int = 100  # of the noise schedule it is trained and sampled with

    def __post_init__(self) -> None:
        if self.ffn_inner_dim == 0:
            self.ffn_inner_dim = swiglu_inner_dim(self.model_dim)
        if self.model_dim % self.num_heads or (self.model_dim // self.num_heads) % 2:
            raise ValueError("model_dim / num_heads must be an even integer (RoPE rotates pairs)")


_PRESETS: dict[str, dict] = {
    "tiny": dict(sonar_dim=64, model_dim=64, num_heads=4, context_layers=2, denoiser_layers=2),
    # LCM two_tower_diffusion_lcm_1_6B
    "1.6B": dict(sonar_dim=1024, model_dim=2048, num_heads=16, context_layers=5, denoiser_layers=13),
    # LCM two_tower_diffusion_lcm_7B: model dim 4096, 32 heads, 5 + 14 layers, ffn 4*4096 -> 11008
    "7B": dict(sonar_dim=1024, model_dim=4096, num_heads=32, context_layers=5, denoiser_layers=14),
}


def preset(name: str, **overrides) -> TwoTowerConfig:
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(_PRESETS)}")
    cfg = TwoTowerConfig(**_PRESETS[name])
    # Recompute the FFN rule unless the caller sets it, e.g. preset("tiny", model_dim=128).
    return replace(cfg, ffn_inner_dim=overrides.pop("ffn_inner_dim", 0), **overrides)


def cross_attention_mask(query_pos: Tensor, num_context: int, drop: Tensor | None = None) -> Tensor:
    """Which keys [zero, ctx_0 .. ctx_{num_context-1}] each query may see.

    query_pos: LongTensor[B, N], the sequence index each query predicts; it sees key j iff
    j <= query_pos (zero key + context positions before it). drop: BoolTensor[B, N], True =
    guidance-dropped, sees the zero key only. Returns BoolTensor[B, N, num_context + 1].
    """
    keys = torch.arange(num_context + 1, device=query_pos.device)
    mask = keys <= query_pos[..., None]
    if drop is not None:
        mask = mask & ~drop[..., None]
        mask[..., 0] = True
    return mask


def rope(x: Tensor, theta: float) -> Tensor:
    """Rotary position embedding over [B, H, T, Dh], rotating consecutive pairs by position."""
    T, dh = x.shape[-2], x.shape[-1]
    freqs = theta ** (-torch.arange(0, dh, 2, device=x.device, dtype=torch.float32) / dh)
    angles = torch.arange(T, device=x.device, dtype=torch.float32)[:, None] * freqs  # [T, Dh/2]
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    return out.type_as(x)


def timestep_sinusoid(t: Tensor, dim: int) -> Tensor:
    """[cos, sin] of t * exp(-ln(1e4) k / (dim/2)), k < dim/2: [...] -> [..., dim] float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(1e4) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[..., None] * freqs
    return torch.cat((args.cos(), args.sin()), dim=-1)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        # The LCM reference's initialisation (fairseq2's multi-head attention): Xavier-uniform
        # q/k/v with gain 2^-0.5, Xavier-uniform output projection, zero biases.
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(proj.weight, gain=2**-0.5)
        nn.init.xavier_uniform_(self.out_proj.weight)
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.zeros_(proj.bias)

    def forward(self, x: Tensor, kv: Tensor, mask: Tensor | None = None,
                is_causal: bool = False, rope_theta: float | None = None) -> Tensor:
        """x: [B, N, D] queries, kv: [B, M, D]; mask: BoolTensor[B, N, M] (True = may attend)."""
        q = self.q_proj(x).unflatten(-1, (self.num_heads, -1)).transpose(1, 2)
        k = self.k_proj(kv).unflatten(-1, (self.num_heads, -1)).transpose(1, 2)
        v = self.v_proj(kv).unflatten(-1, (self.num_heads, -1)).transpose(1, 2)
        if rope_theta is not None:
            q, k = rope(q, rope_theta), rope(k, rope_theta)
        if mask is not None:
            mask = mask[:, None]  # broadcast over heads
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
        return self.out_proj(out.transpose(1, 2).flatten(-2))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, inner_dim: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, inner_dim)
        self.up_proj = nn.Linear(dim, inner_dim)
        self.down_proj = nn.Linear(inner_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class ContextLayer(nn.Module):
    """Pre-norm causal self-attention (RoPE) + SwiGLU."""

    def __init__(self, cfg: TwoTowerConfig):
        super().__init__()
        self.rope_theta = cfg.rope_theta
        self.attn_norm = nn.RMSNorm(cfg.model_dim)
        self.attn = Attention(cfg.model_dim, cfg.num_heads)
        self.ffn_norm = nn.RMSNorm(cfg.model_dim)
        self.ffn = SwiGLU(cfg.model_dim, cfg.ffn_inner_dim)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.attn_norm(x)
        # Right padding: causal masking alone keeps real positions from seeing padding.
        x = x + self.dropout(self.attn(h, h, is_causal=True, rope_theta=self.rope_theta))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class DenoiserLayer(nn.Module):
    """Identity self-attention, cross-attention to the context, SwiGLU; each sub-layer AdaLN."""

    def __init__(self, cfg: TwoTowerConfig):
        super().__init__()
        d = cfg.model_dim
        self.self_norm = nn.RMSNorm(d)
        self.self_attn = Attention(d, cfg.num_heads)
        self.cross_norm = nn.RMSNorm(d)
        self.cross_attn = Attention(d, cfg.num_heads)
        self.ffn_norm = nn.RMSNorm(d)
        self.ffn = SwiGLU(d, cfg.ffn_inner_dim)
        # (shift, scale, gate) for self-attention, cross-attention and FFN.
        self.modulator = nn.Sequential(nn.SiLU(), nn.Linear(d, 9 * d))
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, temb: Tensor, keys: Tensor, self_mask: Tensor,
                cross_mask: Tensor) -> Tensor:
        mods = self.modulator(temb).chunk(9, dim=-1)

        shift, scale, gate = mods[0:3]
        h = self.self_norm(x) * (1 + scale) + shift
        x = x + gate * self.dropout(self.self_attn(h, h, mask=self_mask))

        shift, scale, gate = mods[3:6]
        h = self.cross_norm(x) * (1 + scale) + shift
        x = x + gate * self.dropout(self.cross_attn(h, keys, mask=cross_mask))

        shift, scale, gate = mods[6:9]
        h = self.ffn_norm(x) * (1 + scale) + shift
        return x + gate * self.dropout(self.ffn(h))


class TwoTowerLCM(nn.Module):
    def __init__(self, cfg: TwoTowerConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.model_dim
        # Context tower
        self.context_in = nn.Linear(cfg.sonar_dim, d)
        self.context_layers = nn.ModuleList(ContextLayer(cfg) for _ in range(cfg.context_layers))
        self.context_norm = nn.RMSNorm(d)
        # Denoiser tower
        self.denoiser_in = nn.Linear(cfg.sonar_dim, d)
        self.time_embed = nn.Sequential(nn.Linear(cfg.timestep_dim, d), nn.SiLU(), nn.Linear(d, d))
        for linear in (self.time_embed[0], self.time_embed[2]):  # as the reference: N(0, 0.02)
            nn.init.normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)
        self.denoiser_layers = nn.ModuleList(DenoiserLayer(cfg) for _ in range(cfg.denoiser_layers))
        self.denoiser_norm = nn.RMSNorm(d)
        self.denoiser_out = nn.Linear(d, cfg.sonar_dim)
        for layer in self.denoiser_layers:
            # Zero modulators: every gate starts at 0, so each denoiser layer starts as identity.
            nn.init.zeros_(layer.modulator[1].weight)
            nn.init.zeros_(layer.modulator[1].bias)

    def encode_context(self, context: Tensor) -> Tensor:
        """Causal context encoder: [B, T, sonar_dim] -> [B, T, model_dim]."""
        if context.shape[1] > self.cfg.max_positions:
            raise ValueError(f"context of {context.shape[1]} > max_positions {self.cfg.max_positions}")
        x = self.context_in(context)
        for layer in self.context_layers:
            x = layer(x)
        return self.context_norm(x)

    def denoise(self, x_t: Tensor, t: Tensor, ctx_out: Tensor, cross_mask: Tensor) -> Tensor:
        """x_t: [B, N, sonar_dim], t: [B, N], ctx_out: [B, T, model_dim], cross_mask:
        BoolTensor[B, N, T + 1] from `cross_attention_mask`. Returns x0 predictions [B, N, sonar_dim]."""
        keys = torch.cat((ctx_out.new_zeros(ctx_out.shape[0], 1, ctx_out.shape[2]), ctx_out), dim=1)
        temb = self.time_embed(timestep_sinusoid(t, self.cfg.timestep_dim).to(x_t.dtype))
        B, N, _ = x_t.shape
        # Each position attends only to itself: positions are denoised independently.
        self_mask = torch.eye(N, dtype=torch.bool, device=x_t.device).expand(B, N, N)
        x = self.denoiser_in(x_t)
        for layer in self.denoiser_layers:
            x = layer(x, temb, keys, self_mask, cross_mask)
        return self.denoiser_out(self.denoiser_norm(x))

    def forward(self, context: Tensor, x_t: Tensor, t: Tensor, lengths: Tensor,
                cfg_drop: Tensor | None = None) -> Tensor:
        """Training: context and x_t [B, T, sonar_dim], t [B, T], lengths [B] -> x0 hat [B, T, sonar_dim].

        Position i is denoised with context 0..i-1; padded positions (>= lengths) see the whole
        real context and never padding, so their (ignored) outputs do not depend on pad values.
        """
        B, T, _ = context.shape
        ctx_out = self.encode_context(context)
        query_pos = torch.minimum(torch.arange(T, device=context.device)[None, :], lengths[:, None])
        return self.denoise(x_t, t, ctx_out, cross_attention_mask(query_pos, T, cfg_drop))

    def predict_next(self, ctx_out: Tensor, lengths: Tensor, x_t: Tensor, t: Tensor,
                     drop: Tensor) -> Tensor:
        """Inference: denoise one new position per sequence after its `lengths` context sentences.

        ctx_out: [B, T, model_dim] from `encode_context` (run once per generated sentence, reused
        for every diffusion step), lengths: [B], x_t: [B, sonar_dim], t: [B], drop: BoolTensor[B]
        (True = unconditional, zero key only). Returns x0 hat [B, sonar_dim].
        """
        mask = cross_attention_mask(lengths[:, None], ctx_out.shape[1], drop[:, None])
        return self.denoise(x_t[:, None], t[:, None], ctx_out, mask)[:, 0]
