"""SONAR text encoder throughput: sentences/s and useful TFLOP/s of three batching paths.

    naive   random-order batches of 256 rows, padded to their longest row (SonarEncoder.forward)
    sorted  length-sorted batches of up to 4,096 rows, padded (SonarEncoder.forward)
    packed  encode_packed (what TextEncoder runs): length-sorted batches packed without padding,
            flash varlen attention on CUDA (SonarEncoder.forward_packed); also torch.compile'd

Random weights of the real shape on CUDA (24 layers, d 1024, ffn 8192, vocab 256,206), bf16
for all three (DESIGN.md section 3 anchors: 4,428 sentences/s naive, 10,544 sorted on one
H100; target >= 15,000). The packed path is also checked against the float32 padded path:
the minimum per-sentence cosine must be >= 0.999.

On CPU the shape keeps d, ffn and vocab but only CPU_LAYERS layers, float32, 512 sentences
(128 with --quick, which also skips torch.compile), sorted batches of 32;
compare rates there as ratios (packed/naive), not with the anchors.

Token ids are random; lengths follow a log-normal distribution with mean about 32 tokens
(median 28), clipped to [3, 514], like SaT sentences of at most 256 characters.

Useful FLOPs count only real tokens: per sentence of T tokens,
  2 x T x L x (4 d^2 + 2 d f)  (projections and FFN)  +  4 x d x T^2 x L  (QK^T and AV),
so padding, norms, softmax and embedding lookups are not counted (32.3 GFLOP for a
32-token sentence on the real shape).
"""

from __future__ import annotations

import copy
import logging
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from mimir_model.sonar.checkpoint import load_encoder
from mimir_model.sonar.config import SonarConfig
from mimir_model.sonar.encoder import SonarEncoder
from mimir_model.sonar.pipeline import encode_packed

log = logging.getLogger(__name__)

NAME = "sonar_encoder"
CPU_LAYERS = 2
MEAN_TOKENS = 32.0
LOG_SIGMA = 0.55  # spread of log-lengths
NAIVE_BATCH = 256
SORTED_BATCH = 4096
PACKED_TOKENS = 131_072  # TextEncoder.max_tokens_per_batch on CUDA (about 4,096 sentences)
ANCHORS = {"naive": 4_428, "sorted": 10_544}  # DESIGN.md section 3, one H100


def sentence_lengths(n: int, seed: int = 0) -> list[int]:
    """Log-normal token counts with mean MEAN_TOKENS before clipping to [3, 514]."""
    rng = np.random.default_rng(seed)
    mu = math.log(MEAN_TOKENS) - LOG_SIGMA**2 / 2
    return np.clip(np.rint(rng.lognormal(mu, LOG_SIGMA, n)), 3, 514).astype(int).tolist()


def useful_flops(cfg: SonarConfig, lengths: list[int]) -> int:
    """Forward FLOPs over the real tokens only (see the module docstring)."""
    d, f, layers = cfg.model_dim, cfg.ffn_dim, cfg.num_layers
    tokens = sum(lengths)
    squares = sum(t * t for t in lengths)
    return 2 * tokens * layers * (4 * d * d + 2 * d * f) + 4 * d * squares * layers


def random_ids(lengths: list[int], vocab: int, seed: int = 0) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(4, vocab, (n,), generator=gen).tolist() for n in lengths]


