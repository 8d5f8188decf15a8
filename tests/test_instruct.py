import re

import pyarrow as pa
import pytest

from mimir_model.sonar.languages import SONAR_LANGUAGES
from pipelines import shards
from pipelines.counts import StageCounts
from pipelines.instruct import (
    END_OF_TEXT,
    INSTANCE_SCHEMA,
    MIXTURES,
    TURN_MARKERS,
    FormatInstances,
    MixtureFilter,
    SegmentTurns,
)
from pipelines.langs import CONFIG_TO_SONAR, ChineseRelabel
from pipelines.readers.schemas import CONVERSATION_SCHEMA
from pipelines.validate import ValidateText


class SplitOnStops:
    """A stand-in segmenter with a rule we can compute by hand: split after . ? !"""

    def __init__(self) -> None:
        self.counts = StageCounts("segment")

    def __call__(self, table: pa.Table) -> pa.Table:
        out, quarantine = [], []
        for text in table.column("text").to_pylist():
            sentences = [s for s in re.split(r"(?<=[.?!])\s+", text.strip()) if s]
            out.append(sentences)
            quarantine.append(None if sentences else "empty_text")
            self.counts.tally["sentences"] += len(sentences)
        return pa.table({"text": table["text"], "quarantine": pa.array(quarantine, pa.string()),
                         "sentences": pa.array(out, pa.list_(pa.string()))})


def conversations(rows: list[tuple]) -> pa.Table:
    """rows: (id, source, lang, turns, quarantine)."""
    return pa.Table.from_pylist(
        [dict(zip(CONVERSATION_SCHEMA.names, r)) for r in rows], schema=CONVERSATION_SCHEMA)


def test_turn_markers_cover_every_training_language():
    expected = (set(CONFIG_TO_SONAR.values()) - {"cmn_Hani"}) | {"zho_Hans", "zho_Hant"}
    assert set(TURN_MARKERS) == expected
    assert len(TURN_MARKERS) == 47
    assert TURN_MARKERS["eng_Latn"] == ("User turn.", "Assistant turn.")
    for lang, (user, assistant) in TURN_MARKERS.items():
        assert lang in SONAR_LANGUAGES
        assert user != assistant and user.strip() == user and assistant.strip() == assistant
        if lang != "tha_Thai":  # Thai writes no sentence-final stop
            assert user[-1] in ".。।۔" and assistant[-1] in ".。।۔", lang
    # One marker per language and no marker shared by two languages' user and assistant roles.
    users = [u for u, _ in TURN_MARKERS.values()]
    assistants = [a for _, a in TURN_MARKERS.values()]
    assert not set(users) & set(assistants)


def test_one_instance_per_assistant_turn_with_earlier_turns_as_context():
    table = conversations([
        ("c1", "oasst2", "fra_Latn",
         ["Bonjour. Ça va ?", "Oui, merci.", "Et toi ?", "Très bien. Merci !"], None),
        ("c2", "aya", "eng_Latn", ["Hi?", "Hello."], None),
    ])
    segmented = SegmentTurns(segmenter=SplitOnStops())(table)
    assert segmented.column("turn_sentences").to_pylist()[0] == [
        ["Bonjour.", "Ça va ?"], ["Oui, merci."], ["Et toi ?"], ["Très bien.", "Merci !"]]
    stage = FormatInstances()
    out = stage(segmented)
    assert out.schema == INSTANCE_SCHEMA
    u, a = TURN_MARKERS["fra_Latn"]
    assert out.to_pylist() == [
        {"id": "c1#0", "source": "oasst2", "lang": "fra_Latn",
         "source_sentences": [u, "Bonjour.", "Ça va ?", a],
         "target_sentences": ["Oui, merci.", END_OF_TEXT], "quarantine": None},
        {"id": "c1#1", "source": "oasst2", "lang": "fra_Latn",
         "source_sentences": [u, "Bonjour.", "Ça va ?", a, "Oui, merci.", u, "Et toi ?", a],
         "target_sentences": ["Très bien.", "Merci !", END_OF_TEXT], "quarantine": None},
        {"id": "c2#0", "source": "aya", "lang": "eng_Latn",
         "source_sentences": ["User turn.", "Hi?", "Assistant turn."],
         "target_sentences": ["Hello.", "End of text."], "quarantine": None},
    ]
    assert stage.counts.tally == {"conversations": 2, "instances": 3,
                                  "sentences": (4 + 2) + (8 + 3) + (3 + 2)}
    assert (stage.counts.rows_in, stage.counts.rows_out) == (2, 3)


