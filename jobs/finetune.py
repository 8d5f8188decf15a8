"""Instruction tuning: the pre-training loop on instruction shards (jobs.embed_instruct),
starting from a pre-training checkpoint and training on the target sentences only.

    python -m jobs.finetune --config configs/finetune.yaml init_from=CHECKPOINT

The paper's four settings are configs/finetune_{multilingual,english}[_mlqa_xlsum].yaml.
Re-running with the same run_name resumes; the job ends by printing the final checkpoint URI.
"""

from jobkit.cli import parse
from training.config import PretrainJobConfig
from training.launch import check_finetune, run


def main() -> None:
    cfg = parse(PretrainJobConfig, __doc__, "configs/finetune.yaml", check=check_finetune)
    print(f"final checkpoint: {run(cfg)}")


if __name__ == "__main__":
    main()
