"""Alignment pilot (paper Table 9): how close SONAR puts English and its translation, as the
mean cosine over WikiMatrix pairs per language (evaluation/alignment.py).

    python -m jobs.alignment_pilot --config configs/alignment_pilot.yaml
"""

import json

from evaluation.alignment import AlignmentConfig, run
from jobkit.cli import parse


def main() -> None:
    result = run(parse(AlignmentConfig, __doc__, "configs/alignment_pilot.yaml"))
    print(json.dumps({lang: round(r["cosine"], 4) for lang, r in result["per_language"].items()}))


if __name__ == "__main__":
    main()
