"""Readers of the instruction sources and of the synthetic-chat inputs, on the shipped samples
(each in its source's Hub schema) and on malformed input."""

import copy

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import samples
from pipelines.readers.chat_inputs import read_math_problems, read_topics
from pipelines.readers.conversations import (best_conversation, read_aya, read_bactrian_x,
                                             read_conversations, read_mlqa, read_oasst2,
                                             read_xlsum)
from pipelines.readers.schemas import CONVERSATION_SCHEMA
from samples import make_samples as ms

S = samples.ROOT


def _texts(tree: str, *locals_: str) -> list[str]:
    by_local = {m[0]: m[5] for m in ms.OASST2_TREES[tree]}
    return [by_local[x] for x in locals_]


def test_oasst2_best_conversation_per_tree():
    table = read_oasst2(S / "oasst2")
    assert table.schema == CONVERSATION_SCHEMA
    assert table.column("lang").to_pylist() == ["eng_Latn", "fra_Latn", "deu_Latn"]
    assert table.column("source").to_pylist() == ["oasst2"] * 3
    assert table.column("quarantine").null_count == 3
    turns = table.column("turns").to_pylist()
    # en: rank-0 reply a1, its follow-up p2, rank-0 reply a5 (a2, a3, a6 lose; a4 is deleted).
    assert turns[0] == _texts("en", "p1", "a1", "p2", "a5")
    # fr: the follow-up p2 hangs under the rank-1 reply a2, so the best path stops at a1.
    assert turns[1] == _texts("fr", "p1", "a1")
    assert turns[2] == _texts("de", "p1", "a1", "p2", "a2")
    assert read_oasst2(S / "oasst2", limit=2).num_rows == 2


def _tree() -> list[dict]:
    rows = pq.read_table(S / "oasst2/train.parquet").to_pylist()
    root = rows[0]["message_tree_id"]
    return [r for r in rows if r["message_tree_id"] == root]


def _break(kind: str) -> list[dict]:
    tree = copy.deepcopy(_tree())
    if kind == "tree_orphan":
        tree[1]["parent_id"] = "no-such-message"
    elif kind == "tree_cycle":  # p2 -> a5 -> p2, detached from the root
        p2 = next(m for m in tree if m["text"].startswith("Why do some trees"))
        a5 = next(m for m in tree if m["text"].startswith("Evergreen trees such"))
        p2["parent_id"] = a5["message_id"]
    elif kind == "tree_bad_role":
        tree[2]["role"] = None
    elif kind == "tree_many_roots":
        tree[1]["parent_id"] = None
    elif kind == "tree_no_root":
        tree[0]["parent_id"] = tree[1]["message_id"]
    elif kind == "tree_duplicate_id":
        tree[2]["message_id"] = tree[1]["message_id"]
    elif kind == "tree_unanswered":
        tree = tree[:1]
    return tree


@pytest.mark.parametrize("kind", ["tree_orphan", "tree_cycle", "tree_bad_role",
                                  "tree_many_roots", "tree_no_root", "tree_duplicate_id",
                                  "tree_unanswered"])
def test_malformed_oasst2_trees_are_named(kind):
    assert best_conversation(_tree())[1] is None
    assert best_conversation(_break(kind)) == ([], kind)


def test_malformed_tree_is_quarantined_and_the_rest_read(tmp_path):
    rows = pq.read_table(S / "oasst2/train.parquet").to_pylist()
    first = rows[0]["message_tree_id"]
    broken = _break("tree_cycle") + [r for r in rows if r["message_tree_id"] != first]
    broken[0]["lang"] = "en"
    rows_table = pa.Table.from_pylist(broken, schema=pq.read_schema(S / "oasst2/train.parquet"))
    pq.write_table(rows_table, tmp_path / "train.parquet")
    (tmp_path / "zz-broken.parquet").write_bytes(b"not parquet")
    table = read_oasst2(tmp_path)
    assert table.column("quarantine").to_pylist() == ["tree_cycle", None, None,
                                                      "malformed_parquet"]
    assert table.column("id").to_pylist()[0] == f"oasst2/{first}"
    assert table.column("id").to_pylist()[3] == str(tmp_path / "zz-broken.parquet")


def test_bactrian_x_prompt_joins_instruction_and_input():
    table = read_bactrian_x(S / "bactrian-x", "en")
    assert table.schema == CONVERSATION_SCHEMA
    (i1, in1, o1), (i2, in2, o2) = ms.BACTRIAN_X["en"]
    assert table.column("turns").to_pylist() == [[i1, o1], [f"{i2}\n\n{in2}", o2]]
    assert table.column("lang").to_pylist() == ["eng_Latn"] * 2
    assert table.column("id").to_pylist()[0].startswith("bactrian-x/en/")
    # Chinese is decided later, per conversation, by ChineseRelabel.
    assert read_bactrian_x(S / "bactrian-x", "zh").column("lang").to_pylist() == ["cmn_Hani"]
    with pytest.raises(ValueError, match="'yo'"):
        read_bactrian_x(S / "bactrian-x", "yo")


def test_aya_languages_and_bad_rows():
    table = read_aya(S / "aya")
    assert table.column("lang").to_pylist() == ["eng_Latn", "fra_Latn", "deu_Latn", "spa_Latn",
                                                "swh_Latn", None, "eng_Latn"]
    assert table.column("quarantine").to_pylist() == [None] * 5 + ["unknown_lang",
                                                                   "missing_text"]
    assert table.column("turns").to_pylist()[0] == list(ms.AYA[0][:2])
    assert table.column("id").to_pylist() == [f"aya/{i}" for i in range(7)]


def test_mlqa_prompt_is_context_then_question():
    de = read_mlqa(S / "mlqa", "de")
    context, question, answer = ms.MLQA["de"][0]
    assert de.column("turns").to_pylist() == [[f"{context}\n\n{question}", answer], None]
    assert de.column("quarantine").to_pylist() == [None, "missing_answer"]
    assert read_mlqa(S / "mlqa", "en").column("lang").to_pylist() == ["eng_Latn"]


def test_xlsum_article_to_summary():
    table = read_xlsum(S / "xlsum", "french")
    assert table.column("turns").to_pylist() == [[text, summary]
                                                 for _, summary, text in ms.XLSUM["french"]]
    assert table.column("lang").to_pylist() == ["fra_Latn"] * 2
    assert table.column("id").to_pylist() == ["xlsum/french/french-40000000",
                                              "xlsum/french/french-40000001"]


def test_read_instruct_dispatch_and_unknown_source():
    assert read_conversations("xlsum", str(S / "xlsum"), "english", limit=2).num_rows == 2
    with pytest.raises(ValueError, match="dolly"):
        read_conversations("dolly", str(S))


def test_topics_and_problems_are_deduplicated_in_order():
    topics = read_topics(S / "everyday-conversations")
    assert [t["topic"] for t in topics] == ["Food/Ordering at a cafe",
                                            "Travel/Packing for a weekend trip"]
    problems = read_math_problems(S / "openmathinstruct-2")
    assert [(p["problem"], p["solution"]) for p in problems] == [
        (ms.OPENMATH[0][0], ms.OPENMATH[0][1]), (ms.OPENMATH[2][0], ms.OPENMATH[2][1])]
    assert len({p["id"] for p in problems}) == 2
