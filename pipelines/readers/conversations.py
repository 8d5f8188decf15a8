"""Instruction data sources into CONVERSATION_SCHEMA (id, source, lang, turns, quarantine):
oasst2 (each message tree's best conversation), Bactrian-X, Aya, MLQA train, XL-Sum train and
the synthetic-chat job's output. Inputs are local or S3 Parquet or the source's Hub dataset id
(pipelines/readers/hub.py); `limit` bounds the source records read. Bad files and bad values
are quarantined with their reason (pipelines/readers/files.py).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import pyarrow as pa

from mimir_model.framing import mlqa_prompt, xlsum_prompt
from pipelines.langs import ISO1_TO_SONAR, XLSUM_TO_SONAR, sonar_code_for_tag
from pipelines.readers import hub
from pipelines.readers.files import read_records
from pipelines.readers.schemas import CONVERSATION_SCHEMA
from pipelines.validate import value_problem

log = logging.getLogger(__name__)


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
    records, bad = read_records(uri, ["instruction", "input", "output", "id"], config, limit,
                                hub.record_files(uri, config))
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
                                hub.record_files(uri, None))
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
    files = None
    if str(uri) == "facebook/mlqa":
        files = hub.record_files("rajpurkar/squad" if config == "en" else uri, config)
    records, bad = read_records(uri, ["id", "context", "question", "answers"], config, limit,
                                files)
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
    records, bad = read_records(uri, ["id", "text", "summary"], config, limit, hub.record_files(uri, config))
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
    records, bad = read_records(uri, OASST2_COLUMNS, None, None, hub.record_files(uri, None))
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


CONVERSATION_READERS: dict[str, Callable[..., pa.Table]] = {
    "oasst2": lambda uri, config, limit: read_oasst2(uri, limit),
    "bactrian-x": read_bactrian_x,
    "aya": lambda uri, config, limit: read_aya(uri, limit),
    "mlqa": read_mlqa,
    "xlsum": read_xlsum,
    "synthetic": lambda uri, config, limit: read_synthetic(uri, limit),
}


def read_conversations(source: str, uri: str, config: str | None = None,
                       limit: int | None = None) -> pa.Table:
    """Conversations of one instruction source (a key of CONVERSATION_READERS)."""
    if source not in CONVERSATION_READERS:
        raise ValueError(f"unknown instruction source {source!r}; known: "
                         f"{', '.join(CONVERSATION_READERS)}")
    return CONVERSATION_READERS[source](uri, config, limit)
