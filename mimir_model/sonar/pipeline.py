"""Text <-> SONAR embeddings in batches: what the rest of Mimir calls.

TextEncoder follows sonar-space's TextToEmbeddingModelPipeline (length-sorted batches, inputs
cut at the encoder's position count, results in input order); TextDecoder follows its
EmbeddingToTextModelPipeline (prompt [</s>, target language], fairseq2's generator rules).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from mimir_model.sonar.checkpoint import load_decoder, load_encoder, resolve_uri
from mimir_model.sonar.decoder import SonarDecoder
from mimir_model.sonar.encoder import SonarEncoder
from mimir_model.sonar.search import beam_search, greedy_search
from mimir_model.sonar.tokenizer import SonarTokenizer

log = logging.getLogger(__name__)


def _check_vocab(model_vocab: int, tokenizer: SonarTokenizer) -> None:
    if model_vocab != tokenizer.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} ids but the model "
                         f"{model_vocab}: the checkpoint and tokenizer do not belong together")


class TextEncoder:
    def __init__(self, encoder: SonarEncoder, tokenizer: SonarTokenizer,
                 device: str | torch.device = "cpu", max_tokens_per_batch: int = 8192) -> None:
        _check_vocab(encoder.cfg.vocab_size, tokenizer)
        if tokenizer.max_seq_len > encoder.max_positions:
            raise ValueError(f"tokenizer max_seq_len {tokenizer.max_seq_len} exceeds the "
                             f"encoder's {encoder.max_positions} positions")
        self.encoder = encoder.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.max_tokens_per_batch = max_tokens_per_batch
        self.num_truncated = 0  # inputs cut at tokenizer.max_seq_len, over this object's life

    @classmethod
    def from_uris(cls, encoder_uri: str, tokenizer_uri: str, device: str | torch.device = "cpu",
                  dtype: torch.dtype | None = None, max_tokens_per_batch: int = 8192,
                  cache_dir: str | Path | None = None) -> TextEncoder:
        encoder = load_encoder(encoder_uri, device=device, dtype=dtype, cache_dir=cache_dir)
        # sonar-space truncates at the encoder's position count (514 for the real model).
        tokenizer = SonarTokenizer(resolve_uri(tokenizer_uri, cache_dir),
                                   max_seq_len=encoder.max_positions)
        return cls(encoder, tokenizer, device, max_tokens_per_batch)

    @property
    def dim(self) -> int:
        return self.encoder.cfg.model_dim

    @torch.inference_mode()
    def encode(self, texts: list[str], langs: list[str] | str) -> np.ndarray:
        """Embeddings float32 [N, d] of texts, each in its language (or one for all)."""
        if isinstance(langs, str):
            langs = [langs] * len(texts)
        if len(langs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(langs)} languages")
        ids = [self.tokenizer.encode(t, lang) for t, lang in zip(texts, langs)]
        truncated = sum(self.tokenizer.is_truncated(x) for x in ids)
        if truncated:
            log.warning("%d of %d inputs truncated to %d tokens", truncated, len(ids),
                        self.tokenizer.max_seq_len)
        self.num_truncated += truncated
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for batch in self._batches(ids):
            out[batch] = self._embed([ids[i] for i in batch])
        return out

    def _batches(self, ids: list[list[int]]) -> list[list[int]]:
        """Indices grouped by length so that rows x longest row <= max_tokens_per_batch."""
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        batches: list[list[int]] = []
        current: list[int] = []
        for i in order:  # ascending, so ids[i] is the longest of current + [i]
            if current and (len(current) + 1) * len(ids[i]) > self.max_tokens_per_batch:
                batches.append(current)
                current = []
            current.append(i)
        if current:
            batches.append(current)
        return batches

    def _embed(self, seqs: list[list[int]]) -> np.ndarray:
        lens = torch.tensor([len(s) for s in seqs])
        tokens = torch.full((len(seqs), int(lens.max())), self.tokenizer.pad_idx,
                            dtype=torch.long)
        for row, s in enumerate(seqs):
            tokens[row, : len(s)] = torch.tensor(s)
        emb = self.encoder(tokens.to(self.device), lens.to(self.device))
        return emb.float().cpu().numpy()


class TextDecoder:
    def __init__(self, decoder: SonarDecoder, tokenizer: SonarTokenizer,
                 device: str | torch.device = "cpu", beam_size: int = 1,
                 batch_size: int = 64) -> None:
        _check_vocab(decoder.cfg.vocab_size, tokenizer)
        self.decoder = decoder.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.beam_size = beam_size
        self.batch_size = batch_size
        # sonar-space bans the model config's pad index (1, which is <unk> in the tokenizer);
        # the tokenizer's pad (0) is never a valid output either.
        self.banned = sorted({tokenizer.pad_idx, decoder.cfg.pad_idx})

    @classmethod
    def from_uris(cls, decoder_uri: str, tokenizer_uri: str, device: str | torch.device = "cpu",
                  dtype: torch.dtype | None = None, beam_size: int = 1, batch_size: int = 64,
                  cache_dir: str | Path | None = None) -> TextDecoder:
        decoder = load_decoder(decoder_uri, device=device, dtype=dtype, cache_dir=cache_dir)
        tokenizer = SonarTokenizer(resolve_uri(tokenizer_uri, cache_dir))
        return cls(decoder, tokenizer, device, beam_size, batch_size)

    def decode(self, embeddings: np.ndarray, target_lang: str,
               max_len: int | None = None) -> list[str]:
        """Texts of embeddings [N, d] in target_lang; at most max_len tokens each (with </s>).

        The default max_len is sonar-space's rule 1.0 * source length + 128, where the source
        is the [N, d] embedding batch, so its length is d (1152 for the real model); either
        way the prompt plus output stay within the decoder's max_seq_len (512).
        """
        dim = self.decoder.cfg.model_dim
        if embeddings.ndim != 2 or embeddings.shape[1] != dim:
            raise ValueError(f"expected embeddings [N, {dim}], got {embeddings.shape}")
        prompt = [self.tokenizer.eos_idx, self.tokenizer.lang_idx(target_lang)]
        max_gen_len = max_len if max_len is not None else int(1.0 * dim + 128)
        texts: list[str] = []
        for start in range(0, len(embeddings), self.batch_size):
            memory = torch.from_numpy(np.ascontiguousarray(
                embeddings[start : start + self.batch_size], dtype=np.float32)).to(self.device)
            if self.beam_size == 1:
                seqs = greedy_search(self.decoder, memory, prompt, self.tokenizer.eos_idx,
                                     max_gen_len, banned=self.banned)
            else:
                seqs = beam_search(self.decoder, memory, prompt, self.tokenizer.eos_idx,
                                   max_gen_len, beam_size=self.beam_size, banned=self.banned)
            texts.extend(self.tokenizer.decode(s) for s in seqs)
        return texts
