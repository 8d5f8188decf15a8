"""Language codes of the pre-training sources, and the Chinese relabel stage.

FineWeb-2 names its configs `{iso3}_{Script}` after GlotLID, which mostly agrees with the
NLLB-200 codes SONAR uses; the table below spells out every config we read, including the few
where the codes differ (Estonian `ekk_Latn` -> `est_Latn`, Persian `fas_Arab` -> `pes_Arab`).
FineWeb-Edu is English only and is listed under `eng_Latn`. tests/test_langs.py checks every
FineWeb-2 name here against the dataset's real list of configs (tests/data/fineweb2_configs.txt).

The paper trains on English plus 45 FineWeb-2 languages but its language table (Table 4) is not
in our copy. This table is our reconstruction: the 39 languages of the paper's WikiMatrix pilot
(Table 9), with Chinese as `cmn_Hani`, plus Latvian, Norwegian Bokmål, Thai, Bengali, Urdu and
Swahili. Adding a language is one line.
"""

from __future__ import annotations

import pyarrow as pa
from hanzidentifier import BOTH, MIXED, SIMPLIFIED, TRADITIONAL, UNKNOWN, identify
from hanzidentifier.helpers import SIMPLIFIED_CHARACTERS, TRADITIONAL_CHARACTERS

from mimir_model.sonar.languages import SONAR_LANGUAGES
from pipelines.stage import Stage

# FineWeb-2 labels all Chinese cmn_Hani; SONAR needs zho_Hans or zho_Hant, which ChineseRelabel
# decides per document. Until then rows carry this placeholder code.
CHINESE_UNRESOLVED = "cmn_Hani"

# Source config -> SONAR language code.
CONFIG_TO_SONAR: dict[str, str] = {
    "eng_Latn": "eng_Latn",  # FineWeb-Edu
    "als_Latn": "als_Latn",
    "arb_Arab": "arb_Arab",
    "ben_Beng": "ben_Beng",
    "bul_Cyrl": "bul_Cyrl",
    "cat_Latn": "cat_Latn",
    "ces_Latn": "ces_Latn",
    "cmn_Hani": CHINESE_UNRESOLVED,
    "dan_Latn": "dan_Latn",
    "deu_Latn": "deu_Latn",
    "ekk_Latn": "est_Latn",
    "ell_Grek": "ell_Grek",
    # GlotLID labels Persian with the macrolanguage code fas; NLLB's is pes (Western Persian).
    "fas_Arab": "pes_Arab",
    "fin_Latn": "fin_Latn",
    "fra_Latn": "fra_Latn",
    "glg_Latn": "glg_Latn",
    "heb_Hebr": "heb_Hebr",
    "hin_Deva": "hin_Deva",
    "hrv_Latn": "hrv_Latn",
    "hun_Latn": "hun_Latn",
    "ind_Latn": "ind_Latn",
    "ita_Latn": "ita_Latn",
    "jpn_Jpan": "jpn_Jpan",
    "kat_Geor": "kat_Geor",
    "kor_Hang": "kor_Hang",
    "lit_Latn": "lit_Latn",
    "lvs_Latn": "lvs_Latn",
    "mar_Deva": "mar_Deva",
    "mkd_Cyrl": "mkd_Cyrl",
    "nld_Latn": "nld_Latn",
    "nob_Latn": "nob_Latn",
    "pol_Latn": "pol_Latn",
    "por_Latn": "por_Latn",
    "ron_Latn": "ron_Latn",
    "rus_Cyrl": "rus_Cyrl",
    "slk_Latn": "slk_Latn",
    "slv_Latn": "slv_Latn",
    "spa_Latn": "spa_Latn",
    "srp_Cyrl": "srp_Cyrl",
    "swe_Latn": "swe_Latn",
    "swh_Latn": "swh_Latn",
    "tha_Thai": "tha_Thai",
    "tur_Latn": "tur_Latn",
    "ukr_Cyrl": "ukr_Cyrl",
    "urd_Arab": "urd_Arab",
    "vie_Latn": "vie_Latn",
}

