"""Synthetic-chat job: Everyday-Conversations topics (kind chat, paper Table 7) or
OpenMathInstruct-2 problems (kind math, Table 8) x target languages -> prompts -> an
OpenAI-compatible chat endpoint -> validated multi-turn chats, written as Parquet parts.

    OPENAI_BASE_URL=http://host:8000/v1 OPENAI_MODEL=... OPENAI_API_KEY=... \
        python -m jobs.synthesize_chats --config jobs/configs/synthesize_chats.yaml kind=math

Malformed replies and failed requests are kept with their reason in `quarantine`. A rerun
skips every item already in the output (good or quarantined), so an interrupted run resumes
without paying for finished items again. prepare_instruct reads the output as source
`synthetic`. The work is HTTP-bound, so it runs on a thread pool, not on Ray.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from jobs import config as config_io
from pipelines.counts import StageCounts, format_summary
from pipelines.instruct import TURN_MARKERS
from pipelines.sources import read_math_problems, read_topics
from pipelines.synthetic_chats import ChatClient, ChatStore, generate, make_items

log = logging.getLogger("jobs.synthesize_chats")


@dataclass
class EndpointConfig:
    url: str = ""  # empty: $OPENAI_BASE_URL (e.g. http://host:8000/v1)
    model: str = ""  # empty: $OPENAI_MODEL (the paper used Qwen3-235B-A22B-Thinking-2507)
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable, never a file
    concurrency: int = 8
    timeout: float = 300.0
    retries: int = 4
    backoff: float = 2.0
    temperature: float = 0.7
    max_tokens: int = 8192


@dataclass
class SynthConfig:
    kind: str = "chat"  # chat (topics) or math (problems)
    input: str = "tests/data/samples/everyday-conversations"  # local, s3:// or Hub id
    limit: int | None = None  # source records to read
    languages: list[str] = field(default_factory=lambda: ["eng_Latn"])
    output: str = "build/demo/synthetic/chat"
    seed: int = 0
    flush_every: int = 64  # items per written part: the resume granularity
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)


def run(cfg: SynthConfig) -> list[StageCounts]:
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
    inputs = reader(config_io.absolute(cfg.input), cfg.limit)
    read.rows_in = read.rows_out = len(inputs)
    for record in inputs:
        if record["quarantine"] is not None:
            read.quarantine(record["quarantine"])
    items = make_items(cfg.kind, inputs, cfg.languages, cfg.seed)
    store = ChatStore(config_io.absolute(cfg.output))
    done = store.done_ids()
    todo = [item for item in items if item.id not in done]
    read.tally["items"] = len(items)
    read.tally["already_done"] = len(items) - len(todo)
    log.info("%d items, %d already done, %d to generate", len(items), len(items) - len(todo),
             len(todo))

    counts = StageCounts("generate")
    for start in range(0, len(todo), cfg.flush_every):
        rows = list(generate(todo[start:start + cfg.flush_every], client, ep.concurrency, counts))
        path = store.write(rows)
        log.info("wrote %d chats to %s", len(rows), path)
    summary = [read, counts]
    log.info("summary:\n%s", format_summary(summary))
    return summary


def main() -> None:
    args = config_io.cli(__doc__.splitlines()[0], "jobs/configs/synthesize_chats.yaml")
    run(config_io.load(SynthConfig, args.config, args.overrides))


if __name__ == "__main__":
    main()
