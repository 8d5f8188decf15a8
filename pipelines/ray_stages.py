"""Running stages (pipelines/stage.py) on Ray Data, with their counts gathered into one summary.

A stage runs inside Ray Data actors; its counts reach one `CountsSink` actor, off the data path:

- After each batch the actor sends that batch's counts delta to the sink *without waiting* for
  it (a fire-and-forget actor call), so no batch of any pool ever waits on the sink. (It used
  to wait, `ray.get(sink.add.remote(...))`, which made every batch of every actor of every
  pool queue on the one sink actor.)
- Exactness comes from a barrier instead: each actor registers with the sink once, on its
  first batch, before that batch's output leaves (one round trip per actor, not per batch),
  and counts what it sends. When Ray Data
  releases the actor at the end of the dataset (a graceful exit: Ray first waits for the
  actor's calls still in flight, then runs the stage's `__del__`), it sends `close(number
  sent)` and waits for that one reply. The sink does not take that order on trust: an actor
  is complete when it has closed and the sink has received exactly as many deltas as it says
  it sent.
- `collect_counts` waits (at most `timeout_s`) until every registered actor is complete, so
  the summary it returns has every batch. An actor that never closes (killed, crashed, or a
  consumer that stopped before the end of the data) is named in a warning once no actor has
  closed for `QUIET_S`, and the summary may then lack that actor's last batches.

The sink also adds up each stage's busy seconds (time inside the stage, per batch) and keeps
when its first batch started, which the benchmarks use (each stage's share; when the whole
chain was up). The document chain every embedding job shares is
composed here too.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from typing import Any

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

BARRIER_TIMEOUT_S = 120.0
QUIET_S = 15.0  # no actor closed for this long: the others will not


class CountsStore:
    """Holds the merged counts of every stage of a job, in first-report order, and which
    actors have reported all they sent (see the module docstring); `CountsSink` is it as an
    actor."""

    def __init__(self) -> None:
        self._counts: dict[str, StageCounts] = {}
        self._seconds: Counter = Counter()
        self._first: dict[str, float] = {}  # stage -> wall time its first batch started
        # actor uid -> [stage, deltas received, deltas sent (None until it closes)]
        self._actors: dict[str, list] = {}

    def register(self, uid: str, stage: str) -> None:
        self._actors.setdefault(uid, [stage, 0, None])

    def add(self, counts: dict[str, Any], uid: str | None = None, seconds: float = 0.0,
            started: float | None = None) -> None:
        c = StageCounts.from_dict(counts)
        if c.stage in self._counts:
            self._counts[c.stage].merge(c)
        else:
            self._counts[c.stage] = c
        self._seconds[c.stage] += seconds
        if started is not None:
            self._first[c.stage] = min(started, self._first.get(c.stage, started))
        if uid is not None:
            self._actors.setdefault(uid, [c.stage, 0, None])[1] += 1

    def close(self, uid: str, sent: int) -> None:
        self._actors.setdefault(uid, ["?", 0, None])[2] = sent

    def incomplete(self) -> list[dict[str, Any]]:
        """Actors that have not closed, or whose deltas have not all arrived."""
        return [{"uid": uid, "stage": stage, "received": received, "sent": sent}
                for uid, (stage, received, sent) in self._actors.items()
                if sent is None or received != sent]

    def summary(self) -> list[dict[str, Any]]:
        return [c.as_dict() for c in self._counts.values()]

    def batches(self) -> dict[str, list[int]]:
        """Batches each actor of a stage's pool took, busiest first: whether the work spread
        (an actor that took none is not listed)."""
        per_stage: dict[str, list[int]] = {}
        for stage, received, _ in self._actors.values():
            per_stage.setdefault(stage, []).append(received)
        return {stage: sorted(n, reverse=True) for stage, n in per_stage.items()}

    def seconds(self) -> dict[str, float]:
        return dict(self._seconds)

    def first_batch(self) -> dict[str, float]:
        return dict(self._first)


CountsSink = ray.remote(num_cpus=0)(CountsStore)


class _Counted:
    """Builds the stage once per actor and sends each batch's counts to the sink without
    waiting; closes with the sink when Ray Data releases the actor (module docstring)."""

    def __init__(self, spec: StageSpec, sink) -> None:
        setup_logging()  # the job's level (MIMIR_LOG_LEVEL) in this actor too
        self.stage = spec.build()
        self.sink = sink
        self.uid = uuid.uuid4().hex
        self.sent = 0
        self.registered = False

    def __call__(self, table: pa.Table) -> pa.Table:
        started, t0 = time.time(), time.perf_counter()
        out = self.stage(table)
        seconds = time.perf_counter() - t0
        if not self.registered:
            # Once per actor, before its first output leaves: from here on the barrier waits
            # for this actor's close. (Not at construction: Ray Data may release actors that
            # are still starting, and those never close.)
            ray.get(self.sink.register.remote(self.uid, self.stage.name))
            self.registered = True
        # Not waited for: the sink merges it while the next batch runs.
        self.sink.add.remote(self.stage.counts.take().as_dict(), self.uid, seconds, started)
        self.sent += 1
        return out

    def close(self) -> None:
        sink, self.sink = self.sink, None
        if sink is None or not self.registered:
            return
        try:
            ray.get(sink.close.remote(self.uid, self.sent), timeout=60)
        except Exception as e:  # the sink may be gone when the job has given up on it
            log.warning("%s: could not close its counts with the sink: %s", self.stage.name, e)

    def __del__(self) -> None:
        self.close()


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


def map_document_stages(ds: ray.data.Dataset, segment: SegmentConfig, embed: EmbedConfig,
                        sonar: SonarFiles, sink, cache_dir: str, max_document_chars: int,
                        num_cpus: float = 1) -> ray.data.Dataset:
    """FineWeb-style documents -> validation -> Chinese relabel -> SaT sentences -> SONAR
    embeddings: the chain the corpus job and run-time training share. `num_cpus` is what each
    stage actor reserves: less than 1 where the stages share a node with Ray Train workers,
    which hold their CPUs for the whole run."""
    # A pool's actors share the work block by block: the caller bounds the blocks
    # (set_block_size), small enough that a group's documents make many.
    validate = StageSpec(ValidateText, {"max_chars": max_document_chars},
                         batch_size=segment.batch_size)
    ds = map_stage(ds, validate, sink, num_cpus)
    ds = map_stage(ds, StageSpec(ChineseRelabel, batch_size=segment.batch_size), sink, num_cpus)
    ds = map_stage(ds, segment.spec(cache_dir), sink, num_cpus)
    return map_stage(ds, embed.spec(sonar, cache_dir), sink, num_cpus)


def set_block_size(ds: ray.data.Dataset, block_mb: float) -> None:
    """Bound every block of `ds`'s pipeline to `block_mb` MiB. Ray Data hands a block to one
    actor of a pool whole, and joins what a stage returns or yields into blocks of up to the
    dataset's target_max_block_size (default 128 MiB): a small input in blocks that size would
    keep all but one actor of each pool idle."""
    ds.context.target_max_block_size = int(block_mb * 2**20)


# How long a pipeline whose pools fit the cluster waits for their actors to start.
ACTOR_START_TIMEOUT_S = 600


def wait_for_pools_if_they_fit(ds: ray.data.Dataset, pools: dict[str, float]) -> None:
    """When the cluster has the CPUs the stage pools reserve (stage -> CPUs), make `ds` start
    once every actor of each pool is up, so that each gets a share of the batches (actors
    that start late would find the work taken). When it has not, warn: Ray starts the actors
    that fit, the others never start while the pipeline runs (pools hold their CPUs to the
    end), and waiting for them would block it."""
    have = ray.cluster_resources().get("CPU", 0)
    need = sum(pools.values())
    if need <= have:
        ds.context.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
        return
    log.warning("the stage pools reserve %g CPUs (%s) but the cluster has %g: some actors "
                "will not start and their pools work with fewer; lower the actors of the "
                "stages (segment.actors, embed.actors, read_actors) or add nodes",
                need, ", ".join(f"{k} {v:g}" for k, v in pools.items()), have)


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
                counts = counts_so_far(self.sink)
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


def wait_complete(sink, timeout_s: float = BARRIER_TIMEOUT_S,
                  quiet_s: float = QUIET_S) -> list[dict[str, Any]]:
    """Wait until every actor that registered with `sink` has closed with all its deltas
    received; return the actors still incomplete (empty: the counts are exact). Gives up at
    timeout_s, or once nothing has changed for quiet_s (actors that will never close: the
    consumer stopped before the end of the data, or an actor was killed)."""
    start = time.monotonic()
    last, changed, delay = None, start, 0.01
    while True:
        missing = ray.get(sink.incomplete.remote())
        now = time.monotonic()
        if missing != last:
            last, changed = missing, now
        if not missing or now - start >= timeout_s or now - changed >= quiet_s:
            return missing
        time.sleep(delay)
        delay = min(0.5, delay * 2)


def collect_counts(sink, timeout_s: float = BARRIER_TIMEOUT_S) -> list[StageCounts]:
    """The merged counts, once every stage actor has reported all its batches (see
    wait_complete; when it gives up, a warning names the stages whose counts may lack
    batches)."""
    missing = wait_complete(sink, timeout_s)
    if missing:
        stages = Counter(m["stage"] for m in missing)
        log.warning("counts may be incomplete: %d stage actor(s) did not close with the counts "
                    "sink (killed, or the data was not read to its end); by stage: %s",
                    len(missing), dict(stages))
    return counts_so_far(sink)


def counts_so_far(sink) -> list[StageCounts]:
    """The counts merged so far, without waiting for the stage actors (progress lines)."""
    return [StageCounts.from_dict(d) for d in ray.get(sink.summary.remote())]


def collect_batches(sink) -> dict[str, list[int]]:
    """CountsSink.batches: each stage's batches per actor, busiest first."""
    return ray.get(sink.batches.remote())


def stage_seconds(sink) -> dict[str, float]:
    """Busy seconds per stage (time inside the stage's batches, all its actors together)."""
    return ray.get(sink.seconds.remote())


def first_batch_times(sink) -> dict[str, float]:
    """Per stage, the wall time (time.time()) at which its first batch started."""
    return ray.get(sink.first_batch.remote())
