"""Pre-training documents: FineWeb-Edu (English) and FineWeb-2 (every other language) into
CANONICAL_SCHEMA (id, text, lang, source, quarantine), from local or S3 Parquet or the Hub.

`lang` is the config's SONAR code; Chinese stays cmn_Hani until ChineseRelabel. A value Arrow
cannot store (missing, non-string, lone surrogate, bytes that are not UTF-8) is stored as null
with its reason; an unreadable file becomes one row quarantined `malformed_parquet` whose id is
the file's URI (pipelines/readers/files.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow as pa

import storage
from pipelines.langs import sonar_code_for_config
from pipelines.readers import hub
from pipelines.readers.files import list_files, read_records
from pipelines.readers.schemas import CANONICAL_SCHEMA
from pipelines.stage import Stage, StageSpec
from pipelines.validate import clean_value
from storage.retry import with_retries
from storage.paths import Input

log = logging.getLogger(__name__)


@dataclass
class FinewebInput:
    uri: Input  # local file or folder, s3:// URI, or a Hub dataset id (HuggingFaceFW/fineweb-2)
    config: str  # FineWeb-2 config (fra_Latn, cmn_Hani, ...) or eng_Latn for FineWeb-Edu
    limit: int | None = None  # documents read from each of its files


def dataset_for_config(config: str) -> str:
    """English comes from FineWeb-Edu, every other language from FineWeb-2."""
    return "fineweb-edu" if config == "eng_Latn" else "fineweb-2"


def read_fineweb(uri: str, config: str, limit: int | None = None) -> pa.Table:
    """The first `limit` documents (all if None) of one config, in canonical columns.

    `uri` is a Parquet file, a directory (holding `{config}.parquet`, the Hub layout
    `data/{config}/...`, a `{config}/` folder, or itself named after the config), an s3:// URI
    of any of these, or a Hub dataset id (pipelines/readers/hub.py). Files are read in sorted
    order, so `limit` is deterministic. A document without an id is quarantined as
    `missing_id` (named `{uri}#{its place}`), a second one with an id already read as
    `duplicate_id` (named `{id}#duplicate{its place}`).
    """
    lang = sonar_code_for_config(config)
    uri = str(uri)
    records, bad = read_records(uri, ["id", "text"], config, limit, hub.fineweb_files(uri, config))
    ids, texts, quarantine = [], [], []
    seen: set[str] = set()
    for n, r in enumerate(records):
        text, reason = clean_value(r["text"])
        doc_id = None if r["id"] is None else str(r["id"]).strip()
        if not doc_id:  # its place in the read names it in the quarantine
            doc_id, reason = f"{uri}#{n}", "missing_id"
        elif doc_id in seen:  # the first one with the id is the document
            doc_id, reason = f"{doc_id}#duplicate{n}", "duplicate_id"
        seen.add(doc_id)
        ids.append(doc_id)
        texts.append(text)
        quarantine.append(reason)
    for path, reason in bad:
        ids.append(path)
        texts.append(None)
        quarantine.append(reason)
    n = len(ids)
    table = pa.table([ids, texts, [lang] * n, [dataset_for_config(config)] * n, quarantine],
                     schema=CANONICAL_SCHEMA)
    log.info("read %d documents of %s from %s", n, config, uri)
    return table


def fineweb_files(uri: str, config: str) -> list[tuple[str, int | None]]:
    """(URI, size in bytes) of every Parquet file `read_fineweb` would read for `config`, in
    order; a Hub dataset id is one unit of unknown size. Incremental jobs key on these."""
    uri = str(uri)
    if hub.fineweb_files(uri, config):
        return [(uri, None)]
    fs, root = storage.resolve(uri)
    scheme = "s3://" if uri.startswith("s3://") else ""
    infos = with_retries("listing", uri, lambda: fs.get_file_info(list_files(fs, root, config)))
    return [(scheme + info.path, info.size) for info in infos]


class ReadFineweb(Stage):
    """Stage over a table of input files (`uri`, `config`, `limit`, one row per Parquet file
    from `fineweb_files`): their documents in CANONICAL_SCHEMA. Lets a Ray Data pipeline read
    its inputs in its own tasks instead of the driver."""

    name = "read"

    def process(self, files: pa.Table) -> pa.Table:
        tables = [read_fineweb(uri, config, limit) for uri, config, limit in
                  zip(*(files[c].to_pylist() for c in ("uri", "config", "limit")))]
        for config, table in zip(files["config"].to_pylist(), tables):
            self.counts.tally[config] += table.num_rows
        return pa.concat_tables(tables) if tables else CANONICAL_SCHEMA.empty_table()


def read_spec(actors: int = 1) -> StageSpec:
    """ReadFineweb as a Ray Data stage on `actors` actors: one file per call (the corpus job
    and the run-time stream read alike; Ray Data cuts a file's documents into blocks of the
    dataset's target_max_block_size)."""
    return StageSpec(ReadFineweb, batch_size=1, actors=actors)
