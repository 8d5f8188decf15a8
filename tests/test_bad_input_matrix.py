"""One fast test per row of README's "Bad input" table (test_<row>): each bad input gets its
clear error or quarantine reason, and the good input beside it is still there (no finished work
lost)."""

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import refresh as corpus_refresh
from pipelines.readers.fineweb import FinewebInput
from training import launch
from training.config import PretrainJobConfig
from mimir_model.checkpoint import verify_checkpoint
from pipelines import segment, shards
from pipelines.streams.shard_stream import RankStream
from pipelines.readers.fineweb import read_fineweb
from pipelines.validate import ValidateText, clean_value
from tests.synthetic import write_synthetic_shards


def _fineweb_folder(tmp_path, *bad_files: tuple[str, bytes | pa.Table]) -> str:
    """A FineWeb-2 style folder: one good file (ids g0, g1), then the bad ones."""
    folder = tmp_path / "data" / "fra_Latn"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"id": ["g0", "g1"], "text": ["Bonjour.", "Salut."]}),
                   folder / "000.parquet")
    for name, content in bad_files:
        if isinstance(content, bytes):
            (folder / name).write_bytes(content)
        else:
            pq.write_table(content, folder / name)
    return str(tmp_path)


def _quarantine(table: pa.Table) -> dict[str, str | None]:
    return dict(zip(table["id"].to_pylist(), table["quarantine"].to_pylist()))


def test_malformed_parquet(tmp_path):
    root = _fineweb_folder(tmp_path, ("001.parquet", b"PAR1 not parquet at all"))
    bad = str(tmp_path / "data" / "fra_Latn" / "001.parquet")
    assert _quarantine(read_fineweb(root, "fra_Latn")) == {
        "g0": None, "g1": None, bad: "malformed_parquet"}


def test_wrong_schema(tmp_path):
    no_text = pa.table({"id": ["x"], "body": ["the text is in another column"]})
    root = _fineweb_folder(tmp_path, ("001.parquet", no_text))
    bad = str(tmp_path / "data" / "fra_Latn" / "001.parquet")
    assert _quarantine(read_fineweb(root, "fra_Latn")) == {
        "g0": None, "g1": None, bad: "malformed_parquet"}


def test_hidden_files(tmp_path):
    other = pa.table({"id": ["h"], "text": ["Ne pas lire."]})
    root = _fineweb_folder(tmp_path, (".x.parquet", other), ("._000.parquet", b"\x00\x05\x16"),
                           ("_SUCCESS", b""))
    spark = tmp_path / "data" / "fra_Latn" / "_temporary" / "0"
    spark.mkdir(parents=True)
    pq.write_table(other, spark / "part-00000.parquet")
    assert _quarantine(read_fineweb(root, "fra_Latn")) == {"g0": None, "g1": None}


def test_missing_or_duplicate_id(tmp_path):
    ids = pa.table({"id": [None, "g0", "d1", "  ", "d1"],
                    "text": ["Sans id.", "Encore g0.", "Un.", "Vide.", "Deux."]})
    root = _fineweb_folder(tmp_path, ("001.parquet", ids))
    table = read_fineweb(root, "fra_Latn")
    assert list(zip(table["id"].to_pylist(), table["quarantine"].to_pylist(),
                    table["text"].to_pylist())) == [
        ("g0", None, "Bonjour."), ("g1", None, "Salut."),
        (f"{root}#2", "missing_id", "Sans id."),
        ("g0#duplicate3", "duplicate_id", "Encore g0."),
        ("d1", None, "Un."),
        (f"{root}#5", "missing_id", "Vide."),
        ("d1#duplicate6", "duplicate_id", "Deux.")]


def test_empty_text(monkeypatch):
    class OneSentencePerDocument:  # stands in for SaT: only the plumbing is under test
        def split(self, texts, **kwargs):
            return [[t] for t in texts]

    monkeypatch.setattr(segment, "load_sat", lambda model, device, cache_dir:
                        OneSentencePerDocument())
    stage = segment.Segmenter(model="stub")
    out = stage(pa.table({"id": ["a", "b", "c"], "text": ["Bonjour.", "", " \n\t "],
                          "quarantine": pa.array([None] * 3, pa.string())}))
    assert _quarantine(out) == {"a": None, "b": "empty_text", "c": "empty_text"}
    assert out["sentences"].to_pylist() == [["Bonjour."], [], []]
    assert stage.counts.tally["empty_documents"] == 2