def test_quarantined_and_unsupported_conversations_stay_as_one_row():
    table = conversations([
        ("bad", "aya", None, None, "unknown_lang"),
        ("empty", "aya", "eng_Latn", ["Hi.", "   "], None),
        ("yor", "aya", "yor_Latn", ["Bawo ni?", "Dada ni."], None),
        ("ok", "aya", "eng_Latn", ["Hi.", "Hello."], None),
    ])
    seg = SegmentTurns(segmenter=SplitOnStops())
    segmented = seg(table)
    assert segmented.column("quarantine").to_pylist() == ["unknown_lang", "empty_text", None,
                                                          None]
    assert seg.counts.quarantined == {"empty_text": 1}
    assert seg.counts.tally["sentences"] == 1 + 2 + 2  # the empty turn has none
    fmt = FormatInstances()
    out = fmt(segmented)
    assert out.column("id").to_pylist() == ["bad", "empty", "yor", "ok#0"]
    assert out.column("quarantine").to_pylist() == ["unknown_lang", "empty_text",
                                                    "unsupported_lang", None]
    assert out.column("source_sentences").to_pylist()[:3] == [None] * 3
    assert fmt.counts.quarantined == {"unsupported_lang": 1}


def test_segment_turns_with_the_tiny_sat(tiny_assets):
    table = conversations([
        ("c", "xlsum", "eng_Latn", ["The sky is blue. Why is that so?",
                                    "Blue light scatters more than red light."], None)])
    stage = SegmentTurns(model=str(tiny_assets / "sat"))
    out = stage(table).column("turn_sentences").to_pylist()[0]
    assert len(out) == 2
    for turn, sentences in zip(table.column("turns").to_pylist()[0], out):
        assert sentences and "".join(sentences).replace(" ", "") == turn.replace(" ", "")
    assert stage.counts.tally["sentences"] == sum(len(s) for s in out)


@pytest.mark.parametrize("name, kept, tally", [
    ("multilingual_mlqa_xlsum", ["a", "b", "c", "d", "q"], {}),
    ("multilingual", ["a", "b", "q"], {"excluded_eval_train": 2}),
    ("english_mlqa_xlsum", ["a", "c", "q"], {"excluded_non_english": 2}),
    ("english", ["a", "q"], {"excluded_eval_train": 2, "excluded_non_english": 1}),
])
def test_the_four_mixtures(name, kept, tally):
    table = conversations([
        ("a", "oasst2", "eng_Latn", ["x", "y"], None),
        ("b", "bactrian-x", "fra_Latn", ["x", "y"], None),
        ("c", "mlqa", "eng_Latn", ["x", "y"], None),
        ("d", "xlsum", "fra_Latn", ["x", "y"], None),
        ("q", "aya", "yor_Latn", None, "unknown_lang"),  # quarantine always passes
    ])
    stage = MixtureFilter(name)
    assert stage(table).column("id").to_pylist() == kept
    assert stage.counts.tally == tally
    assert stage.counts.rows_in == 5 and stage.counts.rows_out == len(kept)
    assert len(MIXTURES) == 4
    with pytest.raises(ValueError, match="bilingual"):
        MixtureFilter("bilingual")


