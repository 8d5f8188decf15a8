"""Readers of the pre-training sources (FineWeb-Edu, FineWeb-2) into the canonical columns.

Every reader returns a table with the columns of `CANONICAL_SCHEMA`: id, text, lang (SONAR
code; Chinese stays cmn_Hani until ChineseRelabel), source (dataset name) and quarantine
(null = good row). Inputs may be a local Parquet file or directory, an s3:// URI (endpoint from
AWS_ENDPOINT_URL, as the AWS tools read it), or a Hub dataset id streamed through `datasets`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines import storage
from pipelines.langs import sonar_code_for_config

log = logging.getLogger(__name__)

CANONICAL_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("text", pa.string()),
    ("lang", pa.string()),
    ("source", pa.string()),
    ("quarantine", pa.string()),
])

# Hub layouts: FineWeb-Edu's English sample the paper used, and FineWeb-2's per-config folders.
HUB_DATA_FILES = {
    "HuggingFaceFW/fineweb-edu": "hf://datasets/HuggingFaceFW/fineweb-edu/sample/350BT/*.parquet",
    "HuggingFaceFW/fineweb-2": "hf://datasets/HuggingFaceFW/fineweb-2/data/{config}/train/*.parquet",
}

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "tests" / "data" / "samples"


@dataclass(frozen=True)
class Source:
    dataset: str  # "fineweb-edu" or "fineweb-2"
    config: str  # e.g. "eng_Latn", "cmn_Hani"

    @property
    def sample_path(self) -> Path:
        return SAMPLES_DIR / self.dataset / f"{self.config}.parquet"


# The shipped sample: one small Parquet file per config, in the real Hub schemas.
SOURCES: tuple[Source, ...] = (
    Source("fineweb-edu", "eng_Latn"),
    Source("fineweb-2", "fra_Latn"),
    Source("fineweb-2", "deu_Latn"),
    Source("fineweb-2", "arb_Arab"),
    Source("fineweb-2", "hin_Deva"),
    Source("fineweb-2", "rus_Cyrl"),
    Source("fineweb-2", "cmn_Hani"),
)


def dataset_for_config(config: str) -> str:
    """English comes from FineWeb-Edu, every other language from FineWeb-2."""
    return "fineweb-edu" if config == "eng_Latn" else "fineweb-2"


def read_fineweb(path_or_uri: str | Path, config: str, limit: int | None = None) -> pa.Table:
    """Read the first `limit` documents (all if None) of one config, in canonical columns.

    `path_or_uri` is a Parquet file, a directory (holding `{config}.parquet`, the Hub layout
    `data/{config}/...`, a `{config}/` folder, or itself named after the config), an s3:// URI
    of any of these, or a Hub dataset id from HUB_DATA_FILES. Files are read in sorted order,
    so `limit` is deterministic.
    """
    lang = sonar_code_for_config(config)
    uri = str(path_or_uri)
    if uri in HUB_DATA_FILES:
        ids, texts = _read_hub(HUB_DATA_FILES[uri].format(config=config), limit)
    else:
        fs, root = storage.resolve(uri)
        ids, texts = _read_parquet_files(fs, _parquet_files(fs, root, config), limit)
    n = len(ids)
    table = pa.table(
        [ids, texts, [lang] * n, [dataset_for_config(config)] * n, [None] * n],
        schema=CANONICAL_SCHEMA,
    )
    log.info("read %d documents of %s from %s", n, config, uri)
    return table


def _parquet_files(fs: pafs.FileSystem, root: str, config: str) -> list[str]:
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        return [root]
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"no such file or directory: {root}")
    single = f"{root}/{config}.parquet"
    if fs.get_file_info(single).type == pafs.FileType.File:
        return [single]
    # A directory of only this config's files (e.g. .../data/fra_Latn/train) names the config.
    candidates = [f"{root}/data/{config}", f"{root}/{config}"]
    if config in root.split("/"):
        candidates.append(root)
    for sub in candidates:
        if fs.get_file_info(sub).type == pafs.FileType.Directory:
            found = fs.get_file_info(pafs.FileSelector(sub, recursive=True))
            files = sorted(f.path for f in found
                           if f.type == pafs.FileType.File and f.path.endswith(".parquet"))
            if files:
                return files
    raise FileNotFoundError(f"no Parquet files for {config} under {root}")


def _read_parquet_files(fs: pafs.FileSystem, files: list[str],
                        limit: int | None) -> tuple[list[str], list[str]]:
    ids: list[str] = []
    texts: list[str] = []
    for path in files:
        try:
            with fs.open_input_file(path) as f:
                for batch in pq.ParquetFile(f).iter_batches(columns=["id", "text"]):
                    ids.extend(batch.column("id").to_pylist())
                    texts.extend(batch.column("text").to_pylist())
                    if limit is not None and len(ids) >= limit:
                        return ids[:limit], texts[:limit]
        except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError, OSError) as e:
            raise ValueError(f"{path}: not a readable Parquet file with id and text "
                             f"columns: {e}") from e
    return ids, texts


def _read_hub(data_files: str, limit: int | None) -> tuple[list[str], list[str]]:
    # Streaming reads only what is consumed; needs network access to the Hub.
    from datasets import load_dataset

    stream = load_dataset("parquet", data_files=data_files, split="train", streaming=True)
    ids: list[str] = []
    texts: list[str] = []
    for row in stream:
        if limit is not None and len(ids) >= limit:
            break
        ids.append(row["id"])
        texts.append(row["text"])
    return ids, texts
