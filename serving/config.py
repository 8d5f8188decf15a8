"""The settings of the Serve application (the `args:` of its entry in a Serve config file,
configs/serve/*.yaml). Replicas, autoscaling and each replica's CPU / GPU share are Serve's
own deployment options, in the same file's `deployments:` section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mimir_model.diffusion import SamplerConfig
from mimir_model.framing import STOP_COSINE
from storage.paths import Input, Output


@dataclass
class ServeAppConfig:
    # A training checkpoint or run folder (local or s3://; its newest checkpoint), or a folder
    # written by jobs.export; loaded once per replica.
    model: Input = ""
    # Instead of what the checkpoint records (empty: the recorded ones).
    normalizer: str = ""
    sonar_encoder: str = ""
    sonar_decoder: str = ""
    sonar_tokenizer: str = ""
    segment_model: str = ""
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when the replica has a GPU
    cache_dir: Output = "build/cache"  # where remote files are downloaded
    # Dynamic batching: prompts (texts, or embeddings for /decode) gathered from concurrent
    # requests into one model call, and how long the first one waits for others.
    max_batch_size: int = 64
    batch_wait_timeout_s: float = 0.02
    max_texts_per_request: int = 32  # texts (or embeddings) in one request at most
    max_text_chars: int = 4000  # characters of one text at most
    max_prompt_sentences: int = 64  # sentences of one prompt (after SaT) at most
    max_sentences: int = 16  # generated sentences per prompt when a request does not say
    max_sentences_limit: int = 64  # the most generated sentences a request may ask for
    stop_cosine: float = STOP_COSINE  # a sentence this close to "End of text." ends a prompt
    decode_max_tokens: int = 0  # per decoded sentence; 0 = SONAR's rule (dim + 128)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)  # the paper's settings

    def __post_init__(self) -> None:
        if self.max_texts_per_request > self.max_batch_size:
            raise ValueError(f"max_texts_per_request ({self.max_texts_per_request}) must not "
                             f"exceed max_batch_size ({self.max_batch_size}): one request is "
                             "never split across batches")
        if self.max_sentences > self.max_sentences_limit:
            raise ValueError(f"max_sentences ({self.max_sentences}) exceeds "
                             f"max_sentences_limit ({self.max_sentences_limit})")
