"""Sample data the project ships, in the real Hub schemas of every source (written by
make_samples.py and eval/make_eval_samples.py from original texts): what the embedded default
configs, the tiny-asset builder, the benchmarks and the tests read. Production code paths never
depend on it; real data is named by config (Hub id, s3:// or a local path)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent

# The FineWeb-schema samples: (dataset folder, config), one Parquet file each.
FINEWEB: tuple[tuple[str, str], ...] = (
    ("fineweb-edu", "eng_Latn"),
    ("fineweb-2", "fra_Latn"),
    ("fineweb-2", "deu_Latn"),
    ("fineweb-2", "arb_Arab"),
    ("fineweb-2", "hin_Deva"),
    ("fineweb-2", "rus_Cyrl"),
    ("fineweb-2", "cmn_Hani"),
)


def fineweb(config: str) -> Path:
    """The shipped sample file of a FineWeb(-Edu/2) config."""
    dataset = next(d for d, c in FINEWEB if c == config)
    return ROOT / dataset / f"{config}.parquet"
