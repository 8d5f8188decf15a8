"""Instruction-tuning job: the pre-training loop (jobs.pretrain) on instruction shards
(jobs.embed_instruct), starting from a pre-training checkpoint and training on the target
sentences only.

    python -m jobs.finetune --config jobs/configs/finetune.yaml init_from=CHECKPOINT

The paper's four settings are jobs/configs/finetune_{multilingual,english}[_mlqa_xlsum].yaml.
Re-running with the same run_name resumes; the job ends by printing the final checkpoint URI.
"""

from __future__ import annotations

from jobs import config as config_io
from jobs.pretrain import PretrainJobConfig, run


def main() -> None:
    args = config_io.cli(__doc__.splitlines()[0], "jobs/configs/finetune.yaml")
    cfg = config_io.load(PretrainJobConfig, args.config, args.overrides)
    if not cfg.init_from:
        raise ValueError("instruction tuning starts from a pre-training checkpoint: set "
                         "init_from=URI (printed at the end of jobs.pretrain)")
    if cfg.data != "shards":
        raise ValueError("instruction tuning reads instruction shards (jobs.embed_instruct), "
                         f"which mark each instance's context; data={cfg.data!r} streams "
                         "pre-training documents only")
    print(f"final checkpoint: {run(cfg)}")


if __name__ == "__main__":
    # Through the importable module, not __main__, so that Ray pickles this module's
    # functions and classes by reference (as they are under `ray job submit`).
    from jobs.finetune import main as _main

    _main()
