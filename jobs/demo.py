"""The whole pipeline at toy scale, offline, on a local Ray: tiny assets -> corpus shards ->
normalizer -> Two-Tower pre-training (DeepSpeed, 2 Ray Train workers) -> L2 evaluation ->
report (metrics.json, summary.md, loss.png).

    python -m jobs.demo --config configs/demo.yaml

Safe to run again: assets are reused, the corpus job processes only input files its shard
manifest does not list yet (none, on a second run), training resumes from its latest
checkpoint (and stops at once if it already reached its last step).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from evaluation import next_sentence
from jobkit import config as config_io
from jobkit.cli import parse
from jobkit.config import write_config
from mimir_model.checkpoint import read_history
from offline_assets.tiny import build_tiny
from pipelines import refresh
from pipelines.counts import StageCounts
from reports.demo import write_demo_report
from storage.cache import fetch
from storage.paths import Input, Output, Scratch
from training import fit_normalizer
from training.config import PretrainJobConfig
from training.launch import run as pretrain

log = logging.getLogger("jobs.demo")


@dataclass
class DemoConfig:
    assets: Output = "build/assets/tiny"  # built here if missing
    report: Output = "build/demo/report"  # metrics.json, summary.md, loss.png
    cache_dir: Scratch = "build/cache"  # where remote files are downloaded
    # Each job's config file.
    corpus: Input = "configs/corpus_refresh.yaml"
    normalizer: Input = "configs/fit_normalizer.yaml"
    pretrain: Input = "configs/pretrain.yaml"
    eval: Input = "configs/eval_pretrain.yaml"
    # Per job, KEY=VALUE overrides of its config.
    overrides: dict[str, list[str]] = field(default_factory=dict)


def run(cfg: DemoConfig) -> dict:
    timings: dict[str, float] = {}

    def step(name: str, fn, *args):
        log.info("=== %s ===", name)
        t = time.perf_counter()
        out = fn(*args)
        timings[name] = time.perf_counter() - t
        log.info("=== %s done in %.1f s ===", name, timings[name])
        return out

    def job_config(cls, key: str, path: str):
        return config_io.load(cls, path, cfg.overrides.get(key, []))

    step("assets", build_tiny, Path(cfg.assets))
    manifest = step("corpus_refresh", refresh.run,
                    job_config(refresh.CorpusConfig, "corpus", cfg.corpus))
    step("fit_normalizer", fit_normalizer.run,
         job_config(fit_normalizer.FitNormalizerConfig, "normalizer", cfg.normalizer))
    checkpoint = step("pretrain", pretrain, job_config(PretrainJobConfig, "pretrain",
                                                         cfg.pretrain))
    eval_cfg = job_config(next_sentence.EvalPretrainConfig, "eval", cfg.eval)
    eval_cfg.checkpoint = checkpoint
    evaluation = step("eval_pretrain", next_sentence.run, eval_cfg)

    history = read_history(fetch(checkpoint, cfg.cache_dir))
    counts = [StageCounts.from_dict(c) for c in manifest.counts]
    metrics = write_demo_report(Path(cfg.report), counts=counts, history=history,
                           evaluation=evaluation, checkpoint=checkpoint, timings=timings)
    write_config(cfg, Path(cfg.report))
    print(f"report: {Path(cfg.report).absolute()}/summary.md")
    print(json.dumps({"train_loss": [metrics["training"]["first_loss"],
                                     metrics["training"]["last_loss"]],
                      "l2": evaluation["l2"], "round_trip_l2": evaluation["round_trip_l2"],
                      "seconds": {k: round(v, 1) for k, v in timings.items()}}))
    return metrics


def main() -> None:
    run(parse(DemoConfig, __doc__, "configs/demo.yaml"))


if __name__ == "__main__":
    main()
