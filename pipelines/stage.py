"""The stage protocol: a stage is a callable over an Arrow table (one batch) that counts what it
did under its own name, testable without Ray; pipelines.ray_stages runs stages on Ray Data.

A stage subclasses `Stage`, names itself (`name`, which is also its name in Ray Data's progress
output and dashboard), implements `process`, and adds its tallies and quarantine reasons to
`self.counts`; the base counts the rows in and out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import pyarrow as pa

from pipelines.counts import StageCounts


class Stage:
    name: ClassVar[str]

    def __init__(self) -> None:
        self.counts = StageCounts(self.name)

    def __call__(self, table: pa.Table) -> pa.Table:
        self.counts.rows_in += table.num_rows
        out = self.process(table)
        self.counts.rows_out += self.rows_out(out)
        return out

    def process(self, table: pa.Table) -> pa.Table:
        raise NotImplementedError

    def rows_out(self, out: pa.Table) -> int:
        """What counts as this batch's rows out; a stage whose output is not its rows (a
        writer returning the files it wrote) says so here."""
        return out.num_rows


# What a stage that quarantines a row for an error adds beside the reason: the exception text.
DETAIL = "quarantine_detail"


def set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """`table` with column `name` replaced by `values`, or appended if it has none."""
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)


@dataclass
class StageSpec:
    """How to build a stage, and how Ray Data should run it (pipelines.ray_stages): on a pool
    of `actors` actors (each builds the stage once, so model weights load once per actor), in
    batches of `batch_size` rows, with `num_gpus` per actor."""

    factory: Callable[..., Stage]
    kwargs: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 256
    actors: int = 1
    num_gpus: float = 0

    @property
    def name(self) -> str:
        return self.factory.name

    def build(self) -> Stage:
        """The plain stage, to run in this process."""
        return self.factory(**self.kwargs)
