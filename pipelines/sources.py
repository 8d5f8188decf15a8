"""Readers of every source of the paper into two canonical tables.

Pre-training (FineWeb-Edu, FineWeb-2) -> `CANONICAL_SCHEMA`: id, text, lang, source, quarantine.
Instruction data (oasst2, Bactrian-X, Aya, MLQA train, XL-Sum train, our synthetic chats) ->
`CONVERSATION_SCHEMA`: id, source, lang, turns (user, assistant, user, assistant, ...),
quarantine. The synthetic-chat job's inputs (Everyday-Conversations topics, OpenMathInstruct-2
problems) are read as plain Python records.

`lang` is a SONAR code; Chinese stays cmn_Hani until ChineseRelabel. Inputs may be a local
Parquet file or directory, an s3:// URI (endpoint from AWS_ENDPOINT_URL, as the AWS tools read
it), or a Hub dataset id streamed through `datasets`. `limit` bounds the source records read.

Bad input never stops a reader: a file that is not readable Parquet with the needed columns
becomes one row quarantined as `malformed_parquet` (its id is the file's path), and a value
that Arrow cannot store (missing, non-string, lone surrogate, bytes that are not UTF-8) is stored
as null with its reason.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines import storage
from pipelines.counts import StageCounts
from pipelines.langs import (
    ISO1_TO_SONAR,
    XLSUM_TO_SONAR,
    sonar_code_for_config,
    sonar_code_for_tag,
)
from pipelines.validate import clean_value, value_problem

log = logging.getLogger(__name__)

CANONICAL_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("text", pa.string()),
    ("lang", pa.string()),
    ("source", pa.string()),
    ("quarantine", pa.string()),
])

CONVERSATION_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("source", pa.string()),
    ("lang", pa.string()),
    ("turns", pa.list_(pa.string())),
    ("quarantine", pa.string()),
])

# Hub layouts: FineWeb-Edu's English sample the paper used, and FineWeb-2's per-config folders.
HUB_DATA_FILES = {
    "HuggingFaceFW/fineweb-edu": "hf://datasets/HuggingFaceFW/fineweb-edu/sample/350BT/*.parquet",
    "HuggingFaceFW/fineweb-2": "hf://datasets/HuggingFaceFW/fineweb-2/data/{config}/train/*.parquet",
}

# Hub layouts of the other sources: dataset id -> Parquet files of the train split (`@~parquet`
# is the Hub's Parquet export, which exists for script-based datasets such as MLQA too). MLQA's
# translate-train has no English part; English is its source, SQuAD v1.1 train.
HUB_RECORD_FILES = {
    "OpenAssistant/oasst2": "hf://datasets/OpenAssistant/oasst2/data/train-*.parquet",
    "MBZUAI/Bactrian-X": "hf://datasets/MBZUAI/Bactrian-X@~parquet/{config}/train/*.parquet",
    "CohereForAI/aya_dataset": "hf://datasets/CohereForAI/aya_dataset@~parquet/default/train/*.parquet",
    "facebook/mlqa": "hf://datasets/facebook/mlqa@~parquet/mlqa-translate-train.{config}/train/*.parquet",
    "rajpurkar/squad": "hf://datasets/rajpurkar/squad@~parquet/plain_text/train/*.parquet",
    "csebuetnlp/xlsum": "hf://datasets/csebuetnlp/xlsum@~parquet/{config}/train/*.parquet",
    "nvidia/OpenMathInstruct-2": "hf://datasets/nvidia/OpenMathInstruct-2@~parquet/default/train/*.parquet",
    "HuggingFaceTB/everyday-conversations-llama3.1-2k":
        "hf://datasets/HuggingFaceTB/everyday-conversations-llama3.1-2k@~parquet/default/train_sft/*.parquet",
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
    hub = HUB_DATA_FILES[uri].format(config=config) if uri in HUB_DATA_FILES else None
    records, bad = read_records(uri, ["id", "text"], config, limit, hub)
    ids, texts, quarantine = [], [], []
    for r in records:
        text, reason = clean_value(r["text"])
        ids.append(str(r["id"]))
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


def fineweb_files(path_or_uri: str | Path, config: str) -> list[tuple[str, int | None]]:
    """(URI, size in bytes) of every Parquet file `read_fineweb` would read for `config`, in
    order; a Hub dataset id is one unit of unknown size. Incremental jobs key on these."""
    uri = str(path_or_uri)
    if uri in HUB_DATA_FILES:
        return [(uri, None)]
    fs, root = storage.resolve(uri)
    scheme = "s3://" if uri.startswith("s3://") else ""
    return [(scheme + info.path, info.size)
            for info in fs.get_file_info(_parquet_files(fs, root, config))]


class ReadFineweb:
    """Stage over a table of input files (`uri`, `config`, `limit`, one row per Parquet file
    from `fineweb_files`): their documents in CANONICAL_SCHEMA. Lets a Ray Data pipeline read
    its inputs in its own tasks instead of the driver."""

    name = "read"

    def __init__(self) -> None:
        self.counts = StageCounts(self.name)

    def __call__(self, files: pa.Table) -> pa.Table:
        tables = [read_fineweb(uri, config, limit) for uri, config, limit in
                  zip(*(files[c].to_pylist() for c in ("uri", "config", "limit")))]
        self.counts.rows_in += files.num_rows
        for config, table in zip(files["config"].to_pylist(), tables):
            self.counts.rows_out += table.num_rows
            self.counts.tally[config] += table.num_rows
        return pa.concat_tables(tables) if tables else CANONICAL_SCHEMA.empty_table()


def read_records(uri: str, columns: list[str], config: str | None = None,
                 limit: int | None = None, hub_files: str | None = None,
                 ) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """(records, bad files): the first `limit` rows of `columns`, and (path, reason) for every
    file that could not be read. Reads `hub_files` from the Hub when given, else local or S3
    Parquet under `uri` (for `config`, see `_parquet_files`; None = every file under it)."""
    if hub_files is not None:
        return _read_hub(hub_files, columns, limit), []
    fs, root = storage.resolve(str(uri))
    records: list[dict[str, Any]] = []
    bad: list[tuple[str, str]] = []
    for path in _parquet_files(fs, root, config):
        try:
            with fs.open_input_file(path) as f:
                parquet = pq.ParquetFile(f)
                missing = sorted(set(columns) - set(parquet.schema_arrow.names))
                if missing:  # iter_batches would silently leave them out
                    raise KeyError(f"missing columns {missing}")
                for batch in parquet.iter_batches(columns=columns):
                    records.extend(_batch_records(batch))
                    if limit is not None and len(records) >= limit:
                        return records[:limit], bad
        except (pa.ArrowException, KeyError, ValueError, OSError) as e:
            log.error("%s: not a readable Parquet file with columns %s: %s", path, columns, e)
            bad.append((path, "malformed_parquet"))
    return records, bad


def _batch_records(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """batch.to_pylist(), except that a string column holding bytes that are not UTF-8 is
    decoded with surrogateescape: the bad bytes become lone surrogates, so only that row is
    quarantined `invalid_unicode` (by `value_problem`) instead of the whole file failing."""
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


def _parquet_files(fs: pafs.FileSystem, root: str, config: str | None) -> list[str]:
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
            files = sorted(f.path for f in found
                           if f.type == pafs.FileType.File and f.path.endswith(".parquet"))
            if files:
                return files
    raise FileNotFoundError(f"no Parquet files for {config or 'the source'} under {root}")


def _read_hub(data_files: str, columns: list[str], limit: int | None) -> list[dict[str, Any]]:
    # Streaming reads only what is consumed; needs network access to the Hub.
    from datasets import load_dataset

    stream = load_dataset("parquet", data_files=data_files, split="train", streaming=True)
    records = []
    for row in stream:
        if limit is not None and len(records) >= limit:
            break
        records.append({c: row.get(c) for c in columns})
    return records


# ---- instruction sources -> conversations --------------------------------------------------

# The prompt formats of the two evaluation tasks, shared with the evaluation jobs so that a
# model sees the same layout in training and at test time.
def mlqa_prompt(context: str, question: str) -> str:
    return f"{context}\n\n{question}"


def xlsum_prompt(text: str) -> str:
    return text


def _single_turn(prompt: Any, response: Any) -> tuple[list[str] | None, str | None]:
    reason = value_problem(prompt) or value_problem(response)
    return (None if reason else [prompt, response]), reason


def _conversations(source: str, rows: list[tuple[str, str | None, list | None, str | None]],
                   bad: list[tuple[str, str]]) -> pa.Table:
    """rows: (id, lang, turns, quarantine reason); bad files become quarantined rows."""
    rows = rows + [(path, None, None, reason) for path, reason in bad]
    ids, langs, turns, quarantine = (list(c) for c in zip(*rows)) if rows else ([], [], [], [])
    table = pa.table([ids, [source] * len(ids), langs, turns, quarantine],
                     schema=CONVERSATION_SCHEMA)
    log.info("read %d conversations of %s (%d quarantined)", table.num_rows, source,
             table.num_rows - table.column("quarantine").null_count)
    return table


def _config_lang(table: dict[str, str], config: str, source: str) -> str:
    try:
        return table[config]
    except KeyError:
        raise ValueError(f"unknown {source} config {config!r}; supported: "
                         f"{', '.join(sorted(table))}") from None


def read_bactrian_x(uri: str, config: str, limit: int | None = None) -> pa.Table:
    """Bactrian-X, one language config ("fr"): prompt = instruction, plus the input after a
    blank line when there is one; response = output."""
    lang = _config_lang(ISO1_TO_SONAR, config, "Bactrian-X")
    hub = _hub(uri, config)
    records, bad = read_records(uri, ["instruction", "input", "output", "id"], config, limit, hub)
    rows = []
    for r in records:
        prompt = r["instruction"]
        if isinstance(prompt, str) and isinstance(r["input"], str) and r["input"].strip():
            prompt = f"{prompt}\n\n{r['input']}"
        turns, reason = _single_turn(prompt, r["output"])
        rows.append((f"bactrian-x/{config}/{r['id']}", lang, turns, reason))
    return _conversations("bactrian-x", rows, bad)


def read_aya(uri: str, limit: int | None = None) -> pa.Table:
    """Aya Dataset: prompt = inputs, response = targets, language from `language_code`."""
    records, bad = read_records(uri, ["inputs", "targets", "language_code"], None, limit,
                                _hub(uri, None))
    rows = []
    for n, r in enumerate(records):
        turns, reason = _single_turn(r["inputs"], r["targets"])
        lang = sonar_code_for_tag(r["language_code"])
        rows.append((f"aya/{n}", lang, turns, reason or (None if lang else "unknown_lang")))
    return _conversations("aya", rows, bad)


def read_mlqa(uri: str, config: str, limit: int | None = None) -> pa.Table:
    """MLQA train (translate-train, SQuAD layout), one language ("de"; "en" = SQuAD v1.1):
    prompt = context and question (`mlqa_prompt`), response = the first answer."""
    lang = _config_lang(ISO1_TO_SONAR, config, "MLQA")
    hub = None
    if str(uri) == "facebook/mlqa":
        hub = HUB_RECORD_FILES["rajpurkar/squad" if config == "en" else uri].format(config=config)
    records, bad = read_records(uri, ["id", "context", "question", "answers"], config, limit, hub)
    rows = []
    for r in records:
        answers = (r["answers"] or {}).get("text") or []
        if not answers:
            rows.append((f"mlqa/{config}/{r['id']}", lang, None, "missing_answer"))
            continue
        context, question = r["context"], r["question"]
        reason = value_problem(context) or value_problem(question)
        prompt = None if reason else mlqa_prompt(context, question)
        turns, reason = _single_turn(prompt, answers[0]) if not reason else (None, reason)
        rows.append((f"mlqa/{config}/{r['id']}", lang, turns, reason))
    return _conversations("mlqa", rows, bad)


def read_xlsum(uri: str, config: str, limit: int | None = None) -> pa.Table:
    """XL-Sum train, one language config ("french"): prompt = article, response = summary."""
    lang = _config_lang(XLSUM_TO_SONAR, config, "XL-Sum")
    records, bad = read_records(uri, ["id", "text", "summary"], config, limit, _hub(uri, config))
    rows = []
    for r in records:
        reason = value_problem(r["text"])
        turns, reason = (_single_turn(xlsum_prompt(r["text"]), r["summary"]) if not reason
                         else (None, reason))
        rows.append((f"xlsum/{config}/{r['id']}", lang, turns, reason))
    return _conversations("xlsum", rows, bad)


def read_synthetic(uri: str, limit: int | None = None) -> pa.Table:
    """The synthetic-chat job's output; its quarantined items stay quarantined."""
    records, bad = read_records(uri, ["id", "kind", "lang", "turns", "quarantine"], None, limit)
    rows = [(r["id"], r["lang"], r["turns"], r["quarantine"]) for r in records]
    table = _conversations("synthetic", rows, bad)
    kinds = [f"synthetic_{r['kind']}" for r in records] + ["synthetic"] * len(bad)
    return table.set_column(1, "source", pa.array(kinds, pa.string()))


