"""Instruction data: conversations of every source -> validation -> Chinese relabel -> mixture
-> SaT sentences per turn -> instances (paper Table 6) -> a committed Parquet set
(pipelines/instruct_data.py).

    python -m jobs.prepare_instruct --config configs/prepare_instruct.yaml mixture=english
"""

from jobkit.cli import parse
from pipelines.instruct_data import PrepareConfig, prepare


def main() -> None:
    prepare(parse(PrepareConfig, __doc__, "configs/prepare_instruct.yaml"))


if __name__ == "__main__":
    main()
