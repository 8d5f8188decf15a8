from pipelines.counts import StageCounts, format_summary


def test_merge_take_and_round_trip():
    a = StageCounts("segment", rows_in=3, rows_out=3)
    a.tally["sentences"] += 7
    a.quarantine("empty_text")
    b = StageCounts("segment", rows_in=2, rows_out=2)
    b.tally["sentences"] += 5
    b.quarantine("empty_text", 2)
    b.quarantine("missing_text")
    a.merge(b)
    assert a.as_dict() == {"stage": "segment", "rows_in": 5, "rows_out": 5,
                           "tally": {"sentences": 12},
                           "quarantined": {"empty_text": 3, "missing_text": 1}}
    assert StageCounts.from_dict(a.as_dict()) == a
    taken = a.take()
    assert taken.rows_in == 5 and taken.tally["sentences"] == 12
    assert a.rows_in == 0 and not a.tally and not a.quarantined


def test_merge_refuses_other_stage():
    import pytest
    with pytest.raises(ValueError, match="embed"):
        StageCounts("segment").merge(StageCounts("embed"))


def test_summary_lists_every_stage():
    c = StageCounts("embed", 4, 4)
    c.tally["sentences"] = 10
    q = StageCounts("write_shards", 4, 3)
    q.quarantine("empty_text")
    text = format_summary([c, q])
    assert text.splitlines()[1].split() == ["embed", "4", "4", "sentences=10"]
    assert "quarantined: empty_text=1" in text.splitlines()[2]
