"""Instruction evaluation: ROUGE-L F1 on XL-Sum and MLQA test sets (paper section 5.2;
evaluation/instruct.py says how prompts are framed, generated and scored).

    python -m jobs.eval_instruct --config configs/eval_instruct.yaml checkpoint=URI
"""

import json

from evaluation.instruct import EvalInstructConfig, run
from jobkit.cli import parse


def main() -> None:
    result = run(parse(EvalInstructConfig, __doc__, "configs/eval_instruct.yaml"))
    print(json.dumps({ds: round(e["rouge_l"], 2) for ds, e in result["datasets"].items()}))


if __name__ == "__main__":
    main()
