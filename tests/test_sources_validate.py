import pyarrow as pa
import pytest

from pipelines.validate import ValidateText, clean_value, text_problem, turns_problem, value_problem


@pytest.mark.parametrize("value, reason", [
    (None, "missing_text"),
    (3, "non_string_text"),
    ("ok\ud800", "invalid_unicode"),
    ("null\x00byte", "control_chars"),
    ("bell\x07", "control_chars"),
    ("c1\x85", "control_chars"),
    ("a\tb\nc\x0bd\x0c\r", None),
    ("x" * 11, "too_long"),
    ("x" * 10, None),
    ("", None),  # empty text is the segmenter's empty_text
])
def test_text_problem(value, reason):
    assert text_problem(value, max_chars=10) == reason


def test_value_problem_and_clean_value():
    assert value_problem("a\x00") is None  # storable; the content checks come later
    assert clean_value("a\udc80") == (None, "invalid_unicode")
    assert clean_value("fine") == ("fine", None)


def test_turns_problem():
    assert turns_problem(None) == "missing_turns"
    assert turns_problem([]) == "missing_turns"
    assert turns_problem(["q"]) == "unanswered_turn"
    assert turns_problem(["q", None]) == "missing_text"
    assert turns_problem(["q", "a"]) is None


def test_validate_text_stage():
    table = pa.table({"text": ["good", "a\x01", "x" * 50, None, "kept"],
                      "quarantine": [None, None, None, None, "earlier"]})
    stage = ValidateText(max_chars=20)
    out = stage(table)
    assert out.column("quarantine").to_pylist() == [None, "control_chars", "too_long",
                                                    "missing_text", "earlier"]
    assert stage.counts.quarantined == {"control_chars": 1, "too_long": 1, "missing_text": 1}
    assert (stage.counts.rows_in, stage.counts.rows_out) == (5, 5)
    assert out.column("text").equals(table.column("text"))