# Fail at import, not deep inside a job, if the table names a code SONAR does not know.
_unknown = sorted(set(CONFIG_TO_SONAR.values()) - set(SONAR_LANGUAGES) - {CHINESE_UNRESOLVED})
if _unknown:
    raise ValueError(f"CONFIG_TO_SONAR names codes that SONAR does not support: {_unknown}")


# Two-letter (ISO 639-1) codes as oasst2 (`lang`, e.g. "pt-BR"), Bactrian-X (configs) and
# MLQA (configs) name languages, for the languages we train on. Chinese is decided per
# conversation by ChineseRelabel, like FineWeb-2's cmn_Hani.
ISO1_TO_SONAR: dict[str, str] = {
    "ar": "arb_Arab", "bg": "bul_Cyrl", "bn": "ben_Beng", "ca": "cat_Latn", "cs": "ces_Latn",
    "da": "dan_Latn", "de": "deu_Latn", "el": "ell_Grek", "en": "eng_Latn", "es": "spa_Latn",
    "et": "est_Latn", "fa": "pes_Arab", "fi": "fin_Latn", "fr": "fra_Latn", "gl": "glg_Latn",
    "he": "heb_Hebr", "hi": "hin_Deva", "hr": "hrv_Latn", "hu": "hun_Latn", "id": "ind_Latn",
    "it": "ita_Latn", "ja": "jpn_Jpan", "ka": "kat_Geor", "ko": "kor_Hang", "lt": "lit_Latn",
    "lv": "lvs_Latn", "mk": "mkd_Cyrl", "mr": "mar_Deva", "nb": "nob_Latn", "nl": "nld_Latn",
    "no": "nob_Latn", "pl": "pol_Latn", "pt": "por_Latn", "ro": "ron_Latn", "ru": "rus_Cyrl",
    "sk": "slk_Latn", "sl": "slv_Latn", "sq": "als_Latn", "sr": "srp_Cyrl", "sv": "swe_Latn",
    "sw": "swh_Latn", "th": "tha_Thai", "tr": "tur_Latn", "uk": "ukr_Cyrl", "ur": "urd_Arab",
    "vi": "vie_Latn", "zh": CHINESE_UNRESOLVED,
}

# Three-letter (ISO 639-3) codes as Aya names them (`language_code`): the codes of the config
# table plus the other codes of the same languages (macrolanguage or individual: fas / pes).
ISO3_TO_SONAR: dict[str, str] = {
    **{config.split("_")[0]: code for config, code in CONFIG_TO_SONAR.items()},
    "ara": "arb_Arab", "est": "est_Latn", "pes": "pes_Arab", "lav": "lvs_Latn",
    "nor": "nob_Latn", "sqi": "als_Latn", "swa": "swh_Latn", "zho": CHINESE_UNRESOLVED,
}

# XL-Sum configs (language names) of the languages we train on.
XLSUM_TO_SONAR: dict[str, str] = {
    "arabic": "arb_Arab", "bengali": "ben_Beng", "chinese_simplified": "zho_Hans",
    "chinese_traditional": "zho_Hant", "english": "eng_Latn", "french": "fra_Latn",
    "hindi": "hin_Deva", "indonesian": "ind_Latn", "japanese": "jpn_Jpan", "korean": "kor_Hang",
    "marathi": "mar_Deva", "persian": "pes_Arab", "portuguese": "por_Latn", "russian": "rus_Cyrl",
    "serbian_cyrillic": "srp_Cyrl", "spanish": "spa_Latn", "swahili": "swh_Latn",
    "thai": "tha_Thai", "turkish": "tur_Latn", "ukrainian": "ukr_Cyrl", "urdu": "urd_Arab",
    "vietnamese": "vie_Latn",
}


for _table in (ISO1_TO_SONAR, ISO3_TO_SONAR, XLSUM_TO_SONAR):
    _unknown = sorted(set(_table.values()) - set(SONAR_LANGUAGES) - {CHINESE_UNRESOLVED})
    if _unknown:
        raise ValueError(f"a language table names codes that SONAR does not support: {_unknown}")