def test_invalid_utf8(tmp_path):
    raw = pa.array([b"Bonjour.", b"caf\xe9 en Latin-1", b"\xff\xfe"], pa.binary())
    table = pa.table({"id": ["u0", "u1", "u2"], "text": raw.view(pa.string())})
    root = _fineweb_folder(tmp_path, ("001.parquet", table))
    out = read_fineweb(root, "fra_Latn")
    assert _quarantine(out) == {"g0": None, "g1": None, "u0": None,
                                "u1": "invalid_unicode", "u2": "invalid_unicode"}
    assert out["text"].to_pylist() == ["Bonjour.", "Salut.", "Bonjour.", None, None]
    # the same reason for a lone surrogate from a JSON source
    assert clean_value(json.loads('"half a pair: \\ud83d"')) == (None, "invalid_unicode")


def test_oversized_document():
    stage = ValidateText(max_chars=10)
    out = stage(pa.table({"id": ["a", "b"], "text": ["0123456789", "0123456789X"],
                          "quarantine": pa.array([None, None], pa.string())}))
    assert _quarantine(out) == {"a": None, "b": "too_long"}
    assert stage.counts.quarantined == {"too_long": 1}


def test_control_characters():
    stage = ValidateText()
    out = stage(pa.table({"id": ["a", "b"], "text": ["tab\tand\nnewline", "nul\x00byte"],
                          "quarantine": pa.array([None, None], pa.string())}))
    assert _quarantine(out) == {"a": None, "b": "control_chars"}


def test_unknown_language(tmp_path):
    cfg = corpus_refresh.CorpusConfig(
        inputs=[FinewebInput(str(tmp_path), "fra_Latn"),
                FinewebInput(str(tmp_path), "xyz_Latn")],
        output=str(tmp_path / "out"))
    with pytest.raises(ValueError, match=r"unknown language config 'xyz_Latn'; supported: "
                                         r".*eng_Latn.*fra_Latn"):
        corpus_refresh.run(cfg)
    assert not (tmp_path / "out").exists()  # stopped before any work


def test_nan_embeddings(tmp_path):
    root = str(tmp_path / "shards")
    docs = [np.ones((2, 4), np.float32), np.array([[0, np.inf, 0, 0]], np.float32),
            np.full((3, 4), np.nan, np.float32)]
    table = pa.table({
        "id": ["ok", "inf", "nan"], "source": ["s"] * 3, "lang": ["eng_Latn"] * 3,
        "sentences": [["-"] * len(d) for d in docs], "quarantine": [None] * 3,
        "embeddings": shards.embeddings_to_arrow(docs, 4),
        "n_embeddings": pa.array([2, 1, 3], pa.int32())})
    run_id = shards.new_run_id()
    writer = shards.ShardWriter(root, run_id)
    shards.commit(root, run_id, [shards.ShardFile(**r) for r in writer(table).to_pylist()],
                  [writer.counts])
    stream = RankStream(root, rank=0, world=1, seed=0)
    assert [i for i, _, _ in stream.documents(0)] == ["ok"]
    assert stream.skipped_nonfinite == {"inf", "nan"}


def _pretrain_cfg(tmp_path) -> PretrainJobConfig:
    return PretrainJobConfig(
        shards=str(tmp_path / "shards"), normalizer=str(tmp_path / "n.safetensors"),
        storage_path=str(tmp_path / "ckpt"), cache_dir=str(tmp_path / "cache"))


def test_wrong_embedding_dimension(tmp_path):
    write_synthetic_shards(str(tmp_path / "shards"), 4, 8, files=1)
    write_synthetic_shards(str(tmp_path / "other"), 4, 16, files=1).save(tmp_path / "n.safetensors")
    with pytest.raises(ValueError, match=r"normalizer .*n.safetensors is for dimension 16, the "
                                         r"shards at .* have dimension 8"):
        launch.preflight(_pretrain_cfg(tmp_path))
    assert not (tmp_path / "ckpt").exists()


