"""ROUGE-L F1 for every script.

Google's `rouge-score` keeps only [a-z0-9], so any non-Latin text becomes an empty token list
and scores 0 (the LCM reference evaluation has this bug). The standard for XL-Sum is its
authors' scorer (csebuetnlp `multilingual_rouge_scoring`). Two scorers here:

- "xlsum" (evaluation/rouge_xlsum.py) reproduces that scorer exactly, as XL-Sum's evaluation
  runs it (use_stemmer=True, lang = the language): it needs the optional packages of the
  `rouge-xlsum` extra (pyonmttok, jieba, fugashi with unidic-lite, pythainlp, nltk,
  TurkishStemmer).
- "mimir" (default, this module, no extra packages) tokenizes as that scorer does without a
  word segmenter or stemmer, and differs where those are needed:

  same       lowercase (str.lower); NUL, U+FFFD and control characters dropped (the C*
             categories except tab, newline and carriage return, so also the ones that are
             whitespace, e.g. U+0085, \v, \f: the letters around them join); other whitespace
             and punctuation separate tokens, punctuation being ASCII non-alphanumerics and
             every Unicode P* character; inside a word, letters, digits and symbols part as in
             pyonmttok's "aggressive" mode ("5g" -> 5 g, "covid19" -> covid 19, "2024년" ->
             2024 년, "20°c" -> 20 ° c, "€5" -> € 5: a run of letters, a run of digits, each
             symbol alone), combining marks staying with the character before them
             (Devanagari vowel signs, Arabic harakat); ROUGE-L is the LCS of the whole token
             sequences (rouge-score's "rougeL", not the newline-split "rougeLsum");
             P = LCS/len(prediction), R = LCS/len(reference), F1 = 2PR/(P+R), 0 when either
             side is empty; with several references the best F1 counts.
  different  Han, Hiragana, Katakana, Thai, Lao, Khmer and Myanmar characters are each one
             token, in any language (csebuetnlp segments Chinese with jieba, Japanese with
             MeCab, Thai with pythainlp, which keep spaces as tokens there, and splits only Han
             characters elsewhere); no stemming (csebuetnlp stems Hindi, Bengali, Turkish and
             the Snowball languages: English, French, Spanish, German, Russian, Arabic, ...);
             a combining mark that starts a word (after a space or punctuation) is a token of
             its own, where pyonmttok makes it "％0020" + the mark.

Character tokens for Chinese/Japanese/Thai give higher scores than word tokens: compare such
numbers only with numbers scored the same way.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Scorer = Literal["mimir", "xlsum"]

# Scripts written without spaces between words: each character is a token.
_CHAR_TOKEN_RANGES = (
    (0x0E00, 0x0E7F),  # Thai
    (0x0E80, 0x0EFF),  # Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x3040, 0x309F),  # Hiragana
    (0x30A0, 0x30FF),  # Katakana
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9D),  # half-width Katakana
    (0x20000, 0x2FA1F),  # CJK extensions B-F, compatibility supplement
)


def _is_char_token(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CHAR_TOKEN_RANGES)


def _is_punctuation(ch: str) -> bool:
    """ASCII non-alphanumerics and Unicode P* characters (csebuetnlp's rule)."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_dropped(ch: str) -> bool:
    """NUL, U+FFFD and control characters other than tab, newline and carriage return."""
    return ch in "\x00\ufffd" or (unicodedata.category(ch).startswith("C")
                                  and ch not in "\t\n\r")


def words(text: str) -> list[str]:
    """csebuetnlp's cleaning: dropped characters removed, split at whitespace and
    punctuation (which is removed). The input of both scorers' word splitting."""
    out: list[str] = []
    word: list[str] = []
    for ch in text:
        if _is_dropped(ch):
            continue
        if ch.isspace() or _is_punctuation(ch):
            if word:
                out.append("".join(word))
                word = []
        else:
            word.append(ch)
    if word:
        out.append("".join(word))
    return out


def _kind(ch: str) -> str:
    """L (letter), N (number), S (symbol), M (combining mark) or C (a character token)."""
    kind = unicodedata.category(ch)[0]
    return "C" if kind != "M" and _is_char_token(ch) else kind


def _split_word(word: str) -> list[str]:
    """A run of letters, a run of digits, each symbol and each character of an unspaced
    script apart; a combining mark stays with the character before it."""
    tokens: list[str] = []
    last = ""  # the kind of the character that started or last extended tokens[-1]
    for ch in word:
        kind = _kind(ch)
        if kind == "M" and tokens:
            tokens[-1] += ch
            continue
        if tokens and kind == last and kind in "LN":
            tokens[-1] += ch
        else:
            tokens.append(ch)
        last = kind
    return tokens


def tokenize(text: str) -> list[str]:
    """The "mimir" scorer's tokens of text (see the module docstring)."""
    return [t for word in words(text.lower()) for t in _split_word(word)]


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, O(len(a) * len(b)) time, O(len(b)) memory."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


@dataclass(frozen=True)
class RougeL:
    precision: float
    recall: float
    f1: float


def rouge_l(prediction: str, reference: str,
            tokenizer: Callable[[str], list[str]] = tokenize) -> RougeL:
    pred, ref = tokenizer(prediction), tokenizer(reference)
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return RougeL(0.0, 0.0, 0.0)
    p, r = lcs / len(pred), lcs / len(ref)
    return RougeL(p, r, 2 * p * r / (p + r))


def rouge_l_f1(prediction: str, references: list[str],
               tokenizer: Callable[[str], list[str]] = tokenize) -> float:
    """Best ROUGE-L F1 of prediction over its references (as rouge-score's score_multi)."""
    if not references:
        raise ValueError("at least one reference is needed")
    return max(rouge_l(prediction, ref, tokenizer).f1 for ref in references)


def scorer_tokenizer(scorer: Scorer, lang: str) -> Callable[[str], list[str]]:
    """The tokenizer of `scorer` for texts in `lang` (a SONAR code)."""
    if scorer == "xlsum":
        from evaluation.rouge_xlsum import XlsumTokenizer

        return XlsumTokenizer(lang)
    return tokenize
