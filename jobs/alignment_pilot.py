"""Alignment pilot (paper Table 9): how close SONAR puts English and its translation.

For each WikiMatrix language config (english, non_english), the first `max_pairs` pairs are
embedded, English as eng_Latn and the other side in its language; the figure is the mean
cosine similarity over pairs. Report in `report_dir`: alignment_pilot.json, .md and a chart.

    python -m jobs.alignment_pilot --config jobs/configs/alignment_pilot.yaml
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jobs import config as config_io
from jobs.cluster import init_ray
from jobs.eval_charts import alignment_report
from mimir_model.sonar.pipeline import TextEncoder
from pipelines import eval_sources, storage

log = logging.getLogger("jobs.alignment_pilot")


@dataclass
class AlignmentInput:
    uri: str  # one WikiMatrix config (en-xx): a file or folder
    lang: str  # the SONAR code of non_english


@dataclass
class AlignmentConfig:
    sonar_encoder: str = "build/assets/tiny/sonar/sonar_text_encoder.pt"
    sonar_tokenizer: str = "build/assets/tiny/sonar/sentencepiece.model"
    inputs: list[AlignmentInput] = field(default_factory=list)
    max_pairs: int = 1000
    device: str = "cpu"
    num_gpus: float = 0
    cache_dir: str = "build/cache"
    report_dir: str = "build/eval/alignment"


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over rows of cos(a[i], b[i])."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cos.mean())


def evaluate(cfg: AlignmentConfig) -> dict:
    encoder = TextEncoder.from_uris(cfg.sonar_encoder, cfg.sonar_tokenizer, device=cfg.device,
                                    cache_dir=cfg.cache_dir)
    per_lang = {}
    for inp in cfg.inputs:
        table = eval_sources.read_wikimatrix(inp.uri, inp.lang, cfg.max_pairs)
        english = encoder.encode(table["english"].to_pylist(), "eng_Latn")
        other = encoder.encode(table["non_english"].to_pylist(), inp.lang)
        per_lang[inp.lang] = {"pairs": table.num_rows, "cosine": mean_cosine(english, other)}
        log.info("%s: mean cosine %.4f over %d pairs", inp.lang, per_lang[inp.lang]["cosine"],
                 table.num_rows)
    return {"sonar_encoder": cfg.sonar_encoder, "max_pairs": cfg.max_pairs,
            "per_language": per_lang,
            "cosine": float(np.mean([r["cosine"] for r in per_lang.values()]))}


def run(cfg: AlignmentConfig) -> dict:
    import ray

    if not cfg.inputs:
        raise ValueError("no inputs to evaluate")
    init_ray()
    for name in ("sonar_encoder", "sonar_tokenizer", "cache_dir", "report_dir"):
        setattr(cfg, name, config_io.absolute(getattr(cfg, name)))
    for inp in cfg.inputs:
        inp.uri = config_io.absolute(inp.uri)
    result = ray.get(ray.remote(num_cpus=1, num_gpus=cfg.num_gpus)(evaluate).remote(cfg))
    with storage.local_dir(cfg.report_dir) as out:
        (out / "alignment_pilot.json").write_text(json.dumps(result, indent=2))
        alignment_report(result, out)
    return result


def main() -> None:
    args = config_io.cli(__doc__.splitlines()[0], "jobs/configs/alignment_pilot.yaml")
    result = run(config_io.load(AlignmentConfig, args.config, args.overrides))
    print(json.dumps({lang: round(r["cosine"], 4) for lang, r in result["per_language"].items()}))


if __name__ == "__main__":
    # Through the importable module, not __main__, so that Ray pickles this module's
    # functions and classes by reference (as they are under `ray job submit`).
    from jobs.alignment_pilot import main as _main

    _main()
