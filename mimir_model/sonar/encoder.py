"""SONAR text encoder: token ids -> one sentence embedding per sequence (mean pooled)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mimir_model.sonar.config import SonarConfig
from mimir_model.sonar.layers import EncoderLayer, Frontend, Packing


class SonarEncoder(nn.Module):
    """State-dict keys equal the official checkpoint's: encoder_frontend.embed.weight,
    encoder.layers.N.{self_attn,self_attn_layer_norm,ffn,ffn_layer_norm}.*, layer_norm.*."""

    def __init__(self, cfg: SonarConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # The fairseq-trained encoder has pad_idx + 1 extra positions (SONAR's `_from_fairseq`),
        # and sonar-space truncates its inputs to this length.
        self.max_positions = cfg.max_seq_len + cfg.pad_idx + 1
        self.encoder_frontend = Frontend(cfg.vocab_size, cfg.model_dim, cfg.pad_idx,
                                         self.max_positions, cfg.dropout)
        self.encoder = nn.ModuleDict({"layers": nn.ModuleList(
            EncoderLayer(cfg.model_dim, cfg.num_heads, cfg.ffn_dim, cfg.dropout)
            for _ in range(cfg.num_layers))})
        self.layer_norm = nn.LayerNorm(cfg.model_dim)

    def forward(self, tokens: Tensor, seq_lens: Tensor) -> Tensor:
        """tokens [B, T] right-padded (any pad value), seq_lens [B] -> embeddings [B, d]."""
        valid = torch.arange(tokens.size(1), device=tokens.device) < seq_lens[:, None]  # [B, T]
        x = self.encoder_frontend(tokens)
        key_mask = valid[:, None, None, :]
        for layer in self.encoder["layers"]:
            x = layer(x, key_mask)
        x = self.layer_norm(x)
        # Mean over real tokens, written as SONAR does (sum times 1 / (len + 1e-7)).
        total = (x * valid[..., None].to(x.dtype)).sum(dim=1)
        return total * (1.0 / (seq_lens.to(x.dtype) + 1e-7))[:, None]

    def forward_packed(self, tokens: Tensor, seq_lens: Tensor) -> Tensor:
        """tokens [N]: the sequences end to end, seq_lens [B] -> embeddings [B, d].

        The fast path: no compute on padding. Same result as forward up to float rounding.
        """
        packing = Packing.from_lens(seq_lens)
        x = self.encoder_frontend.forward_packed(tokens, packing)
        for layer in self.encoder["layers"]:
            x = layer.forward_packed(x, packing)
        x = self.layer_norm(x).float()  # pool in float32 whatever the model dtype
        total = x.new_zeros(seq_lens.numel(), x.size(1)).index_add_(0, packing.seq_ids, x)
        return total * (1.0 / (seq_lens.float() + 1e-7))[:, None]
