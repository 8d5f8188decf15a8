from dataclasses import dataclass, field

import pytest

from jobkit import config as config_io
from pipelines.refresh import CorpusConfig
from jobs.demo import DemoConfig
from pipelines.instruct_data import EmbedInstructConfig
from evaluation.next_sentence import EvalPretrainConfig
from training.fit_normalizer import FitNormalizerConfig
from training.config import PretrainJobConfig
from mimir_model.train import TrainConfig
from pipelines.instruct import MIXTURES


@dataclass
class Inner:
    a: int = 1


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    items: list[Inner] = field(default_factory=list)


def test_nested_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: y\ninner: {a: 2}\nitems: [{a: 3}, {a: 4}]\n")
    cfg = config_io.load(Outer, p, ["inner.a=5", "name=z"])
    assert cfg == Outer("z", Inner(5), [Inner(3), Inner(4)])


def test_unknown_key_is_an_error(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("inner: {b: 2}\n")
    with pytest.raises(ValueError, match=r"unknown keys \['b'\]"):
        config_io.load(Outer, p)


@pytest.mark.parametrize("cls,name", [
    (CorpusConfig, "corpus_refresh.yaml"), (FitNormalizerConfig, "fit_normalizer.yaml"),
    (PretrainJobConfig, "pretrain.yaml"), (PretrainJobConfig, "pretrain_1.6B.yaml"),
    (PretrainJobConfig, "pretrain_runtime.yaml"), (PretrainJobConfig, "pretrain_1.6B_runtime.yaml"),
    (EvalPretrainConfig, "eval_pretrain.yaml"), (DemoConfig, "demo.yaml"),
    (PretrainJobConfig, "finetune.yaml"), (EmbedInstructConfig, "embed_instruct.yaml")]
    + [(PretrainJobConfig, f"finetune_{m}.yaml") for m in MIXTURES])
def test_shipped_configs_load(cls, name):
    cfg = config_io.load(cls, f"configs/{name}")
    assert isinstance(cfg, cls)


@pytest.mark.parametrize("mixture", MIXTURES)
def test_instruction_tuning_configs_are_the_paper_recipe(mixture):
    cfg = config_io.load(PretrainJobConfig, f"configs/finetune_{mixture}.yaml")
    t = cfg.train
    assert (t.steps, t.lr, t.weight_decay) == (20_000, 1e-5, 0.01)
    assert cfg.num_workers * t.max_sequences_per_batch == 512
    assert cfg.shards.endswith(mixture)


def test_recipe_config_is_the_paper_recipe():
    cfg = config_io.load(PretrainJobConfig, "configs/pretrain_1.6B.yaml")
    t = cfg.train
    assert (t.steps, t.lr, t.warmup_steps, t.weight_decay, t.betas, t.eps, t.grad_clip) == \
        (250_000, 4e-4, 10_000, 0.1, (0.9, 0.95), 1e-5, 25.0)
    assert cfg.num_workers * t.max_embeddings_per_batch == 229_376
    assert isinstance(t, TrainConfig)


def test_runtime_recipe_trains_as_the_recipe_and_fits_its_gpus():
    shards_cfg = config_io.load(PretrainJobConfig, "configs/pretrain_1.6B.yaml")
    cfg = config_io.load(PretrainJobConfig, "configs/pretrain_1.6B_runtime.yaml")
    assert cfg.train == shards_cfg.train and cfg.data == "runtime"
    gpus = (cfg.num_workers * cfg.gpus_per_worker + cfg.embed.actors * cfg.embed.num_gpus
            + cfg.segment.actors * cfg.segment.num_gpus)
    assert gpus == shards_cfg.num_workers  # the same 32 GPUs
