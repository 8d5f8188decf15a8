"""Instruction evaluation (jobs.eval_instruct, jobs.eval_xlwsd, jobs.baseline_lm): ROUGE-L F1
on the XL-Sum and MLQA test sets and the XL-WSD generative split.

Each prompt is validated and segmented with SaT as in training and framed as in training
(mimir_model/framing.py, paper Table 6). The model samples up to `max_sentences` sentence
embeddings (stopping at "End of text."), the SONAR decoder writes them in the example's
language (example i's noise seeded seed + i, as jobs.generate draws it for prompt i), and the
joined sentences are scored against the references with
evaluation/rouge.py. One Ray task per input; report in `report_dir`: {report_name}.json, .md,
one chart per dataset, and the predictions.

XL-WSD (Basile et al. 2025), the split without translations: 6,757 English, 1,673 Italian,
1,248 Spanish, 539 French and 263 German instances; each prompt is the XL-WSD template filled
with the target word and its sentence, scored against the gold definitions.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow.compute as pc

import storage
from evaluation.models import Models
from evaluation.rouge import Scorer, rouge_l_f1, scorer_tokenizer
from jobkit.cli import setup_logging
from jobkit.cluster import init_ray
from jobkit.config import write_config
from mimir_model.diffusion import NoiseSchedule, SamplerConfig
from mimir_model.framing import STOP_COSINE, XLWSD_PROMPT, frame_prompt, turn_markers
from mimir_model.generate import generate
from mimir_model.sonar.config import SonarFiles
from pipelines.readers.eval_sets import TASK_SETS, read_tasks
from pipelines.stage_configs import SegmentConfig
from pipelines.validate import MAX_CHARS, ValidateText
from reports.charts import rouge_report
from storage.paths import Input, Output, Scratch, absolute_paths

log = logging.getLogger(__name__)


XLWSD_LANGS = ("eng_Latn", "ita_Latn", "spa_Latn", "fra_Latn", "deu_Latn")


@dataclass
class TaskSet:
    dataset: Literal["xlsum", "mlqa", "xlwsd"]
    uri: Input  # the test file (or folder) of one language
    lang: str  # its SONAR code


@dataclass
class EvalInstructConfig:
    checkpoint: Input = ""  # an instruction-tuned checkpoint folder (local or s3://)
    model_name: str = "mimir"  # the label in reports and charts
    normalizer: Input = "build/demo/normalizer.safetensors"  # the one the model was trained with
    sonar: SonarFiles = field(default_factory=SonarFiles)  # encoder, decoder and tokenizer
    inputs: list[TaskSet] = field(default_factory=list)  # test sets, one language each
    max_examples: int = 0  # per input; 0 = all
    max_sentences: int = 16  # generated sentences per example at most
    stop_cosine: float = STOP_COSINE  # a sentence this close to "End of text." ends generation
    # Sentences generated before one may end generation (the LCM reference's min_gen_len: 1,
    # so the first generated sentence never does).
    min_gen_len: int = 1
    # Leave the sentence that ended generation out of the prediction (the LCM reference
    # keeps it: trim_hypotheses=False).
    trim_end_of_text: bool = False
    batch_size: int = 32  # prompts generated together
    decode_max_tokens: int = 0  # per decoded sentence; 0 = SONAR's rule (dim + 128)
    # ROUGE tokenization (evaluation/rouge.py): "mimir" needs no extra packages; "xlsum" is
    # the XL-Sum authors' scorer exactly (jieba, MeCab, stemmers; the rouge-xlsum extra).
    scorer: Scorer = "mimir"
    xlwsd_prompt: str = XLWSD_PROMPT  # filled with {target} and {sentence}
    max_prompt_chars: int = MAX_CHARS  # longer prompts are quarantined as too_long
    seed: int = 0  # example i (in input order, after validation) draws its noise seeded seed + i
    device: Literal["cpu", "cuda"] = "cpu"  # where the models run in each task
    num_gpus: float = 0  # GPU share of each evaluation task
    cache_dir: Scratch = "build/cache"  # where remote files are downloaded
    report_dir: Output = "build/eval/instruct"  # the report folder (local or s3://)
    report_name: str = "eval_instruct"  # the report files' name
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)


def evaluate_input(cfg: EvalInstructConfig, inp: TaskSet) -> dict:
    """Generate and score every example of one input."""
    setup_logging()
    t0 = time.monotonic()
    m = Models.load(cfg.checkpoint, cfg.normalizer, cfg.sonar, cfg.device, cfg.cache_dir)
    validate = ValidateText(max_chars=cfg.max_prompt_chars)
    segmenter = cfg.segment.spec(cfg.cache_dir).build()
    table = read_tasks(inp.dataset, inp.uri, inp.lang, cfg.max_examples or None,
                       cfg.xlwsd_prompt)
    table = segmenter(validate(table))
    good = pc.is_null(table["quarantine"]).to_pylist()
    ids = [x for x, ok in zip(table["id"].to_pylist(), good) if ok]
    prompts = [frame_prompt(s, inp.lang)
               for s, ok in zip(table["sentences"].to_pylist(), good) if ok]
    refs = [r for r, ok in zip(table["references"].to_pylist(), good) if ok]

    schedule = NoiseSchedule(m.model.cfg.num_diffusion_steps)
    tokenizer = scorer_tokenizer(cfg.scorer, inp.lang)
    predictions: list[dict] = []
    for start in range(0, len(prompts), cfg.batch_size):
        batch = prompts[start:start + cfg.batch_size]
        outputs = generate(m.model, schedule, cfg.sampler, m.normalizer, m.encoder.encode,
                           partial(m.decoder.decode, max_len=cfg.decode_max_tokens or None),
                           batch, inp.lang, inp.lang, max_sentences=cfg.max_sentences,
                           stop_cosine=cfg.stop_cosine, min_gen_len=cfg.min_gen_len,
                           trim_end_of_text=cfg.trim_end_of_text,
                           seeds=[cfg.seed + i for i in range(start, start + len(batch))])
        for j, sentences in enumerate(outputs):
            text = " ".join(sentences)
            predictions.append({"id": ids[start + j], "prediction": text,
                                "references": refs[start + j],
                                "rouge_l": 100 * rouge_l_f1(text, refs[start + j], tokenizer)})
        log.info("%s %s: %d/%d examples (%.2f/s)", inp.dataset, inp.lang, len(predictions),
                 len(prompts), len(predictions) / max(time.monotonic() - t0, 1e-9))
    return {"dataset": inp.dataset, "lang": inp.lang, "predictions": predictions,
            "counts": [validate.counts.as_dict(), segmenter.counts.as_dict()],
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


def write_rouge_report(result: dict, parts: list[dict], out: Path, name: str) -> None:
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


def check_task_sets(inputs: list[TaskSet], scorer: Scorer) -> None:
    """Refuse an empty input list, an unknown dataset or a scorer whose packages are missing
    before any work."""
    if not inputs:
        raise ValueError("no inputs to evaluate")
    for inp in inputs:
        if inp.dataset not in TASK_SETS:
            raise ValueError(f"unknown dataset {inp.dataset!r}; choose from {TASK_SETS}")
        scorer_tokenizer(scorer, inp.lang)


def check_xlwsd(cfg: EvalInstructConfig) -> None:
    """Every input of an XL-WSD evaluation is an XL-WSD file of one of the split's five
    languages."""
    for inp in cfg.inputs:
        if inp.dataset != "xlwsd" or inp.lang not in XLWSD_LANGS:
            raise ValueError(f"XL-WSD evaluation takes xlwsd inputs in {XLWSD_LANGS}, got "
                             f"{inp.dataset} {inp.lang}")


def run(cfg: EvalInstructConfig) -> dict:
    import ray

    if not cfg.checkpoint:
        raise ValueError("set checkpoint=URI (an instruction-tuned checkpoint folder)")
    check_task_sets(cfg.inputs, cfg.scorer)
    for inp in cfg.inputs:
        turn_markers(inp.lang)  # fail before any work
    absolute_paths(cfg)
    init_ray()
    task = ray.remote(num_cpus=1, num_gpus=cfg.num_gpus)(evaluate_input)
    parts = ray.get([task.remote(cfg, inp) for inp in cfg.inputs])
    result = merge_scores(cfg.model_name, parts)
    result.update(checkpoint=cfg.checkpoint, scorer=cfg.scorer, max_sentences=cfg.max_sentences,
                  sampler=asdict(cfg.sampler), counts=[c for p in parts for c in p["counts"]])
    with storage.local_dir(cfg.report_dir) as out:
        write_rouge_report(result, parts, out, cfg.report_name)
        write_config(cfg, out)
    return result