@torch.inference_mode()
def encode_padded(encoder: SonarEncoder, ids: list[list[int]], order: list[int],
                  batch_size: int, device: torch.device) -> np.ndarray:
    """The plain path: batches of `batch_size` rows in `order`, padded to the longest row.
    Rows not in `order` are left uninitialised."""
    out = np.empty((len(ids), encoder.cfg.model_dim), np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        lens = torch.tensor([len(ids[i]) for i in rows])
        tokens = torch.zeros(len(rows), int(lens.max()), dtype=torch.long)
        for r, i in enumerate(rows):
            tokens[r, : len(ids[i])] = torch.tensor(ids[i])
        emb = encoder(tokens.to(device), lens.to(device))
        out[rows] = emb.float().cpu().numpy()
    return out


def timed(fn, device: torch.device) -> tuple[float, np.ndarray]:
    """Seconds of one call after one warm-up call (which also triggers any compilation)."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    result = fn()  # returns host arrays, so the device has finished
    return time.perf_counter() - t0, result


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(F.cosine_similarity(torch.from_numpy(a), torch.from_numpy(b), dim=1).min())


def run(quick: bool, encoder_path: str | None = None, n: int | None = None,
        rows: list | None = None) -> list[dict]:
    """encoder_path: an official-format checkpoint to time (loaded by the real loader, e.g.
    the full-shape assets'); default random weights of the shape above. rows: where to append
    result rows as they come (bench-gpu writes each as it is appended)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    cfg = SonarConfig.basic() if cuda else SonarConfig(num_layers=CPU_LAYERS)
    n = n or ((8192 if quick else 65_536) if cuda else (128 if quick else 512))
    dtype = torch.bfloat16 if cuda else torch.float32
    # CPU: n / sorted_batch = 16 batches, as for 65,536 sentences in batches of 4,096.
    naive_batch, sorted_batch = (NAIVE_BATCH, SORTED_BATCH) if cuda else (64, 32)
    max_tokens = PACKED_TOKENS if cuda else 8192
    packed = f"packed {max_tokens} tok"

    torch.manual_seed(0)
    if encoder_path:
        encoder = load_encoder(encoder_path, device=device, dtype=dtype)
        cfg = encoder.cfg
    else:
        with torch.device(device):  # random weights (the modules' own init): speed only
            encoder = SonarEncoder(cfg).to(dtype).eval()
    lengths = sentence_lengths(n)
    ids = random_ids(lengths, cfg.vocab_size)
    flops = useful_flops(cfg, lengths)
    shape = f"L{cfg.num_layers} d{cfg.model_dim} {'bf16' if cuda else 'fp32'} n{n}"
    rows = [] if rows is None else rows

    def row(config: str, metric: str, value: float | None, note: str = "") -> None:
        rows.append({"benchmark": NAME, "config": config, "device": device.type,
                     "metric": metric, "value": value, "note": note})

    row(shape, "mean tokens", float(np.mean(lengths)), f"max {max(lengths)}")
    row(shape, "GFLOP/sentence", flops / n / 1e9, "useful: real tokens only")
    random_order = torch.randperm(n, generator=torch.Generator().manual_seed(1)).tolist()
    by_length = sorted(range(n), key=lengths.__getitem__)
    paths = {
        f"naive b{naive_batch}": lambda: encode_padded(encoder, ids, random_order, naive_batch,
                                                       device),
        f"sorted b{sorted_batch}": lambda: encode_padded(encoder, ids, by_length, sorted_batch,
                                                         device),
        packed: lambda: encode_packed(encoder.forward_packed, ids, max_tokens, device,
                                      cfg.model_dim),
    }
    if cuda or not quick:  # compiling on CPU takes minutes: full runs only
        compiled = torch.compile(encoder.forward_packed, dynamic=True)
        paths[f"{packed} compiled"] = lambda: encode_packed(compiled, ids, max_tokens, device,
                                                            cfg.model_dim)
    # Every fast path is checked against the float32 padded path on a subset, right after
    # its timing (so a run cut off by a time cap keeps the checks of the paths it timed).
    check = list(range(min(n, 512)))
    fp32 = encode_padded(copy.deepcopy(encoder).float(), ids, check, 64, device)
    rates: dict[str, float] = {}
    for k, (config, fn) in enumerate(paths.items()):
        seconds, output = timed(fn, device)
        rates[config] = n / seconds
        anchor = ANCHORS.get(config.split()[0]) if cuda else None
        row(config, "sentences/s", rates[config], f"DESIGN.md anchor {anchor:,}" if anchor else "")
        row(config, "useful TFLOP/s", flops / seconds / 1e12)
        log.info("%s: %.0f sentences/s", config, rates[config])
        if k >= 2:  # the packed paths
            row(config, "min cosine vs fp32", min_cosine(output[check], fp32[check]),
                f"{len(check)} sentences; target >= 0.999")
        if k == 2:  # the rows a run cut off before the compiled path still has
            naive, fastest = next(iter(rates)), max(rates, key=rates.get)
            row(fastest, "speed-up vs naive", rates[fastest] / rates[naive],
                f"fastest / {naive}")
    if len(paths) == 3:
        row(f"{packed} compiled", "sentences/s", None, "skipped: --quick on CPU")
    elif max(rates, key=rates.get) != max(list(rates)[:3], key=rates.get):
        naive, fastest = next(iter(rates)), max(rates, key=rates.get)
        row(fastest, "speed-up vs naive", rates[fastest] / rates[naive], f"fastest / {naive}")
    return rows
