"""Put several ROUGE-L results (Mimir mixtures, baselines) in one chart and table.

    python -m jobs.eval_charts --out build/eval/compare run1/eval_instruct.json qwen.json
"""

import argparse
import json
import logging
from pathlib import Path

from jobkit.cli import setup_logging
from reports.charts import rouge_report

log = logging.getLogger("jobs.eval_charts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="ROUGE-L result JSON files")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--name", default="rouge_compare")
    args = parser.parse_args()
    setup_logging()
    results = [json.loads(p.read_text()) for p in args.results]
    args.out.mkdir(parents=True, exist_ok=True)
    for path in rouge_report(results, args.out, args.name):
        log.info("wrote %s", path)


if __name__ == "__main__":
    main()
