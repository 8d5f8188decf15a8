"""ROUGE-L with tokenization for every script, against hand-computed values."""

import pytest

from evaluation.rouge import lcs_length, rouge_l, rouge_l_f1, tokenize


def test_tokenize_latin_lowercases_and_splits_punctuation():
    assert tokenize("The cat, sat-on the MAT!") == ["the", "cat", "sat", "on", "the", "mat"]
    assert tokenize("$5.00 costs 5€") == ["5", "00", "costs", "5€"]  # € is a symbol, not P*
    assert tokenize("  ...  ") == []


def test_tokenize_keeps_combining_marks_inside_words():
    # Devanagari virama (Mn) and vowel sign (Mc); the danda is punctuation.
    assert tokenize("हिन्दी भाषा सुंदर है।") == ["हिन्दी", "भाषा", "सुंदर", "है"]
    # Arabic harakat stay on their letters.
    assert tokenize("كَتَبَ الوَلَدُ.") == ["كَتَبَ", "الوَلَدُ"]
    # Zero-width non-joiner (a format character) inside a Persian word is dropped, as
    # csebuetnlp does.
    assert tokenize("می\u200cخواهم") == ["میخواهم"]


def test_tokenize_character_scripts():
    assert tokenize("我爱北京。") == ["我", "爱", "北", "京"]
    assert tokenize("これはペンです") == ["こ", "れ", "は", "ペ", "ン", "で", "す"]
    # A Thai tone mark joins the consonant before it.
    assert tokenize("ง่าย") == ["ง\u0e48", "า", "ย"]
    assert tokenize("Hello 你好 world") == ["hello", "你", "好", "world"]


def test_lcs_length():
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4
    assert lcs_length([], ["a"]) == 0


def test_rouge_l_english():
    s = rouge_l("the cat is on the mat", "The cat sat on the mat.")
    assert s.precision == pytest.approx(5 / 6) and s.recall == pytest.approx(5 / 6)
    assert s.f1 == pytest.approx(5 / 6)


def test_rouge_l_chinese_scores_characters():
    # pred 4 characters, reference 8; LCS 我爱北京 = 4: P 1, R 1/2, F 2/3.
    s = rouge_l("我爱北京", "我爱上海，也爱北京。")
    assert (s.precision, s.recall) == (1.0, 0.5)
    assert s.f1 == pytest.approx(2 / 3)


def test_rouge_l_arabic_and_hindi():
    # 4 words each, 3 in common in order: F = 3/4.
    assert rouge_l("ذهب الولد إلى المدرسة", "ذهب الولد إلى البيت").f1 == pytest.approx(0.75)
    # pred 3 words, reference 4, LCS 3: P 1, R 3/4, F 6/7.
    assert rouge_l("राम घर गया", "राम आज घर गया।").f1 == pytest.approx(6 / 7)


def test_rouge_l_empty_and_multi_reference():
    assert rouge_l("", "something").f1 == 0.0
    assert rouge_l("!!!", "something").f1 == 0.0
    assert rouge_l_f1("Paris", ["PARIS", "in Paris, France"]) == 1.0
    # Best of the references: "in paris france" gives P 1, R 1/3, F 1/2.
    assert rouge_l_f1("paris", ["london", "in Paris, France"]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        rouge_l_f1("x", [])
