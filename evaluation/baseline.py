"""The baseline (jobs.baseline_lm): a Hugging Face causal LM (Qwen3-1.7B in the paper) on the
same prompts, greedy.

The prompts are the evaluation sets' prompt texts (pipelines/readers/eval_sets.py), given as one
user message through the tokenizer's chat template when it has one (Qwen3 with thinking off),
else as plain text. Outputs are scored with the same ROUGE-L as evaluation/instruct.py and
reported in the same layout, so `python -m jobs.eval_charts` can chart both side by side.
Needs only `transformers`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow.compute as pc
import torch

import storage
from evaluation.instruct import TaskSet, check_task_sets, merge_scores, write_rouge_report
from evaluation.rouge import Scorer, rouge_l_f1, scorer_tokenizer
from jobkit.cli import setup_logging
from jobkit.cluster import init_ray
from jobkit.config import write_config
from mimir_model.framing import XLWSD_PROMPT
from pipelines.readers.eval_sets import read_tasks
from storage.paths import Input, Output, absolute_paths

log = logging.getLogger(__name__)

_THINK = re.compile(r"<think>.*?</think>", re.S)


@dataclass
class BaselineConfig:
    model: Input = "Qwen/Qwen3-1.7B"  # Hub name or local folder
    model_name: str = ""  # label in reports; default: the model's last path component
    inputs: list[TaskSet] = field(default_factory=list)  # test sets, one language each
    max_examples: int = 0  # per input; 0 = all
    max_new_tokens: int = 512  # greedy decoding stops here at the latest
    batch_size: int = 8  # prompts generated together
    chat_template: bool = True  # use the tokenizer's chat template when it has one
    enable_thinking: bool = False  # Qwen3's template switch; other templates ignore it
    # ROUGE tokenization (evaluation/rouge.py): "mimir" needs no extra packages; "xlsum" is
    # the XL-Sum authors' scorer exactly (jieba, MeCab, stemmers; the rouge-xlsum extra).
    scorer: Scorer = "mimir"
    xlwsd_prompt: str = XLWSD_PROMPT  # filled with {target} and {sentence}
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"  # float32 on CPU
    device: Literal["cpu", "cuda"] = "cpu"  # where the model runs
    num_gpus: float = 0  # GPU share of the evaluation task
    report_dir: Output = "build/eval/baseline"  # the report folder (local or s3://)
    report_name: str = "baseline_lm"  # the report files' name


def format_prompt(tokenizer, prompt: str, cfg: BaselineConfig) -> str:
    if cfg.chat_template and tokenizer.chat_template:
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                             tokenize=False, add_generation_prompt=True,
                                             enable_thinking=cfg.enable_thinking)
    return prompt


def greedy_generate(model, tokenizer, texts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy continuations of a batch of texts (left-padded), without the prompts."""
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False,
                      return_token_type_ids=False)
    batch = {k: v.to(model.device) for k, v in batch.items()}
    with torch.inference_mode():
        out = model.generate(**batch, do_sample=False, max_new_tokens=max_new_tokens,
                             pad_token_id=tokenizer.pad_token_id)
    new = out[:, batch["input_ids"].shape[1]:]
    texts = tokenizer.batch_decode(new, skip_special_tokens=True)
    return [_THINK.sub("", t).strip() for t in texts]


def evaluate(cfg: BaselineConfig) -> list[dict]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    setup_logging()

    tokenizer = AutoTokenizer.from_pretrained(cfg.model, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=getattr(torch, cfg.dtype))
    model = model.to(cfg.device).eval()
    parts = []
    for inp in cfg.inputs:
        table = read_tasks(inp.dataset, inp.uri, inp.lang, cfg.max_examples or None,
                           cfg.xlwsd_prompt)
        good = pc.is_null(table["quarantine"]).to_pylist()
        rows = [r for r, ok in zip(table.select(["id", "text", "references"]).to_pylist(), good)
                if ok]
        rouge_tokens = scorer_tokenizer(cfg.scorer, inp.lang)
        predictions = []
        for start in range(0, len(rows), cfg.batch_size):
            chunk = rows[start:start + cfg.batch_size]
            texts = greedy_generate(model, tokenizer,
                                    [format_prompt(tokenizer, r["text"], cfg) for r in chunk],
                                    cfg.max_new_tokens)
            predictions += [{"id": r["id"], "prediction": t, "references": r["references"],
                             "rouge_l": 100 * rouge_l_f1(t, r["references"], rouge_tokens)}
                            for r, t in zip(chunk, texts)]
        log.info("%s %s: %d examples", inp.dataset, inp.lang, len(predictions))
        parts.append({"dataset": inp.dataset, "lang": inp.lang, "predictions": predictions,
                      "counts": [], "quarantined": table.num_rows - len(rows)})
    return parts


def run(cfg: BaselineConfig) -> dict:
    import ray

    check_task_sets(cfg.inputs, cfg.scorer)
    absolute_paths(cfg)
    init_ray()
    parts = ray.get(ray.remote(num_cpus=1, num_gpus=cfg.num_gpus)(evaluate).remote(cfg))
    result = merge_scores(cfg.model_name or Path(cfg.model).name, parts)
    result.update(checkpoint=cfg.model, scorer=cfg.scorer, decoding="greedy",
                  max_new_tokens=cfg.max_new_tokens)
    with storage.local_dir(cfg.report_dir) as out:
        write_rouge_report(result, parts, out, cfg.report_name)
        write_config(cfg, out)
    return result