# ---- oasst2: the best conversation of each message tree --------------------------------------

OASST2_COLUMNS = ["message_id", "parent_id", "message_tree_id", "text", "role", "lang", "rank",
                  "deleted", "created_date"]


def best_conversation(messages: list[dict[str, Any]]) -> tuple[list[Any], str | None]:
    """(turns, None) for one oasst2 tree, or ([], reason) when the tree is malformed.

    From the root prompt, take the best assistant reply (rank 0; unranked replies after ranked
    ones, ties by creation date then id), then the earliest follow-up prompt that was itself
    answered, and so on. Deleted messages are skipped. Reasons: tree_duplicate_id, tree_bad_role
    (a role other than prompter/assistant, or a root that is not a prompt), tree_orphan (a
    parent not in the tree), tree_no_root / tree_many_roots, tree_cycle (messages not reachable
    from the root), tree_deleted_root, tree_unanswered (no reply to the root prompt).
    """
    nodes = {m["message_id"]: m for m in messages}
    if len(nodes) != len(messages):
        return [], "tree_duplicate_id"
    if any(m["role"] not in ("prompter", "assistant") for m in messages):
        return [], "tree_bad_role"
    if any(m["parent_id"] is not None and m["parent_id"] not in nodes for m in messages):
        return [], "tree_orphan"
    roots = [m for m in messages if m["parent_id"] is None]
    if len(roots) != 1:
        return [], "tree_no_root" if not roots else "tree_many_roots"
    children: dict[str, list[dict[str, Any]]] = {}
    for m in messages:
        if m["parent_id"] is not None:
            children.setdefault(m["parent_id"], []).append(m)
    seen, stack = set(), [roots[0]["message_id"]]
    while stack:
        mid = stack.pop()
        seen.add(mid)
        stack.extend(c["message_id"] for c in children.get(mid, []))
    if len(seen) != len(nodes):
        return [], "tree_cycle"
    root = roots[0]
    if root["role"] != "prompter":
        return [], "tree_bad_role"
    if root["deleted"]:
        return [], "tree_deleted_root"

    def replies(mid: str, role: str) -> list[dict[str, Any]]:
        return [c for c in children.get(mid, []) if c["role"] == role and not c["deleted"]]

    def order(m: dict[str, Any]) -> tuple:
        return (m["rank"] is None, m["rank"] or 0, m["created_date"] or "", m["message_id"])

    turns, node = [root["text"]], root
    while True:
        answers = replies(node["message_id"], "assistant")
        if not answers:
            break
        best = min(answers, key=order)
        turns.append(best["text"])
        follow = [p for p in replies(best["message_id"], "prompter")
                  if replies(p["message_id"], "assistant")]
        if not follow:
            break
        node = min(follow, key=order)
        turns.append(node["text"])
    if len(turns) < 2:
        return [], "tree_unanswered"
    return turns, None


