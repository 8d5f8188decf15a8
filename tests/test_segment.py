from pathlib import Path

import unicodedata

import pyarrow as pa
import pytest
import regex
import torch

from storage.cache import fetch
from pipelines import segment
from offline_assets.sat import build_tiny_sat
from pipelines.sat_model import load_sat
from pipelines.segment import Segmenter, split_long
import samples as shipped
from pipelines.readers.fineweb import read_fineweb


@pytest.fixture(scope="module")
def samples() -> pa.Table:
    return pa.concat_tables(read_fineweb(s.path, s.config) for s in shipped.FINEWEB)


@pytest.fixture(scope="module")
def tiny_sat(tmp_path_factory, samples) -> Path:
    return build_tiny_sat(tmp_path_factory.mktemp("sat"), samples.column("text").to_pylist())


def _squash(text: str) -> str:
    return "".join(text.split())


# --- re-splitting of long sentences, exact expectations -------------------------------------

@pytest.mark.parametrize("sentence, max_chars, expected", [
    ("abcd", 4, ["abcd"]),
    ("aaaa bbbb cccc", 9, ["aaaa bbbb", "cccc"]),  # whitespace exactly at the limit
    ("aaaa bbbb cccc", 10, ["aaaa bbbb", "cccc"]),
    ("ab   cd ef", 6, ["ab", "cd ef"]),  # runs of whitespace vanish at the cut
    ("abcdefghij", 4, ["abcd", "efgh", "ij"]),  # no whitespace: hard cuts
    ("abcdefgh ij", 4, ["abcd", "efgh", "ij"]),
    ("一二三四五六七八九十", 4, ["一二三四", "五六七八", "九十"]),
])
def test_split_long(sentence, max_chars, expected):
    assert split_long(sentence, max_chars) == expected


def test_split_long_run_on_sentence_at_256():
    ms_run_on = (
        "The spring workshop covers soil preparation and seed selection and watering schedules "
        "and companion planting and the use of mulch and compost and the control of common pests "
        "without chemicals and the harvest and storage of vegetables and the saving of seeds for "
        "the following year and the planning of crop rotation over several seasons"
    )
    assert len(ms_run_on) == 335
    head, tail = split_long(ms_run_on, 256)
    # The last space within 256 characters is the one after "...the saving of" (position 251).
    assert len(head) == 251 and head.endswith("storage of vegetables and the saving of")
    assert tail == ("seeds for the following year and the planning of crop rotation over "
                    "several seasons")
    assert f"{head} {tail}" == ms_run_on


# Real-looking unspaced text (written for these tests), 271, 260 and 379 characters.
ZH = ("长江是中国最长的河流，全长约六千三百公里，发源于青藏高原的唐古拉山脉，自西向东流经青海、西藏、"
      "四川、云南、重庆、湖北、湖南、江西、安徽、江苏和上海等省区市，最后在上海市注入东海。长江流域"
      "面积约一百八十万平方公里，约占全国陆地总面积的五分之一，流域内气候温和，雨量充沛，土地肥沃，"
      "自古以来就是中国重要的农业区和人口密集区；沿江分布着许多历史悠久的城市，例如重庆、武汉、南京"
      "和上海，它们在经济、交通和文化方面都发挥着重要作用。三峡工程是世界上规模最大的水利枢纽工程之一，"
      "具有防洪、发电和航运等综合效益，但也引起了关于生态环境和移民安置的广泛讨论。")
JA = ("富士山は静岡県と山梨県にまたがる活火山で、標高は三千七百七十六メートルと日本で最も高い山である。"
      "古くから信仰の対象とされ、多くの和歌や絵画に描かれてきたため、日本の象徴として国内外に広く知られて"
      "いる。夏の登山シーズンには毎年二十万人以上が山頂を目指し、夜のうちに登り始めて山頂でご来光を"
      "待つ人も少なくない。二千十三年には信仰の対象と芸術の源泉として世界文化遺産に登録されたが、"
      "登山者の増加に伴うごみ問題や混雑、安全対策などの課題も指摘されており、入山料の導入や登山道の整備に"
      "ついて地元の自治体と国が話し合いを続けている。")
TH = ("ประเทศไทยมีประวัติศาสตร์ยาวนานและมีวัฒนธรรมที่หลากหลายจริงๆซึ่งได้รับอิทธิพลจากอินเดียจีนและประเทศ"
      "เพื่อนบ้านอาหารไทยมีชื่อเสียงไปทั่วโลกเพราะมีรสชาติที่ผสมผสานกันระหว่างเปรี้ยวหวานเค็มและเผ็ดอย่าง"
      "ลงตัวนักท่องเที่ยวจำนวนมากเดินทางมาเยี่ยมชมวัดวาอารามพระราชวังและชายหาดที่สวยงามในภาคใต้ทุกปี"
      "ซึ่งทำให้การท่องเที่ยวกลายเป็นรายได้หลักของประเทศและสร้างงานให้กับคนในท้องถิ่นเป็นจำนวนมาก")