def sonar_code_for_tag(tag: str | None) -> str | None:
    """SONAR code of an ISO 639-1 or 639-3 tag with an optional region ("pt-BR", "eng"), or
    None when we do not train on that language (the row is then quarantined as unknown_lang)."""
    if not isinstance(tag, str):
        return None
    base = tag.replace("_", "-").split("-")[0].lower()
    return ISO1_TO_SONAR.get(base) or ISO3_TO_SONAR.get(base)


def sonar_code_for_config(config: str) -> str:
    """The SONAR code of a source config; cmn_Hani stays cmn_Hani for ChineseRelabel."""
    try:
        return CONFIG_TO_SONAR[config]
    except KeyError:
        supported = ", ".join(sorted(CONFIG_TO_SONAR))
        raise ValueError(f"unknown language config {config!r}; supported: {supported}") from None


# Characters that exist in only one of the two systems: the evidence for BOTH/MIXED documents.
_SIMPLIFIED_ONLY = frozenset(SIMPLIFIED_CHARACTERS - TRADITIONAL_CHARACTERS)
_TRADITIONAL_ONLY = frozenset(TRADITIONAL_CHARACTERS - SIMPLIFIED_CHARACTERS)


def chinese_script(text: str) -> tuple[str, str]:
    """(SONAR code, rule) for one Chinese document.

    hanzidentifier's SIMPLIFIED and TRADITIONAL are taken as they are. Otherwise:
    - MIXED (both simplified-only and traditional-only characters): count the occurrences of
      each kind; the majority wins, a tie goes to zho_Hans.
    - BOTH (only characters shared by the two systems) and UNKNOWN (no Chinese characters at
      all): there is no evidence either way, so zho_Hans, by far the larger part of the web.
    """
    kind = identify(text)
    if kind == SIMPLIFIED:
        return "zho_Hans", "simplified"
    if kind == TRADITIONAL:
        return "zho_Hant", "traditional"
    if kind == MIXED:
        simplified = sum(ch in _SIMPLIFIED_ONLY for ch in text)
        traditional = sum(ch in _TRADITIONAL_ONLY for ch in text)
        return ("zho_Hant" if traditional > simplified else "zho_Hans"), "rule_mixed"
    assert kind in (BOTH, UNKNOWN), kind
    return "zho_Hans", "rule_both" if kind == BOTH else "rule_unknown"


class ChineseRelabel(Stage):
    """Replace lang cmn_Hani by zho_Hans or zho_Hant, per document (`column` "text") or per
    conversation (`column` "turns": the rule runs on all turns together, so one conversation
    never mixes two codes).

    Tallies each outcome (`zho_Hans`, `zho_Hant`) and how it was decided (`simplified`,
    `traditional`, `rule_mixed`, `rule_both`, `rule_unknown`). Other languages, and rows
    already quarantined, pass through unchanged. A cmn_Hani row whose text is null is left
    as it is for the segmenter to quarantine.
    """

    name = "chinese_relabel"

    def __init__(self, column: str = "text") -> None:
        self.column = column
        super().__init__()

    def process(self, table: pa.Table) -> pa.Table:
        texts = table.column(self.column).to_pylist()
        langs = table.column("lang").to_pylist()
        if "quarantine" in table.column_names:
            quarantine = table.column("quarantine").to_pylist()
        else:
            quarantine = [None] * table.num_rows
        out = []
        for text, lang, q in zip(texts, langs, quarantine):
            if isinstance(text, list) and all(isinstance(t, str) for t in text):
                text = "\n".join(text)
            if lang != CHINESE_UNRESOLVED or q is not None or not isinstance(text, str):
                out.append(lang)
                continue
            code, rule = chinese_script(text)
            self.counts.tally[code] += 1
            self.counts.tally[rule] += 1
            out.append(code)
        index = table.column_names.index("lang")
        table = table.set_column(index, "lang", pa.array(out, pa.string()))
        return table
