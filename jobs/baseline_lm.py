"""Baseline: a Hugging Face causal LM (Qwen3-1.7B in the paper) on the same prompts, greedy.

The prompts are the evaluation sets' prompt texts (pipelines/eval_sources.py), given as one
user message through the tokenizer's chat template when it has one (Qwen3 with thinking off),
else as plain text. Outputs are scored with the same ROUGE-L as jobs/eval_instruct.py and
reported in the same layout, so `python -m jobs.eval_charts` can chart both side by side.
Needs only `transformers` (an optional dependency of the project).

    python -m jobs.baseline_lm --config jobs/configs/eval_baseline.yaml model=Qwen/Qwen3-1.7B
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.compute as pc
import torch

from jobs import config as config_io
from jobs.cluster import init_ray
from jobs.eval_instruct import InstructInput, check_inputs, merge_scores, write_report
from pipelines import eval_sources, storage
from pipelines.rouge import rouge_l_f1

log = logging.getLogger("jobs.baseline_lm")

_THINK = re.compile(r"<think>.*?</think>", re.S)


@dataclass
class BaselineConfig:
    model: str = "Qwen/Qwen3-1.7B"  # Hub name or local folder
    model_name: str = ""  # label in reports; default: the model's last path component
    inputs: list[InstructInput] = field(default_factory=list)
    max_examples: int = 0  # per input; 0 = all
    max_new_tokens: int = 512
    batch_size: int = 8
    chat_template: bool = True  # use the tokenizer's chat template when it has one
    enable_thinking: bool = False  # Qwen3's template switch; other templates ignore it
    xlwsd_prompt: str = eval_sources.XLWSD_PROMPT
    dtype: str = "bfloat16"  # float32 on CPU
    device: str = "cpu"
    num_gpus: float = 0
    report_dir: str = "build/eval/baseline"
    report_name: str = "baseline_lm"


def format_prompt(tokenizer, prompt: str, cfg: BaselineConfig) -> str:
    if cfg.chat_template and tokenizer.chat_template:
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                             tokenize=False, add_generation_prompt=True,
                                             enable_thinking=cfg.enable_thinking)
    return prompt


def greedy_generate(model, tokenizer, texts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy continuations of a batch of texts (left-padded), without the prompts."""
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    batch = {k: v.to(model.device) for k, v in batch.items()}
    with torch.inference_mode():
        out = model.generate(**batch, do_sample=False, max_new_tokens=max_new_tokens,
                             pad_token_id=tokenizer.pad_token_id)
    new = out[:, batch["input_ids"].shape[1]:]
    texts = tokenizer.batch_decode(new, skip_special_tokens=True)
    return [_THINK.sub("", t).strip() for t in texts]


def evaluate(cfg: BaselineConfig) -> list[dict]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg.model, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=getattr(torch, cfg.dtype))
    model = model.to(cfg.device).eval()
    parts = []
    for inp in cfg.inputs:
        table = eval_sources.read_instruct(inp.dataset, inp.uri, inp.lang,
                                           cfg.max_examples or None, cfg.xlwsd_prompt)
        good = pc.is_null(table["quarantine"]).to_pylist()
        rows = [r for r, ok in zip(table.select(["id", "text", "references"]).to_pylist(), good)
                if ok]
        predictions = []
        for start in range(0, len(rows), cfg.batch_size):
            chunk = rows[start:start + cfg.batch_size]
            texts = greedy_generate(model, tokenizer,
                                    [format_prompt(tokenizer, r["text"], cfg) for r in chunk],
                                    cfg.max_new_tokens)
            predictions += [{"id": r["id"], "prediction": t, "references": r["references"],
                             "rouge_l": 100 * rouge_l_f1(t, r["references"])}
                            for r, t in zip(chunk, texts)]
        log.info("%s %s: %d examples", inp.dataset, inp.lang, len(predictions))
        parts.append({"dataset": inp.dataset, "lang": inp.lang, "predictions": predictions,
                      "counts": [], "quarantined": table.num_rows - len(rows)})
    return parts


def run(cfg: BaselineConfig) -> dict:
    import ray

    check_inputs(cfg.inputs)
    if Path(cfg.model).exists():
        cfg.model = str(Path(cfg.model).absolute())
    cfg.report_dir = config_io.absolute(cfg.report_dir)
    init_ray()
    parts = ray.get(ray.remote(num_cpus=1, num_gpus=cfg.num_gpus)(evaluate).remote(cfg))
    result = merge_scores(cfg.model_name or Path(cfg.model).name, parts)
    result.update(checkpoint=cfg.model, decoding="greedy", max_new_tokens=cfg.max_new_tokens)
    with storage.local_dir(cfg.report_dir) as out:
        write_report(result, parts, out, cfg.report_name)
    return result


def main() -> None:
    args = config_io.cli(__doc__.splitlines()[0], "jobs/configs/eval_baseline.yaml")
    result = run(config_io.load(BaselineConfig, args.config, args.overrides))
    print(json.dumps({ds: round(e["rouge_l"], 2) for ds, e in result["datasets"].items()}))


if __name__ == "__main__":
    # Through the importable module, not __main__, so that Ray pickles this module's
    # functions and classes by reference (as they are under `ray job submit`).
    from jobs.baseline_lm import main as _main

    _main()
