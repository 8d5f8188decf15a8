from pathlib import Path

import pyarrow as pa
import pytest
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
