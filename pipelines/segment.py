"""Sentence segmentation with SaT, then a hard cap on sentence length.

SaT runs at threshold 0.02 (the paper's setting). We never pass wtpsplit's `max_length`: in
wtpsplit 2.2.x it switches to Viterbi segmentation and ignores the threshold. Instead every
sentence longer than `max_chars` is re-split here (as the LCM reference does), at the best
place within the limit that `split_long` finds.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import regex

from pipelines.stage import DETAIL, Stage, set_column
from pipelines.sat_model import DEFAULT_SAT, load_sat

log = logging.getLogger(__name__)

# A user-perceived character (extended grapheme cluster): a base with its combining marks,
# a Thai consonant with its tone mark, an emoji ZWJ sequence, a flag, \r\n.
_GRAPHEME = regex.compile(r"\X")
# Sentence-like punctuation after which a piece may end: Unicode's Terminal_Punctuation
# (. , ; : ! ? and the CJK 。，、；：！？, Arabic ، ؛ ؟, Devanagari । ...).
_TERMINAL = regex.compile(r"\p{Terminal_Punctuation}")
_CLOSING = regex.compile(r"[\p{Pe}\p{Pf}\"']")  # ) ] 」 ” ' ...: stay with what they close
_PUNCTUATION_ONLY = regex.compile(r"[\p{P}\s]+")
_TRAILING_PUNCTUATION = regex.compile(r"[\p{P}\s]*\Z")


def _cut(text: str, limit: int, window: int) -> int:
    """Where to end the head text[:cut] (1 <= cut <= limit, at a grapheme boundary): after the
    last sentence-like punctuation (and the closing marks that follow it) within the last
    `window` characters of the limit; else at the last whitespace; else at the last grapheme
    boundary. An ASCII mark counts only before whitespace ("3.14", "a,b" are no places)."""
    clusters, spaces = [], []  # (start, end) of the graphemes within the limit; whitespace
    for m in _GRAPHEME.finditer(text):
        if 0 < m.start() <= limit and text[m.start()].isspace():
            spaces.append(m.start())  # a cut before it leaves the head within the limit
        if m.end() > limit:
            break
        clusters.append(m.span())
    if not clusters:  # a single grapheme longer than the limit: nothing better than a hard cut
        return limit
    best = None
    for i, (start, end) in enumerate(clusters):
        if end < limit - window or not _TERMINAL.match(text, start):
            continue
        j = i
        while j + 1 < len(clusters) and _CLOSING.fullmatch(text, *clusters[j + 1]):
            j += 1
        cut = clusters[j][1]
        if text[start].isascii() and cut < len(text) and not text[cut].isspace():
            continue
        best = cut
    if best is not None:
        return best
    return spaces[-1] if spaces else clusters[-1][1]


def split_long(sentence: str, max_chars: int, window: int = 64) -> list[str]:
    """Cut a stripped sentence into stripped pieces of at most max_chars characters.

    Each cut ends a piece after the last sentence-like punctuation in its last `window`
    characters, else at its last whitespace, else at its last grapheme boundary (unspaced
    Chinese, Japanese or Thai without punctuation there, a long URL): never inside a grapheme,
    so a combining mark, a Thai tone mark or an emoji ZWJ sequence stays whole. No piece is
    made only of punctuation: trailing punctuation that would be left alone joins the piece
    before it when that stays within max_chars, else the cut moves back so that it has text
    with it. (Only a run of more than max_chars punctuation characters cannot be helped.)
    """
    pieces = []
    rest = sentence
    while len(rest) > max_chars:
        cut = _cut(rest, max_chars, window)
        head, tail = rest[:cut].rstrip(), rest[cut:].lstrip()
        if tail and len(tail) <= max_chars and _PUNCTUATION_ONLY.fullmatch(tail):
            joined = head + (" " if len(head) + len(tail) < len(rest) else "") + tail
            if len(joined) <= max_chars:
                head, tail = joined, ""
            else:
                text_end = _TRAILING_PUNCTUATION.search(rest).start()
                if text_end > 1:
                    cut = _cut(rest, min(max_chars, text_end - 1), window)
                    head, tail = rest[:cut].rstrip(), rest[cut:].lstrip()
        pieces.append(head)
        rest = tail
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

