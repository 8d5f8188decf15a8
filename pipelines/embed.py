"""SONAR embedding stage: every document's sentences, plus "End of text.", become vectors.

Runs as a Ray actor (the encoder is loaded once per actor, on a GPU when given one) but is a
plain callable over Arrow tables, testable without Ray.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from mimir_model.framing import END_OF_TEXT, END_OF_TEXT_LANG
from mimir_model.sonar.config import SonarShape
from mimir_model.sonar.pipeline import TextEncoder
from pipelines.stage import DETAIL, Stage, set_column
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
        quarantine = table["quarantine"].to_pylist()
        sentences = table["sentences"].to_pylist()
        langs = table["lang"].to_pylist()
        details = table[DETAIL].to_pylist() if DETAIL in table.column_names else [None] * len(langs)
        todo = [i for i, q in enumerate(quarantine) if q is None]
        truncated_before = self.encoder.num_truncated
        docs = [np.zeros((0, self.dim), np.float32)] * len(langs)
        for i, vectors in self._encode(todo, sentences, langs).items():
            if isinstance(vectors, Exception):  # a document the encoder cannot take
                quarantine[i] = "embedder_error"
                details[i] = f"{type(vectors).__name__}: {vectors}"
                self.counts.quarantine("embedder_error")
            else:
                docs[i] = np.concatenate([vectors, self.end_of_text[None]])
                self.counts.tally["sentences"] += len(vectors)
        self.counts.tally["truncated_sentences"] += self.encoder.num_truncated - truncated_before
        table = set_column(table, "quarantine", pa.array(quarantine, pa.string()))
        if any(d is not None for d in details):
            table = set_column(table, DETAIL, pa.array(details, pa.string()))
        table = table.append_column("embeddings", embeddings_to_arrow(docs, self.dim, self.dtype))
        return table.append_column(
            "n_embeddings", pa.array([len(d) for d in docs], type=pa.int32()))

    def _encode(self, todo: list[int], sentences: list[list[str]], langs: list[str]
                ) -> dict[int, np.ndarray | Exception]:
        """Each document's sentence vectors, encoded in one call for the whole batch (which
        decides the batches, hence the float rounding, from the documents alone). If that
        fails, document by document, so one poison document is quarantined with the
        exception instead of failing the batch."""
        def encode(indices: list[int]) -> list[np.ndarray]:
            texts = [s for i in indices for s in sentences[i]]
            text_langs = [langs[i] for i in indices for _ in sentences[i]]
            vectors = (self.encoder.encode(texts, text_langs) if texts
                       else np.zeros((0, self.dim), np.float32))
            bounds = np.cumsum([0] + [len(sentences[i]) for i in indices])
            return [vectors[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        try:
            return dict(zip(todo, encode(todo)))
        except Exception as e:
            log.warning("SONAR failed on a batch of %d documents (%s: %s): encoding them one "
                        "by one", len(todo), type(e).__name__, e)
        out: dict[int, np.ndarray | Exception] = {}
        for i in todo:
            try:
                out[i] = encode([i])[0]
            except Exception as e:
                log.error("SONAR fails on document %d of the batch: %s: %s", i,
                          type(e).__name__, e)
                out[i] = e
        return out
