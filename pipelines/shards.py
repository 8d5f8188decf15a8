"""Committed Parquet sets (embedding shards, instruction instances): write them, commit them
with a manifest, read them back.

A set lives under one root (local directory or s3:// prefix). Each write run puts its
Parquet files under `<root>/<run_id>/` (documents in `data/`, rejected rows with their reason
in `quarantine/`) and commits by writing `<root>/manifest.json` last. Readers only trust files
the manifest names, so an interrupted run never leaves half a shard set visible. A commit either
replaces the set (running a job twice simply rewrites it) or appends to the committed one (an
incremental job such as corpus_refresh); files under run folders that the new manifest does not
name (older runs, an interrupted run's orphans) are deleted after it is written.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

import storage
from pipelines.counts import StageCounts
from pipelines.stage import DETAIL, Stage

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
# Columns kept in an embedding shard; everything the trainer and evaluators need, nothing
# bulky. Instruction shards add n_context (leading embeddings that are context, not targets).
SHARD_COLUMNS = ["id", "source", "lang", "sentences", "n_embeddings", "embeddings"]
INSTRUCT_SHARD_COLUMNS = SHARD_COLUMNS + ["n_context"]
QUARANTINE_COLUMNS = ["id", "source", "lang", "text", "quarantine"]


def quarantine_columns(table: pa.Table, columns: list[str] | None = QUARANTINE_COLUMNS
                       ) -> list[str]:
    """What a quarantine file keeps of a table: `columns` (all if None) and the exception
    text of rows a stage set aside for an error (DETAIL), when the table has it."""
    if columns is None:
        return table.column_names
    return [c for c in [*columns, DETAIL] if c in table.column_names]


@dataclass
class ShardFile:
    path: str  # relative to the shard root
    kind: str  # "data" or "quarantine"
    rows: int
    sha256: str


@dataclass
class Manifest:
    run_id: str
    dim: int | None  # embedding dimension; None for sets without embeddings
    files: list[ShardFile]
    counts: list[dict] = field(default_factory=list)
    created: float = 0.0
    meta: dict = field(default_factory=dict)  # what the writing job wants to record
    # Run folders holding the files (appended sets span several); empty = only run_id's.
    runs: list[str] = field(default_factory=list)

    @property
    def run_folders(self) -> list[str]:
        return self.runs or [self.run_id]

    @property
    def data_files(self) -> list[ShardFile]:
        return [f for f in self.files if f.kind == "data"]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        d = json.loads(text)
        d["files"] = [ShardFile(**f) for f in d["files"]]
        return cls(**d)


EMBEDDING_DTYPES = {"float32": pa.float32(), "float16": pa.float16()}


def embeddings_type(dim: int, dtype: str = "float32") -> pa.DataType:
    """Arrow type of one document's embeddings: a list of fixed-size vectors."""
    return pa.list_(pa.list_(EMBEDDING_DTYPES[dtype], dim))


def embeddings_to_arrow(docs: list[np.ndarray], dim: int, dtype: str = "float32") -> pa.Array:
    """Pack per-document [n_i, dim] arrays into one Arrow list array (no Python loop over
    vectors). float16 halves the size of cached embedding shards; readers get float16 arrays
    and the trainer computes in float32."""
    if dtype not in EMBEDDING_DTYPES:
        raise ValueError(f"embedding dtype must be one of {sorted(EMBEDDING_DTYPES)}, not {dtype!r}")
    lengths = np.array([len(d) for d in docs], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = np.concatenate([d.reshape(-1) for d in docs]) if docs else np.zeros(0, np.float32)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(flat.astype(dtype, copy=False)), dim)
    return pa.ListArray.from_arrays(pa.array(offsets), vectors, type=embeddings_type(dim, dtype))


