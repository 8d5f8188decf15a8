"""Corpus refresh: FineWeb-style documents -> validation -> Chinese relabel -> SaT sentences ->
SONAR embeddings -> committed embedding shards, incrementally (only new input files), for a
nightly schedule (pipelines/refresh.py says what a run guarantees).

    python -m jobs.corpus_refresh --config configs/corpus_refresh.yaml
"""

from jobkit.cli import parse
from pipelines.refresh import CorpusConfig, run


def main() -> None:
    run(parse(CorpusConfig, __doc__, "configs/corpus_refresh.yaml"))


if __name__ == "__main__":
    main()