def _graphemes(text: str) -> list[str]:
    return regex.findall(r"\X", text)


def _check_pieces(pieces: list[str], text: str) -> None:
    """At most 256 characters, no grapheme cut, nothing lost, no punctuation-only piece."""
    assert all(0 < len(p) <= 256 for p in pieces)
    assert [g for p in pieces for g in _graphemes(p)] == _graphemes(text)
    assert not any(regex.fullmatch(r"[\p{P}\s]+", p) for p in pieces)


def test_split_long_chinese_ends_at_the_last_punctuation_within_the_window():
    """Formerly cut at character 256, inside the word 关于 (关于|生态环境). Now after the last
    ，、；。 in the last 64 characters: 综合效益，| 但也引起了..."""
    pieces = split_long(ZH, 256)
    assert len(ZH) == 271 and pieces == [ZH[:249], ZH[249:]]
    assert pieces[0].endswith("综合效益，") and pieces[1].startswith("但也引起了")
    _check_pieces(pieces, ZH)


def test_split_long_japanese_ends_at_the_last_comma_within_the_window():
    """Formerly 続け|ている (inside the verb); now 指摘されており、| 入山料の..."""
    pieces = split_long(JA, 256)
    assert len(JA) == 260 and pieces == [JA[:223], JA[223:]]
    assert pieces[0].endswith("されており、") and pieces[1].startswith("入山料の導入")
    _check_pieces(pieces, JA)


def test_split_long_unspaced_thai_keeps_vowels_and_tone_marks_with_their_consonant():
    """No spaces or punctuation: the cut falls on a grapheme boundary. Character 256 is the
    vowel mark of วั (in พระราชวัง), which the former hard cut separated from ว."""
    assert unicodedata.category(TH[256]) == "Mn" and TH[255:257] == "วั"
    pieces = split_long(TH, 256)
    assert [len(p) for p in pieces] == [255, 124]
    assert pieces[0].endswith("พระราช") and pieces[1].startswith("วังและ")
    _check_pieces(pieces, TH)


@pytest.mark.parametrize("unit", ["e\u0301", "\u0915\u094d\u0937\u093f",  # é; क्षि
                                  "\U0001F468\u200d\U0001F469\u200d\U0001F467",  # ZWJ family
                                  "\U0001F1EB\U0001F1F7"])  # a flag: two regional indicators