def test_validate_turns_and_relabel_conversations():
    table = conversations([
        ("ctl", "aya", "eng_Latn", ["Hi\x00", "Hello."], None),
        ("long", "aya", "eng_Latn", ["Hi.", "x" * 101], None),
        ("odd", "aya", "eng_Latn", ["Hi.", "Hello.", "Bye?"], None),
        ("zh", "bactrian-x", "cmn_Hani", ["這是什麼？", "這是繁體中文。"], None),
        ("ok", "aya", "eng_Latn", ["Hi.", "Hello.\tWelcome.\n"], None),
    ])
    validate = ValidateText(column="turns", max_chars=100)
    out = validate(table)
    assert out.column("quarantine").to_pylist() == ["control_chars", "too_long",
                                                    "unanswered_turn", None, None]
    relabel = ChineseRelabel(column="turns")
    assert relabel(out).column("lang").to_pylist()[3] == "zho_Hant"
    assert relabel.counts.tally == {"zho_Hant": 1, "traditional": 1}


def test_writer_commit_and_read_back(tmp_path):
    table = FormatInstances()(SegmentTurns(segmenter=SplitOnStops())(conversations([
        ("a", "aya", "eng_Latn", ["Hi.", "Hello."], None),
        ("b", "aya", None, None, "unknown_lang"),
    ])))
    writer = shards.ShardWriter(str(tmp_path), "run-1", columns=None, quarantine_columns=None)
    files = writer(table).to_pylist()
    assert sorted(f["kind"] for f in files) == ["data", "quarantine"]
    assert writer.counts.quarantined == {"unknown_lang": 1}
    manifest = shards.commit(str(tmp_path), "run-1", [shards.ShardFile(**f) for f in files],
                             [writer.counts], meta={"mixture": "english"})
    back = shards.read_manifest(str(tmp_path))
    assert back.run_id == manifest.run_id == "run-1" and back.meta == {"mixture": "english"}
    assert back.dim is None
    assert shards.read_table(str(tmp_path)).column("id").to_pylist() == ["a#0"]
    assert shards.read_table(str(tmp_path), kind="quarantine").column(
        "quarantine").to_pylist() == ["unknown_lang"]


@pytest.mark.slow
def test_prepare_instruct_job_on_the_samples(tiny_assets, ray_local, tmp_path):
    from jobkit import config as config_io
    from pipelines.instruct_data import PrepareConfig, prepare

    cfg = config_io.load(PrepareConfig, "configs/prepare_instruct.yaml",
                         [f"output={tmp_path}/out", f"cache_dir={tmp_path}/cache",
                          f"segment.model={tiny_assets / 'sat'}"])
    manifest = prepare(cfg)
    data = shards.read_table(str(tmp_path / "out"))
    bad = shards.read_table(str(tmp_path / "out"), kind="quarantine")
    # Conversations: oasst2 3 (2 + 1 + 2 assistant turns), Bactrian-X 5, Aya 5 good of 7,
    # MLQA 2 good of 3, XL-Sum 5 -> 5 + 5 + 5 + 2 + 5 = 22 instances.
    assert data.num_rows == 22
    assert sorted(bad.column("quarantine").to_pylist()) == ["missing_answer", "missing_text",
                                                            "unknown_lang"]
    langs = data.column("lang").to_pylist()
    assert "zho_Hans" in langs and "cmn_Hani" not in langs
    for src, tgt, lang in zip(data.column("source_sentences").to_pylist(),
                              data.column("target_sentences").to_pylist(), langs):
        user, assistant = TURN_MARKERS[lang]
        assert src[0] == user and src[-1] == assistant and tgt[-1] == END_OF_TEXT
        assert len(tgt) >= 2
    read = manifest.counts[0]
    assert read["stage"] == "read" and read["rows_out"] == 3 + 5 + 7 + 3 + 5
    # The English-only mixture without MLQA/XL-Sum: oasst2 en (2) + Bactrian-X en (2) + Aya en (1).
    cfg.mixture = "english"
    prepare(cfg)
    english = shards.read_table(str(tmp_path / "out"))
    assert english.num_rows == 5 and set(english.column("lang").to_pylist()) == {"eng_Latn"}
