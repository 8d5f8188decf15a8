"""SONAR encoder benchmark: FLOP count, length distribution, and that every path it times
computes the same embeddings. Nothing here asserts on speed."""

import numpy as np
import torch

from bench import runner as bench
from bench.sonar_encoder import (NAME, encode_padded, min_cosine, random_ids, sentence_lengths,
                              useful_flops)
from mimir_model.sonar.config import SonarConfig
from mimir_model.sonar.encoder import SonarEncoder
from mimir_model.sonar.pipeline import encode_packed


def test_useful_flops_by_hand():
    cfg = SonarConfig(model_dim=4, num_layers=2, num_heads=1, ffn_dim=8, vocab_size=10)
    # Per token and layer 2 * (4*16 + 2*4*8) = 256; tokens 3 + 5 = 8 over 2 layers: 4,096.
    # Attention 4 * d * T^2 per layer: 16 * (9 + 25) * 2 = 1,088.
    assert useful_flops(cfg, [3, 5]) == 4_096 + 1_088
    # The real shape: 32.3 GFLOP for a 32-token sentence (DESIGN.md: ~33 per sentence).
    assert useful_flops(SonarConfig.basic(), [32]) == 32_312_918_016


def test_sentence_lengths_are_realistic_and_reproducible():
    lengths = sentence_lengths(20_000)
    assert lengths == sentence_lengths(20_000) and lengths != sentence_lengths(20_000, seed=1)
    assert 31 < np.mean(lengths) < 33 and min(lengths) >= 3 and max(lengths) <= 514
    assert 26 <= np.median(lengths) <= 30


def test_padded_and_packed_paths_agree():
    torch.manual_seed(0)
    cfg = SonarConfig.tiny(vocab_size=50)
    encoder = SonarEncoder(cfg).eval()
    lengths = sentence_lengths(40, seed=3)
    ids = random_ids(lengths, cfg.vocab_size)
    order = torch.randperm(40).tolist()
    naive = encode_padded(encoder, ids, order, 16, torch.device("cpu"))
    packed = encode_packed(encoder.forward_packed, ids, 300, torch.device("cpu"), cfg.model_dim)
    np.testing.assert_allclose(packed, naive, rtol=0, atol=1e-5)
    assert min_cosine(packed, naive) > 0.99999
    # Rows come back in input order: row i is sentence i alone.
    alone = encode_packed(encoder.forward_packed, ids[7:8], 300, torch.device("cpu"), 64)
    np.testing.assert_allclose(packed[7], alone[0], rtol=0, atol=1e-5)


def test_registered_in_the_runner():
    assert NAME == "sonar_encoder" and bench.BENCHMARKS[NAME].__module__ == "bench.sonar_encoder"