def read_oasst2(uri: str, limit: int | None = None) -> pa.Table:
    """One conversation per oasst2 message tree (`best_conversation`), in order of first
    appearance; `limit` counts trees. The language is the root prompt's `lang`."""
    records, bad = read_records(uri, OASST2_COLUMNS, None, None, _hub(uri, None))
    trees: dict[Any, list[dict[str, Any]]] = {}
    for r in records:
        trees.setdefault(r["message_tree_id"], []).append(r)
    rows = []
    for tree_id, messages in list(trees.items())[:limit]:
        cid = f"oasst2/{tree_id}"
        if tree_id is None:
            rows.append((cid, None, None, "tree_missing_id"))
            continue
        turns, reason = best_conversation(messages)
        root = next((m for m in messages if m["parent_id"] is None), messages[0])
        lang = sonar_code_for_tag(root["lang"])
        reason = reason or next(filter(None, map(value_problem, turns)), None)
        reason = reason or (None if lang else "unknown_lang")
        rows.append((cid, lang, None if reason else turns, reason))
    return _conversations("oasst2", rows, bad)


def _hub(uri: str, config: str | None) -> str | None:
    pattern = HUB_RECORD_FILES.get(str(uri))
    return pattern.format(config=config) if pattern else None


INSTRUCT_READERS: dict[str, Callable[..., pa.Table]] = {
    "oasst2": lambda uri, config, limit: read_oasst2(uri, limit),
    "bactrian-x": read_bactrian_x,
    "aya": lambda uri, config, limit: read_aya(uri, limit),
    "mlqa": read_mlqa,
    "xlsum": read_xlsum,
    "synthetic": lambda uri, config, limit: read_synthetic(uri, limit),
}


