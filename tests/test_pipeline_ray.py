"""The demo pipeline end to end on a local Ray: corpus shards -> normalizer -> 2-worker
DeepSpeed pre-training -> evaluation -> report."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from jobkit import config as config_io
from evaluation import next_sentence as eval_pretrain
from pipelines import refresh as corpus_refresh
from pipelines.readers.fineweb import FinewebInput
from training import fit_normalizer, launch
from training.config import PretrainJobConfig
from reports.demo import write_demo_report
from mimir_model.checkpoint import TRAIN_LOG
from pipelines import shards
from pipelines.counts import StageCounts

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _asset_overrides(assets: Path) -> list[str]:
    return [f"segment.model={assets / 'sat'}",
            f"sonar.encoder={assets / 'sonar' / 'sonar_text_encoder.pt'}",
            f"sonar.tokenizer={assets / 'sonar' / 'sentencepiece.model'}"]


@pytest.fixture(scope="module")
def corpus(ray_local, tiny_assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    cfg = config_io.load(corpus_refresh.CorpusConfig, CONFIGS / "corpus_refresh.yaml",
                         [f"output={out / 'shards'}", f"cache_dir={out / 'cache'}",
                          *_asset_overrides(tiny_assets)])
    manifest = corpus_refresh.run(cfg)
    return out, manifest


def test_corpus_shards(corpus):
    out, manifest = corpus
    counts = {c["stage"]: c for c in manifest.counts}
    table = shards.read_table(str(out / "shards"))
    # Every document read is either in a shard or in the quarantine, none lost.
    quarantined = sum(f.rows for f in manifest.files if f.kind == "quarantine")
    assert counts["read"]["rows_out"] == table.num_rows + quarantined
    # What the writer put in quarantine is exactly what the stages rejected, by reason.
    rejected = Counter()
    for stage in ("validate", "chinese_relabel", "segment", "embed"):
        rejected.update(counts[stage]["quarantined"])
    assert counts["write_shards"]["quarantined"] == dict(rejected)
    assert counts["segment"]["quarantined"].get("empty_text", 0) >= 1
    # One embedding per sentence plus "End of text."
    n_sent = [len(s) for s in table["sentences"].to_pylist()]
    assert table["n_embeddings"].to_pylist() == [n + 1 for n in n_sent]
    assert counts["embed"]["tally"]["sentences"] == sum(n_sent)
    embeddings = shards.arrow_to_embeddings(table["embeddings"])
    assert all(e.shape == (n + 1, manifest.dim) for e, n in zip(embeddings, n_sent))
    # The last vector of every document is the same "End of text." embedding.
    ends = np.stack([e[-1] for e in embeddings])
    np.testing.assert_allclose(ends, np.broadcast_to(ends[0], ends.shape), atol=1e-6)
    # Chinese was relabelled: no cmn_Hani left, both scripts present.
    langs = set(table["lang"].to_pylist())
    assert "cmn_Hani" not in langs and {"zho_Hans", "zho_Hant"} <= langs
    assert {"eng_Latn", "fra_Latn", "deu_Latn", "arb_Arab", "hin_Deva", "rus_Cyrl"} <= langs
    assert pc.all(pc.greater(pc.list_value_length(table["sentences"]), 0)).as_py()


def test_unknown_language_stops_before_work(ray_local, tmp_path):
    cfg = corpus_refresh.CorpusConfig(
        inputs=[FinewebInput(uri="x.parquet", config="xxx_Zzzz")],
        output=str(tmp_path))
    with pytest.raises(ValueError, match="xxx_Zzzz.*eng_Latn"):
        corpus_refresh.run(cfg)


def test_normalizer_pretrain_eval_report(corpus, tiny_assets, tmp_path):
    out, manifest = corpus
    shard_root = str(out / "shards")
    norm = fit_normalizer.run(fit_normalizer.FitNormalizerConfig(
        shards=shard_root, output=str(tmp_path / "normalizer.safetensors")))
    assert norm.dim == manifest.dim
    assert norm.fit_rows == sum(shards.read_table(shard_root)["n_embeddings"].to_pylist())

    overrides = [f"shards={shard_root}", f"normalizer={tmp_path / 'normalizer.safetensors'}",
                 f"storage_path={tmp_path / 'ckpt'}", f"cache_dir={tmp_path / 'cache'}",
                 "train.steps=6", "train.checkpoint_every=3", "train.log_every=1"]
    cfg = config_io.load(PretrainJobConfig, CONFIGS / "pretrain.yaml", overrides)
    uri = launch.run(cfg)
    ckpt = Path(uri)
    history = [json.loads(x) for x in (ckpt / TRAIN_LOG).read_text().splitlines()]
    assert [h["step"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(h["loss"]) and h["embeddings"] > 0 for h in history)
    assert (ckpt / "model.pt").exists() and (ckpt / "model_config.json").exists()
    # Re-running the same run resumes from its last checkpoint: nothing left to train.
    cfg = config_io.load(PretrainJobConfig, CONFIGS / "pretrain.yaml", overrides)
    assert Path(launch.run(cfg)).name == ckpt.name

    sonar = tiny_assets / "sonar"
    ecfg = config_io.load(eval_pretrain.EvalPretrainConfig, CONFIGS / "eval_pretrain.yaml", [
        f"checkpoint={uri}", f"normalizer={tmp_path / 'normalizer.safetensors'}",
        f"shards={shard_root}", f"sonar.encoder={sonar / 'sonar_text_encoder.pt'}",
        f"sonar.decoder={sonar / 'sonar_text_decoder.pt'}",
        f"sonar.tokenizer={sonar / 'sentencepiece.model'}", "min_sentences=3",
        "max_documents=4", "sampler.steps=4", f"output={tmp_path / 'eval.json'}",
        f"cache_dir={tmp_path / 'cache'}"])
    result = eval_pretrain.run(ecfg)
    assert result["documents"] == 4
    table = shards.read_table(shard_root)
    chosen = eval_pretrain.select_documents(table["sentences"].to_pylist(), 3, 4)
    assert result["prefixes"] == sum(len(table["sentences"][i].as_py()) - 1 for i in chosen)
    # The Ray task's figures equal the same evaluation run in this process (same seed).
    ecfg.output = str(tmp_path / "eval_direct.json")
    direct = eval_pretrain.evaluate(ecfg)
    for key in ("l2", "round_trip_l2"):
        assert result[key] == pytest.approx(direct[key], rel=1e-6)
        for lang, r in result["per_language"].items():
            assert r[key] == pytest.approx(direct["per_language"][lang][key], rel=1e-6)
    assert json.loads((tmp_path / "eval.json").read_text())["prefixes"] == result["prefixes"]

    metrics = write_demo_report(tmp_path / "report",
                           counts=[StageCounts.from_dict(c) for c in manifest.counts],
                           history=history, evaluation=result, checkpoint=uri,
                           timings={"pretrain": 1.0})
    assert metrics["training"]["steps"] == 6
    assert (tmp_path / "report" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert "| **all** |" in (tmp_path / "report" / "summary.md").read_text()


def test_selection_rules():
    sents = [["a"] * n for n in (9, 3, 12, 9, 8)]
    assert eval_pretrain.select_documents(sents, 9, 1000) == [0, 2, 3]
    assert eval_pretrain.select_documents(sents, 9, 2) == [0, 2]
    assert eval_pretrain.prefixes(4) == [1, 2, 3]
