"""Stage counts on Ray Data reach the sink off the data path, and the summary is still exact:
several actors per stage, a sink that holds every delta back, an actor that never closes."""

from __future__ import annotations

import threading

import pyarrow as pa
import ray
import pyarrow.compute as pc

from pipelines.counts import StageCounts
from pipelines.ray_stages import (CountsSink, CountsStore, _Counted, collect_counts, map_stage,
                                  stage_seconds, wait_complete)
from pipelines.stage import Stage, StageSpec

ROWS = 240


class Tag(Stage):
    """Tallies each row's residue mod 7 and quarantines multiples of 10 (counted only)."""

    name = "tag"

    def process(self, table: pa.Table) -> pa.Table:
        for x in table["x"].to_pylist():
            self.counts.tally[f"mod7_{x % 7}"] += 1
            if x % 10 == 0:
                self.counts.quarantine("tens")
        return table


class DropOdd(Stage):
    name = "drop_odd"

    def process(self, table: pa.Table) -> pa.Table:
        out = table.filter(pc.equal(pc.bit_wise_and(table["x"], 1), 0))
        self.counts.tally["dropped"] += table.num_rows - out.num_rows
        return out


def _chain(ray, sink):
    ds = ray.data.from_arrow(pa.table({"x": list(range(ROWS))})).repartition(12)
    ds = map_stage(ds, StageSpec(Tag, batch_size=9, actors=3), sink, num_cpus=0.1)
    ds = map_stage(ds, StageSpec(DropOdd, batch_size=13, actors=2), sink, num_cpus=0.1)
    return map_stage(ds, StageSpec(Tag, batch_size=7, actors=2), sink, num_cpus=0.1)


def _expected() -> dict[str, dict]:
    first, drop, last = Tag(), DropOdd(), Tag()
    table = pa.table({"x": list(range(ROWS))})
    last(drop(first(table)))
    merged = first.counts
    merged.merge(last.counts)  # the two Tag stages share a name, so the sink merges them
    return {c.stage: c.as_dict() for c in (merged, drop.counts)}


def test_counts_are_exact_with_several_actors(ray_local):
    sink = CountsSink.remote()
    rows = _chain(ray_local, sink).take_all()
    assert len(rows) == ROWS // 2
    counts = collect_counts(sink)
    assert {c.stage: c.as_dict() for c in counts} == _expected()
    assert ray_local.get(sink.incomplete.remote()) == []
    assert set(stage_seconds(sink)) == {"tag", "drop_odd"}
    ray_local.kill(sink)


class _HeldBack:
    """A sink whose every delta waits until `release()` (its own thread; the other calls are
    answered meanwhile)."""

    def __init__(self) -> None:
        self.store = CountsStore()
        self.gate = threading.Event()

    @ray.method(concurrency_group="data")
    def add(self, counts, uid=None, seconds=0.0, started=None):
        self.gate.wait(120)
        self.store.add(counts, uid, seconds, started)

    @ray.method(concurrency_group="control")
    def register(self, uid, stage):
        self.store.register(uid, stage)

    @ray.method(concurrency_group="control")
    def close(self, uid, sent):
        self.store.close(uid, sent)

    @ray.method(concurrency_group="control")
    def release(self):
        self.gate.set()

    @ray.method(concurrency_group="control")
    def incomplete(self):
        return self.store.incomplete()

    @ray.method(concurrency_group="control")
    def summary(self):
        return self.store.summary()


def test_batches_do_not_wait_for_the_sink(ray_local):
    """What a stage actor runs per batch, here in the driver: with every delta held back by
    the sink, batches still go through (a wait on the sink would block the first one)."""
    sink = ray.remote(num_cpus=0, concurrency_groups={"data": 1, "control": 1})(
        _HeldBack).remote()
    stage = _Counted(StageSpec(Tag), sink)
    table = pa.table({"x": list(range(30))})
    for part in range(3):  # the first registers (one round trip); none waits for a delta
        assert stage(table.slice(10 * part, 10)).num_rows == 10
    [held] = ray.get(sink.incomplete.remote())
    assert (held["received"], held["sent"]) == (0, None)
    assert ray.get(sink.summary.remote()) == []
    ray.get(sink.release.remote())
    stage.close()
    assert wait_complete(sink, timeout_s=30) == []
    expected = Tag()
    expected(table)
    assert [c.as_dict() for c in collect_counts(sink)] == [expected.counts.as_dict()]
    ray.kill(sink)


def test_barrier_names_an_actor_that_never_closes(ray_local):
    sink = CountsSink.remote()
    ray_local.get(sink.register.remote("a", "tag"))
    ray_local.get(sink.add.remote(StageCounts("tag", 3, 3).as_dict(), "a"))
    ray_local.get(sink.register.remote("b", "tag"))
    ray_local.get(sink.add.remote(StageCounts("tag", 2, 2).as_dict(), "b"))
    ray_local.get(sink.close.remote("b", 1))
    # "a" sent a delta but never closed (a killed actor): the barrier gives up on it.
    assert wait_complete(sink, timeout_s=5, quiet_s=0.2) == [
        {"uid": "a", "stage": "tag", "received": 1, "sent": None}]
    ray_local.get(sink.close.remote("a", 2))  # it says it sent 2: one is still missing
    assert wait_complete(sink, timeout_s=5, quiet_s=0.2) == [
        {"uid": "a", "stage": "tag", "received": 1, "sent": 2}]
    ray_local.get(sink.add.remote(StageCounts("tag", 1, 1).as_dict(), "a"))
    assert wait_complete(sink, timeout_s=5) == []
    assert [c.rows_in for c in collect_counts(sink)] == [6]
    ray_local.kill(sink)
