"""Sentence segmentation with SaT, then a hard cap on sentence length.

SaT runs at threshold 0.02 (the paper's setting). We never pass wtpsplit's `max_length`: in
wtpsplit 2.2.x it switches to Viterbi segmentation and ignores the threshold. Instead every
sentence longer than `max_chars` is re-split here, at the last whitespace within the limit or,
failing that, by a hard cut (as the LCM reference does).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa

from pipelines.stage import DETAIL, Stage, set_column
from pipelines.sat_model import DEFAULT_SAT, load_sat

log = logging.getLogger(__name__)

def split_long(sentence: str, max_chars: int) -> list[str]:
    """Cut a stripped sentence into stripped pieces of at most max_chars characters.

    Each cut goes at the last whitespace that leaves the head within the limit; a head with
    no whitespace at all (e.g. Chinese, or a long URL) is cut hard at max_chars.
    """
    pieces = []
    rest = sentence
    while len(rest) > max_chars:
        cut = next((i for i in range(max_chars, 0, -1) if rest[i].isspace()), None)
        if cut is None:
            pieces.append(rest[:max_chars])
            rest = rest[max_chars:].lstrip()
        else:
            pieces.append(rest[:cut].rstrip())
            rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


class Segmenter(Stage):
    """Add `sentences: list<string>` to a table with `text`, one list per document.

    Rows already quarantined pass through with null sentences. A null or non-string text is
    quarantined as `missing_text` (null sentences); an empty or whitespace-only text gets []
    and is quarantined as `empty_text`. Tallies: sentences, resplit_long (sentences that were
    over max_chars), empty_documents.
    """

    name = "segment"

    def __init__(self, model: str = DEFAULT_SAT, threshold: float = 0.02, max_chars: int = 256,
                 device: str = "cpu", cache_dir: str | Path | None = None,
                 sat_batch_size: int = 32, block_size: int = 512, stride: int = 64) -> None:
        # model: Hub id, local directory or s3:// prefix (downloaded into cache_dir).
        # sat_batch_size: SaT blocks of block_size tokens per forward pass.
        self.threshold = threshold
        self.max_chars = max_chars
        self.sat_batch_size = sat_batch_size
        self.block_size = block_size
        self.stride = stride
        super().__init__()
        self.sat = load_sat(model, device, cache_dir)

    def process(self, table: pa.Table) -> pa.Table:
        n = table.num_rows
        texts = table.column("text").to_pylist() if "text" in table.column_names else [None] * n
        if "quarantine" in table.column_names:
            quarantine = table.column("quarantine").to_pylist()
        else:
            quarantine = [None] * n
        sentences: list[list[str] | None] = [None] * n

        todo = []
        for i, (text, q) in enumerate(zip(texts, quarantine)):
            if q is not None:
                continue
            if not isinstance(text, str):
                quarantine[i] = "missing_text"
                self.counts.quarantine("missing_text")
            elif not text.strip():
                sentences[i] = []
                quarantine[i] = "empty_text"
                self.counts.quarantine("empty_text")
                self.counts.tally["empty_documents"] += 1
            else:
                todo.append(i)

        details = table.column(DETAIL).to_pylist() if DETAIL in table.column_names else [None] * n
        for i, raw in self._split(todo, texts).items():
            if isinstance(raw, Exception):  # a document the model cannot take
                quarantine[i], details[i] = "segmenter_error", f"{type(raw).__name__}: {raw}"
                self.counts.quarantine("segmenter_error")
            else:
                sentences[i] = self._clean(raw)

        table = set_column(table, "quarantine", pa.array(quarantine, pa.string()))
        if any(d is not None for d in details):
            table = set_column(table, DETAIL, pa.array(details, pa.string()))
        table = set_column(table, "sentences", pa.array(sentences, pa.list_(pa.string())))
        return table

    def _split(self, todo: list[int], texts: list[str]) -> dict[int, list[str] | Exception]:
        """SaT's sentences of each document in `todo`, in one call for the whole batch (SaT
        packs many documents into each forward pass). If the batch fails, its documents are
        split one by one, so one poison document is quarantined with the exception rather
        than failing the batch (and, on every re-run, the whole job)."""
        def split(indices: list[int]) -> list[list[str]]:
            return list(self.sat.split([texts[i] for i in indices], threshold=self.threshold,
                                       stride=self.stride, block_size=self.block_size,
                                       batch_size=self.sat_batch_size))
        try:
            return dict(zip(todo, split(todo)))
        except Exception as e:
            log.warning("SaT failed on a batch of %d documents (%s: %s): splitting them one "
                        "by one", len(todo), type(e).__name__, e)
        out: dict[int, list[str] | Exception] = {}
        for i in todo:
            try:
                out[i] = split([i])[0]
            except Exception as e:
                log.error("SaT fails on document %d of the batch: %s: %s", i, type(e).__name__, e)
                out[i] = e
        return out

    def _clean(self, raw: list[str]) -> list[str]:
        out = []
        for sentence in raw:
            sentence = sentence.strip()
            if len(sentence) > self.max_chars:
                self.counts.tally["resplit_long"] += 1
                out.extend(split_long(sentence, self.max_chars))
            elif sentence:
                out.append(sentence)
        self.counts.tally["sentences"] += len(out)
        return out

