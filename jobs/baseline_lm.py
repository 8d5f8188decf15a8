"""Baseline: a Hugging Face causal LM (Qwen3-1.7B in the paper) on the instruction evaluation
prompts, greedy, scored like the Mimir model (evaluation/baseline.py).

    python -m jobs.baseline_lm --config configs/eval_baseline.yaml model=Qwen/Qwen3-1.7B
"""

import json

from evaluation.baseline import BaselineConfig, run
from jobkit.cli import parse


def main() -> None:
    result = run(parse(BaselineConfig, __doc__, "configs/eval_baseline.yaml"))
    print(json.dumps({ds: round(e["rouge_l"], 2) for ds, e in result["datasets"].items()}))


if __name__ == "__main__":
    main()
