"""Running stages (pipelines/stage.py) on Ray Data, with their counts gathered into one summary.

A stage runs inside Ray Data actors, so after each batch the wrapper sends the counts delta to a
`CountsSink` actor; the job reads the merged summary at its end. The document chain every
embedding job shares is composed here too.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
import time
from collections import Counter
from typing import Any, Iterator

import pyarrow as pa
import ray

from jobkit.cli import setup_logging
from mimir_model.sonar.config import SonarFiles
from pipelines.counts import StageCounts
from pipelines.langs import ChineseRelabel
from pipelines.stage import StageSpec
from pipelines.stage_configs import EmbedConfig, SegmentConfig
from pipelines.validate import ValidateText

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0)
class CountsSink:
    """Holds the merged counts of every stage of a job, in first-report order."""

    def __init__(self) -> None:
        self._counts: dict[str, StageCounts] = {}
        self._batches: dict[str, Counter] = {}

    def add(self, counts: dict[str, Any], actor: str | None = None) -> None:
        c = StageCounts.from_dict(counts)
        if c.stage in self._counts:
            self._counts[c.stage].merge(c)
        else:
            self._counts[c.stage] = c
        if actor is not None:
            self._batches.setdefault(c.stage, Counter())[actor] += 1

    def summary(self) -> list[dict[str, Any]]:
        return [c.as_dict() for c in self._counts.values()]

    def batches(self) -> dict[str, list[int]]:
        """Batches each actor of a stage's pool took, busiest first: whether the work spread
        (an actor that took none is not listed)."""
        return {stage: sorted(c.values(), reverse=True) for stage, c in self._batches.items()}


class _Counted:
    """Builds the stage once per task/actor and forwards each batch's counts to the sink."""

    def __init__(self, spec: StageSpec, sink) -> None:
        setup_logging()  # the job's level (MIMIR_LOG_LEVEL) in this actor too
        self.stage = spec.build()
        self.sink = sink
        self.rows_per_block = spec.rows_per_block
        self.actor = ray.get_runtime_context().get_actor_id()

    def __call__(self, table: pa.Table) -> Iterator[pa.Table]:
        out = self.stage(table)
        # Waited for, so the summary read at the end of the job has every batch in it.
        ray.get(self.sink.add.remote(self.stage.counts.take().as_dict(), self.actor))
        step = self.rows_per_block or max(out.num_rows, 1)
        for start in range(0, max(out.num_rows, 1), step):  # each yield is a block of its own
            yield out.slice(start, step)


def map_stage(ds: ray.data.Dataset, spec: StageSpec, sink, num_cpus: float = 1,
              ) -> ray.data.Dataset:
    """Run a stage over a dataset on a pool of `spec.actors` actors. The operator carries the
    stage's name (`MapBatches(segment)` in progress output and the dashboard)."""
    named = type(spec.name, (_Counted,), {"__doc__": f"The {spec.name} stage on Ray Data."})
    return ds.map_batches(
        named,
        fn_constructor_kwargs={"spec": spec, "sink": sink},
        batch_format="pyarrow",
        batch_size=spec.batch_size,
        # One task in flight per actor: the next batch goes to an idle actor of the pool, not
        # queued behind a busy one on the node where it was made (Ray's locality preference),
        # so a pool of SaT or SONAR actors shares the work.
        compute=ray.data.ActorPoolStrategy(size=spec.actors, max_tasks_in_flight_per_actor=1),
        num_cpus=num_cpus,
        num_gpus=spec.num_gpus,
    )


# How long a pipeline waits for the actors of its pools to start before it fails (rather than
# hang when the cluster cannot fit them); they all start before any batch is handed out.
ACTOR_START_TIMEOUT_S = 600


def map_document_stages(ds: ray.data.Dataset, segment: SegmentConfig, embed: EmbedConfig,
                        sonar: SonarFiles, sink, cache_dir: str, max_document_chars: int,
                        num_cpus: float = 1) -> ray.data.Dataset:
    """FineWeb-style documents -> validation -> Chinese relabel -> SaT sentences -> SONAR
    embeddings: the chain the corpus job and run-time training share. `num_cpus` is what each
    stage actor reserves: less than 1 where the stages share a node with Ray Train workers,
    which hold their CPUs for the whole run."""
    ds.context.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
    # Each stage hands on blocks of the next one's batch: a stage taking bigger batches than
    # the blocks it gets would merge them, and the next pool would see one block.
    validate = StageSpec(ValidateText, {"max_chars": max_document_chars},
                         batch_size=segment.batch_size, rows_per_block=segment.batch_size)
    ds = map_stage(ds, validate, sink, num_cpus)
    ds = map_stage(ds, StageSpec(ChineseRelabel, batch_size=segment.batch_size,
                                 rows_per_block=segment.batch_size), sink, num_cpus)
    ds = map_stage(ds, replace(segment.spec(cache_dir), rows_per_block=embed.batch_size), sink,
                   num_cpus)
    return map_stage(ds, embed.spec(sonar, cache_dir), sink, num_cpus)


class Progress:
    """Logs one line every `interval_s` seconds while a pipeline runs: every stage's rows out so
    far, from the counts sink. Readable under `ray job submit`, where Ray Data's own progress
    (off unless stdout is a terminal) would print a block of lines every 10 s."""

    def __init__(self, sink, label: str, interval_s: float = 30.0) -> None:
        self.sink, self.label, self.interval_s = sink, label, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="progress")
        self._start = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                counts = collect_counts(self.sink)
            except Exception as e:  # a slow or restarting sink must not end the job
                log.debug("progress: no counts yet (%s)", e)
                continue
            elapsed = time.monotonic() - self._start
            stages = ", ".join(f"{c.stage} {c.rows_out}" for c in counts)
            log.info("%s after %.0f s: rows out %s", self.label, elapsed, stages or "none yet")

    def __enter__(self) -> "Progress":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def collect_counts(sink) -> list[StageCounts]:
    return [StageCounts.from_dict(d) for d in ray.get(sink.summary.remote())]


def collect_batches(sink) -> dict[str, list[int]]:
    """CountsSink.batches: each stage's batches per actor, busiest first."""
    return ray.get(sink.batches.remote())
