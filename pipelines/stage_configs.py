"""Configs of the stages jobs set up by config (SaT segmentation, SONAR embedding) and the one
factory from each config to its stage (a StageSpec: built in this process by the evaluation
jobs, or run on a Ray actor pool by pipelines.ray_stages)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mimir_model.sonar.config import SonarFiles
from pipelines.embed import SonarEmbed
from pipelines.segment import Segmenter
from pipelines.stage import StageSpec
from storage.paths import Input


@dataclass
class SegmentConfig:
    # A local folder, an s3:// prefix or a Hub name (segment-any-text/sat-3l).
    model: Input = "build/assets/tiny/sat"
    threshold: float = 0.02  # SaT boundary probability (the paper's setting)
    max_chars: int = 256  # longer sentences are re-split
    device: Literal["cpu", "cuda"] = "cpu"  # cuda runs SaT in fp16
    batch_size: int = 32  # documents per segmenter call
    # Where a job runs segmentation as a Ray actor pool: its size and GPU share per actor.
    actors: int = 1
    num_gpus: float = 0

    def spec(self, cache_dir: str) -> StageSpec:
        return StageSpec(Segmenter, {"model": self.model, "threshold": self.threshold,
                                     "max_chars": self.max_chars, "device": self.device,
                                     "cache_dir": cache_dir},
                         batch_size=self.batch_size, actors=self.actors, num_gpus=self.num_gpus)


@dataclass
class EmbedConfig:
    device: Literal["cpu", "cuda"] = "cpu"  # cuda runs SONAR in bf16 on the packed path
    max_tokens_per_batch: int = 8192  # tokens per encoder forward pass (rows x longest row)
    actors: int = 1  # SONAR actors of a Ray pool
    num_gpus: float = 0  # GPU share of each actor
    batch_size: int = 32  # documents per actor call
    # Of the stored embeddings; float16 halves the cache.
    dtype: Literal["float32", "float16"] = "float32"

    def spec(self, sonar: SonarFiles, cache_dir: str) -> StageSpec:
        return StageSpec(SonarEmbed, {"encoder_uri": sonar.encoder,
                                      "tokenizer_uri": sonar.tokenizer, "device": self.device,
                                      "max_tokens_per_batch": self.max_tokens_per_batch,
                                      "cache_dir": cache_dir, "dtype": self.dtype,
                                      "shape": sonar.shape},
                         batch_size=self.batch_size, actors=self.actors, num_gpus=self.num_gpus)
