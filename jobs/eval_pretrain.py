"""Pre-training evaluation: next-sentence L2 and round-trip L2 per language (paper section 5;
evaluation/next_sentence.py says what is measured).

    python -m jobs.eval_pretrain --config configs/eval_pretrain_text.yaml checkpoint=URI
"""

import json

from evaluation.next_sentence import EvalPretrainConfig, run
from jobkit.cli import parse


def main() -> None:
    result = run(parse(EvalPretrainConfig, __doc__, "configs/eval_pretrain.yaml"))
    if "datasets" in result:
        print(json.dumps({name: {k: ds[k] for k in ("documents", "prefixes", "l2",
                                                     "round_trip_l2")}
                          for name, ds in result["datasets"].items()}))
    else:
        print(json.dumps({k: result[k] for k in ("documents", "prefixes", "l2",
                                                 "round_trip_l2")}))


if __name__ == "__main__":
    main()
