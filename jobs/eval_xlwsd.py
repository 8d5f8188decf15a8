"""XL-WSD generative split (Basile et al. 2025): ROUGE-L F1 of generated sense definitions, in
English, Italian, Spanish, French and German (evaluation/instruct.py).

    python -m jobs.eval_xlwsd --config configs/eval_xlwsd.yaml checkpoint=URI
"""

import json

from evaluation.instruct import EvalInstructConfig, check_xlwsd, run
from jobkit.cli import parse


def main() -> None:
    result = run(parse(EvalInstructConfig, __doc__, "configs/eval_xlwsd.yaml", check=check_xlwsd))
    print(json.dumps({lang: round(r["rouge_l"], 2)
                      for lang, r in result["datasets"]["xlwsd"]["per_language"].items()}))


if __name__ == "__main__":
    main()
