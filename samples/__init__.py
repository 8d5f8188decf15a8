"""Sample data the project ships, in the real Hub schemas of every source (written by
make_samples.py and eval/make_eval_samples.py from original texts): what the embedded default
configs, the tiny-asset builder, the benchmarks and the tests read. Production code paths never
depend on it; real data is named by config (Hub id, s3:// or a local path)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class FinewebSample:
    dataset: str  # "fineweb-edu" or "fineweb-2"
    config: str  # e.g. "eng_Latn", "cmn_Hani"

    @property
    def path(self) -> Path:
        return ROOT / self.dataset / f"{self.config}.parquet"


# The FineWeb-schema samples: one small Parquet file per config.
FINEWEB: tuple[FinewebSample, ...] = (
    FinewebSample("fineweb-edu", "eng_Latn"),
    FinewebSample("fineweb-2", "fra_Latn"),
    FinewebSample("fineweb-2", "deu_Latn"),
    FinewebSample("fineweb-2", "arb_Arab"),
    FinewebSample("fineweb-2", "hin_Deva"),
    FinewebSample("fineweb-2", "rus_Cyrl"),
    FinewebSample("fineweb-2", "cmn_Hani"),
)


def fineweb(config: str) -> Path:
    """The shipped sample file of a FineWeb(-Edu/2) config."""
    return next(s.path for s in FINEWEB if s.config == config)
