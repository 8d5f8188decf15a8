"""Progress of a running pipeline: one log line per interval, from the stage counts."""

from __future__ import annotations

import logging
import time

from pipelines.counts import StageCounts
from pipelines.ray_stages import CountsSink, Progress


def test_one_line_per_interval_with_every_stage(ray_local, caplog):
    sink = CountsSink.remote()
    ray_local.get(sink.add.remote(StageCounts("read", 5, 5).as_dict()))
    ray_local.get(sink.add.remote(StageCounts("segment", 5, 3).as_dict()))
    with caplog.at_level(logging.INFO, logger="pipelines.ray_stages"):
        with Progress(sink, "test pipeline", interval_s=0.2):
            deadline = time.monotonic() + 30
            while "test pipeline" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.1)
    lines = [r.getMessage() for r in caplog.records if "test pipeline" in r.getMessage()]
    assert lines and all("\n" not in line for line in lines)
    assert lines[0].endswith("rows out read 5, segment 3")
    ray_local.kill(sink)
