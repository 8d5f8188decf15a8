"""The tiny offline assets of the embedded default, in the real on-disk formats, built
deterministically from the shipped sample text (jobs.assets): DIR/sonar/ (NLLB-style
SentencePiece model, SONAR-format encoder and decoder checkpoints with random weights) and
DIR/sat/ (a SaT model folder with an XLM-R-style tokenizer that wtpsplit loads). Real weights
are not built: configs name them (Hub name, https URL, s3:// URI or local path) and the same
loaders read them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pyarrow.parquet as pq

import samples
from offline_assets.sat import build_tiny_sat
from offline_assets.sonar import build_tiny_sonar

log = logging.getLogger(__name__)

STAMP = "ASSETS.json"
# Bumped whenever the builders change what they write, so stale folders are rebuilt (2: the
# SONAR checkpoints have sidecar JSONs).
VERSION = 2


def sample_texts(root: Path = samples.ROOT) -> list[str]:
    """The non-empty texts of every shipped sample Parquet file, in a fixed order."""
    texts = []
    for path in sorted(root.rglob("*.parquet")):
        table = pq.read_table(path)
        for column in ("text", "summary", "title"):
            if column in table.column_names:
                texts += [t for t in table[column].to_pylist() if isinstance(t, str) and t.strip()]
    if not texts:
        raise FileNotFoundError(f"no sample texts under {root}")
    return texts


def build_tiny(out: Path, seed: int = 0) -> Path:
    """Build the tiny assets into `out`, or reuse them if they were built from the same
    texts with the same builders."""
    texts = sample_texts()
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()
    stamp = {"version": VERSION, "seed": seed, "texts_sha256": digest}
    if (out / STAMP).exists() and json.loads((out / STAMP).read_text()) == stamp:
        log.info("tiny assets in %s are up to date", out)
        return out
    out.mkdir(parents=True, exist_ok=True)
    sonar = build_tiny_sonar(out / "sonar", texts, seed=seed)
    sat = build_tiny_sat(out / "sat", texts, seed=seed)
    (out / STAMP).write_text(json.dumps(stamp, indent=2))
    log.info("tiny assets built in %s: sonar %s, sat %s", out, sorted(sonar), sat)
    return out
