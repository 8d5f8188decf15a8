"""Running plain stages on Ray Data, with their counts gathered into one summary.

A stage is a callable class over Arrow tables with a `counts` attribute. On Ray it runs inside
map tasks or actors, so after each batch the wrapper sends the counts delta to a
`CountsSink` actor; the job reads the merged summary at its end.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import pyarrow as pa
import ray

from pipelines.counts import StageCounts

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0)
class CountsSink:
    """Holds the merged counts of every stage of a job, in first-report order."""

    def __init__(self) -> None:
        self._counts: dict[str, StageCounts] = {}

    def add(self, counts: dict[str, Any]) -> None:
        c = StageCounts.from_dict(counts)
        if c.stage in self._counts:
            self._counts[c.stage].merge(c)
        else:
            self._counts[c.stage] = c

    def summary(self) -> list[dict[str, Any]]:
        return [c.as_dict() for c in self._counts.values()]


class _Counted:
    """Builds the stage once per task/actor and forwards each batch's counts to the sink."""

    def __init__(self, factory: Callable[..., Any], kwargs: dict[str, Any], sink) -> None:
        self.stage = factory(**kwargs)
        self.sink = sink

    def __call__(self, table: pa.Table) -> pa.Table:
        out = self.stage(table)
        # Waited for, so the summary read at the end of the job has every batch in it.
        ray.get(self.sink.add.remote(self.stage.counts.take().as_dict()))
        return out


def map_stage(ds: ray.data.Dataset, factory: Callable[..., Any], sink, *,
              kwargs: dict[str, Any] | None = None, actors: int = 1, batch_size: int = 64,
              num_cpus: float = 1, num_gpus: float = 0) -> ray.data.Dataset:
    """Apply a stage class to a dataset on a pool of `actors` actors (the stage is built once
    per actor, so model-loading stages load their weights once)."""
    return ds.map_batches(
        _Counted,
        fn_constructor_kwargs={"factory": factory, "kwargs": kwargs or {}, "sink": sink},
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=num_cpus,
        num_gpus=num_gpus,
    )


def collect_counts(sink) -> list[StageCounts]:
    return [StageCounts.from_dict(d) for d in ray.get(sink.summary.remote())]
