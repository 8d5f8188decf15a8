"""Evaluation readers on the shipped samples, and the pre-training selection rules."""

import json

import pytest

from evaluation.next_sentence import prefixes, select_documents
from pipelines.readers import eval_sets
from pipelines.readers.schemas import CANONICAL_SCHEMA, TASK_SCHEMA

import samples

EVAL = samples.ROOT / "eval"


def test_c4_reader_gzipped_json_lines_and_limit():
    path = str(EVAL / "c4" / "c4-en-validation.tfrecord-00000-of-00001.json.gz")
    table = eval_sets.read_documents("c4", path, "eng_Latn")
    assert table.schema == CANONICAL_SCHEMA
    assert table["id"].to_pylist() == [f"https://example.org/en/{i}" for i in range(3)]
    assert table["text"][1].as_py().startswith("Our shop is closed")
    assert set(table["lang"].to_pylist()) == {"eng_Latn"}
    assert table["quarantine"].null_count == 3
    # "The first N" is the first N in file order.
    assert eval_sets.read_documents("c4", path, "eng_Latn", limit=2)["id"].to_pylist() == \
        table["id"].to_pylist()[:2]


def test_wiki40b_markers_become_paragraph_lines():
    text = ("\n_START_ARTICLE_\nTitle\n_START_SECTION_\nPart\n_START_PARAGRAPH_\n"
            "One. Two._NEWLINE_Three.\n_START_SECTION_\nMore\n_START_PARAGRAPH_\nFour.")
    assert eval_sets.wiki40b_paragraphs(text) == "One. Two.\nThree.\nFour."
    table = eval_sets.read_documents("wiki40b", str(EVAL / "wiki40b" / "en"), "eng_Latn")
    body = table["text"][0].as_py()
    assert "_START_" not in body and "_NEWLINE_" not in body and "Lighthouse" not in body
    assert body.startswith("A lighthouse is a tower")
    assert table["id"].to_pylist() == ["Q39715"]


def test_folder_reads_files_in_sorted_order():
    table = eval_sets.read_documents("multi_eurlex", str(EVAL / "multi_eurlex"), "deu_Latn")
    # de/test.jsonl (1 document) before en/test.jsonl (2 documents).
    assert table["id"].to_pylist() == ["32099R0001", "32099R0001", "32099D0002"]
    assert table["text"][0].as_py().startswith("VERORDNUNG")


def test_instruct_readers():
    xlsum = eval_sets.read_tasks("xlsum", str(EVAL / "xlsum" / "english_test.jsonl"),
                                       "eng_Latn")
    assert xlsum.schema == TASK_SCHEMA
    assert xlsum["references"][0].as_py() == [
        "A new public library has opened in the town centre."]
    assert xlsum["text"][0].as_py().startswith("A new public library opened")

    mlqa = eval_sets.read_tasks(
        "mlqa", str(EVAL / "mlqa" / "test-context-en-question-en.json"), "eng_Latn")
    assert mlqa["id"].to_pylist() == ["mlqa-en-1", "mlqa-en-2"]
    assert mlqa["text"][0].as_py().endswith("volunteers.\n\nWhen was the mill built?")
    assert mlqa["references"].to_pylist() == [["1820"], ["volunteers"]]

    wsd = eval_sets.read_tasks("xlwsd", str(EVAL / "xlwsd" / "it"), "ita_Latn",
                                     xlwsd_prompt="{target} | {sentence}")
    assert wsd["text"].to_pylist() == ["gatto | Il gatto dorme sul divano."]
    assert wsd["references"].to_pylist() == [["piccolo felino domestico"]]


def test_unscorable_examples_are_quarantined(tmp_path):
    rows = [{"id": "a", "url": "u", "title": "t", "summary": "S.", "text": "T."},
            {"id": "b", "url": "u", "title": "t", "summary": " ", "text": "T."},
            {"id": "c", "url": "u", "title": "t", "summary": "S.", "text": None}]
    path = tmp_path / "x_test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = eval_sets.read_tasks("xlsum", str(path), "eng_Latn")
    assert table.num_rows == 3
    assert table["quarantine"].to_pylist() == [None, "no_reference", "missing_text"]


def test_wikimatrix_reader():
    table = eval_sets.read_pairs(str(EVAL / "wikimatrix" / "en-fr"), "fra_Latn", 2)
    assert table.to_pylist() == [
        {"english": "The house is small.", "non_english": "La maison est petite.",
         "lang": "fra_Latn", "quarantine": None},
        {"english": "I like green tea.", "non_english": "J'aime le thé vert.",
         "lang": "fra_Latn", "quarantine": None}]


def test_unknown_dataset_and_missing_path(tmp_path):
    with pytest.raises(ValueError, match="c4"):
        eval_sets.read_documents("c5", str(EVAL / "c4"), "eng_Latn")
    with pytest.raises(FileNotFoundError):
        eval_sets.read_documents("c4", str(tmp_path / "nothing"), "eng_Latn")


def test_selection_first_1000_with_at_least_9_sentences():
    lengths = [9, 8, 12, 1, 9] * 500  # 1,500 documents qualify, in positions 0, 2, 4, 5, ...
    docs = [["s"] * n for n in lengths]
    chosen = select_documents(docs, 9, 1000)
    assert len(chosen) == 1000
    assert chosen[:4] == [0, 2, 4, 5]
    assert all(lengths[i] >= 9 for i in chosen)
    # The first 1,000 qualifying ones: none skipped before the last chosen.
    assert sum(n >= 9 for n in lengths[:chosen[-1] + 1]) == 1000
    assert select_documents([["s"] * 8], 9, 1000) == []
    # Every prefix 1..n-1 predicts the next sentence: 9 sentences -> 8 predictions.
    assert prefixes(9) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert prefixes(1) == []
