"""The XL-Sum authors' ROUGE tokenization (csebuetnlp `multilingual_rouge_scoring`), as
XL-Sum's evaluation runs it: `RougeScorer(["rougeL"], use_stemmer=True, lang=<language>)`.

Reproduced step by step with the packages it uses (the `rouge-xlsum` extra of
pyproject.toml): lowercase; drop NUL, U+FFFD and control characters; split at whitespace and
punctuation (removed); then the language's word segmenter on the words joined by spaces
(Chinese: jieba; Japanese: MeCab through fugashi with unidic-lite; Thai: pythainlp's newmm;
those keep spaces as tokens), else pyonmttok's "aggressive" tokenizer with every Han
character apart; then the language's stemmer on tokens longer than 3 characters; empty
tokens dropped. ROUGE-L itself is evaluation/rouge.py's.

Stemmers: Hindi (a suffix list, Ramanathan & Rao 2003, the same as csebuetnlp's), Turkish
(TurkishStemmer), and NLTK's Snowball for arabic, danish, dutch, english, finnish, french,
german, hungarian, italian, norwegian, portuguese, romanian, russian, spanish and swedish,
which leaves NLTK's stopwords unstemmed: that needs NLTK's `stopwords` corpus
(`python -m nltk.downloader stopwords`, or NLTK_DATA naming a folder that has it). Without the
corpus the Snowball stemmer runs without its stopword list, with a warning: stopwords longer
than 3 characters are then stemmed too, unlike csebuetnlp. Not reproduced: Bengali stemming
(csebuetnlp's RafiStemmer package is on no package registry; Bengali is scored unstemmed, with
a warning) and the Burmese segmenter (not a language we train).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from evaluation.rouge import words

log = logging.getLogger(__name__)

INSTALL_HINT = ("scorer 'xlsum' needs the rouge-xlsum extra: pip install 'mimir[rouge-xlsum]' "
                "(pyonmttok, jieba, fugashi, unidic-lite, pythainlp, nltk, TurkishStemmer)")

# SONAR code -> the scorer's language name, where the name selects a segmenter or stemmer;
# any other language gets neither, as in csebuetnlp.
XLSUM_LANGUAGE: dict[str, str] = {
    "arb_Arab": "arabic", "ben_Beng": "bengali", "dan_Latn": "danish", "deu_Latn": "german",
    "eng_Latn": "english", "fin_Latn": "finnish", "fra_Latn": "french", "hin_Deva": "hindi",
    "hun_Latn": "hungarian", "ita_Latn": "italian", "jpn_Jpan": "japanese",
    "nld_Latn": "dutch", "nob_Latn": "norwegian", "por_Latn": "portuguese",
    "ron_Latn": "romanian", "rus_Cyrl": "russian", "spa_Latn": "spanish",
    "swe_Latn": "swedish", "tha_Thai": "thai", "tur_Latn": "turkish",
    "zho_Hans": "chinese", "zho_Hant": "chinese",
}
SNOWBALL = ("arabic", "danish", "dutch", "english", "finnish", "french", "german",
            "hungarian", "italian", "norwegian", "portuguese", "romanian", "russian",
            "spanish", "swedish")

# Hindi suffixes by length; the longest that matches is cut if the token is at least 2 longer.
HINDI_SUFFIXES: dict[int, frozenset[str]] = {
    1: frozenset("ो े ू ु ी ि ा".split()),
    2: frozenset("कर ाओ िए ाई ाए ने नी ना ते ीं ती ता ाँ ां ों ें".split()),
    3: frozenset("ाकर ाइए ाईं ाया ेगी ेगा ोगी ोगे ाने ाना ाते ाती ाता तीं ाओं ाएं ुओं ुएं "
                 "ुआं".split()),
    4: frozenset("ाएगी ाएगा ाओगी ाओगे एंगी ेंगी एंगे ेंगे ूंगी ूंगा ातीं नाओं नाएं ताओं ताएं "
                 "ियाँ ियों ियां".split()),
    5: frozenset("ाएंगी ाएंगे ाऊंगी ाऊंगा ाइयाँ ाइयों ाइयां".split()),
}
# Han characters that pyonmttok's output is split around (BERT's CJK ranges).
_HAN = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def stem_hindi(token: str) -> str:
    for n in (5, 4, 3, 2, 1):
        if len(token) > n + 1 and token[-n:] in HINDI_SUFFIXES[n]:
            return token[:-n]
    return token


def _space_han(text: str) -> str:
    return "".join(f" {ch} " if any(lo <= ord(ch) <= hi for lo, hi in _HAN) else ch
                   for ch in text)


def _segmenter(name: str | None) -> Callable[[str], list[str]] | None:
    if name == "chinese":
        import jieba

        jieba.initialize()
        return lambda text: list(jieba.cut(text))
    if name == "japanese":
        from fugashi import Tagger

        tagger = Tagger("-O wakati -b 50000")  # unidic-lite's dictionary
        return lambda text: tagger.parse(text).split()
    if name == "thai":
        from pythainlp.tokenize import word_tokenize

        return lambda text: word_tokenize(text, engine="newmm")
    return None


def _stemmer(name: str | None) -> Callable[[str], str] | None:
    if name == "hindi":
        return stem_hindi
    if name == "turkish":
        from TurkishStemmer import TurkishStemmer

        return TurkishStemmer().stem
    if name == "bengali":
        log.warning("scorer xlsum: Bengali is scored without stemming (csebuetnlp's "
                    "RafiStemmer is on no package registry)")
        return None
    if name in SNOWBALL:
        from nltk.stem import SnowballStemmer

        try:
            return SnowballStemmer(name, ignore_stopwords=True).stem
        except LookupError:
            log.warning("scorer xlsum: NLTK's stopwords corpus is missing, so %s stopwords "
                        "are stemmed too (csebuetnlp leaves them); install it with `python -m "
                        "nltk.downloader stopwords` or set NLTK_DATA", name)
            return SnowballStemmer(name).stem
    return None


class XlsumTokenizer:
    """text -> tokens as csebuetnlp's scorer makes them for `lang` (a SONAR code)."""

    def __init__(self, lang: str) -> None:
        try:
            import pyonmttok
        except ImportError as e:
            raise ImportError(INSTALL_HINT) from e
        name = XLSUM_LANGUAGE.get(lang)
        try:
            self.segment = _segmenter(name)
            self.stem = _stemmer(name)
        except ImportError as e:
            raise ImportError(f"{INSTALL_HINT}; missing for {lang}: {e.name}") from e
        self.aggressive = pyonmttok.Tokenizer("aggressive")

    def __call__(self, text: str) -> list[str]:
        text = " ".join(words(text.lower()))
        tokens = self.segment(text) if self.segment else []
        if not tokens and text:
            text = " ".join(self.aggressive.tokenize(text)[0])
            tokens = _space_han(text).split()
        if self.stem:
            tokens = [self.stem(t) if len(t) > 3 else t for t in tokens]
        return [t for t in tokens if t]
