"""FLOPs of a Two-Tower training step, and the dense bf16 peaks of known GPUs (for MFU).

FLOP count (`train_flops`): training = 3 x forward (backward = 2 x forward), and forward =
  2 x (weights of every nn.Linear, biases excluded) x the positions it runs on
  + attention: 4 x d x T_q x T_k per attention layer (QK^T and attention x V, all heads),
counted dense, as the kernels compute them: the causal context mask and the denoiser's identity
self-attention mask are not discounted. Every Linear runs on the B x T positions, except the
cross-attention K/V projections, which run on the T + 1 keys (zero key + context). Norms,
softmax, RoPE and element-wise work are not counted. So per step, with N = weights in matmuls:
  about 6 x N x tokens + 12 x d x T x (T L_ctx + T L_den + (T + 1) L_den) x B.
For the 1.6B shape at 56 x 128 that is 9.97 GFLOP per embedding. Note: DESIGN.md's anchors
(32,079 embeddings/s at 43% MFU, 44,159 at 59%) imply about 13.2 GFLOP per embedding, i.e.
8 x params rather than 6 x; our MFU for those rates would be 32% and 44.5%.
"""

from __future__ import annotations

import torch

from mimir_model.two_tower import TwoTowerConfig

# Dense bf16 tensor-core peaks (FLOP/s), matched against the CUDA device name.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def matmul_weights(cfg: TwoTowerConfig) -> tuple[int, int]:
    """Weights of the model's nn.Linear layers (biases excluded), split into (run once per
    position, run once per cross-attention key). Their sum is every Linear weight of the model."""
    d, f, s = cfg.model_dim, cfg.ffn_inner_dim, cfg.sonar_dim
    attn, ffn = 4 * d * d, 3 * d * f
    context = s * d + cfg.context_layers * (attn + ffn)
    # Denoiser layer: self-attention, cross-attention Q and output, FFN, modulator (9 d x d).
    denoiser_layer = attn + 2 * d * d + ffn + 9 * d * d
    denoiser = s * d + (cfg.timestep_dim * d + d * d) + cfg.denoiser_layers * denoiser_layer + d * s
    per_key = cfg.denoiser_layers * 2 * d * d  # cross-attention K and V
    return context + denoiser, per_key


def train_flops(cfg: TwoTowerConfig, batch: int, seq_len: int) -> int:
    """FLOPs of one training step (forward + backward) over batch x seq_len embeddings; see the
    module docstring for what is counted."""
    T, d = seq_len, cfg.model_dim
    per_position, per_key = matmul_weights(cfg)
    matmuls = 2 * (per_position * T + per_key * (T + 1))
    attention = 4 * d * (cfg.context_layers * T * T + cfg.denoiser_layers * (T * T + T * (T + 1)))
    return 3 * batch * (matmuls + attention)


def peak_flops(device: torch.device, precision: str) -> float | None:
    if device.type != "cuda" or precision != "bf16":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)
