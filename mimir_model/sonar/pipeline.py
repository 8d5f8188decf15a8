"""Text <-> SONAR embeddings in batches: what the rest of Mimir calls.

TextEncoder gives sonar-space's TextToEmbeddingModelPipeline results (inputs cut at the
encoder's position count, results in input order) through the packed fast path; TextDecoder
follows its EmbeddingToTextModelPipeline (prompt [</s>, target language], fairseq2's generator
rules and defaults: beam 5, length penalty 1, max length d + 128). Both are checked against
sonar-space by tests/test_sonar_golden.py. `TextEncoder.from_uris(..., backend="sonar-space")`
runs sonar-space itself behind the same interface (mimir_model/sonar/reference.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from mimir_model.sonar.checkpoint import load_decoder, load_encoder, resolve_uri
from mimir_model.sonar.config import SonarShape
from mimir_model.sonar.decoder import SonarDecoder
from mimir_model.sonar.encoder import SonarEncoder
from mimir_model.sonar.search import beam_search, beam_search_nbest, greedy_search
from mimir_model.sonar.tokenizer import SonarTokenizer

if TYPE_CHECKING:
    from mimir_model.sonar.reference import SonarSpaceTextEncoder

log = logging.getLogger(__name__)


def _check_vocab(model_vocab: int, tokenizer: SonarTokenizer) -> None:
    if model_vocab != tokenizer.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} ids but the model "
                         f"{model_vocab}: the checkpoint and tokenizer do not belong together")


class TextEncoder:
    """Texts -> embeddings with the native encoder's fast path (packed, no padding compute).

    Each `encode` call is a block: its inputs are sorted by length, cut into batches of at
    most max_tokens_per_batch tokens (rows x longest row, which bounds memory on either
    attention path; a longer single sequence is a batch of its own), and the results come
    back in input order.
    """

    def __init__(self, encoder: SonarEncoder, tokenizer: SonarTokenizer,
                 device: str | torch.device = "cpu", max_tokens_per_batch: int = 8192,
                 compile: bool = False) -> None:
        _check_vocab(encoder.cfg.vocab_size, tokenizer)
        if tokenizer.max_seq_len > encoder.max_positions:
            raise ValueError(f"tokenizer max_seq_len {tokenizer.max_seq_len} exceeds the "
                             f"encoder's {encoder.max_positions} positions")
        self.encoder = encoder.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.max_tokens_per_batch = max_tokens_per_batch
        # torch.compile with dynamic shapes: batches differ in token and sequence counts.
        self.forward = (torch.compile(encoder.forward_packed, dynamic=True) if compile
                        else encoder.forward_packed)
        self.num_truncated = 0  # inputs cut at tokenizer.max_seq_len, over this object's life

    @classmethod
    def from_uris(cls, encoder_uri: str, tokenizer_uri: str, device: str | torch.device = "cpu",
                  dtype: torch.dtype | None = None, max_tokens_per_batch: int = 8192,
                  cache_dir: str | Path | None = None, backend: str = "native",
                  compile: bool = False,
                  shape: SonarShape | None = None) -> TextEncoder | SonarSpaceTextEncoder:
        """The native encoder (default) or, with backend="sonar-space", sonar-space's pipeline
        behind the same interface. dtype None: bf16 on CUDA (the fast path), else float32.
        `shape`: heads, length limit and languages of a checkpoint that is not Meta's
        (mimir_model/sonar/checkpoint.py); the tokenizer gets the checkpoint's languages."""
        if backend == "sonar-space":
            from mimir_model.sonar.reference import SonarSpaceTextEncoder

            return SonarSpaceTextEncoder(encoder_uri, resolve_uri(tokenizer_uri, cache_dir),
                                         device, max_tokens_per_batch, cache_dir, shape)
        if backend != "native":
            raise ValueError(f"unknown SONAR backend {backend!r}: 'native' or 'sonar-space'")
        if dtype is None:
            dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
        encoder = load_encoder(encoder_uri, device=device, dtype=dtype, cache_dir=cache_dir,
                               shape=shape)
        # sonar-space truncates at the encoder's position count (514 for the real model).
        tokenizer = SonarTokenizer(resolve_uri(tokenizer_uri, cache_dir), encoder.cfg.langs,
                                   max_seq_len=encoder.max_positions)
        return cls(encoder, tokenizer, device, max_tokens_per_batch, compile)

    @property
    def dim(self) -> int:
        return self.encoder.cfg.model_dim

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
        return self.encode_ids(ids)

    def encode_ids(self, ids: list[list[int]]) -> np.ndarray:
        """Embeddings float32 [N, d] of token id sequences (at most max_positions each)."""
        return encode_packed(self.forward, ids, self.max_tokens_per_batch, self.device, self.dim)


