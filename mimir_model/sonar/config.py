"""Shape of a SONAR text encoder or decoder (both share the 'basic' architecture), what a
checkpoint cannot tell about its shape, and the files of a SONAR model."""

from __future__ import annotations

from dataclasses import dataclass, field

from mimir_model.sonar.languages import SONAR_LANGUAGES
from storage.paths import Input


@dataclass
class SonarConfig:
    model_dim: int = 1024
    num_layers: int = 24
    num_heads: int = 16
    ffn_dim: int = 8192
    vocab_size: int = 256_206
    # Longest token sequence. The encoder has pad_idx + 1 more positions (fairseq legacy, see
    # SonarEncoder.max_positions); the decoder's limit counts its 2-token prompt.
    max_seq_len: int = 512
    # The model config's pad index (fairseq's), which also sets the sinusoid offset pad_idx + 1.
    # The tokenizer pads with 0; pad values never matter since padding is masked.
    pad_idx: int = 1
    dropout: float = 0.0
    # The languages of its tokenizer, in the order of their tokens (they are embedding rows).
    langs: tuple[str, ...] = SONAR_LANGUAGES

    @classmethod
    def basic(cls) -> SonarConfig:
        """The published SONAR text encoder/decoder shape (text_sonar_basic_*)."""
        return cls()

    @classmethod
    def tiny(cls, vocab_size: int) -> SonarConfig:
        """A random-weight test shape: sentence embeddings are 64-d."""
        return cls(model_dim=64, num_layers=2, num_heads=4, ffn_dim=128, vocab_size=vocab_size)


@dataclass
class SonarShape:
    """What a SONAR checkpoint's weights do not tell (they give the dimension, layers, FFN
    size and vocabulary): set for a model that is not the published one, whose values are 16
    heads, 512 tokens and the 202 languages of SONAR_LANGUAGES. Unset keys come from the
    checkpoint's sidecar `<name>.json` (mimir_model/sonar/checkpoint.py)."""

    num_heads: int | None = None  # attention heads (model_dim / num_heads is the head size)
    max_seq_len: int | None = None  # longest token sequence
    langs: list[str] | None = None  # the tokenizer's languages, in the order of their tokens


@dataclass
class SonarFiles:
    """The SONAR text encoder, decoder and tokenizer files a job uses: a local path, an https://
    URL (Meta's: https://dl.fbaipublicfiles.com/SONAR/sonar_text_encoder.pt,
    sonar_text_decoder.pt, sentencepiece.source.256000.model) or an s3:// URI. The default is
    the embedded default's tiny assets (`python -m jobs.assets tiny --out build/assets/tiny`)."""

    encoder: Input = "build/assets/tiny/sonar/sonar_text_encoder.pt"  # text encoder checkpoint
    decoder: Input = "build/assets/tiny/sonar/sonar_text_decoder.pt"  # text decoder checkpoint
    tokenizer: Input = "build/assets/tiny/sonar/sentencepiece.model"  # SentencePiece model
    # For files of another shape or language list than Meta's (else they are refused).
    shape: SonarShape = field(default_factory=SonarShape)
