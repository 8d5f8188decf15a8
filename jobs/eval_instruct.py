"""Instruction evaluation: ROUGE-L F1 on XL-Sum and MLQA test sets (also XL-WSD, see
jobs/eval_xlwsd.py).

Each prompt is segmented with SaT and framed as in training (paper Table 6):
context = ["User turn." in the language] + prompt sentences + ["Assistant turn." in the
language]. The model samples up to `max_sentences` sentence embeddings (stopping at
"End of text."), the SONAR decoder writes them in the example's language, and the joined
sentences are scored against the references with pipelines/rouge.py. One Ray task per input;
report in `report_dir`: {report_name}.json, .md, one chart per dataset, and the predictions.

    python -m jobs.eval_instruct --config jobs/configs/eval_instruct.yaml checkpoint=URI
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch

from jobs import config as config_io
from jobs.cluster import init_ray
from jobs.eval_charts import rouge_report
from jobs.stages import SegmentConfig
from mimir_model.diffusion import NoiseSchedule, SamplerConfig
from mimir_model.fetch import fetch
from mimir_model.generate import generate
from mimir_model.normalizer import RobustNormalizer
from mimir_model.sonar.pipeline import TextDecoder, TextEncoder
from mimir_model.train import load_exported_model
from pipelines import eval_sources, storage
from pipelines.instruct import TURN_MARKERS
from pipelines.rouge import rouge_l_f1
from pipelines.segment import Segmenter

log = logging.getLogger("jobs.eval_instruct")


def turn_markers(lang: str) -> tuple[str, str]:
    """("User turn.", "Assistant turn.") in lang, as in the instruction data."""
    if lang not in TURN_MARKERS:
        raise ValueError(f"no translated turn markers for {lang}; known: {sorted(TURN_MARKERS)}")
    return TURN_MARKERS[lang]


@dataclass
class InstructInput:
    dataset: str  # xlsum | mlqa | xlwsd
    uri: str  # the test file (or folder) of one language
    lang: str  # its SONAR code


@dataclass
class EvalInstructConfig:
    checkpoint: str = ""  # an instruction-tuned checkpoint folder (local or s3://)
    model_name: str = "mimir"  # the label in reports and charts
    normalizer: str = "build/demo/normalizer.safetensors"
    sonar_encoder: str = "build/assets/tiny/sonar/sonar_text_encoder.pt"
    sonar_decoder: str = "build/assets/tiny/sonar/sonar_text_decoder.pt"
    sonar_tokenizer: str = "build/assets/tiny/sonar/sentencepiece.model"
    inputs: list[InstructInput] = field(default_factory=list)
    max_examples: int = 0  # per input; 0 = all
    max_sentences: int = 16
    stop_cosine: float = 0.90
    batch_size: int = 32  # prompts generated together
    decode_max_tokens: int = 0  # per decoded sentence; 0 = SONAR's rule (dim + 128)
    xlwsd_prompt: str = eval_sources.XLWSD_PROMPT
    seed: int = 0
    device: str = "cpu"
    num_gpus: float = 0
    cache_dir: str = "build/cache"
    report_dir: str = "build/eval/instruct"
    report_name: str = "eval_instruct"
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)


def build_context(sentences: list[str], lang: str) -> list[str]:
    user, assistant = turn_markers(lang)
    return [user, *sentences, assistant]


def evaluate_input(cfg: EvalInstructConfig, inp: InstructInput) -> dict:
    """Generate and score every example of one input."""
    cache = Path(cfg.cache_dir)
    model = load_exported_model(fetch(cfg.checkpoint, cache), cfg.device)
    normalizer = RobustNormalizer.load(fetch(cfg.normalizer, cache))
    encoder = TextEncoder.from_uris(cfg.sonar_encoder, cfg.sonar_tokenizer, device=cfg.device,
                                    cache_dir=str(cache))
    decoder = TextDecoder.from_uris(cfg.sonar_decoder, cfg.sonar_tokenizer, device=cfg.device,
                                    cache_dir=str(cache))
    seg = cfg.segment
    segmenter = Segmenter(seg.model, seg.threshold, seg.max_chars, seg.device, cfg.cache_dir)
    table = eval_sources.read_instruct(inp.dataset, inp.uri, inp.lang,
                                       cfg.max_examples or None, cfg.xlwsd_prompt)
    table = segmenter(table)
    good = pc.is_null(table["quarantine"]).to_pylist()
    ids = [x for x, ok in zip(table["id"].to_pylist(), good) if ok]
    prompts = [build_context(s, inp.lang)
               for s, ok in zip(table["sentences"].to_pylist(), good) if ok]
    refs = [r for r, ok in zip(table["references"].to_pylist(), good) if ok]

    schedule = NoiseSchedule()
    generator = torch.Generator().manual_seed(cfg.seed)
    predictions: list[dict] = []
    for start in range(0, len(prompts), cfg.batch_size):
        outputs = generate(model, schedule, cfg.sampler, normalizer, encoder.encode,
                           partial(decoder.decode, max_len=cfg.decode_max_tokens or None),
                           prompts[start:start + cfg.batch_size], inp.lang,
                           inp.lang, max_sentences=cfg.max_sentences,
                           stop_cosine=cfg.stop_cosine, generator=generator)
        for j, sentences in enumerate(outputs):
            text = " ".join(sentences)
            predictions.append({"id": ids[start + j], "prediction": text,
                                "references": refs[start + j],
                                "rouge_l": 100 * rouge_l_f1(text, refs[start + j])})
        log.info("%s %s: %d/%d examples", inp.dataset, inp.lang, len(predictions), len(prompts))
    return {"dataset": inp.dataset, "lang": inp.lang, "predictions": predictions,
            "counts": [segmenter.counts.as_dict()],
            "quarantined": table.num_rows - len(prompts)}


def merge_scores(model_name: str, parts: list[dict]) -> dict:
    """Per dataset and language the mean ROUGE-L (x100) over examples; per dataset the mean
    of its language means."""
    by_key: dict[tuple[str, str], list[float]] = defaultdict(list)
    quarantined: dict[tuple[str, str], int] = defaultdict(int)
    for p in parts:
        by_key[p["dataset"], p["lang"]] += [x["rouge_l"] for x in p["predictions"]]
        quarantined[p["dataset"], p["lang"]] += p["quarantined"]
    datasets: dict[str, dict] = {}
    for (ds, lang), scores in sorted(by_key.items()):
        entry = datasets.setdefault(ds, {"per_language": {}})
        entry["per_language"][lang] = {"examples": len(scores),
                                       "quarantined": quarantined[ds, lang],
                                       "rouge_l": float(np.mean(scores)) if scores else 0.0}
    for entry in datasets.values():
        rows = entry["per_language"].values()
        entry["examples"] = sum(r["examples"] for r in rows)
        entry["rouge_l"] = float(np.mean([r["rouge_l"] for r in rows]))
    return {"model": model_name, "datasets": datasets}


def write_report(result: dict, parts: list[dict], out: Path, name: str) -> None:
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    with open(out / f"{name}_predictions.jsonl", "w") as f:
        for p in parts:
            for x in p["predictions"]:
                f.write(json.dumps({"dataset": p["dataset"], "lang": p["lang"], **x},
                                   ensure_ascii=False) + "\n")
    rouge_report([result], out, name)
    for ds, entry in result["datasets"].items():
        log.info("%s %s: ROUGE-L %.2f over %d examples", result["model"], ds,
                 entry["rouge_l"], entry["examples"])


def check_inputs(inputs: list[InstructInput]) -> None:
    """Refuse an empty input list or an unknown dataset before any work; make local input
    paths absolute (Ray workers may run elsewhere)."""
    if not inputs:
        raise ValueError("no inputs to evaluate")
    for inp in inputs:
        if inp.dataset not in eval_sources.INSTRUCT_DATASETS:
            raise ValueError(f"unknown dataset {inp.dataset!r}; choose from "
                             f"{eval_sources.INSTRUCT_DATASETS}")
        inp.uri = config_io.absolute(inp.uri)


def run(cfg: EvalInstructConfig) -> dict:
    import ray

    if not cfg.checkpoint:
        raise ValueError("set checkpoint=URI (an instruction-tuned checkpoint folder)")
    check_inputs(cfg.inputs)
    for inp in cfg.inputs:
        turn_markers(inp.lang)  # fail before any work
    init_ray()
    for name in ("checkpoint", "normalizer", "sonar_encoder", "sonar_decoder",
                 "sonar_tokenizer", "cache_dir", "report_dir"):
        setattr(cfg, name, config_io.absolute(getattr(cfg, name)))
    cfg.segment.model = config_io.absolute(cfg.segment.model)
    task = ray.remote(num_cpus=1, num_gpus=cfg.num_gpus)(evaluate_input)
    parts = ray.get([task.remote(cfg, inp) for inp in cfg.inputs])
    result = merge_scores(cfg.model_name, parts)
    result.update(checkpoint=cfg.checkpoint, max_sentences=cfg.max_sentences,
                  sampler=asdict(cfg.sampler), counts=[c for p in parts for c in p["counts"]])
    with storage.local_dir(cfg.report_dir) as out:
        write_report(result, parts, out, cfg.report_name)
    return result


def main() -> None:
    args = config_io.cli(__doc__.splitlines()[0], "jobs/configs/eval_instruct.yaml")
    result = run(config_io.load(EvalInstructConfig, args.config, args.overrides))
    print(json.dumps({ds: round(e["rouge_l"], 2) for ds, e in result["datasets"].items()}))


if __name__ == "__main__":
    # Through the importable module, not __main__, so that Ray pickles this module's
    # functions and classes by reference (as they are under `ray job submit`).
    from jobs.eval_instruct import main as _main

    _main()
