"""SONAR embedding stage: every document's sentences, plus "End of text.", become vectors.

Runs as a Ray actor (the encoder is loaded once per actor, on a GPU when given one) but is a
plain callable over Arrow tables, testable without Ray.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mimir_model.framing import END_OF_TEXT, END_OF_TEXT_LANG
from mimir_model.sonar.config import SonarShape
from mimir_model.sonar.pipeline import TextEncoder
from pipelines.stage import Stage
from pipelines.shards import embeddings_to_arrow

log = logging.getLogger(__name__)



class SonarEmbed(Stage):
    """Adds `embeddings` (the document's sentences then "End of text.") and `n_embeddings`."""

    name = "embed"

    def __init__(self, encoder_uri: str, tokenizer_uri: str, device: str = "cpu",
                 max_tokens_per_batch: int = 8192, cache_dir: str | None = None,
                 dtype: str = "float32", shape: SonarShape | None = None) -> None:
        # shape: what a checkpoint that is not Meta's cannot tell (SonarFiles.shape).
        self.dtype = dtype
        self.encoder = TextEncoder.from_uris(encoder_uri, tokenizer_uri, device=device,
                                             max_tokens_per_batch=max_tokens_per_batch,
                                             cache_dir=cache_dir, shape=shape)
        # One vector for every document's closing sentence, computed once.
        self.end_of_text = self.encoder.encode([END_OF_TEXT], END_OF_TEXT_LANG)[0]
        self.dim = int(self.end_of_text.shape[0])
        super().__init__()

    def process(self, table: pa.Table) -> pa.Table:
        good = pc.is_null(table["quarantine"]).to_numpy(zero_copy_only=False)
        sentences = table["sentences"].to_pylist()
        langs = table["lang"].to_pylist()

        texts, text_langs = [], []
        for ok, sents, lang in zip(good, sentences, langs):
            if ok:
                texts.extend(sents)
                text_langs.extend([lang] * len(sents))
        truncated_before = self.encoder.num_truncated
        vectors = (self.encoder.encode(texts, text_langs) if texts
                   else np.zeros((0, self.dim), np.float32))

        docs, start = [], 0
        for ok, sents in zip(good, sentences):
            if not ok:
                docs.append(np.zeros((0, self.dim), np.float32))
                continue
            n = len(sents)
            docs.append(np.concatenate([vectors[start:start + n], self.end_of_text[None]]))
            start += n

        self.counts.tally["sentences"] += len(texts)
        self.counts.tally["truncated_sentences"] += self.encoder.num_truncated - truncated_before
        table = table.append_column("embeddings", embeddings_to_arrow(docs, self.dim, self.dtype))
        return table.append_column(
            "n_embeddings", pa.array([len(d) for d in docs], type=pa.int32()))
