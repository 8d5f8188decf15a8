"""What the evaluation jobs load: a checkpoint's Two-Tower model, the normalizer and SONAR."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mimir_model.checkpoint import load_exported_model
from mimir_model.normalizer import RobustNormalizer
from mimir_model.sonar.config import SonarFiles
from mimir_model.sonar.pipeline import TextDecoder, TextEncoder
from storage.cache import fetch


@dataclass
class Models:
    model: torch.nn.Module
    normalizer: RobustNormalizer
    encoder: TextEncoder
    decoder: TextDecoder

    @classmethod
    def load(cls, checkpoint: str, normalizer: str, sonar: SonarFiles, device: str,
             cache_dir: str) -> Models:
        cache = Path(cache_dir)
        return cls(load_exported_model(fetch(checkpoint, cache), device),
                   RobustNormalizer.load(fetch(normalizer, cache)),
                   TextEncoder.from_uris(sonar.encoder, sonar.tokenizer, device=device,
                                         cache_dir=str(cache), shape=sonar.shape),
                   TextDecoder.from_uris(sonar.decoder, sonar.tokenizer, device=device,
                                         cache_dir=str(cache), shape=sonar.shape))