def test_split_long_never_cuts_inside_a_grapheme(unit):
    text = "abc" + unit * 150  # 253 is no multiple of 2, 4 or 5: 256 falls inside a unit
    pieces = split_long(text, 256)
    _check_pieces(pieces, text)
    head = 3 + (253 // len(unit)) * len(unit)  # the last whole unit within 256
    assert head < 256 and pieces[0] == text[:head] and pieces[1].startswith(unit)


def test_split_long_leaves_no_punctuation_only_piece():
    # 256 characters then "。」": the old cut left "。」" as a sentence of its own.
    text = "很" * 256 + "。」"
    assert split_long(text, 256) == ["很" * 255, "很。」"]
    # Whitespace before the marks: they join the piece before them within the limit.
    text = "word " * 50 + "end" + "  !!"
    assert split_long(text, 256) == [text[:253] + " !!"]
    # An ASCII full stop inside a number is no place to end a piece.
    text = "x" * 230 + " pi is 3.14159 and more words follow here"
    assert split_long(text, 256)[0] == "x" * 230 + " pi is 3.14159 and more"


# --- the stage around SaT, with a scripted SaT for exact outputs ----------------------------

class ScriptedSaT:
    """Returns fixed raw segments, and records what the stage asked for."""

    def __init__(self, segments: dict[str, list[str]]):
        self.segments = segments
        self.calls = []

    def split(self, texts, **kwargs):
        self.calls.append((list(texts), kwargs))
        return (self.segments[t] for t in texts)


def test_stage_exact_output(monkeypatch):
    long_part = "word " * 60  # 300 characters: must be re-split at 256
    doc = "First one. Second one.\n\n" + long_part.strip()
    sat = ScriptedSaT({doc: ["First one. ", "Second one.\n", "", long_part.strip()]})
    monkeypatch.setattr(segment, "load_sat", lambda model, device, cache_dir: sat)
    stage = Segmenter(model="scripted", threshold=0.02, max_chars=256)
    table = pa.table({
        "id": ["a", "b", "c", "d", "e"],
        "text": [doc, "   \n ", None, "Not processed.", ""],
        "quarantine": [None, None, None, "bad_source", None],
    })
    out = stage(table)
    first_piece = ("word " * 51).strip()  # 254 characters, the last whole word before 256
    assert out.column("sentences").to_pylist() == [
        ["First one.", "Second one.", first_piece, ("word " * 9).strip()],
        [], None, None, [],
    ]
    assert out.column("quarantine").to_pylist() == [
        None, "empty_text", "missing_text", "bad_source", "empty_text"]
    assert out.column("id").to_pylist() == ["a", "b", "c", "d", "e"]
    c = stage.counts
    assert (c.rows_in, c.rows_out) == (5, 5)
    assert c.tally == {"sentences": 4, "resplit_long": 1, "empty_documents": 2}
    assert c.quarantined == {"empty_text": 2, "missing_text": 1}
    # One batched call with only the document to segment, at the configured threshold and
    # never with max_length (which would make wtpsplit ignore the threshold).
    assert len(sat.calls) == 1
    texts, kwargs = sat.calls[0]
    assert texts == [doc]
    assert kwargs["threshold"] == 0.02 and "max_length" not in kwargs


def test_stage_without_quarantine_column(monkeypatch):
    monkeypatch.setattr(segment, "load_sat",
                        lambda model, device, cache_dir: ScriptedSaT({"A b.": ["A b."]}))
    out = Segmenter(model="scripted")(pa.table({"text": ["A b.", " "]}))
    assert out.column_names == ["text", "quarantine", "sentences"]
    assert out.column("sentences").to_pylist() == [["A b."], []]
    assert out.column("quarantine").to_pylist() == [None, "empty_text"]


# --- the real wtpsplit path, with the tiny random SaT ---------------------------------------

def test_tiny_sat_on_samples(tiny_sat, samples):
    stage = Segmenter(model=str(tiny_sat))
    out = stage(samples)
    texts = out.column("text").to_pylist()
    sentences = out.column("sentences").to_pylist()
    quarantine = out.column("quarantine").to_pylist()
    assert out.num_rows == samples.num_rows == 47
    for text, sents, q in zip(texts, sentences, quarantine):
        if not text.strip():
            assert (sents, q) == ([], "empty_text")
            continue
        assert q is None
        assert sents and all(0 < len(s) <= 256 and s == s.strip() for s in sents)
        assert "".join(_squash(s) for s in sents) == _squash(text)
    c = stage.counts
    assert (c.rows_in, c.rows_out) == (47, 47)
    assert c.tally["sentences"] == sum(len(s) for s in sentences)
    assert c.tally["empty_documents"] == 2 and c.quarantined == {"empty_text": 2}
    assert c.tally["resplit_long"] >= 1
    # The longest sample spans several 512-token SaT blocks.
    assert len(stage.sat.tokenizer(max(texts, key=len))["input_ids"]) > 1024


def test_threshold_reaches_sat(tiny_sat, samples):
    texts = [t for t in samples.column("text").to_pylist() if t.strip()]
    table = pa.table({"text": texts})

    def n_sentences(threshold: float) -> int:
        stage = Segmenter(model=str(tiny_sat), threshold=threshold, max_chars=10_000)
        stage(table)
        return stage.counts.tally["sentences"]

    assert n_sentences(0.01) > n_sentences(0.02) > n_sentences(0.05)
    # At 0.99 the random model never fires: only the input newlines split (wtpsplit default).
    lines = sum(1 for t in texts for line in t.split("\n") if line.strip())
    assert n_sentences(0.99) == lines


def test_build_tiny_sat_is_deterministic(tmp_path, samples):
    texts = samples.column("text").to_pylist()[:10]
    a = build_tiny_sat(tmp_path / "a", texts, seed=0)
    b = build_tiny_sat(tmp_path / "b", texts, seed=0)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_tiny_sat_tokenizer_has_xlmr_layout(tiny_sat):
    sat = load_sat(str(tiny_sat))
    tok = sat.tokenizer
    assert tok.convert_ids_to_tokens([0, 1, 2, 3]) == ["<s>", "<pad>", "</s>", "<unk>"]
    assert tok.mask_token_id == len(tok) - 1
    assert sat.model.config.vocab_size == len(tok)


def test_load_sat_from_s3(tiny_sat, tmp_path, s3_server):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server)
    for f in tiny_sat.iterdir():
        s3.upload_file(str(f), "mimir", f"models/sat-tiny/{f.name}")
    stage = Segmenter(model="s3://mimir/models/sat-tiny", cache_dir=tmp_path / "cache")
    local = fetch("s3://mimir/models/sat-tiny", tmp_path / "cache")  # the cached copy
    assert sorted(p.name for p in local.iterdir()) == sorted(p.name for p in tiny_sat.iterdir())
    text = "How volcanoes form. Magma rises through the crust and erupts as lava."
    expected = load_sat(str(tiny_sat)).split(text, threshold=0.02)
    assert stage.sat.split(text, threshold=0.02) == expected
    # A second load finds every file cached and downloads nothing.
    mtimes = {p.name: p.stat().st_mtime_ns for p in local.iterdir()}
    load_sat("s3://mimir/models/sat-tiny", cache_dir=tmp_path / "cache")
    assert {p.name: p.stat().st_mtime_ns for p in local.iterdir()} == mtimes


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_tiny_sat_on_cuda(tiny_sat, samples):
    stage = Segmenter(model=str(tiny_sat), device="cuda")
    out = stage(samples)
    for text, sents in zip(out.column("text").to_pylist(), out.column("sentences").to_pylist()):
        assert "".join(_squash(s) for s in sents) == _squash(text)
    assert next(stage.sat.model.model.parameters()).dtype == torch.float16
