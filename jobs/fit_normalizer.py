"""Fit the robust embedding normalizer (median / IQR) on pre-training shards.

    python -m jobs.fit_normalizer --config configs/fit_normalizer.yaml
"""

from jobkit.cli import parse
from training.fit_normalizer import FitNormalizerConfig, run


def main() -> None:
    run(parse(FitNormalizerConfig, __doc__, "configs/fit_normalizer.yaml"))


if __name__ == "__main__":
    main()