def arrow_to_embeddings(column: pa.ChunkedArray | pa.Array) -> list[np.ndarray]:
    """Inverse of `embeddings_to_arrow`: one [n_i, dim] array per row (views, no copy
    of the vector data beyond Arrow's own chunk concatenation)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    dim = arr.type.value_type.list_size
    flat = arr.flatten().flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    offsets = arr.offsets.to_numpy() - arr.offsets[0].as_py()
    return [flat[offsets[i]:offsets[i + 1]] for i in range(len(arr))]


def new_run_id() -> str:
    return time.strftime("run-%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:8]


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


class ShardWriter(Stage):
    """Writes each batch as one data file and, if it has rejected rows, one quarantine file.
    `columns` / `quarantine_columns` choose what is kept (None: every column).

    Returns one row per written file (path, kind, rows, sha256) for the commit step.
    """

    name = "write_shards"

    def __init__(self, root: str, run_id: str, columns: list[str] | None = SHARD_COLUMNS,
                 quarantine_columns: list[str] | None = QUARANTINE_COLUMNS) -> None:
        self.root, self.run_id = root, run_id
        self.columns, self.quarantine_columns = columns, quarantine_columns
        self.fs, self.base = storage.resolve(root)
        super().__init__()

    def _put(self, table: pa.Table, kind: str) -> ShardFile:
        rel = f"{self.run_id}/{kind}/part-{uuid.uuid4().hex}.parquet"
        data = parquet_bytes(table)
        storage.write_bytes(self.fs, storage.join(self.base, rel), data)
        return ShardFile(rel, kind, table.num_rows, hashlib.sha256(data).hexdigest())

    def process(self, table: pa.Table) -> pa.Table:
        bad = pc.is_valid(table["quarantine"])
        good_rows = table.filter(pc.invert(bad)).select(self.columns or table.column_names)
        bad_rows = table.filter(bad)
        written = []
        if good_rows.num_rows:
            written.append(self._put(good_rows, "data"))
        if bad_rows.num_rows:
            bad_rows = bad_rows.select(quarantine_columns(table, self.quarantine_columns))
            written.append(self._put(bad_rows, "quarantine"))
            for reason, n in zip(*np.unique(bad_rows["quarantine"].to_numpy(zero_copy_only=False),
                                            return_counts=True)):
                self.counts.quarantine(str(reason), int(n))
        self._written_rows = good_rows.num_rows
        if "n_embeddings" in good_rows.column_names:
            self.counts.tally["embeddings"] += int(pc.sum(good_rows["n_embeddings"]).as_py() or 0)
        return pa.Table.from_pylist([asdict(f) for f in written],
                                    schema=pa.schema([("path", pa.string()), ("kind", pa.string()),
                                                      ("rows", pa.int64()), ("sha256", pa.string())]))

    def rows_out(self, out: pa.Table) -> int:
        return self._written_rows  # the documents written, not the files listed


def commit(root: str, run_id: str, files: list[ShardFile], counts: list[StageCounts],
           meta: dict | None = None, previous: Manifest | None = None) -> Manifest:
    """Write the manifest last, then delete every file under a run folder that it does not name.

    Without `previous` this run's files become the set; with `previous` (the committed manifest)
    they are appended to its files."""
    fs, base = storage.resolve(root)
    all_files = sorted((previous.files if previous else []) + files, key=lambda f: f.path)
    data = [f for f in all_files if f.kind == "data"]
    if not data and previous is None:  # an appended input may be wholly quarantined
        raise ValueError(f"run {run_id} produced no documents (see the counts: every row "
                         "was quarantined or the inputs were empty)")
    dim = None
    if data:
        schema = pq.read_schema(storage.join(base, data[0].path), filesystem=fs)
        dim = (schema.field("embeddings").type.value_type.list_size
               if "embeddings" in schema.names else None)
    runs = sorted({f.path.split("/", 1)[0] for f in all_files} | {run_id}) if previous else []
    manifest = Manifest(run_id, dim, all_files, [c.as_dict() for c in counts], time.time(),
                        meta or {}, runs)
    storage.write_bytes(fs, storage.join(base, MANIFEST), manifest.to_json().encode())
    _delete_unnamed(fs, base, manifest)
    log.info("committed %d shard files (%d documents) under %s", len(manifest.data_files),
             sum(f.rows for f in manifest.data_files), root)
    return manifest


def _delete_unnamed(fs: pafs.FileSystem, base: str, manifest: Manifest) -> None:
    """Garbage-collect run folders: those the manifest does not use go whole, and in those it
    uses, the files it does not name (left by a run that failed before its commit)."""
    named = {storage.join(base, f.path) for f in manifest.files}
    for info in fs.get_file_info(pafs.FileSelector(base, allow_not_found=True)):
        name = info.path.rstrip("/").rsplit("/", 1)[-1]
        if info.type != pafs.FileType.Directory or not name.startswith("run-"):
            continue
        if name not in manifest.run_folders:
            fs.delete_dir(info.path)
            continue
        for f in fs.get_file_info(pafs.FileSelector(info.path, recursive=True)):
            if f.type == pafs.FileType.File and f.path not in named:
                fs.delete_file(f.path)


def read_manifest(root: str) -> Manifest:
    fs, base = storage.resolve(root)
    path = storage.join(base, MANIFEST)
    if not storage.exists(fs, path):
        raise FileNotFoundError(
            f"no shard manifest at {root}/{MANIFEST}: run the corpus job that writes these "
            "shards first (e.g. `python -m jobs.corpus_refresh`)")
    uri = f"{root.rstrip('/')}/{MANIFEST}"
    try:
        manifest = Manifest.from_json(storage.read_bytes(fs, path).decode())
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"shard manifest {uri} is malformed ({type(e).__name__}: {e}): "
                         "rewrite the set by running its job again") from e
    for f in manifest.files:
        _check_manifest_path(uri, manifest.run_folders, f.path)
    return manifest


def _check_manifest_path(uri: str, runs: list[str], rel: str) -> None:
    """A manifest may only name files of its own runs' folders: a path that is
    absolute, climbs out with '..' or points elsewhere is refused, never read."""
    parts = rel.split("/") if isinstance(rel, str) else []
    if not (len(parts) > 1 and parts[0] in runs
            and ".." not in parts and not rel.startswith("/")):
        folders = ", ".join(f"{r}/" for r in runs)
        raise ValueError(f"shard manifest {uri} names {rel!r}, outside its run folder "
                         f"{folders}: refusing to read it")


def data_paths(root: str, kind: str = "data") -> list[str]:
    """Full paths (inside the root's filesystem) of the committed files of a kind."""
    _, base = storage.resolve(root)
    return [storage.join(base, f.path) for f in read_manifest(root).files if f.kind == kind]


def read_table(root: str, columns: list[str] | None = None, kind: str = "data") -> pa.Table:
    """All committed rows of a kind ("data" or "quarantine") in one Arrow table (for small
    sets: evaluation, statistics, tests)."""
    fs, _ = storage.resolve(root)
    tables = [pq.read_table(p, filesystem=fs, columns=columns) for p in data_paths(root, kind)]
    if not tables:
        raise ValueError(f"the set at {root} has no {kind} rows")
    return pa.concat_tables(tables, promote_options="default")
