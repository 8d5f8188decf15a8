"""SONAR languages and tokenizer id layout (fairseq2 NLLB conventions)."""

from __future__ import annotations

import pytest

from mimir_model.sonar.config import SonarConfig
from mimir_model.sonar.languages import SONAR_LANGUAGES, check_language
from mimir_model.sonar.tokenizer import DATA_SOURCE_TAGS, SonarTokenizer
from tests.test_sonar_assets import sonar_assets_fixture  # noqa: F401


def test_language_list():
    assert len(SONAR_LANGUAGES) == 202 == len(set(SONAR_LANGUAGES))
    assert SONAR_LANGUAGES[:3] == ("ace_Arab", "ace_Latn", "acm_Arab")
    assert SONAR_LANGUAGES[-3:] == ("zho_Hans", "zho_Hant", "zul_Latn")
    # NLLB order, not alphabetical: pes_Arab follows fao_Latn.
    assert SONAR_LANGUAGES.index("pes_Arab") == SONAR_LANGUAGES.index("fao_Latn") + 1
    assert check_language("zho_Hant") == "zho_Hant"
    with pytest.raises(ValueError, match=r"'cmn_Hani'.*eng_Latn"):
        check_language("cmn_Hani")


def test_real_vocabulary_size_follows_from_the_layout():
    # sentencepiece.source.256000.model: pad + 256,000 pieces + languages + data-source tags.
    assert 1 + 256_000 + len(SONAR_LANGUAGES) + len(DATA_SOURCE_TAGS) == 256_206
    assert SonarConfig.basic().vocab_size == 256_206


def test_id_layout(sonar_assets):
    tok = SonarTokenizer(sonar_assets["tokenizer"])
    n = tok.sp.get_piece_size()
    assert (tok.pad_idx, tok.unk_idx, tok.bos_idx, tok.eos_idx) == (0, 1, 2, 3)
    assert tok.vocab_size == 1 + n + 202 + 3
    assert tok.lang_idx("ace_Arab") == n + 1
    assert tok.lang_idx("eng_Latn") == n + 1 + SONAR_LANGUAGES.index("eng_Latn")
    assert tok.lang_idx("zul_Latn") == n + 202

    text = "The quick brown fox."
    ids = tok.encode(text, "fra_Latn")
    assert ids[0] == tok.lang_idx("fra_Latn")
    assert ids[1:-1] == [i + 1 for i in tok.sp.encode(text)]
    assert ids[-1] == tok.eos_idx
    assert all(1 <= i <= n for i in ids[1:-1])
    assert tok.decode(ids) == text
    assert tok.encode("", "eng_Latn") == [tok.lang_idx("eng_Latn"), tok.eos_idx]


def test_truncation_drops_the_end_marker(sonar_assets):
    tok = SonarTokenizer(sonar_assets["tokenizer"], max_seq_len=6)
    full = SonarTokenizer(sonar_assets["tokenizer"]).encode("Children learn to read by "
                                                            "reading books.", "eng_Latn")
    cut = tok.encode("Children learn to read by reading books.", "eng_Latn")
    assert len(full) > 6
    assert cut == full[:6] and cut[-1] != tok.eos_idx and tok.is_truncated(cut)
    short = tok.encode("", "eng_Latn")
    assert short[-1] == tok.eos_idx and not tok.is_truncated(short)


def test_decode_skips_special_and_language_tokens(sonar_assets):
    tok = SonarTokenizer(sonar_assets["tokenizer"])
    ids = tok.encode("公园里阳光明媚。", "zho_Hans")
    noisy = [tok.eos_idx, tok.lang_idx("zho_Hans"), tok.pad_idx, tok.bos_idx] + ids[1:]
    noisy += [tok.vocab_size - 1]  # <SMT_BT_DATA>
    assert tok.decode(noisy) == "公园里阳光明媚。"


def test_unknown_language_is_rejected(sonar_assets):
    tok = SonarTokenizer(sonar_assets["tokenizer"])
    with pytest.raises(ValueError, match="'xx_Latn'"):
        tok.encode("hello", "xx_Latn")
    subset = SonarTokenizer(sonar_assets["tokenizer"], langs=["eng_Latn"])
    assert subset.vocab_size == tok.vocab_size - 201
    with pytest.raises(ValueError, match="'fra_Latn' is not among"):
        subset.lang_idx("fra_Latn")