def length_batches(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Indices sorted by length, grouped so that rows x longest row <= max_tokens (a longer
    single sequence is a batch of its own)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:  # ascending, so lengths[i] is the longest of current + [i]
        if current and (len(current) + 1) * lengths[i] > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


@torch.inference_mode()
def encode_packed(forward: Callable[[Tensor, Tensor], Tensor], ids: list[list[int]],
                  max_tokens: int, device: torch.device, dim: int) -> np.ndarray:
    """Run forward(packed tokens [N], seq_lens [B]) -> [B, dim] (SonarEncoder.forward_packed)
    over length-sorted batches; rows come back in input order, as float32."""
    out = np.empty((len(ids), dim), dtype=np.float32)
    for batch in length_batches([len(x) for x in ids], max_tokens):
        tokens = torch.tensor([t for i in batch for t in ids[i]], dtype=torch.long)
        lens = torch.tensor([len(ids[i]) for i in batch])
        emb = forward(tokens.to(device, non_blocking=True), lens.to(device, non_blocking=True))
        out[batch] = emb.float().cpu().numpy()
    return out


class TextDecoder:
    def __init__(self, decoder: SonarDecoder, tokenizer: SonarTokenizer,
                 device: str | torch.device = "cpu", beam_size: int = 5,
                 batch_size: int = 64) -> None:
        _check_vocab(decoder.cfg.vocab_size, tokenizer)
        self.decoder = decoder.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.beam_size = beam_size
        self.batch_size = batch_size
        # sonar-space's generator bans the tokenizer's pad (0) only; <unk> (1, the model
        # config's pad index) stays allowed, with fairseq2's default unk_penalty of 0.
        self.banned = [tokenizer.pad_idx]

    @classmethod
    def from_uris(cls, decoder_uri: str, tokenizer_uri: str, device: str | torch.device = "cpu",
                  dtype: torch.dtype | None = None, beam_size: int = 5, batch_size: int = 64,
                  cache_dir: str | Path | None = None,
                  shape: SonarShape | None = None) -> TextDecoder:
        """`shape` as in TextEncoder.from_uris."""
        decoder = load_decoder(decoder_uri, device=device, dtype=dtype, cache_dir=cache_dir,
                               shape=shape)
        tokenizer = SonarTokenizer(resolve_uri(tokenizer_uri, cache_dir), decoder.cfg.langs)
        return cls(decoder, tokenizer, device, beam_size, batch_size)

    def decode(self, embeddings: np.ndarray, target_lang: str,
               max_len: int | None = None) -> list[str]:
        """Texts of embeddings [N, d] in target_lang (see decode_ids)."""
        return [self.tokenizer.decode(ids)
                for ids in self.decode_ids(embeddings, target_lang, max_len)]

    def decode_ids(self, embeddings: np.ndarray, target_lang: str,
                   max_len: int | None = None) -> list[list[int]]:
        """Token ids (ending with </s>) of embeddings [N, d]; at most max_len tokens each.

        The default max_len is sonar-space's rule 1.0 * source length + 128, where the source
        is the [N, d] embedding batch, so its length is d (1152 for the real model); either
        way the prompt plus output stay within the decoder's max_seq_len (512).
        """
        if self.beam_size == 1:
            return self._search(greedy_search, embeddings, target_lang, max_len)
        return self._search(partial(beam_search, beam_size=self.beam_size), embeddings,
                            target_lang, max_len)

    def decode_nbest(self, embeddings: np.ndarray, target_lang: str,
                     max_len: int | None = None) -> list[list[tuple[str, float]]]:
        """Each embedding's beam_size beam-search hypotheses as (text, score), best first;
        the score is fairseq2's (log-probability / scored tokens ** length penalty)."""
        hyps = self._search(partial(beam_search_nbest, beam_size=self.beam_size), embeddings,
                            target_lang, max_len)
        return [[(self.tokenizer.decode(h.tokens), h.score) for h in row] for row in hyps]

    def _search(self, search: Callable, embeddings: np.ndarray, target_lang: str,
                max_len: int | None) -> list:
        dim = self.decoder.cfg.model_dim
        if embeddings.ndim != 2 or embeddings.shape[1] != dim:
            raise ValueError(f"expected embeddings [N, {dim}], got {embeddings.shape}")
        prompt = [self.tokenizer.eos_idx, self.tokenizer.lang_idx(target_lang)]
        max_gen_len = max_len if max_len is not None else int(1.0 * dim + 128)
        out: list = []
        for start in range(0, len(embeddings), self.batch_size):
            memory = torch.from_numpy(np.ascontiguousarray(
                embeddings[start : start + self.batch_size], dtype=np.float32)).to(self.device)
            out += search(self.decoder, memory, prompt, self.tokenizer.eos_idx, max_gen_len,
                          banned=self.banned)
        return out
