"""SONAR's text tokenizer: NLLB SentencePiece with fairseq2's id layout, without fairseq2.

fairseq2's NLLB tokenizer loads the SentencePiece model and edits it: it appends one control
piece per language (`__eng_Latn__`, ...), then `<MINED_DATA>`, `<MMT_BT_DATA>`, `<SMT_BT_DATA>`,
then inserts `<pad>` at index 0. So with an NLLB-style model (unk 0, bos 1, eos 2):

    id 0            <pad>
    id 1 + s        SentencePiece piece s      (<unk> 1, <s> 2, </s> 3, then the pieces)
    id 1 + n + k    language k of `langs`      (n = number of SentencePiece pieces)
    then            the three data-source tags

The real `sentencepiece.source.256000.model` gives 1 + 256,000 + 202 + 3 = 256,206 ids. We keep
the SentencePiece model unmodified and shift ids instead; control pieces never come out of
SentencePiece's encoder, so the pieces are the same as with the edited model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import sentencepiece as spm

from mimir_model.sonar.languages import SONAR_LANGUAGES, check_language

# Control symbols fairseq2 appends after the language tokens.
DATA_SOURCE_TAGS = ("<MINED_DATA>", "<MMT_BT_DATA>", "<SMT_BT_DATA>")


class SonarTokenizer:
    def __init__(self, spm_path: str | Path, langs: Sequence[str] = SONAR_LANGUAGES,
                 max_seq_len: int = 512) -> None:
        path = Path(spm_path)
        if not path.is_file():
            raise FileNotFoundError(f"SentencePiece model not found: {path}")
        self.sp = spm.SentencePieceProcessor(model_file=str(path))
        self.langs = tuple(langs)
        self.max_seq_len = max_seq_len
        self._num_pieces = self.sp.get_piece_size()
        self._lang_ids = {lang: 1 + self._num_pieces + k for k, lang in enumerate(self.langs)}
        self._vocab_size = 1 + self._num_pieces + len(self.langs) + len(DATA_SOURCE_TAGS)

    @property
    def pad_idx(self) -> int:
        return 0

    @property
    def unk_idx(self) -> int:
        return self.sp.unk_id() + 1

    @property
    def bos_idx(self) -> int:
        return self.sp.bos_id() + 1

    @property
    def eos_idx(self) -> int:
        return self.sp.eos_id() + 1

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def lang_idx(self, lang: str) -> int:
        if lang not in self._lang_ids:
            check_language(lang)  # a bad code: names it and lists the supported ones
            raise ValueError(f"language {lang!r} is not among this tokenizer's languages")
        return self._lang_ids[lang]

    def encode(self, text: str, lang: str) -> list[int]:
        """[lang token] + pieces + [</s>], cut at max_seq_len (a long input loses its </s>)."""
        ids = [self.lang_idx(lang)] + [i + 1 for i in self.sp.encode(text)] + [self.eos_idx]
        return ids[: self.max_seq_len]

    def is_truncated(self, ids: list[int]) -> bool:
        """Whether `encode` cut this sequence (it no longer ends with </s>)."""
        return ids[-1] != self.eos_idx

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`, as fairseq2's decoder makes it: pad, language and data-source tokens
        are control pieces there, invisible but ending a run of byte pieces (bytes on either
        side of a language token do not merge into one character). Mapping them to </s>, a
        control piece of the unmodified model, gives SentencePiece the same sequence."""
        control = self.sp.eos_id()
        return self.sp.decode([int(i) - 1 if 1 <= int(i) <= self._num_pieces else control
                               for i in ids])
