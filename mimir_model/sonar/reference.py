"""sonar-space's text encoder behind TextEncoder's interface (backend="sonar-space").

The reference implementation, for comparisons. It needs the optional sonar-space stack
(sonar-space 0.5.0, fairseq2 0.8.1, which pins torch 2.9.1: see
tests/data/sonar_golden/make_golden.py for the install). The same official-format files load
through sonar-space's model factory with the config the native loader resolves (weights,
sidecar or `shape`: mimir_model/sonar/checkpoint.py), and the NLLB tokenizer through
fairseq2's loader with the checkpoint's languages.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from mimir_model.sonar.checkpoint import load_state_dict, resolve_config, resolve_uri
from mimir_model.sonar.config import SonarShape
from mimir_model.sonar.languages import check_language
from mimir_model.sonar.tokenizer import SonarTokenizer

INSTALL_HINT = ("backend 'sonar-space' needs sonar-space: pip install sonar-space==0.5.0 "
                "fairseq2==0.8.1 torch==2.9.1 torchaudio==2.9.1 (and libsndfile1), in an "
                "environment of its own")


class SonarSpaceTextEncoder:
    """encode(texts, langs) -> float32 [N, d] and num_truncated, like TextEncoder."""

    def __init__(self, encoder_uri: str, tokenizer_path: Path,
                 device: str | torch.device = "cpu", max_tokens_per_batch: int = 8192,
                 cache_dir: str | Path | None = None, shape: SonarShape | None = None) -> None:
        try:
            from fairseq2.models.nllb.tokenizer import NllbTokenizerConfig, load_nllb_tokenizer
            from sonar.inference_pipelines.text import TextToEmbeddingModelPipeline
            from sonar.models.sonar_text import get_sonar_text_encoder_hub
        except ImportError as e:
            raise ImportError(INSTALL_HINT) from e
        state = load_state_dict(resolve_uri(encoder_uri, cache_dir))
        cfg = resolve_config(state, "encoder", encoder_uri, shape, cache_dir)
        hub = get_sonar_text_encoder_hub()
        base = hub.get_arch_config("basic")
        config = dataclasses.replace(
            base, model_dim=cfg.model_dim, num_encoder_layers=cfg.num_layers,
            num_encoder_attn_heads=cfg.num_heads, ffn_inner_dim=cfg.ffn_dim,
            max_seq_len=cfg.max_seq_len,
            vocab_info=dataclasses.replace(base.vocab_info, size=cfg.vocab_size))
        model = hub.create_new_model(config)
        model.load_state_dict(state, strict=True)
        tokenizer = load_nllb_tokenizer(Path(tokenizer_path), NllbTokenizerConfig(
            langs=list(cfg.langs), default_lang="eng_Latn"))
        self.pipeline = TextToEmbeddingModelPipeline(model.to(device), tokenizer,
                                                     device=torch.device(device))
        max_len = model.encoder_frontend.pos_encoder.max_seq_len
        self.tokenizer = SonarTokenizer(tokenizer_path, cfg.langs, max_seq_len=max_len)  # counts
        self.dim = cfg.model_dim
        self.max_tokens_per_batch = max_tokens_per_batch
        self.num_truncated = 0

    def encode(self, texts: list[str], langs: list[str] | str) -> np.ndarray:
        if isinstance(langs, str):
            langs = [langs] * len(texts)
        if len(langs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(langs)} languages")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for lang in sorted(set(langs)):  # sonar-space takes one language per call
            check_language(lang)
            rows = [i for i, x in enumerate(langs) if x == lang]
            batch = [texts[i] for i in rows]
            self.num_truncated += sum(self.tokenizer.is_truncated(self.tokenizer.encode(t, lang))
                                      for t in batch)
            emb = self.pipeline.predict(batch, source_lang=lang, batch_size=None,
                                        batch_max_tokens=self.max_tokens_per_batch)
            out[rows] = emb.float().cpu().numpy()
        return out
