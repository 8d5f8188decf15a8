import importlib.util
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hanzidentifier import BOTH, MIXED, SIMPLIFIED, TRADITIONAL, identify

import samples
from pipelines.readers.fineweb import read_fineweb
from pipelines.readers.schemas import CANONICAL_SCHEMA

EXPECTED_ROWS = {"eng_Latn": 12, "fra_Latn": 6, "deu_Latn": 6, "arb_Arab": 5, "hin_Deva": 5,
                 "rus_Cyrl": 5, "cmn_Hani": 8}
FINEWEB_EDU_COLUMNS = ["text", "id", "dump", "url", "file_path", "language", "language_score",
                       "token_count", "score", "int_score"]
FINEWEB_2_COLUMNS = ["text", "id", "dump", "url", "date", "file_path", "language",
                     "language_score", "language_script", "minhash_cluster_size", "top_langs"]


def _make_samples_module():
    path = Path(__file__).parent.parent / "samples" / "make_samples.py"
    spec = importlib.util.spec_from_file_location("make_samples", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_samples_match_their_generator():
    ms = _make_samples_module()
    assert pq.read_table(samples.ROOT / "fineweb-edu/eng_Latn.parquet").equals(
        ms.fineweb_edu_table(ms.ENG))
    for config, (iso3, script, texts) in ms.FINEWEB2.items():
        assert pq.read_table(samples.ROOT / f"fineweb-2/{config}.parquet").equals(
            ms.fineweb2_table(config, iso3, script, texts))
    assert pq.read_table(samples.ROOT / "oasst2/train.parquet").equals(ms.oasst2_table())
    for config in ("english", "french"):
        assert pq.read_table(samples.ROOT / f"xlsum/{config}/train.parquet").equals(
            ms.xlsum_table(config))
    for config in ms.BACTRIAN_X:
        assert pq.read_table(samples.ROOT / f"bactrian-x/{config}.parquet").equals(
            ms.bactrian_x_table(config))
    for config in ms.MLQA:
        assert pq.read_table(samples.ROOT / f"mlqa/{config}.parquet").equals(ms.mlqa_table(config))
    assert pq.read_table(samples.ROOT / "aya/train.parquet").equals(ms.aya_table())
    assert pq.read_table(samples.ROOT / "openmathinstruct-2/train.parquet").equals(
        ms.openmath_table())
    assert pq.read_table(samples.ROOT / "everyday-conversations/train_sft.parquet").equals(
        ms.everyday_table())
    total = sum(p.stat().st_size for p in samples.ROOT.rglob("*") if p.is_file())
    assert total < 400_000


def test_sample_schemas_are_the_hub_schemas():
    edu = pq.read_table(samples.ROOT / "fineweb-edu/eng_Latn.parquet")
    assert edu.column_names == FINEWEB_EDU_COLUMNS
    assert set(edu.column("language").to_pylist()) == {"en"}
    for src in samples.FINEWEB[1:]:
        t = pq.read_table(src.path)
        assert t.column_names == FINEWEB_2_COLUMNS
        iso3, script = src.config.split("_")
        assert set(t.column("language").to_pylist()) == {iso3}
        assert set(t.column("language_script").to_pylist()) == {script}
    xlsum = pq.read_table(samples.ROOT / "xlsum/english/train.parquet")
    assert xlsum.column_names == ["id", "url", "title", "summary", "text"]


def test_sample_content_covers_the_hard_cases():
    eng = pq.read_table(samples.ROOT / "fineweb-edu/eng_Latn.parquet").column("text").to_pylist()
    assert sum(not t.strip() for t in eng) == 2  # empty and whitespace-only documents
    assert max(len(t) for t in eng) > 2500  # needs several SaT blocks
    assert any(len(line) > 256 and not any(p in line for p in ".,;:!?")
               for t in eng for line in t.split("\n"))
    cmn = pq.read_table(samples.ROOT / "fineweb-2/cmn_Hani.parquet").column("text").to_pylist()
    assert [identify(t) for t in cmn] == [SIMPLIFIED] * 3 + [TRADITIONAL] * 3 + [BOTH, MIXED]


def test_oasst2_sample_is_a_forest_with_ranked_branches():
    rows = pq.read_table(samples.ROOT / "oasst2/train.parquet").to_pylist()
    by_id = {r["message_id"]: r for r in rows}
    trees = {r["message_tree_id"] for r in rows}
    assert len(trees) == 3
    for tree in trees:
        roots = [r for r in rows if r["message_tree_id"] == tree and r["parent_id"] is None]
        assert len(roots) == 1 and roots[0]["message_id"] == tree
        assert roots[0]["role"] == "prompter"
    for r in rows:
        if r["parent_id"] is not None:
            parent = by_id[r["parent_id"]]
            assert parent["message_tree_id"] == r["message_tree_id"]
            assert parent["role"] != r["role"]  # turns alternate
        if r["role"] == "prompter":
            assert r["rank"] is None
    # Ranked siblings are numbered 0..k-1; branching exists (more than one reply somewhere).
    siblings: dict[str, list[int]] = {}
    for r in rows:
        if r["rank"] is not None:
            siblings.setdefault(r["parent_id"], []).append(r["rank"])
    assert all(sorted(v) == list(range(len(v))) for v in siblings.values())
    assert max(len(v) for v in siblings.values()) == 3
    assert any(r["deleted"] for r in rows)


@pytest.mark.parametrize("src", samples.FINEWEB, ids=lambda s: s.config)
def test_read_each_sample(src):
    table = read_fineweb(src.path, src.config, limit=None)
    raw = pq.read_table(src.path)
    assert table.schema == CANONICAL_SCHEMA
    assert table.num_rows == EXPECTED_ROWS[src.config]
    assert table.column("id").equals(raw.column("id"))
    assert table.column("text").equals(raw.column("text"))
    expected_lang = "cmn_Hani" if src.config == "cmn_Hani" else src.config
    assert set(table.column("lang").to_pylist()) == {expected_lang}
    assert set(table.column("source").to_pylist()) == {src.dataset}
    assert table.column("quarantine").null_count == table.num_rows


def test_limit_and_directory_with_config_file():
    table = read_fineweb(samples.ROOT / "fineweb-2", "deu_Latn", limit=4)
    raw = pq.read_table(samples.ROOT / "fineweb-2/deu_Latn.parquet")
    assert table.column("id").to_pylist() == raw.column("id").to_pylist()[:4]
    assert read_fineweb(samples.ROOT / "fineweb-2", "deu_Latn", limit=100).num_rows == 6


def _write_hub_layout(root: Path) -> list[str]:
    """FineWeb-2's layout data/{config}/train/*.parquet, the French sample in two files."""
    raw = pq.read_table(samples.ROOT / "fineweb-2/fra_Latn.parquet")
    folder = root / "data" / "fra_Latn" / "train"
    folder.mkdir(parents=True)
    pq.write_table(raw.slice(0, 4), folder / "000_00000.parquet")
    pq.write_table(raw.slice(4), folder / "000_00001.parquet")
    return raw.column("id").to_pylist()


def test_hub_layout_directory_spans_files_in_order(tmp_path):
    ids = _write_hub_layout(tmp_path)
    assert read_fineweb(tmp_path, "fra_Latn").column("id").to_pylist() == ids
    assert read_fineweb(tmp_path, "fra_Latn", limit=5).column("id").to_pylist() == ids[:5]
    # A folder named after the config is read whole.
    assert read_fineweb(tmp_path / "data" / "fra_Latn", "fra_Latn").num_rows == 6
    # Another config's files are never read in place of the one asked for.
    with pytest.raises(FileNotFoundError, match="deu_Latn"):
        read_fineweb(tmp_path, "deu_Latn")


def test_malformed_parquet_becomes_a_quarantined_row_and_reading_goes_on(tmp_path):
    folder = tmp_path / "data" / "fra_Latn"
    folder.mkdir(parents=True)
    raw = pq.read_table(samples.ROOT / "fineweb-2/fra_Latn.parquet")
    pq.write_table(raw.slice(0, 2), folder / "000.parquet")
    (folder / "001.parquet").write_bytes(b"PAR1 this is not parquet")
    pq.write_table(pa.table({"id": ["a"]}), folder / "002.parquet")  # no text column
    pq.write_table(raw.slice(2, 1), folder / "003.parquet")
    table = read_fineweb(tmp_path, "fra_Latn")
    assert table.schema == CANONICAL_SCHEMA
    ids = raw.column("id").to_pylist()
    assert table.column("id").to_pylist() == [ids[0], ids[1], ids[2], str(folder / "001.parquet"),
                                              str(folder / "002.parquet")]
    assert table.column("quarantine").to_pylist() == [None] * 3 + ["malformed_parquet"] * 2
    assert table.column("text").to_pylist()[3:] == [None, None]


def test_unknown_config_is_rejected():
    with pytest.raises(ValueError, match="xyz_Latn"):
        read_fineweb(samples.ROOT / "fineweb-2", "xyz_Latn")


def test_read_from_s3(tmp_path, s3_server):
    import boto3

    ids = _write_hub_layout(tmp_path)
    s3 = boto3.client("s3", endpoint_url=s3_server)
    for f in sorted(tmp_path.rglob("*.parquet")):
        s3.upload_file(str(f), "mimir", f"fineweb-2/{f.relative_to(tmp_path)}")
    table = read_fineweb("s3://mimir/fineweb-2", "fra_Latn", limit=5)
    assert table.column("id").to_pylist() == ids[:5]
    assert table.schema == CANONICAL_SCHEMA
    one = read_fineweb("s3://mimir/fineweb-2/data/fra_Latn/train/000_00001.parquet", "fra_Latn")
    assert one.column("id").to_pylist() == ids[4:]