def read_instruct(source: str, uri: str, config: str | None = None,
                  limit: int | None = None) -> pa.Table:
    """Conversations of one instruction source (a key of INSTRUCT_READERS)."""
    if source not in INSTRUCT_READERS:
        raise ValueError(f"unknown instruction source {source!r}; known: "
                         f"{', '.join(INSTRUCT_READERS)}")
    return INSTRUCT_READERS[source](uri, config, limit)


# ---- inputs of the synthetic-chat job -------------------------------------------------------

def read_topics(uri: str, limit: int | None = None) -> list[dict[str, str]]:
    """Everyday-Conversations topics (`full_topic`), first occurrence of each, in order:
    [{"id", "topic"}]. Rows without a usable topic, and unreadable files, are logged and
    counted by the caller through the returned `quarantine` entries."""
    records, bad = read_records(uri, ["full_topic"], None, limit, _hub(uri, None))
    out, seen = [], set()
    for r in records:
        topic = r["full_topic"]
        if value_problem(topic) or not topic.strip():
            out.append({"id": None, "topic": None, "quarantine": "missing_topic"})
        elif topic not in seen:
            seen.add(topic)
            out.append({"id": _digest(topic), "topic": topic, "quarantine": None})
    out += [{"id": path, "topic": None, "quarantine": reason} for path, reason in bad]
    return out


def read_math_problems(uri: str, limit: int | None = None) -> list[dict[str, str]]:
    """OpenMathInstruct-2 problems with their first solution, in order: [{"id", "problem",
    "solution", "quarantine"}] (the dataset holds many solutions per problem)."""
    records, bad = read_records(uri, ["problem", "generated_solution"], None, limit,
                                _hub(uri, None))
    out, seen = [], set()
    for r in records:
        problem, solution = r["problem"], r["generated_solution"]
        if value_problem(problem) or value_problem(solution):
            out.append({"id": None, "problem": None, "solution": None,
                        "quarantine": "missing_text"})
        elif problem not in seen:
            seen.add(problem)
            out.append({"id": _digest(problem), "problem": problem, "solution": solution,
                        "quarantine": None})
    out += [{"id": path, "problem": None, "solution": None, "quarantine": reason}
            for path, reason in bad]
    return out


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
