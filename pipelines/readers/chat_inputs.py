"""Inputs of the synthetic-chat job (paper Tables 7-8): Everyday-Conversations topics and
OpenMathInstruct-2 problems, as plain records with a `quarantine` reason for unusable ones."""

from __future__ import annotations

import hashlib

from pipelines.readers import hub
from pipelines.readers.files import read_records
from pipelines.validate import value_problem


def read_topics(uri: str, limit: int | None = None) -> list[dict[str, str]]:
    """Everyday-Conversations topics (`full_topic`), first occurrence of each, in order:
    [{"id", "topic"}]. Rows without a usable topic, and unreadable files, are logged and
    counted by the caller through the returned `quarantine` entries."""
    records, bad = read_records(uri, ["full_topic"], None, limit, hub.record_files(uri, None))
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
                                hub.record_files(uri, None))
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
