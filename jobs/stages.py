"""Configs of the model-backed Ray stages that several jobs run (SaT segmentation, SONAR
embedding), and the one way they are mapped onto a dataset: alone (map_embed) or as the whole
document chain (map_document_stages), which the corpus job and run-time training share."""

from __future__ import annotations

from dataclasses import dataclass

import ray

from jobs import config as config_io
from pipelines.embed import SonarEmbed
from pipelines.langs import ChineseRelabel
from pipelines.ray_stages import map_stage
from pipelines.segment import Segmenter
from pipelines.validate import ValidateText


@dataclass
class SegmentConfig:
    model: str = "build/assets/tiny/sat"  # local dir, s3:// prefix or Hub name (sat-3l)
    threshold: float = 0.02
    max_chars: int = 256
    device: str = "cpu"
    batch_size: int = 32  # documents per segmenter call
    # Where a job runs segmentation as a Ray actor pool: its size and GPU share per actor.
    actors: int = 1
    num_gpus: float = 0


@dataclass
class EmbedConfig:
    encoder: str = "build/assets/tiny/sonar/sonar_text_encoder.pt"
    tokenizer: str = "build/assets/tiny/sonar/sentencepiece.model"
    device: str = "cpu"
    max_tokens_per_batch: int = 8192
    actors: int = 1
    num_gpus: float = 0
    batch_size: int = 32
    dtype: str = "float32"  # of the stored embeddings; float16 halves the cache

    def absolute(self) -> None:
        self.encoder = config_io.absolute(self.encoder)
        self.tokenizer = config_io.absolute(self.tokenizer)


def map_embed(ds: ray.data.Dataset, cfg: EmbedConfig, sink, cache_dir: str,
              num_cpus: float = 1) -> ray.data.Dataset:
    """SonarEmbed on a pool of actors (each loads the encoder once)."""
    return map_stage(ds, SonarEmbed, sink, actors=cfg.actors, batch_size=cfg.batch_size,
                     num_cpus=num_cpus, num_gpus=cfg.num_gpus,
                     kwargs={"encoder_uri": cfg.encoder, "tokenizer_uri": cfg.tokenizer,
                             "device": cfg.device, "max_tokens_per_batch": cfg.max_tokens_per_batch,
                             "cache_dir": cache_dir, "dtype": cfg.dtype})


def map_document_stages(ds: ray.data.Dataset, segment: SegmentConfig, embed: EmbedConfig,
                        sink, cache_dir: str, max_document_chars: int,
                        num_cpus: float = 1) -> ray.data.Dataset:
    """FineWeb-style documents -> validation -> Chinese relabel -> SaT sentences -> SONAR
    embeddings. `num_cpus` is what each stage actor reserves: less than 1 where the stages
    share a node with Ray Train workers, which hold their CPUs for the whole run."""
    ds = map_stage(ds, ValidateText, sink, batch_size=256, num_cpus=num_cpus,
                   kwargs={"max_chars": max_document_chars})
    ds = map_stage(ds, ChineseRelabel, sink, batch_size=256, num_cpus=num_cpus)
    ds = map_stage(ds, Segmenter, sink, actors=segment.actors, batch_size=segment.batch_size,
                   num_cpus=num_cpus, num_gpus=segment.num_gpus,
                   kwargs={"model": segment.model, "threshold": segment.threshold,
                           "max_chars": segment.max_chars, "device": segment.device,
                           "cache_dir": cache_dir})
    return map_embed(ds, embed, sink, cache_dir, num_cpus)
