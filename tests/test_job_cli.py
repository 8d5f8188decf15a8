"""Typed job configs and the command line every job shares (jobkit): values checked and coerced
at load, includes, `--help` from the config classes, `--print-config` round trips, errors
before Ray starts."""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from jobkit import cli
from jobkit import config as config_io
from storage.paths import Input
from training.config import PretrainJobConfig

ROOT = Path(__file__).resolve().parent.parent

# Every job's config class and its default config file.
JOBS = {
    "jobs.corpus_refresh": ("pipelines.refresh:CorpusConfig", "corpus_refresh.yaml"),
    "jobs.fit_normalizer": ("training.fit_normalizer:FitNormalizerConfig", "fit_normalizer.yaml"),
    "jobs.pretrain": ("training.config:PretrainJobConfig", "pretrain.yaml"),
    "jobs.finetune": ("training.config:PretrainJobConfig", "finetune.yaml"),
    "jobs.eval_pretrain": ("evaluation.next_sentence:EvalPretrainConfig", "eval_pretrain.yaml"),
    "jobs.eval_instruct": ("evaluation.instruct:EvalInstructConfig", "eval_instruct.yaml"),
    "jobs.eval_xlwsd": ("evaluation.instruct:EvalInstructConfig", "eval_xlwsd.yaml"),
    "jobs.alignment_pilot": ("evaluation.alignment:AlignmentConfig", "alignment_pilot.yaml"),
    "jobs.baseline_lm": ("evaluation.baseline:BaselineConfig", "eval_baseline.yaml"),
    "jobs.prepare_instruct": ("pipelines.instruct_data:PrepareConfig", "prepare_instruct.yaml"),
    "jobs.embed_instruct": ("pipelines.instruct_data:EmbedInstructConfig", "embed_instruct.yaml"),
    "jobs.synthesize_chats": ("pipelines.synthesize:SynthConfig", "synthesize_chats.yaml"),
    "jobs.corpus_stats": ("reports.corpus_stats:StatsConfig", "corpus_stats.yaml"),
    "jobs.demo": ("jobs.demo:DemoConfig", "demo.yaml"),
    "jobs.generate": ("generation.prompts:GenerateConfig", "generate.yaml"),
    "jobs.export": ("generation.export:ExportConfig", "export.yaml"),
}


def _cls(spec: str) -> type:
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


@dataclass
class Inner:
    steps: int = 10
    lr: float = 1e-3
    mode: Literal["a", "b"] = "a"


@dataclass
class Outer:
    out: Input = "x"
    inner: Inner = field(default_factory=Inner)
    items: list[Inner] = field(default_factory=list)


def test_values_are_checked_and_coerced():
    cfg = config_io.from_dict(Outer, {"inner": {"steps": "8", "lr": "1e-4"}})
    assert (cfg.inner.steps, cfg.inner.lr) == (8, 1e-4)
    with pytest.raises(config_io.ConfigError,
                       match=r"inner.steps = 'ten': .*valid integer.* \(expected int\)"):
        config_io.from_dict(Outer, {"inner": {"steps": "ten"}})
    with pytest.raises(config_io.ConfigError, match=r"items.1.mode = 'c': .*\(expected 'a' \| 'b'\)"):
        config_io.from_dict(Outer, {"items": [{"mode": "a"}, {"mode": "c"}]})
    with pytest.raises(config_io.ConfigError,
                       match=r"unknown keys \['stepz'\] in inner; did you mean 'steps'\?"):
        config_io.from_dict(Outer, {"inner": {"stepz": 3}})


def test_override_of_a_float_in_exponent_notation(tmp_path):
    # YAML 1.1 reads 1e-4 as a string; the float field turns it into 0.0001.
    cfg = config_io.load(PretrainJobConfig, ROOT / "configs/pretrain.yaml",
                         ["train.lr=1e-4", "num_workers=3"])
    assert cfg.train.lr == 1e-4 and isinstance(cfg.train.lr, float) and cfg.num_workers == 3
    for override, key in (("num_workers=two", "num_workers"), ("data=cached", "data"),
                          ("train.precision=fp16", "train.precision"),
                          ("train.zero_stage=5", "train.zero_stage")):
        with pytest.raises(config_io.ConfigError, match=rf"{key} = "):
            config_io.load(PretrainJobConfig, ROOT / "configs/pretrain.yaml", [override])


