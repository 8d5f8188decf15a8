"""Tiny offline SONAR assets in the official formats: an NLLB-style SentencePiece model and
random-weight encoder/decoder checkpoints (`{"model": state_dict}` with fairseq2 names).

They load through the same code as the real files, so everything except output quality can
be exercised without downloads. Same texts and seed -> byte-identical files.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import sentencepiece as spm
import torch
from torch import nn

from mimir_model.sonar.config import SonarConfig
from mimir_model.sonar.decoder import SonarDecoder
from mimir_model.sonar.encoder import SonarEncoder
from mimir_model.sonar.tokenizer import SonarTokenizer

log = logging.getLogger(__name__)

TOKENIZER_FILE = "sentencepiece.model"
ENCODER_FILE = "sonar_text_encoder.pt"
DECODER_FILE = "sonar_text_decoder.pt"
EOS_IDX = 3  # </s>: SentencePiece id 2 + 1


def train_nllb_style_spm(texts: list[str], path: Path, vocab_size: int = 1000,
                         seed: int = 0) -> None:
    """Unigram model with NLLB's special ids (<unk> 0, <s> 1, </s> 2, no pad).

    Every character seen becomes a piece (character_coverage 1.0) and byte fallback covers
    scripts the texts lack. The vocabulary is a soft limit, so a small corpus gives fewer.
    """
    lines = [line for text in texts for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("no text to train the SentencePiece model on")
    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="unigram",
        vocab_size=vocab_size, hard_vocab_limit=False, character_coverage=1.0,
        byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1,
        minloglevel=2)
    path.write_bytes(model.getvalue())


def _spread_decoder(decoder: SonarDecoder, std: float = 0.5, eos_boost: float = 2.0) -> None:
    """With default init, a random decoder with tied embeddings keeps repeating its last input
    token (the residual stream is mostly that token's embedding), so it decodes to nothing.
    Wide layer weights and a likelier </s> give varied texts of varied lengths instead."""
    for module in decoder.modules():
        if isinstance(module, nn.Linear) and module is not decoder.final_proj:
            nn.init.normal_(module.weight, std=std)
    with torch.no_grad():
        decoder.decoder_frontend.embed.weight[EOS_IDX] *= eos_boost


def write_sidecars(cfg: SonarConfig, checkpoints: list[Path]) -> None:
    """What the weights do not tell (heads, length limit, languages), beside each checkpoint:
    mimir_model/sonar/checkpoint.py refuses a checkpoint of another shape than Meta's
    without it."""
    side = {"num_heads": cfg.num_heads, "max_seq_len": cfg.max_seq_len, "langs": list(cfg.langs)}
    for path in checkpoints:
        path.with_suffix(".json").write_text(json.dumps(side) + "\n")


def build_tiny_sonar(out_dir: Path, texts: list[str], seed: int = 0) -> dict[str, Path]:
    """Write tokenizer, encoder and decoder into out_dir; return their paths by name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"tokenizer": out_dir / TOKENIZER_FILE, "encoder": out_dir / ENCODER_FILE,
             "decoder": out_dir / DECODER_FILE}
    train_nllb_style_spm(texts, paths["tokenizer"], seed=seed)
    cfg = SonarConfig.tiny(SonarTokenizer(paths["tokenizer"]).vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder, decoder = SonarEncoder(cfg), SonarDecoder(cfg)
        _spread_decoder(decoder)
    torch.save({"model": encoder.state_dict()}, paths["encoder"])
    torch.save({"model": decoder.state_dict()}, paths["decoder"])
    write_sidecars(cfg, [paths["encoder"], paths["decoder"]])
    log.info("tiny SONAR assets (vocab %d, dim %d) in %s", cfg.vocab_size, cfg.model_dim,
             out_dir)
    return paths
