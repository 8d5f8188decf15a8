"""The whole pipeline at toy scale, offline, on a local Ray: tiny assets -> corpus shards ->
normalizer -> Two-Tower pre-training (DeepSpeed, 2 Ray Train workers) -> L2 evaluation ->
report (metrics.json, summary.md, loss.png).

    python -m jobs.demo --config jobs/configs/demo.yaml

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

from jobs import config as config_io
from jobs import corpus_refresh, eval_pretrain, fit_normalizer, pretrain
from jobs.assets import build_tiny
from jobs.report import write_report
from mimir_model.train import TRAIN_LOG
from mimir_model.fetch import fetch
from pipelines.counts import StageCounts

log = logging.getLogger("jobs.demo")


@dataclass
class DemoConfig:
    assets: str = "build/assets/tiny"
    report: str = "build/demo/report"
    cache_dir: str = "build/cache"
    corpus: str = "jobs/configs/corpus_refresh.yaml"
    normalizer: str = "jobs/configs/fit_normalizer.yaml"
    pretrain: str = "jobs/configs/pretrain.yaml"
    eval: str = "jobs/configs/eval_pretrain.yaml"
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
    manifest = step("corpus_refresh", corpus_refresh.run,
                    job_config(corpus_refresh.CorpusConfig, "corpus", cfg.corpus))
    step("fit_normalizer", fit_normalizer.run,
         job_config(fit_normalizer.FitNormalizerConfig, "normalizer", cfg.normalizer))
    checkpoint = step("pretrain", pretrain.run,
                      job_config(pretrain.PretrainJobConfig, "pretrain", cfg.pretrain))
    eval_cfg = job_config(eval_pretrain.EvalPretrainConfig, "eval", cfg.eval)
    eval_cfg.checkpoint = checkpoint
    evaluation = step("eval_pretrain", eval_pretrain.run, eval_cfg)

    local = fetch(checkpoint, cfg.cache_dir)
    history = [json.loads(line) for line in (local / TRAIN_LOG).read_text().splitlines()]
    counts = [StageCounts.from_dict(c) for c in manifest.counts]
    metrics = write_report(Path(cfg.report), counts=counts, history=history,
                           evaluation=evaluation, checkpoint=checkpoint, timings=timings)
    print(f"report: {Path(cfg.report).absolute()}/summary.md")
    print(json.dumps({"train_loss": [metrics["training"]["first_loss"],
                                     metrics["training"]["last_loss"]],
                      "l2": evaluation["l2"], "round_trip_l2": evaluation["round_trip_l2"],
                      "seconds": {k: round(v, 1) for k, v in timings.items()}}))
    return metrics


def main() -> None:
    args = config_io.cli(__doc__.splitlines()[0], "jobs/configs/demo.yaml")
    run(config_io.load(DemoConfig, args.config, args.overrides))


if __name__ == "__main__":
    # Through the importable module, not __main__, so that Ray pickles this module's
    # functions and classes by reference (as they are under `ray job submit`).
    from jobs.demo import main as _main

    _main()
