"""Input files: finding them under a URI and reading their records, with one bad-input policy.

A URI is a local file or folder, an s3:// URI of either (endpoint and credentials from the
standard AWS environment), or a Hub glob (`hf://...`, streamed through `datasets`; needs the
Hub). Formats: Parquet, JSON lines (`.jsonl`, `.json.gz` as C4 ships them) and SQuAD-layout
`.json` (MLQA). Files are listed in sorted order (so "the first N records" is deterministic);
hidden and underscore-prefixed files and folders (`.x.parquet`, `._x` resource forks, Spark's
`_temporary/`, `_SUCCESS`) are not inputs.

The policy, the same for training and evaluation inputs:
- a file whose content cannot be read (not Parquet, truncated, missing columns, invalid JSON)
  is a bad file: it comes back as (path, reason) for the caller to quarantine, and the other
  files are read;
- a fault of the storage (network, throttling, server errors, an endpoint restarting) is not
  bad input: it is retried (storage.retry), and if it persists the read fails with an OSError
  naming the URI, so the job stops before recording anything as processed;
- a missing input path is a configuration error (FileNotFoundError).
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import zlib
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

import storage
from storage.retry import with_retries

log = logging.getLogger(__name__)

PARQUET = (".parquet",)
DATA_FILES = (".parquet", ".jsonl", ".json.gz", ".json")
# What a file's content can raise when it is not what it claims to be (never a storage fault).
CONTENT_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, KeyError,
                  ValueError, UnicodeDecodeError, EOFError, gzip.BadGzipFile, zlib.error)

Records = list[dict[str, Any]]
BadFiles = list[tuple[str, str]]


def is_input(rel: str) -> bool:
    """False for hidden and underscore-prefixed files and folders (below the root)."""
    return not any(part.startswith((".", "_")) for part in rel.split("/") if part)


def list_files(fs: pafs.FileSystem, root: str, config: str | None = None,
               suffixes: tuple[str, ...] = PARQUET) -> list[str]:
    """The input files under `root`, sorted: `root` itself if it is a file; else for a
    `config` `{root}/{config}.parquet`, or the files of `{root}/data/{config}`, `{root}/{config}`
    or `root` itself when it is named after the config (the Hub layouts); without a config,
    every data file under `root`."""
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        return [root]
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"no such file or directory: {root}")
    if config is None:
        candidates = [root]
    else:
        single = f"{root}/{config}.parquet"
        if fs.get_file_info(single).type == pafs.FileType.File:
            return [single]
        # A directory of only this config's files (e.g. .../data/fra_Latn/train) names it.
        candidates = [f"{root}/data/{config}", f"{root}/{config}"]
        if config in root.split("/"):
            candidates.append(root)
    for sub in candidates:
        if fs.get_file_info(sub).type == pafs.FileType.Directory:
            found = fs.get_file_info(pafs.FileSelector(sub, recursive=True))
            files = sorted(f.path for f in found if f.type == pafs.FileType.File
                           and f.path.endswith(suffixes) and is_input(f.path[len(sub):]))
            if files:
                return files
    kinds = "Parquet" if suffixes == PARQUET else "Parquet or JSON"
    raise FileNotFoundError(f"no {kinds} files for {config or 'the source'} under {root}")


def read_records(uri: str, columns: list[str] | None = None, config: str | None = None,
                 limit: int | None = None, hub_files: str | None = None,
                 suffixes: tuple[str, ...] = PARQUET) -> tuple[Records, BadFiles]:
    """(records, bad files): the first `limit` records (all if None) of the files under `uri`
    (see list_files; `hub_files`, or a `uri` starting with hf://, is read from the Hub
    instead), each with `columns` (all a file has if None), and (path, reason) of every file
    that could not be read."""
    uri = str(uri)
    if hub_files is not None or uri.startswith("hf://"):
        return _read_hub(hub_files or uri, columns, limit), []
    fs, root = storage.resolve(uri)
    scheme = "s3://" if uri.startswith("s3://") else ""
    records: Records = []
    bad: BadFiles = []
    for path in with_retries("listing", uri, lambda: list_files(fs, root, config, suffixes)):
        want = None if limit is None else limit - len(records)
        try:
            records += with_retries("reading", scheme + path,
                                    lambda: _file_records(fs, path, columns, want),
                                    permanent=(FileNotFoundError, gzip.BadGzipFile))
        except CONTENT_ERRORS as e:
            reason = "malformed_parquet" if path.endswith(".parquet") else "malformed_json"
            log.error("%s%s: not a readable file with columns %s (%s): %s", scheme, path,
                      columns, reason, e)
            bad.append((scheme + path, reason))
        if limit is not None and len(records) >= limit:
            break
    return records, bad


def _file_records(fs: pafs.FileSystem, path: str, columns: list[str] | None,
                  limit: int | None) -> Records:
    """The first `limit` records of one file, read whole (a storage fault mid-file retries the
    file, never half of it)."""
    if path.endswith(".parquet"):
        records: Records = []
        with fs.open_input_file(path) as f:
            parquet = pq.ParquetFile(f)
            missing = sorted(set(columns or []) - set(parquet.schema_arrow.names))
            if missing:  # iter_batches would silently leave them out
                raise KeyError(f"missing columns {missing}")
            for batch in parquet.iter_batches(columns=columns):
                records += batch_records(batch)
                if limit is not None and len(records) >= limit:
                    break
        return records[:limit] if limit is not None else records
    with fs.open_input_stream(path, compression=None) as f:
        data = f.read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    rows: Iterator[dict] = (_squad_rows(json.loads(data)) if path.endswith(".json")
                            else (json.loads(line) for line in io.TextIOWrapper(
                                io.BytesIO(data), encoding="utf-8") if line.strip()))
    out: Records = []
    for row in rows:
        if limit is not None and len(out) >= limit:
            break
        if not isinstance(row, dict):
            raise ValueError(f"a record is not a JSON object: {str(row)[:80]}")
        out.append(row if columns is None else {c: row.get(c) for c in columns})
    return out


def batch_records(batch: pa.RecordBatch) -> Records:
    """batch.to_pylist(), except that a string column holding bytes that are not UTF-8 is
    decoded with surrogateescape: the bad bytes become lone surrogates, so only that row is
    quarantined `invalid_unicode` (by validate.value_problem) instead of the whole file."""
    columns = {}
    for name, column in zip(batch.schema.names, batch.columns):
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            try:
                column.validate(full=True)
            except pa.ArrowInvalid:
                binary = pa.binary() if pa.types.is_string(column.type) else pa.large_binary()
                columns[name] = [None if v is None else v.decode("utf-8", "surrogateescape")
                                 for v in column.view(binary).to_pylist()]
                continue
        columns[name] = column.to_pylist()
    return [dict(zip(columns, row)) for row in zip(*columns.values())]


def _squad_rows(doc: dict) -> Iterator[dict]:
    """SQuAD v1 layout (MLQA's files) as flat rows like the Hub's."""
    for article in doc["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                yield {"id": qa["id"], "context": paragraph["context"],
                       "question": qa["question"],
                       "answers": {"text": [a["text"] for a in qa["answers"]],
                                   "answer_start": [a["answer_start"] for a in qa["answers"]]}}


def _read_hub(data_files: str, columns: list[str] | None, limit: int | None) -> Records:
    # Streaming reads only what is consumed; needs network access to the Hub.
    from datasets import load_dataset

    kind = "json" if ".json" in data_files else "parquet"
    stream = load_dataset(kind, data_files=data_files, split="train", streaming=True)
    records: Records = []
    for row in stream:
        if limit is not None and len(records) >= limit:
            break
        records.append(row if columns is None else {c: row.get(c) for c in columns})
    return records
