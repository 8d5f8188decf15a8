"""A pool of SaT actors shares the work when batches wait for it (the pool is the slowest stage,
as SaT and SONAR are on real models): every actor takes a share, the busiest at most twice the
idlest, when the blocks the stage before it hands on hold about one SaT batch (Ray Data cuts
what a stage returns to the dataset's target_max_block_size). With Ray Data's default block
size (128 MiB) a small input is one block, and all but one actor of the pool stay idle.

With tiny models a SaT batch takes milliseconds, less than Ray Data takes to hand on a block, so
in the rehearsal no pool is the slowest stage and Ray Data gives each block to the actor that
came free last: the spread recorded there is that, not a loss of parallelism."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.ray_stages import (CountsSink, collect_batches, collect_counts, map_stage,
                                  wait_for_pools_if_they_fit)
from pipelines.stage import StageSpec
from pipelines.stage_configs import SegmentConfig
from pipelines.validate import ValidateText
from samples import ROOT as SAMPLES

DOCUMENTS = 18
BATCH = 2  # documents per SaT call: 9 batches for 3 actors


def _documents() -> pa.Table:
    """Long documents (each the sample's texts, rotated, end to end: 8,630 characters),
    so that a SaT batch of the tiny model costs more than Ray Data takes to hand on a block."""
    texts = pq.read_table(SAMPLES / "fineweb-edu" / "eng_Latn.parquet")["text"].to_pylist()
    texts = [t for t in texts if t.strip()]
    rows = ["\n\n".join(texts[i % len(texts):] + texts[:i % len(texts)]) for i in range(DOCUMENTS)]
    return pa.table({"id": [f"doc-{i}" for i in range(DOCUMENTS)], "text": rows,
                     "quarantine": pa.array([None] * DOCUMENTS, pa.string())})


def _segment_batches(ray, sat: str, cache_dir: str, block_bytes: int | None) -> list[int]:
    """SaT batches per actor of a pool of 3, fed all at once by a stage whose output Ray Data
    cuts into blocks of at most `block_bytes` (None: its default, 128 MiB: one block here)."""
    sink = CountsSink.remote()
    ds = ray.data.from_arrow(_documents())  # one block, as a table built in the driver is
    if block_bytes is not None:
        ds.context.target_max_block_size = block_bytes
    ds = map_stage(ds, StageSpec(ValidateText, batch_size=DOCUMENTS), sink, num_cpus=0.25)
    # Every block is made before the pool starts: batches wait for the pool.
    ds = ds.materialize()
    segment = SegmentConfig(model=sat, batch_size=BATCH, actors=3)
    ds = map_stage(ds, segment.spec(cache_dir), sink, num_cpus=0.25)
    wait_for_pools_if_they_fit(ds, {"segment": 0.75})
    rows = ds.take_all()
    assert sorted(r["id"] for r in rows) == sorted(f"doc-{i}" for i in range(DOCUMENTS))
    counts = {c.stage: c for c in collect_counts(sink)}
    assert counts["segment"].rows_in == DOCUMENTS
    batches = collect_batches(sink)["segment"]
    ray.kill(sink)
    return batches


def test_blocks_of_one_batch_spread_over_every_actor(ray_local, tiny_assets, tmp_path):
    two_documents = _documents().slice(0, BATCH).nbytes
    batches = _segment_batches(ray_local, str(tiny_assets / "sat"), str(tmp_path), two_documents)
    assert sum(batches) == DOCUMENTS // BATCH
    assert len(batches) == 3 and batches[0] <= 2 * batches[-1], batches


def test_one_block_keeps_one_actor(ray_local, tiny_assets, tmp_path):
    """The failure the block size prevents: Ray Data hands a block to one actor whole, which
    cuts it into batches itself."""
    batches = _segment_batches(ray_local, str(tiny_assets / "sat"), str(tmp_path), None)
    assert batches == [DOCUMENTS // BATCH]
