"""XL-WSD generative split (Basile et al. 2025): ROUGE-L F1 of generated sense definitions.

The split without translations: 6,757 English, 1,673 Italian, 1,248 Spanish, 539 French and
263 German instances. Each prompt is `xlwsd_prompt` filled with the target word and its
sentence, framed and generated exactly as in jobs/eval_instruct.py, and scored against the
gold definitions.

    python -m jobs.eval_xlwsd --config jobs/configs/eval_xlwsd.yaml checkpoint=URI
"""

from __future__ import annotations

import json

from jobs import config as config_io
from jobs.eval_instruct import EvalInstructConfig, run

XLWSD_LANGS = ("eng_Latn", "ita_Latn", "spa_Latn", "fra_Latn", "deu_Latn")


def check_inputs(cfg: EvalInstructConfig) -> None:
    """Every input must be an XL-WSD file of one of the split's five languages."""
    for inp in cfg.inputs:
        if inp.dataset != "xlwsd" or inp.lang not in XLWSD_LANGS:
            raise ValueError(f"XL-WSD evaluation takes xlwsd inputs in {XLWSD_LANGS}, got "
                             f"{inp.dataset} {inp.lang}")


def main() -> None:
    args = config_io.cli(__doc__.splitlines()[0], "jobs/configs/eval_xlwsd.yaml")
    cfg = config_io.load(EvalInstructConfig, args.config, args.overrides)
    check_inputs(cfg)
    result = run(cfg)
    print(json.dumps({lang: round(r["rouge_l"], 2)
                      for lang, r in result["datasets"]["xlwsd"]["per_language"].items()}))


if __name__ == "__main__":
    # Through the importable module, not __main__, so that Ray pickles this module's
    # functions and classes by reference (as they are under `ray job submit`).
    from jobs.eval_xlwsd import main as _main

    _main()
