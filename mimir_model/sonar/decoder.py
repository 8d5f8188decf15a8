"""SONAR text decoder: next-token logits given a sentence embedding and a target prefix.

The sentence embedding is the whole "encoder output": a length-1 memory sequence without
padding (SonarEncoderDecoderModel.encode does `sentence_embeddings.unsqueeze(1)`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from mimir_model.sonar.config import SonarConfig
from mimir_model.sonar.layers import DecoderLayer, Frontend


@dataclass
class DecoderState:
    """Incremental-decoding state of a batch: memory keys/values and self-attention caches."""

    memory_kv: list[tuple[Tensor, Tensor]]
    caches: list[list[Tensor]] = field(default_factory=list)
    step: int = 0  # number of positions already decoded

    def reorder(self, rows: Tensor) -> None:
        """Keep (and repeat) batch rows `rows`, e.g. surviving beams or unfinished sentences."""
        self.memory_kv = [(k.index_select(0, rows), v.index_select(0, rows))
                          for k, v in self.memory_kv]
        self.caches = [[t.index_select(0, rows) for t in c] for c in self.caches]


class SonarDecoder(nn.Module):
    """State-dict keys equal the official checkpoint's: decoder_frontend.embed.weight,
    decoder.layers.N.{self_attn,encoder_decoder_attn,ffn}(_layer_norm).*, decoder.layer_norm.*
    and final_proj.weight, which is tied to the embedding and may be absent from a checkpoint."""

    def __init__(self, cfg: SonarConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.max_positions = cfg.max_seq_len
        self.decoder_frontend = Frontend(cfg.vocab_size, cfg.model_dim, cfg.pad_idx,
                                         self.max_positions, cfg.dropout)
        self.decoder = nn.ModuleDict({
            "layers": nn.ModuleList(
                DecoderLayer(cfg.model_dim, cfg.num_heads, cfg.ffn_dim, cfg.dropout)
                for _ in range(cfg.num_layers)),
            "layer_norm": nn.LayerNorm(cfg.model_dim),
        })
        self.final_proj = nn.Linear(cfg.model_dim, cfg.vocab_size, bias=False)
        self.final_proj.weight = self.decoder_frontend.embed.weight
        self.register_load_state_dict_pre_hook(self._fill_tied_weight)
        self.register_load_state_dict_post_hook(self._retie)

    @staticmethod
    def _fill_tied_weight(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
        embed, proj = prefix + "decoder_frontend.embed.weight", prefix + "final_proj.weight"
        if proj not in state_dict and embed in state_dict:
            state_dict[proj] = state_dict[embed]

    @staticmethod
    def _retie(module: SonarDecoder, incompatible_keys) -> None:
        # load_state_dict(assign=True) replaces both parameters separately.
        module.final_proj.weight = module.decoder_frontend.embed.weight

    def start(self, memory: Tensor) -> DecoderState:
        """State for decoding conditioned on sentence embeddings memory [B, d]."""
        memory = memory[:, None, :].to(self.final_proj.weight.dtype)
        kv = [layer.encoder_decoder_attn.keys_values(memory) for layer in self.decoder["layers"]]
        return DecoderState(memory_kv=kv, caches=[[] for _ in kv])

    def step(self, tokens: Tensor, state: DecoderState) -> Tensor:
        """Feed tokens [B, T] at positions state.step.. -> logits [B, T, V]; advances state."""
        x = self.decoder_frontend(tokens, start=state.step)
        for layer, kv, cache in zip(self.decoder["layers"], state.memory_kv, state.caches):
            x = layer(x, kv, cache)
        state.step += tokens.size(1)
        return self.final_proj(self.decoder["layer_norm"](x))

    def forward(self, tokens: Tensor, memory: Tensor) -> Tensor:
        """Teacher-forced logits [B, T, V] for whole target sequences tokens [B, T]."""
        x = self.decoder_frontend(tokens)
        memory = memory[:, None, :].to(x.dtype)
        for layer in self.decoder["layers"]:
            x = layer(x, layer.encoder_decoder_attn.keys_values(memory), None)
        return self.final_proj(self.decoder["layer_norm"](x))
