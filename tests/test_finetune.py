"""Instruction tuning: instances -> instruction shards (embed_instruct) -> fine-tuning from a
pre-training checkpoint (targets only)."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from jobkit import config as config_io
from pipelines import instruct_data
from training import launch
from training.config import PretrainJobConfig
from mimir_model.checkpoint import MODEL_FILE, load_exported_model
from mimir_model.train import TrainConfig, build_model
from pipelines import shards
from mimir_model.framing import END_OF_TEXT
from pipelines.instruct import InstanceSentences
from tests.synthetic import write_synthetic_shards


def _instances() -> pa.Table:
    return pa.table({
        "id": ["a#0", "b#0", "c#0"], "source": ["aya"] * 3,
        "lang": ["eng_Latn", "fra_Latn", "eng_Latn"],
        "source_sentences": [["User turn.", "Hi there.", "Assistant turn."],
                             ["Tour de l'utilisateur.", "Bonjour.", "Tour de l'assistant."],
                             ["User turn.", "Broken.", "Assistant turn."]],
        "target_sentences": [["Hello.", "How can I help?", END_OF_TEXT],
                             ["Salut.", END_OF_TEXT], ["No end of text."]],
        "quarantine": pa.nulls(3, pa.string())})


def test_instance_sentences():
    stage = InstanceSentences()
    out = stage(_instances())
    assert out["sentences"].to_pylist() == [
        ["User turn.", "Hi there.", "Assistant turn.", "Hello.", "How can I help?"],
        ["Tour de l'utilisateur.", "Bonjour.", "Tour de l'assistant.", "Salut."], []]
    assert out["n_context"].to_pylist() == [3, 3, 0]
    assert out["quarantine"].to_pylist() == [None, None, "malformed_instance"]
    assert stage.counts.tally == {"target_sentences": 3}


def test_embed_instruct(ray_local, tiny_assets, tmp_path):
    root = str(tmp_path / "instruct")
    writer = shards.ShardWriter(root, shards.new_run_id(), columns=None, quarantine_columns=None)
    files = [shards.ShardFile(**r) for r in writer(_instances()).to_pylist()]
    shards.commit(root, writer.run_id, files, [writer.counts], meta={"mixture": "english"})
    sonar = tiny_assets / "sonar"
    cfg = config_io.load(instruct_data.EmbedInstructConfig, "configs/embed_instruct.yaml", [
        f"instructions={root}", f"output={tmp_path / 'out'}", f"cache_dir={tmp_path / 'cache'}",
        f"sonar.encoder={sonar / 'sonar_text_encoder.pt'}",
        f"sonar.tokenizer={sonar / 'sentencepiece.model'}"])
    manifest = instruct_data.embed(cfg)
    assert manifest.meta["mixture"] == "english" and manifest.dim == 64
    table = shards.read_table(str(tmp_path / "out")).sort_by("id")
    assert table["id"].to_pylist() == ["a#0", "b#0"]
    assert table["n_context"].to_pylist() == [3, 3]
    assert table["n_embeddings"].to_pylist() == [6, 5]  # + "End of text."
    a, b = shards.arrow_to_embeddings(table["embeddings"])
    np.testing.assert_allclose(a[-1], b[-1], atol=1e-6)  # the same English end-of-text vector
    bad = shards.read_table(str(tmp_path / "out"), kind="quarantine")
    assert bad["quarantine"].to_pylist() == ["malformed_instance"]


def test_finetune_starts_from_the_pretrained_weights(ray_local, tmp_path):
    dim = 16
    norm = write_synthetic_shards(str(tmp_path / "pre"), 12, dim)
    norm.save(tmp_path / "n.safetensors")
    train = TrainConfig(model="tiny", steps=2, lr=1e-3, warmup_steps=1,
                        max_sentences_per_sequence=8, max_embeddings_per_batch=64,
                        checkpoint_every=2)
    base = dict(normalizer=str(tmp_path / "n.safetensors"), storage_path=str(tmp_path / "ckpt"),
                cache_dir=str(tmp_path / "cache"), num_workers=2)
    pre_uri = launch.run(PretrainJobConfig(
        run_name="pre", shards=str(tmp_path / "pre"), train=train, **base))

    # Instruction shards: the same synthetic documents, first 2 embeddings as context.
    table = shards.read_table(str(tmp_path / "pre"))
    table = table.append_column("n_context", pa.array([2] * table.num_rows, pa.int32()))
    table = table.append_column("quarantine", pa.nulls(table.num_rows, pa.string()))
    writer = shards.ShardWriter(str(tmp_path / "it"), shards.new_run_id(),
                                columns=shards.INSTRUCT_SHARD_COLUMNS)
    shards.commit(str(tmp_path / "it"), writer.run_id,
                  [shards.ShardFile(**r) for r in writer(table).to_pylist()], [writer.counts])
    # lr 0: the fine-tuned weights must equal the pre-trained ones exactly.
    ft = TrainConfig(**{**train.__dict__, "lr": 0.0, "max_sequences_per_batch": 4})
    ft_uri = launch.run(PretrainJobConfig(
        run_name="ft", shards=str(tmp_path / "it"), init_from=pre_uri, train=ft, **base))
    pre, tuned = load_exported_model(Path(pre_uri)), load_exported_model(Path(ft_uri))
    for (k, v), (_, w) in zip(pre.state_dict().items(), tuned.state_dict().items()):
        assert torch.equal(v, w), k
    history = [json.loads(x) for x in (Path(ft_uri) / "train_log.jsonl").read_text().splitlines()]
    # Targets only: each sequence trains on all but its first 2 embeddings.
    docs = table["n_embeddings"].to_pylist()
    assert all(h["embeddings"] <= sum(n - 2 for n in docs) for h in history)


def test_missing_start_checkpoint_fails_before_training(tmp_path):
    write_synthetic_shards(str(tmp_path / "s"), 4, 8).save(tmp_path / "n.safetensors")
    cfg = PretrainJobConfig(shards=str(tmp_path / "s"),
                                     normalizer=str(tmp_path / "n.safetensors"),
                                     storage_path=str(tmp_path / "c"),
                                     cache_dir=str(tmp_path / "cache"),
                                     init_from=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="nope"):
        launch.preflight(cfg)


def test_a_start_checkpoint_of_another_shape_fails_before_training(tmp_path):
    write_synthetic_shards(str(tmp_path / "s"), 4, 8).save(tmp_path / "n.safetensors")
    for dim in (8, 16):  # the shards' dimension, and another
        (tmp_path / f"start{dim}").mkdir()
        torch.save(build_model(TrainConfig(model="tiny"), dim).state_dict(),
                   tmp_path / f"start{dim}" / MODEL_FILE)
    cfg = PretrainJobConfig(shards=str(tmp_path / "s"), normalizer=str(tmp_path / "n.safetensors"),
                            storage_path=str(tmp_path / "c"), cache_dir=str(tmp_path / "cache"),
                            init_from=str(tmp_path / "start8"), train=TrainConfig(model="tiny"))
    launch.preflight(cfg)
    cfg.init_from = str(tmp_path / "start16")
    with pytest.raises(ValueError, match=(
            rf"init_from {tmp_path}/start16 holds a model of another shape than "
            r"train.model='tiny' with model_overrides=\{\} at dimension 8 builds \(4 tensors "
            r"differ: context_in.weight \(64, 16\) != \(64, 8\); ")):
        launch.preflight(cfg)
