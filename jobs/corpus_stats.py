"""Statistics: per-language documents and sentences of the committed pre-training shards and
instruction set (paper Tables 4-5) and pie charts of the sentence shares (Figures 1-2).

    python -m jobs.corpus_stats --config configs/corpus_stats.yaml
"""

from jobkit.cli import parse
from reports.corpus_stats import StatsConfig, run


def main() -> None:
    run(parse(StatsConfig, __doc__, "configs/corpus_stats.yaml"))


if __name__ == "__main__":
    main()
