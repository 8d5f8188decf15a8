"""The synthetic-chat job (jobs.synthesize_chats): items (pipelines/synthetic_chats.py) -> an
OpenAI-compatible endpoint (pipelines/chat_endpoint.py) -> validated multi-turn chats, written
as Parquet parts.

Malformed replies and requests the server refuses are kept with their reason in `quarantine`;
an endpoint that is down, refuses the key or keeps failing stops the job (non-zero exit) after
writing what was answered. A rerun skips every item already in the output (good or
quarantined), so an interrupted run resumes without paying for finished items again. prepare_instruct reads the output as source
`synthetic`. The work is HTTP-bound, so it runs on a thread pool, not on Ray.
"""

from __future__ import annotations

import io
import logging
import os
import time
import uuid
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

import storage
from mimir_model.framing import TURN_MARKERS
from pipelines.chat_endpoint import ChatClient, EndpointError, EndpointUnavailable
from pipelines.counts import StageCounts, format_summary
from pipelines.readers.chat_inputs import read_math_problems, read_topics
from pipelines.synthetic_chats import ChatItem, make_items, parse_turns
from pipelines.validate import text_problem
from storage.paths import Input, Output, absolute_paths

log = logging.getLogger(__name__)


CHAT_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("kind", pa.string()),
    ("lang", pa.string()),
    ("source_id", pa.string()),
    ("num_turns", pa.int32()),
    ("prompt", pa.string()),
    ("reply", pa.string()),
    ("turns", pa.list_(pa.string())),
    ("quarantine", pa.string()),
])


def request_chats(items: list[ChatItem], client: ChatClient, concurrency: int,
                  counts: StageCounts) -> list[dict[str, Any]]:
    """Rows of CHAT_SCHEMA, in the order of `items`; at most `concurrency` requests in flight.
    A bad reply or a request the server refuses is quarantined with its reason. If the
    endpoint itself fails (EndpointUnavailable), the requests not sent yet are cancelled and
    the error is raised with the rows finished so far (`.finished`), for the caller to keep."""

    def one(item: ChatItem) -> dict[str, Any]:
        row = {"id": item.id, "kind": item.kind, "lang": item.lang, "source_id": item.source_id,
               "num_turns": item.num_turns, "prompt": item.prompt, "reply": None, "turns": None,
               "quarantine": None}
        try:
            reply = client.complete(item.prompt)
        except EndpointError as e:
            row["quarantine"] = e.reason
            return row
        if text_problem(reply) == "invalid_unicode":  # cannot be stored in Arrow
            row["quarantine"] = "invalid_unicode"
            return row
        row["reply"] = reply
        row["turns"], row["quarantine"] = parse_turns(reply)
        return row

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(one, item) for item in items]
        wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f.done() and f.exception()), None)
        if failed:
            for f in futures:
                f.cancel()
            wait(futures)  # the requests in flight finish: their answers are kept
        rows = [f.result() for f in futures if f.done() and not f.cancelled()
                and not f.exception()]
    for row in rows:
        counts.rows_in += 1
        if row["quarantine"] is None:
            counts.rows_out += 1
            counts.tally[f"{row['kind']}_chats"] += 1
            counts.tally["turns"] += len(row["turns"])
        else:
            counts.quarantine(row["quarantine"])
    if failed:
        error = failed.exception()
        error.finished = rows
        raise error
    return rows


class ChatStore:
    """The job's output: Parquet parts under one root (local or s3://). Every finished item,
    good or quarantined, is in exactly one part, so `done_ids` tells a rerun what to skip.
    Each part is written whole (a local temp file and a rename, or one S3 PUT), so a killed
    run leaves only complete parts."""

    def __init__(self, root: str) -> None:
        self.fs, self.base = storage.resolve(root)

    def parts(self) -> list[str]:
        selector = pafs.FileSelector(self.base, allow_not_found=True)
        return sorted(f.path for f in self.fs.get_file_info(selector)
                      if f.type == pafs.FileType.File and f.path.endswith(".parquet"))

    def done_ids(self) -> set[str]:
        done: set[str] = set()
        for path in self.parts():
            done.update(pq.read_table(path, columns=["id"], filesystem=self.fs)
                        .column("id").to_pylist())
        return done

    def write(self, rows: list[dict[str, Any]]) -> str:
        name = f"part-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}.parquet"
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows, schema=CHAT_SCHEMA), buf, compression="zstd")
        path = storage.join(self.base, name)
        storage.write_bytes(self.fs, path, buf.getvalue())
        return path

    def read(self) -> pa.Table:
        tables = [pq.read_table(p, filesystem=self.fs) for p in self.parts()]
        return pa.concat_tables(tables) if tables else CHAT_SCHEMA.empty_table()


