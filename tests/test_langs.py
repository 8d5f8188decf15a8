from pathlib import Path

import pyarrow as pa
import pytest
from hanzidentifier import BOTH, MIXED, SIMPLIFIED, TRADITIONAL, UNKNOWN, identify

from mimir_model.sonar.languages import SONAR_LANGUAGES
from pipelines.langs import (
    CHINESE_UNRESOLVED,
    CONFIG_TO_SONAR,
    ChineseRelabel,
    chinese_script,
    sonar_code_for_config,
)
import samples
from pipelines.readers.fineweb import dataset_for_config, read_fineweb


def test_config_table_covers_46_languages_all_known_to_sonar():
    assert len(CONFIG_TO_SONAR) == 46
    for config, code in CONFIG_TO_SONAR.items():
        assert code in SONAR_LANGUAGES or (config, code) == ("cmn_Hani", CHINESE_UNRESOLVED)
    # Every shipped sample config is in the table.
    assert {s.config for s in samples.FINEWEB} <= set(CONFIG_TO_SONAR)


def test_fineweb2_configs_of_the_table_exist():
    """Every FineWeb-2 config of the table is one of the dataset's real configs (the shipped
    list says where it comes from); eng_Latn is FineWeb-Edu's."""
    shipped = Path(__file__).parent / "data" / "fineweb2_configs.txt"
    real = {line for line in shipped.read_text().splitlines() if not line.startswith("#")}
    assert len(real) == 3783 and "fra_Latn" in real and "fra_Latn_removed" in real
    fineweb2 = {c for c in CONFIG_TO_SONAR if dataset_for_config(c) == "fineweb-2"}
    assert fineweb2 == set(CONFIG_TO_SONAR) - {"eng_Latn"}
    assert sorted(fineweb2 - real) == []
    assert sonar_code_for_config("fas_Arab") == "pes_Arab"  # Persian: GlotLID fas, NLLB pes


def test_sonar_code_for_config():
    assert sonar_code_for_config("eng_Latn") == "eng_Latn"
    assert sonar_code_for_config("fra_Latn") == "fra_Latn"
    assert sonar_code_for_config("ekk_Latn") == "est_Latn"  # GlotLID vs NLLB code
    assert sonar_code_for_config("cmn_Hani") == "cmn_Hani"  # decided later per document


def test_unknown_config_names_code_and_supported_list():
    with pytest.raises(ValueError, match="xyz_Latn") as err:
        sonar_code_for_config("xyz_Latn")
    assert "fra_Latn" in str(err.value) and "cmn_Hani" in str(err.value)


@pytest.mark.parametrize("text, kind, expected", [
    ("这是简体中文。", SIMPLIFIED, ("zho_Hans", "simplified")),
    ("這是繁體中文。", TRADITIONAL, ("zho_Hant", "traditional")),
    ("明天", BOTH, ("zho_Hans", "rule_both")),
    ("Hello!", UNKNOWN, ("zho_Hans", "rule_unknown")),
    ("", UNKNOWN, ("zho_Hans", "rule_unknown")),
    # 學 習 語 這: traditional-only; 样: simplified-only -> 4 to 1.
    ("學習語言這样", MIXED, ("zho_Hant", "rule_mixed")),
    # 这 们 样: simplified-only; 這: traditional-only -> 3 to 1.
    ("这们样這", MIXED, ("zho_Hans", "rule_mixed")),
    # One of each: a tie goes to zho_Hans.
    ("这這", MIXED, ("zho_Hans", "rule_mixed")),
    # Occurrences count, not distinct characters: 這 three times beats 这 and 们.
    ("這這這这们", MIXED, ("zho_Hant", "rule_mixed")),
])
def test_chinese_script_rule(text, kind, expected):
    assert identify(text) == kind
    assert chinese_script(text) == expected


def test_relabel_shipped_chinese_sample():
    table = read_fineweb(samples.fineweb("cmn_Hani"), "cmn_Hani")
    stage = ChineseRelabel()
    out = stage(table)
    # make_samples.py: 3 simplified, 3 traditional, one BOTH, one MIXED (mostly traditional).
    assert out.column("lang").to_pylist() == ["zho_Hans"] * 3 + ["zho_Hant"] * 3 + [
        "zho_Hans", "zho_Hant"]
    assert stage.counts.tally == {"zho_Hans": 4, "zho_Hant": 4, "simplified": 3,
                                  "traditional": 3, "rule_both": 1, "rule_mixed": 1}
    assert (stage.counts.rows_in, stage.counts.rows_out) == (8, 8)
    assert out.column("text").equals(table.column("text"))
    assert out.column_names == table.column_names


def test_relabel_leaves_other_languages_and_quarantined_rows():
    table = pa.table({
        "text": ["這是繁體中文。", "这是简体中文。", "Bonjour.", None],
        "lang": ["cmn_Hani", "cmn_Hani", "fra_Latn", "cmn_Hani"],
        "quarantine": [None, "too_short", None, None],
    })
    stage = ChineseRelabel()
    out = stage(table)
    assert out.column("lang").to_pylist() == ["zho_Hant", "cmn_Hani", "fra_Latn", "cmn_Hani"]
    assert out.column("quarantine").to_pylist() == [None, "too_short", None, None]
    assert stage.counts.tally == {"zho_Hant": 1, "traditional": 1}
    assert not stage.counts.quarantined
    assert (stage.counts.rows_in, stage.counts.rows_out) == (4, 4)


def test_instruction_language_tags():
    from pipelines.langs import ISO1_TO_SONAR, XLSUM_TO_SONAR, sonar_code_for_tag

    assert sonar_code_for_tag("pt-BR") == "por_Latn"  # oasst2 style
    assert sonar_code_for_tag("en") == "eng_Latn"
    assert sonar_code_for_tag("eng") == "eng_Latn"  # Aya style
    assert sonar_code_for_tag("ekk") == sonar_code_for_tag("est") == "est_Latn"
    assert sonar_code_for_tag("zh") == sonar_code_for_tag("zho") == CHINESE_UNRESOLVED
    assert sonar_code_for_tag("yor") is None and sonar_code_for_tag(None) is None
    assert XLSUM_TO_SONAR["chinese_traditional"] == "zho_Hant"
    # Every two-letter tag names a language of the pre-training table.
    assert set(ISO1_TO_SONAR.values()) <= set(CONFIG_TO_SONAR.values())
