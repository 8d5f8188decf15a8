"""Tiny SONAR assets: the shared fixture of the SONAR tests, determinism and NLLB layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import sentencepiece as spm

from offline_assets.sonar import build_tiny_sonar

# Short documents in seven languages and five scripts (Latin, Cyrillic, Arabic, Devanagari, Han).
TEXTS = [
    "The quick brown fox jumps over the lazy dog.\nIt was a sunny day in the park.",
    "Children learn to read by reading books with their parents every evening.",
    "Le renard brun saute par-dessus le chien paresseux.\nIl faisait beau dans le parc.",
    "Les enfants apprennent à lire avec leurs parents chaque soir.",
    "Der schnelle braune Fuchs springt über den faulen Hund.\nEs war ein sonniger Tag.",
    "El rápido zorro marrón salta sobre el perro perezoso. Hacía sol en el parque.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.\nБыл солнечный день.",
    "Дети учатся читать вместе с родителями каждый вечер.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.\nكان يوما مشمسا في الحديقة.",
    "يتعلم الأطفال القراءة مع والديهم كل مساء.",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।\nपार्क में धूप वाला दिन था।",
    "बच्चे हर शाम अपने माता-पिता के साथ पढ़ना सीखते हैं।",
    "敏捷的棕色狐狸跳过了懒狗。\n公园里阳光明媚。",
    "孩子们每天晚上和父母一起学习阅读。",
]


@pytest.fixture(scope="session", name="sonar_assets")
def sonar_assets_fixture(tmp_path_factory) -> dict[str, Path]:
    """Tiny assets from TEXTS; other test files import this function to share the fixture."""
    return build_tiny_sonar(tmp_path_factory.mktemp("sonar"), TEXTS)


def test_build_is_byte_for_byte_deterministic(sonar_assets, tmp_path):
    again = build_tiny_sonar(tmp_path, TEXTS)
    assert set(again) == {"tokenizer", "encoder", "decoder"}
    for name, path in again.items():
        assert path.read_bytes() == sonar_assets[name].read_bytes(), name
    other_seed = build_tiny_sonar(tmp_path / "seed1", TEXTS, seed=1)
    assert other_seed["encoder"].read_bytes() != sonar_assets["encoder"].read_bytes()


def test_sentencepiece_has_nllb_special_ids(sonar_assets):
    sp = spm.SentencePieceProcessor(model_file=str(sonar_assets["tokenizer"]))
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (0, 1, 2, -1)
    assert [sp.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    # Byte fallback: a script absent from the texts (Japanese kana) still has no <unk>.
    assert sp.unk_id() not in sp.encode("ひらがなです")