@dataclass
class EndpointConfig:
    url: str = ""  # empty: $OPENAI_BASE_URL (e.g. http://host:8000/v1)
    model: str = ""  # empty: $OPENAI_MODEL (the paper used Qwen3-235B-A22B-Thinking-2507)
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable, never a file
    concurrency: int = 8  # requests in flight
    timeout: float = 300.0  # seconds per request
    retries: int = 4  # of a request that failed for a transient reason
    backoff: float = 2.0  # seconds before the first retry; doubles each time
    temperature: float = 0.7  # sampling temperature of the chat model
    max_tokens: int = 8192  # longest reply


@dataclass
class SynthConfig:
    kind: Literal["chat", "math"] = "chat"  # chat (topics) or math (problems)
    input: Input = "samples/everyday-conversations"  # local, s3:// or Hub id
    limit: int | None = None  # source records to read
    languages: list[str] = field(default_factory=lambda: ["eng_Latn"])  # target SONAR codes
    output: Output = "build/demo/synthetic/chat"  # Parquet parts (local or s3://)
    seed: int = 0  # of the prompts' random choices (turns, optional parts)
    flush_every: int = 64  # items per written part: the resume granularity
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)


def run(cfg: SynthConfig) -> list[StageCounts]:
    """Generate every item not in the output yet, `flush_every` at a time."""
    absolute_paths(cfg)
    if cfg.kind not in ("chat", "math"):
        raise ValueError(f"kind must be chat or math, not {cfg.kind!r}")
    unknown = sorted(set(cfg.languages) - set(TURN_MARKERS))
    if unknown:
        raise ValueError(f"languages without instruction support: {unknown}")
    ep = cfg.endpoint
    url = ep.url or os.environ.get("OPENAI_BASE_URL", "")
    model = ep.model or os.environ.get("OPENAI_MODEL", "")
    if not url or not model:
        raise ValueError("set endpoint.url and endpoint.model, or OPENAI_BASE_URL and "
                         "OPENAI_MODEL")
    client = ChatClient(url, model, os.environ.get(ep.api_key_env, ""), ep.timeout, ep.retries,
                        ep.backoff, temperature=ep.temperature, max_tokens=ep.max_tokens)

    read = StageCounts("read")
    reader = read_topics if cfg.kind == "chat" else read_math_problems
    inputs = reader(cfg.input, cfg.limit)
    read.rows_in = read.rows_out = len(inputs)
    for record in inputs:
        if record["quarantine"] is not None:
            read.quarantine(record["quarantine"])
    items = make_items(cfg.kind, inputs, cfg.languages, cfg.seed)
    store = ChatStore(cfg.output)
    done = store.done_ids()
    todo = [item for item in items if item.id not in done]
    read.tally["items"] = len(items)
    read.tally["already_done"] = len(items) - len(todo)
    log.info("%d items, %d already done, %d to generate", len(items), len(items) - len(todo),
             len(todo))

    counts = StageCounts("generate")
    for start in range(0, len(todo), cfg.flush_every):
        try:
            rows = request_chats(todo[start:start + cfg.flush_every], client, ep.concurrency,
                                 counts)
        except EndpointUnavailable as e:
            # Keep what was answered (paid for); the rest is asked again by the next run.
            if e.finished:
                log.info("wrote the %d chats finished before the failure to %s",
                         len(e.finished), store.write(e.finished))
            log.error("stopping: %s\nsummary so far:\n%s", e,
                      format_summary([read, counts]))
            raise
        path = store.write(rows)
        log.info("wrote %d chats to %s", len(rows), path)
    summary = [read, counts]
    log.info("summary:\n%s", format_summary(summary))
    return summary