def test_truncated_checkpoint(tmp_path):
    (tmp_path / "state").mkdir()
    weights = b"\x00" * 64
    (tmp_path / "state" / "model.pt").write_bytes(weights[:40])  # cut short while copying
    (tmp_path / "files_rank0.json").write_text(json.dumps(
        {"world": 1, "files": {"state/model.pt": hashlib.sha256(weights).hexdigest()}}))
    with pytest.raises(ValueError, match=r"state/model.pt is missing or does not match its "
                                         r"checksum \(truncated or corrupted\)"):
        verify_checkpoint(tmp_path)


@pytest.mark.parametrize("content", ['{"run_id": "run-x", "dim": 4, "fil', '{"run_id": "run-x"}',
                                     '[1, 2]', '{"run_id": "r", "dim": 4, "files": [{"path": 1}]}'],
                         ids=["not_json", "missing_files", "not_an_object", "bad_file_entry"])
def test_malformed_manifest(tmp_path, content):
    root = tmp_path / "shards"
    root.mkdir()
    (root / shards.MANIFEST).write_text(content)
    with pytest.raises(ValueError, match=rf"shard manifest {root}/manifest.json is malformed"):
        shards.read_manifest(str(root))



def test_zero_width_only():
    stage = ValidateText()
    texts = ["Bonjour.", "\u200b", "\u200c\u200c", " \ufeff\u2060 ", "caf\u00e9\u200b"]
    out = stage(pa.table({"id": list("abcde"), "text": texts,
                          "quarantine": pa.array([None] * 5, pa.string())}))
    assert _quarantine(out) == {"a": None, "b": "no_visible_text", "c": "no_visible_text",
                                "d": "no_visible_text", "e": None}


def test_segmenter_error(tiny_assets):
    """wtpsplit 2.2.2 fails an assertion on a zero-width-only text: that document is isolated
    and quarantined with the exception, the rest of the batch is segmented."""
    stage = segment.Segmenter(model=str(tiny_assets / "sat"))
    out = stage(pa.table({"id": ["a", "poison", "b"], "source": ["s"] * 3, "lang": ["fra_Latn"] * 3,
                          "text": ["Bonjour. Salut.", "\u200b\u200b", "Hello there."],
                          "quarantine": pa.array([None] * 3, pa.string())}))
    assert _quarantine(out) == {"a": None, "poison": "segmenter_error", "b": None}
    assert out["quarantine_detail"].to_pylist() == [None, "AssertionError: ", None]
    assert [bool(s) for s in out["sentences"].to_pylist()] == [True, False, True]
    assert stage.counts.quarantined == {"segmenter_error": 1}
    # The quarantine file keeps the reason and the exception.
    root = str(tiny_assets.parent / "quarantine-set")
    writer = shards.ShardWriter(root, shards.new_run_id())
    written = writer(out.append_column("n_embeddings", pa.array([1, 0, 1], pa.int32()))
                     .append_column("embeddings", shards.embeddings_to_arrow(
                         [np.zeros((1, 4), np.float32), np.zeros((0, 4), np.float32),
                          np.zeros((1, 4), np.float32)], 4)))
    quarantine = [r for r in written.to_pylist() if r["kind"] == "quarantine"]
    table = pq.read_table(f"{root}/{quarantine[0]['path']}")
    assert table.select(["id", "quarantine", "quarantine_detail"]).to_pylist() == [
        {"id": "poison", "quarantine": "segmenter_error", "quarantine_detail": "AssertionError: "}]


def test_embedder_error(monkeypatch):
    from pipelines import embed

    class Encoder:  # stands in for SONAR: fails on one sentence, as a model bug would
        num_truncated = 0

        def encode(self, texts, langs):
            if "poison" in texts:
                raise RuntimeError("CUDA error: device-side assert triggered")
            return np.ones((len(texts), 4), np.float32)

    monkeypatch.setattr(embed.TextEncoder, "from_uris", lambda *a, **k: Encoder())
    stage = embed.SonarEmbed("enc", "tok")
    out = stage(pa.table({"id": ["a", "b"], "lang": ["eng_Latn"] * 2,
                          "sentences": [["fine"], ["x", "poison"]],
                          "quarantine": pa.array([None, None], pa.string())}))
    assert _quarantine(out) == {"a": None, "b": "embedder_error"}
    assert out["quarantine_detail"].to_pylist() == [
        None, "RuntimeError: CUDA error: device-side assert triggered"]
    assert out["n_embeddings"].to_pylist() == [2, 0]  # "fine" + "End of text."
    assert stage.counts.tally["sentences"] == 1
