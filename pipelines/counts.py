"""What each stage did: rows in and out, items produced, rows quarantined by reason.

Every stage owns a `StageCounts`; jobs merge them (across Ray tasks and actors) into one
summary that is logged and written at the end of the job, like datatrove's block stats.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StageCounts:
    stage: str
    rows_in: int = 0
    rows_out: int = 0
    # Named tallies of what the stage produced or decided, e.g. {"sentences": 812,
    # "relabel_zho_Hans": 3}.
    tally: Counter = field(default_factory=Counter)
    quarantined: Counter = field(default_factory=Counter)

    def quarantine(self, reason: str, n: int = 1) -> None:
        self.quarantined[reason] += n

    def merge(self, other: "StageCounts") -> None:
        if other.stage != self.stage:
            raise ValueError(f"cannot merge counts of {other.stage!r} into {self.stage!r}")
        self.rows_in += other.rows_in
        self.rows_out += other.rows_out
        self.tally.update(other.tally)
        self.quarantined.update(other.quarantined)

    def take(self) -> "StageCounts":
        """Return the counts so far and reset, so a long-lived actor reports deltas."""
        out = StageCounts(self.stage, self.rows_in, self.rows_out, Counter(self.tally),
                          Counter(self.quarantined))
        self.rows_in = self.rows_out = 0
        self.tally.clear()
        self.quarantined.clear()
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "tally": dict(sorted(self.tally.items())),
            "quarantined": dict(sorted(self.quarantined.items())),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StageCounts":
        return cls(d["stage"], d["rows_in"], d["rows_out"], Counter(d["tally"]),
                   Counter(d["quarantined"]))


def format_summary(counts: list[StageCounts]) -> str:
    """A fixed-width table of the counts, one stage a line, for the end of a job's log."""
    lines = [f"{'stage':<16}{'rows in':>10}{'rows out':>10}  tally / quarantined"]
    for c in counts:
        extra = ", ".join(f"{k}={v}" for k, v in sorted(c.tally.items()))
        if c.quarantined:
            q = ", ".join(f"{k}={v}" for k, v in sorted(c.quarantined.items()))
            extra = f"{extra}; quarantined: {q}" if extra else f"quarantined: {q}"
        lines.append(f"{c.stage:<16}{c.rows_in:>10}{c.rows_out:>10}  {extra}")
    return "\n".join(lines)