def test_includes_merge_sections_and_replace_lists(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "b.yaml").write_text(
        "out: base\ninner: {steps: 1, lr: 0.5}\nitems: [{steps: 1}, {steps: 2}]\n")
    (tmp_path / "c.yaml").write_text("include: base/b.yaml\ninner: {steps: 7}\nitems: [{steps: 3}]\n")
    cfg = config_io.load(Outer, tmp_path / "c.yaml")
    assert cfg.inner == Inner(steps=7, lr=0.5) and cfg.items == [Inner(steps=3)]
    assert cfg.out == str(Path.cwd() / "base")  # made absolute by the one path pass
    (tmp_path / "loop.yaml").write_text("include: loop.yaml\n")
    with pytest.raises(config_io.ConfigError, match="includes itself"):
        config_io.load(Outer, tmp_path / "loop.yaml")
    (tmp_path / "bad.yaml").write_text("inner: {steps: [1, 2\n")
    with pytest.raises(config_io.ConfigError, match=r"bad.yaml is not valid YAML") as bad:
        config_io.load(Outer, tmp_path / "bad.yaml")
    assert f'in "{tmp_path / "bad.yaml"}", line 1' in str(bad.value)
    assert "<unicode string>" not in str(bad.value)


def test_the_recipes_share_one_train_block():
    base = config_io.load(PretrainJobConfig, ROOT / "configs/pretrain_1.6B.yaml").train
    runtime = config_io.load(PretrainJobConfig, ROOT / "configs/pretrain_1.6B_runtime.yaml").train
    assert runtime == base
    text = [p.read_text() for p in (ROOT / "configs").rglob("*.yaml")]
    assert sum("max_embeddings_per_batch: 7168" in t for t in text) == 1


@pytest.mark.parametrize("config", sorted(p.relative_to(ROOT / "configs").as_posix()
                                          for p in (ROOT / "configs").glob("*.yaml")))
def test_print_config_round_trips(config, tmp_path):
    specs = [c for c, f in JOBS.values() if f == config]
    cls = _cls(specs[0] if specs else _guess(config))
    cfg = config_io.load(cls, ROOT / "configs" / config)
    again_path = tmp_path / "printed.yaml"
    again_path.write_text(config_io.to_yaml(cfg))
    assert config_io.load(cls, again_path) == cfg


def _guess(config: str) -> str:
    """The config class of a shipped config file by its name."""
    for prefix, spec in (("pretrain", "training.config:PretrainJobConfig"),
                         ("finetune", "training.config:PretrainJobConfig"),
                         ("bench_", "training.config:PretrainJobConfig"),
                         ("corpus_refresh", "pipelines.refresh:CorpusConfig"),
                         ("eval_pretrain", "evaluation.next_sentence:EvalPretrainConfig"),
                         ("eval_", "evaluation.instruct:EvalInstructConfig")):
        if config.startswith(prefix):
            return spec
    raise KeyError(config)


@pytest.mark.parametrize("module", sorted(JOBS))
def test_every_key_of_every_job_is_documented(module):
    cls = _cls(JOBS[module][0])
    undocumented = [key for key, _, _, doc in config_io.describe(cls) if not doc]
    assert undocumented == []


def test_help_lists_keys_with_type_default_and_doc():
    table = cli.key_table(PretrainJobConfig)
    keys = [k for k, *_ in config_io.describe(PretrainJobConfig)]
    assert all(f"  {k} " in table for k in keys)
    assert "train.steps" in table and "int = 250000" in table
    assert "data" in table and "'shards' | 'runtime' = shards" in table
    assert "optimizer steps of the whole run" in table


def test_print_config_from_the_command_line():
    out = subprocess.run([sys.executable, "-m", "jobs.pretrain", "--print-config",
                          "train.steps=7"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    printed = ROOT / "build" / "test-printed-pretrain.yaml"
    printed.parent.mkdir(exist_ok=True)
    printed.write_text(out.stdout)
    cfg = config_io.load(PretrainJobConfig, printed)
    assert cfg == config_io.load(PretrainJobConfig, ROOT / "configs/pretrain.yaml",
                                 ["train.steps=7"])


def test_a_wrong_type_stops_the_job_before_ray_starts():
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-m", "jobs.pretrain", "train.steps=ten"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2
    assert "error: config pretrain.yaml: train.steps = 'ten'" in out.stderr
    assert "Ray" not in out.stderr  # nothing was started
    out = subprocess.run([sys.executable, "-m", "jobs.finetune"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2 and "set init_from=URI" in out.stderr


def test_log_level_is_case_insensitive_and_exported(monkeypatch):
    monkeypatch.delenv("MIMIR_LOG_LEVEL", raising=False)
    assert cli.setup_logging("warning") == "WARNING"
    assert os.environ["MIMIR_LOG_LEVEL"] == "WARNING"
    assert logging.getLogger().level == logging.WARNING
    assert cli.setup_logging() == "WARNING"  # a worker reads the job's level
    with pytest.raises(ValueError, match="LOUD"):
        cli.setup_logging("loud")
    cli.setup_logging("info")
