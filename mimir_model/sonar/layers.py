"""Building blocks of SONAR's fairseq2 transformers, named like fairseq2's modules.

Attribute names are part of the checkpoint format: they make the state-dict keys
(`self_attn.q_proj.weight`, `ffn.inner_proj.bias`, `ffn_layer_norm.weight`, ...).
All layers are pre-norm with biased projections and a ReLU feed-forward network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

try:  # flash-attention over packed sequences (CUDA, fp16/bf16), torch >= 2.10
    from torch.nn.attention.varlen import varlen_attn
except ImportError:
    varlen_attn = None


def sinusoid_positions(start: int, length: int, dim: int, offset: int,
                       device: torch.device | None = None) -> Tensor:
    """Rows start..start+length-1 of fairseq2's SinusoidalPositionEncoder table, float32.

    Position p uses step p + offset (offset = pad_idx + 1 for fairseq-trained models); the
    first half of the channels is sin(step * f_i), the second half cos(step * f_i), with
    f_i = exp(-ln(10000) * i / (dim/2 - 1)) (tensor2tensor's layout, not interleaved).
    """
    half = dim // 2
    steps = torch.arange(start + offset, start + offset + length, device=device,
                         dtype=torch.float32)
    freqs = torch.exp(torch.arange(half, device=device, dtype=torch.float32)
                      * -math.log(10000.0) / (half - 1))
    angles = torch.outer(steps, freqs)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


@dataclass
class Packing:
    """Sequences packed end to end along one token axis [N, ...], without padding.

    Matmuls, norms and the FFN run on the N real tokens only; attention runs per sequence,
    by flash varlen attention where available, else on a padded [B, H, max_len, Dh] copy.
    """

    seq_lens: Tensor  # [B]
    cu_seqlens: Tensor  # [B + 1] int32: where each sequence starts, then N
    max_len: int
    positions: Tensor  # [N]: each token's position in its sequence
    seq_ids: Tensor  # [N]: each token's sequence
    slots: Tensor  # [N]: each token's row in a [B * max_len] padded layout

    @classmethod
    def from_lens(cls, seq_lens: Tensor) -> Packing:
        seq_lens = seq_lens.long()
        batch, max_len = seq_lens.numel(), int(seq_lens.max())
        starts = torch.cumsum(seq_lens, 0) - seq_lens
        seq_ids = torch.repeat_interleave(torch.arange(batch, device=seq_lens.device), seq_lens)
        positions = torch.arange(seq_ids.numel(), device=seq_lens.device) - starts[seq_ids]
        cu = torch.cat([starts, seq_lens.sum()[None]]).to(torch.int32)
        return cls(seq_lens, cu, max_len, positions, seq_ids, seq_ids * max_len + positions)


class Frontend(nn.Module):
    """Token embedding scaled by sqrt(model_dim) plus sinusoidal positions."""

    def __init__(self, vocab_size: int, model_dim: int, pad_idx: int, max_positions: int,
                 dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, model_dim, padding_idx=pad_idx)
        # fairseq2's init_scaled_embedding; loaded checkpoints overwrite it.
        nn.init.normal_(self.embed.weight, std=model_dim**-0.5)
        with torch.no_grad():
            self.embed.weight[pad_idx].zero_()
        self.model_dim = model_dim
        self.pos_offset = pad_idx + 1
        self.max_positions = max_positions
        self.dropout = dropout

    def forward(self, tokens: Tensor, start: int = 0) -> Tensor:
        """tokens [B, T] whose first position is `start` -> embeddings [B, T, d]."""
        length = tokens.size(1)
        if start + length > self.max_positions:
            raise ValueError(f"sequence of {start + length} tokens exceeds the model's "
                             f"{self.max_positions} positions")
        x = self.embed(tokens) * math.sqrt(self.model_dim)
        pos = sinusoid_positions(start, length, self.model_dim, self.pos_offset, tokens.device)
        # fairseq2 adds the positions in float32, then casts back.
        x = (x.float() + pos).type_as(x)
        return F.dropout(x, self.dropout, self.training)

    def forward_packed(self, tokens: Tensor, packing: Packing) -> Tensor:
        """Packed tokens [N] -> embeddings [N, d] (inference: no dropout)."""
        if packing.max_len > self.max_positions:
            raise ValueError(f"sequence of {packing.max_len} tokens exceeds the model's "
                             f"{self.max_positions} positions")
        x = self.embed(tokens) * math.sqrt(self.model_dim)
        table = sinusoid_positions(0, packing.max_len, self.model_dim, self.pos_offset,
                                   tokens.device)
        return (x.float() + table[packing.positions]).type_as(x)


class MultiheadAttention(nn.Module):
    def __init__(self, model_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if model_dim % num_heads:
            raise ValueError(f"model_dim {model_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(model_dim, model_dim)
        self.k_proj = nn.Linear(model_dim, model_dim)
        self.v_proj = nn.Linear(model_dim, model_dim)
        self.output_proj = nn.Linear(model_dim, model_dim)
        self.dropout = dropout

    def _split_heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, -1).transpose(1, 2)  # [B, H, T, Dh]

    def keys_values(self, kv: Tensor) -> tuple[Tensor, Tensor]:
        """Projected keys and values [B, H, T, Dh], cacheable across decoding steps."""
        return self._split_heads(self.k_proj(kv)), self._split_heads(self.v_proj(kv))

    def forward(self, x: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        """x [B, Tq, d] attends to k, v [B, H, Tk, Dh]; mask is boolean (True = attend)."""
        b, t, d = x.shape
        q = self._split_heads(self.q_proj(x))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.output_proj(out.transpose(1, 2).reshape(b, t, d))

    def forward_packed(self, x: Tensor, packing: Packing) -> Tensor:
        """Self-attention of packed tokens x [N, d] within their own sequences."""
        n, d = x.shape
        q, k, v = (proj(x).view(n, self.num_heads, -1)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        if varlen_attn is not None and x.is_cuda and x.dtype in (torch.float16, torch.bfloat16):
            out = varlen_attn(q, k, v, packing.cu_seqlens, packing.cu_seqlens,
                              packing.max_len, packing.max_len)
        else:
            out = _padded_attention(q, k, v, packing)
        return self.output_proj(out.reshape(n, d))


def _padded_attention(q: Tensor, k: Tensor, v: Tensor, packing: Packing) -> Tensor:
    """q, k, v [N, H, Dh] -> [N, H, Dh] via a padded copy and a key-padding mask."""
    batch, length = packing.seq_lens.numel(), packing.max_len

    def pad(t: Tensor) -> Tensor:
        out = t.new_zeros(batch * length, *t.shape[1:])
        out[packing.slots] = t
        return out.view(batch, length, *t.shape[1:]).transpose(1, 2)  # [B, H, T, Dh]

    mask = torch.arange(length, device=q.device) < packing.seq_lens[:, None]
    out = F.scaled_dot_product_attention(pad(q), pad(k), pad(v), attn_mask=mask[:, None, None])
    return out.transpose(1, 2).reshape(batch * length, *q.shape[1:])[packing.slots]


class FeedForward(nn.Module):
    def __init__(self, model_dim: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.inner_proj = nn.Linear(model_dim, ffn_dim)
        self.output_proj = nn.Linear(ffn_dim, model_dim)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        h = F.dropout(F.relu(self.inner_proj(x)), self.dropout, self.training)
        return self.output_proj(h)


class EncoderLayer(nn.Module):
    def __init__(self, model_dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn_layer_norm = nn.LayerNorm(model_dim)
        self.self_attn = MultiheadAttention(model_dim, num_heads, dropout)
        self.ffn_layer_norm = nn.LayerNorm(model_dim)
        self.ffn = FeedForward(model_dim, ffn_dim, dropout)
        self.dropout = dropout

    def forward(self, x: Tensor, key_mask: Tensor | None) -> Tensor:
        """key_mask [B, 1, 1, T]: True for real tokens; padded queries are computed and ignored."""
        h = self.self_attn_layer_norm(x)
        k, v = self.self_attn.keys_values(h)
        x = x + F.dropout(self.self_attn(h, k, v, key_mask), self.dropout, self.training)
        h = self.ffn(self.ffn_layer_norm(x))
        return x + F.dropout(h, self.dropout, self.training)

    def forward_packed(self, x: Tensor, packing: Packing) -> Tensor:
        """Packed tokens x [N, d] (inference: no dropout)."""
        x = x + self.self_attn.forward_packed(self.self_attn_layer_norm(x), packing)
        return x + self.ffn(self.ffn_layer_norm(x))


class DecoderLayer(nn.Module):
    def __init__(self, model_dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn_layer_norm = nn.LayerNorm(model_dim)
        self.self_attn = MultiheadAttention(model_dim, num_heads, dropout)
        self.encoder_decoder_attn_layer_norm = nn.LayerNorm(model_dim)
        self.encoder_decoder_attn = MultiheadAttention(model_dim, num_heads, dropout)
        self.ffn_layer_norm = nn.LayerNorm(model_dim)
        self.ffn = FeedForward(model_dim, ffn_dim, dropout)
        self.dropout = dropout

    def forward(self, x: Tensor, memory_kv: tuple[Tensor, Tensor],
                cache: list[Tensor] | None) -> Tensor:
        """Causal self-attention over the cache plus x, then attention to the memory.

        `cache` is this layer's [keys, values] of earlier positions (empty list at the start);
        it is extended in place. With cache None, x is the whole sequence.
        """
        h = self.self_attn_layer_norm(x)
        k, v = self.self_attn.keys_values(h)
        if cache is not None:
            if cache:
                k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            cache[:] = [k, v]
        tq, tk = x.size(1), k.size(2)
        # Query i sits at absolute position tk - tq + i and sees keys up to it.
        mask = None if tq == 1 else torch.ones(tq, tk, dtype=torch.bool,
                                                device=x.device).tril(tk - tq)
        x = x + F.dropout(self.self_attn(h, k, v, mask), self.dropout, self.training)
        h = self.encoder_decoder_attn_layer_norm(x)
        x = x + F.dropout(self.encoder_decoder_attn(h, *memory_kv, None), self.dropout,
                          self.training)
        h = self.ffn(self.ffn_layer_norm(x))
        return x + F.dropout(h, self.dropout, self.training)
